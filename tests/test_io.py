"""Opening images and writing outputs: clear errors, lazy pixels, atomic writes."""

import numpy as np
import pytest
from astropy.io import fits

import aligncore
from aligncore.formats import open_image
from aligncore.formats.common import atomic_path
from conftest import simple_wcs, write_image


def test_open_image_reads_header_lazily(tmp_path):
    path = write_image(tmp_path / "a.fits", np.ones((40, 50)), simple_wcs(shape=(40, 50)),
                       dq=np.zeros((40, 50)))
    image = open_image(path)
    assert image.shape == (40, 50)
    assert image.name == "a.fits"
    data, dq = image.load_pixels()
    assert data.shape == (40, 50) and dq.dtype.kind == "u"


def test_primary_hdu_image(tmp_path):
    path = tmp_path / "p.fits"
    header = simple_wcs(shape=(8, 8)).to_header()
    fits.PrimaryHDU(np.zeros((8, 8), np.float32), header).writeto(path)
    assert open_image(path).meta["sci_hdu"] == 0


@pytest.mark.parametrize(
    ("maker", "message"),
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_text("not a fits file at all"), "not a FITS file"),
        (lambda p: write_image(p, np.ones((8, 8)), None), "no celestial WCS"),
        (lambda p: fits.HDUList([fits.PrimaryHDU()]).writeto(p), "no image data"),
    ],
    ids=["missing", "not-fits", "no-wcs", "no-data"],
)
def test_bad_inputs_raise_input_error_naming_the_file(tmp_path, maker, message):
    path = tmp_path / "bad.fits"
    maker(path)
    with pytest.raises(aligncore.InputError, match=message) as err:
        open_image(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_all_nan_image_fails_when_read(tmp_path):
    path = write_image(tmp_path / "nan.fits", np.full((8, 8), np.nan), simple_wcs(shape=(8, 8)))
    image = open_image(path)
    with pytest.raises(aligncore.InputError, match=r"nan\.fits: the science array has no finite"):
        image.load_pixels()


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
