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


@pytest.mark.parametrize("suffix", [".fits", ".fits.gz"])
def test_header_copy_writes_the_same_bytes_as_astropy_writeto(tmp_path, suffix):
    from pathlib import Path

    from aligncore.formats.fits import _copy_with_headers

    rng = np.random.default_rng(1)
    path = write_image(tmp_path / f"in{suffix}", rng.normal(size=(30, 20)),
                       simple_wcs(shape=(30, 20)), dq=rng.integers(0, 2**31, (30, 20)))
    written = {}
    for label in ("copy", "writeto"):
        target = Path(tmp_path / f"{label}.fits")
        with fits.open(path, memmap=False) as hdul:
            hdul["SCI"].header["ALNSTAT"] = ("aligned", "a new card")
            hdul["SCI"].header["CRVAL1"] = 10.5
            copied = label == "copy" and _copy_with_headers(hdul, target)
            if not copied:
                hdul.writeto(target, output_verify="silentfix")
        written[label] = (copied, target.read_bytes())
    assert written["copy"][0] is (suffix == ".fits")  # a compressed input: writeto
    assert written["copy"][1] == written["writeto"][1]
    with fits.open(tmp_path / "copy.fits") as hdul:
        assert hdul["SCI"].header["ALNSTAT"] == "aligned"
        with fits.open(path) as original:
            np.testing.assert_array_equal(hdul["DQ"].data, original["DQ"].data)
            np.testing.assert_array_equal(hdul["SCI"].data, original["SCI"].data)
