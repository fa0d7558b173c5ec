"""Checking every input before any work: aligncore.preflight and the readers it relies on."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable

import aligncore
from aligncore.formats import open_image
from aligncore.formats.catalog_files import read_catalog
from aligncore.formats.fits import wcs_problems
from aligncore.preflight import FITS_BLOCK, check_inputs, data_size, fits_layout_problems
from conftest import simple_wcs, write_image


def _image(path, scale=0.1, **header):
    wcs = simple_wcs(scale=scale)
    write_image(path, np.ones((64, 64)), wcs)
    if header:
        with fits.open(path, mode="update") as hdul:
            hdul["SCI"].header.update(header)
    return path


def test_data_size_follows_the_fits_standard():
    header = fits.Header({"SIMPLE": True, "BITPIX": -32, "NAXIS": 2, "NAXIS1": 100,
                          "NAXIS2": 30})
    assert data_size(header) == 4 * 100 * 30
    table = fits.Header({"XTENSION": "BINTABLE", "BITPIX": 8, "NAXIS": 2, "NAXIS1": 12,
                         "NAXIS2": 5, "PCOUNT": 40, "GCOUNT": 1})
    assert data_size(table) == 12 * 5 + 40


def test_a_good_file_plain_or_gzipped_has_no_layout_problem(tmp_path):
    path = _image(tmp_path / "a.fits")
    packed = tmp_path / "a.fits.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert fits_layout_problems(path) == []
    assert fits_layout_problems(packed) == []


def test_truncated_data_names_the_hdu_and_the_missing_bytes(tmp_path):
    path = _image(tmp_path / "a.fits")
    raw = path.read_bytes()
    path.write_bytes(raw[:-FITS_BLOCK])
    (problem,) = fits_layout_problems(path)
    assert problem == (f"truncated: HDU 1 announces {6 * FITS_BLOCK} bytes of data, only "
                       f"{5 * FITS_BLOCK} are in the file")  # 64 x 64 float32, padded


def test_a_cut_header_and_an_empty_file_are_reported(tmp_path):
    path = _image(tmp_path / "a.fits")
    path.write_bytes(path.read_bytes()[: FITS_BLOCK + 800])
    assert fits_layout_problems(path) == ["truncated: the file ends inside the header of HDU 1"]
    empty = tmp_path / "e.fits"
    empty.write_bytes(b"")
    assert fits_layout_problems(empty) == ["empty file (0 bytes)"]


def test_check_inputs_reports_every_problem_at_once_in_input_order(tmp_path):
    good = _image(tmp_path / "good.fits")
    singular = _image(tmp_path / "singular.fits", CD2_1=-0.1 / 3600, CD2_2=0.0, CD1_2=0.0,
                      CD1_1=0.0)
    missing = tmp_path / "missing.fits"
    problems = [str(p) for p in check_inputs([good, singular, missing, good])]
    assert len(problems) == 3
    assert problems[0].startswith(f"{singular}: the CD/PC*CDELT matrix [[0.0, 0.0], [-2.77")
    assert problems[0].endswith("] is singular (no pixel scale)")
    assert problems[1:] == [f"{missing}: file not found", f"{good}: given more than once"]


@pytest.mark.parametrize(("scale", "ok"), [(1e-9, False), (2e-4, True), (3000.0, True),
                                           (36000.0, False)])
def test_pixel_scale_bounds(tmp_path, scale, ok):
    path = _image(tmp_path / "a.fits", scale=scale)
    problems = check_inputs([path])
    assert (problems == []) is ok
    if not ok:
        assert "arcsec is outside 0.0001 .. 3600 arcsec" in problems[0].message


def test_wcs_problems_of_a_wcs_object():
    assert wcs_problems(simple_wcs()) == []
    assert wcs_problems(simple_wcs(scale=1e-7)) == [
        "pixel scale 1e-07 arcsec is outside 0.0001 .. 3600 arcsec"]
    wcs = simple_wcs()
    wcs.wcs.crval = [150.0, 91.0]
    assert wcs_problems(wcs)[0].startswith("cannot read the WCS: Ill-conditioned")


def test_latitude_beyond_90_is_named(tmp_path):
    path = _image(tmp_path / "a.fits", CRVAL2=-90.5)
    (problem,) = check_inputs([path])
    assert problem.message == "CRVAL2 = -90.5 is not a latitude (must be within -90..90 deg)"


def test_align_raises_one_input_error_listing_every_problem(tmp_path):
    bad = _image(tmp_path / "bad.fits", CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP")
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    with pytest.raises(aligncore.InputError) as info:
        aligncore.align([bad, empty])
    assert str(info.value).splitlines() == [
        "2 input problems:",
        f"  {bad}: CTYPE asks for SIP distortion but A_ORDER is missing; CTYPE asks for SIP "
        "distortion but B_ORDER is missing",
        f"  {empty}: empty file (0 bytes)",
    ]


def test_singular_cd_is_an_input_error_not_a_memory_error(tmp_path):
    path = _image(tmp_path / "a.fits", CD1_1=1e-5, CD1_2=1e-5, CD2_1=1e-5, CD2_2=1e-5)
    with pytest.raises(aligncore.InputError, match="singular"):
        open_image(path)


def _refcat_config(path, min_gaia=5):
    return aligncore.load_config(None, [
        "absolute.enabled=true", f"absolute.min_gaia={min_gaia}",
        f"absolute.refcat={{plugin: file, params: {{path: '{path}'}}}}"])


def test_reference_file_with_ra_and_RA_is_refused_with_the_candidates(tmp_path):
    path = tmp_path / "ref.ecsv"
    QTable({"ra": np.ones(10), "RA": np.ones(10), "dec": np.ones(10)}).write(path)
    (problem,) = check_inputs([], _refcat_config(path))
    assert str(problem) == f"{path}: ra: ambiguous column, candidates ra, RA; keep exactly one " \
                           "of them"


def test_reference_file_counts_usable_rows_against_min_gaia(tmp_path):
    path = tmp_path / "ref.ecsv"
    ra = np.array([1.0, np.nan, 2.0, 3.0, 4.0, 5.0])
    dec = np.array([1.0, 2.0, np.inf, 3.0, 95.0, 5.0])
    QTable({"ra": ra, "dec": dec}).write(path)
    assert check_inputs([], _refcat_config(path, min_gaia=3)) == []
    (problem,) = check_inputs([], _refcat_config(path, min_gaia=4))
    assert problem.message == ("3 usable rows (3 dropped: masked, non-finite or off-sky "
                               "positions), absolute.min_gaia needs at least 4")


def test_user_catalog_masked_rows_are_dropped_and_counted(tmp_path):
    path = tmp_path / "cat.ecsv"
    table = QTable({"x": np.ma.array([1.0, 2.0, 3.0, 4.0], mask=[0, 1, 0, 0]),
                    "y": np.array([1.0, 2.0, np.nan, 4.0])})
    table.write(path)
    catalog = read_catalog(path)
    assert list(catalog["x"]) == [1.0, 4.0]
    assert catalog.meta["dropped_rows"] == 2


def test_user_catalog_with_two_x_columns_is_ambiguous(tmp_path):
    path = tmp_path / "cat.ecsv"
    QTable({"x": [1.0], "xcentroid": [2.0], "y": [1.0]}).write(path)
    with pytest.raises(aligncore.InputError, match="ambiguous column, candidates x, xcentroid"):
        read_catalog(path)


def test_dropped_rows_of_a_user_catalog_land_in_the_image_result(small_scene, tmp_path):
    detected = aligncore.align(small_scene.paths[:2]).images[0].catalog
    table = QTable({"x": np.ma.array(detected["x"]), "y": np.asarray(detected["y"])})
    table["x"][:3] = np.ma.masked
    path = tmp_path / "cat.ecsv"
    table.write(path)
    name = small_scene.paths[0].name
    config = aligncore.load_config(None, [f"detector.catalogs={{{name}: '{path}'}}"])
    result = aligncore.align(small_scene.paths[:2], config)
    assert result.images[0].meta["dropped_rows"] == 3
    assert result.images[0].n_sources == len(detected) - 3
    assert result.ok
    report = json.loads(json.dumps(result.summary(), default=str))
    assert report["images"][0]["meta"]["dropped_rows"] == 3


def test_asdf_blocks_are_checked_to_the_last_byte(tmp_path):
    scene = aligncore.simulate("dither", n_images=1, seed=3, shape=(32, 32), n_stars=5,
                               outdir=tmp_path / "scene", wcs="gwcs")
    path = scene.paths[0]
    assert check_inputs([path]) == []
    raw = path.read_bytes()
    cut = tmp_path / "cut.asdf"
    cut.write_bytes(raw[: raw.index(b"\xd3BLK") + 100])
    (problem,) = check_inputs([cut])
    assert problem.message.startswith("truncated: block 0 announces")


def test_padding_after_the_last_hdu_is_accepted_like_astropy_does(tmp_path):
    path = _image(tmp_path / "a.fits")
    path.write_bytes(path.read_bytes() + b"\0" * FITS_BLOCK)
    assert fits_layout_problems(path) == []
    assert open_image(path).shape == (64, 64)


def test_check_inputs_hands_back_the_images_it_opened(tmp_path):
    import numpy as np

    from conftest import simple_wcs, write_image

    good = write_image(tmp_path / "good.fits", np.ones((8, 8)), simple_wcs(shape=(8, 8)))
    bad = write_image(tmp_path / "bad.fits", np.ones((8, 8)), None)
    opened: dict = {}
    problems = check_inputs([good, bad], opened=opened)
    assert [p.path for p in problems] == [str(bad)]
    assert list(opened) == [good] and [image.shape for image in opened[good]] == [(8, 8)]
