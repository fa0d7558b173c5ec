"""HST multi-chip files: every SCI chip an image with its own WCS and DQ, one rigid group
per exposure, one output file per input with the previous WCS kept as alternate key O."""

from __future__ import annotations

import hashlib
import json
import math
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

import aligncore
from aligncore import ImageResult, InputError, Status
from aligncore.cli import main
from aligncore.formats.altwcs import archive_primary, archived_keys, free_key
from aligncore.formats.fits import HST_DQ_BITMASK, write_fits_images
from aligncore.sim.hst import HST_DQ_HOT, HST_DQ_WARM, chip_headers, simulate_hst
from aligncore.tangent import pixel_to_world

CONFIG = "configs/default.yaml"
GRID = np.meshgrid(np.linspace(0, 511, 9), np.linspace(0, 255, 5))
GRID_X, GRID_Y = GRID[0].ravel(), GRID[1].ravel()


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wcs(header, hdul, key=" "):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, hdul, key=key)


def _sky(wcs):
    return np.column_stack(wcs.all_pix2world(GRID_X, GRID_Y, 0))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Four simulated two-chip exposures (lookup-table distortions included), aligned by
    ``aligncore run``; the inputs' hashes taken before."""
    root = tmp_path_factory.mktemp("hst")
    scene = simulate_hst(4, outdir=root / "in", seed=2, lookup=True)
    hashes = {path: _sha(path) for path in scene.paths}
    out = root / "out"
    code = main(["run", CONFIG, *map(str, scene.paths), "-o", str(out), "-q"])
    report = json.loads((out / "report.json").read_text())
    return scene, hashes, out, code, report


def _images(scene, directory):
    return [image for path in scene.paths
            for image in aligncore.open_images(directory / path.name)]


# --- reading -------------------------------------------------------------------------------
def test_every_chip_is_an_image_of_one_group(run):
    scene = run[0]
    images = aligncore.open_images(scene.paths[1])
    assert [i.name for i in images] == ["hst_001_flt.fits[SCI,1]", "hst_001_flt.fits[SCI,2]"]
    assert {i.group_id for i in images} == {"hst_001_flt.fits"}
    assert [i.meta["sci_hdu"] for i in images] == [1, 4]
    assert all(i.meta["dq_bitmask"] == HST_DQ_BITMASK == 15263 for i in images)
    with pytest.raises(InputError, match=r"holds 2 SCI chips; open it with aligncore.open_images"):
        aligncore.open_image(scene.paths[1])


def test_each_chip_reads_its_own_lookup_tables_and_dq(run):
    scene = run[0]
    images = aligncore.open_images(scene.paths[0])
    for image, nominal in zip(images, scene.nominal_wcs[:2], strict=True):
        assert image.wcs.cpdis1 is not None and image.wcs.det2im1 is not None
        np.testing.assert_allclose(_sky(image.wcs), _sky(nominal), rtol=0, atol=1e-12)
        # the tables matter: without them a chip is off by tens of mas
        bare = image.wcs.deepcopy()
        bare.cpdis1 = bare.cpdis2 = bare.det2im1 = None
        ra, dec = pixel_to_world(bare, GRID_X, GRID_Y)
        miss = np.hypot((ra - _sky(nominal)[:, 0]) * math.cos(math.radians(dec[0])),
                        dec - _sky(nominal)[:, 1]) * 3.6e6
        assert miss.max() > 30.0
    with fits.open(scene.paths[0]) as hdul:
        for image in images:
            data, dq = image.load_pixels()
            version = int(image.meta["chip"].split(",")[1])
            np.testing.assert_array_equal(dq, hdul["DQ", version].data)
            np.testing.assert_array_equal(data, hdul["SCI", version].data)


def test_hst_dq_default_masks_hot_not_warm_pixels(run):
    pytest.importorskip("aligncore_daofind")
    from aligncore_daofind.masking import bad_pixel_mask, dq_bitmask_of

    image = aligncore.open_images(run[0].paths[0])[1]
    data, dq = image.load_pixels()
    warm, hot = (dq & HST_DQ_WARM) != 0, (dq & HST_DQ_HOT) != 0
    assert warm.sum() > 100 and hot.sum() >= 5
    bad = bad_pixel_mask(data, dq, dq_bitmask_of(None, image.meta))
    assert bad[hot].all() and not bad[warm & ~hot].any()
    assert bad_pixel_mask(data, dq, dq_bitmask_of(HST_DQ_WARM, image.meta))[warm].all()
    assert bad_pixel_mask(data, dq, dq_bitmask_of(None, {}))[warm].all()  # plain FITS: any flag


def test_single_chip_files_open_as_before(small_scene):
    image = aligncore.open_image(small_scene.paths[0])
    (same,) = aligncore.open_images(small_scene.paths[0])
    assert image.name == same.name == small_scene.paths[0].name
    assert "chip" not in image.meta and "dq_bitmask" not in image.meta
    assert image.group_id is None


# --- aligning -------------------------------------------------------------------------------
def test_run_writes_one_file_per_exposure_inputs_untouched(run):
    scene, hashes, out, code, report = run
    assert code == 0
    assert sorted(p.name for p in out.glob("*.fits")) == [p.name for p in scene.paths]
    assert {path: _sha(path) for path in scene.paths} == hashes
    assert [i["name"] for i in report["images"]] == scene.names


def _rigid_motion(before, after, plane):
    """The rotation (deg), shift (arcsec) and worst residual (arcsec) of the best rigid
    motion taking the ``before`` sky points to ``after``, in ``plane``."""
    src = np.column_stack(plane.world_to_tp(before[:, 0], before[:, 1]))
    dst = np.column_stack(plane.world_to_tp(after[:, 0], after[:, 1]))
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    u, _, vt = np.linalg.svd((src - cs).T @ (dst - cd))
    rot = (u @ vt).T
    residual = np.hypot(*((src - cs) @ rot.T + cd - dst).T).max()
    return math.degrees(math.atan2(rot[1, 0], rot[0, 0])), cd - rot @ cs, residual


def test_both_chips_of_an_exposure_move_by_one_rigid_transform(run):
    scene, _, out, _, report = run
    results = {i["name"]: i for i in report["images"]}
    aligned = _images(scene, out)
    moved = 0
    for k in range(len(scene.paths)):
        chips = slice(2 * k, 2 * k + 2)
        names = scene.names[chips]
        assert {results[n]["status"] for n in names} <= {"SUCCESS", "REFERENCE"}
        before = np.concatenate([_sky(w) for w in scene.nominal_wcs[chips]])
        after = np.concatenate([_sky(i.wcs) for i in aligned[chips]])
        rotation, shift, residual = _rigid_motion(before, after, scene.plane)
        assert residual < 2e-6  # arcsec: one rigid motion moves both chips (2 micro-arcsec)
        each = [_rigid_motion(_sky(w), _sky(i.wcs), scene.plane)
                for w, i in zip(scene.nominal_wcs[chips], aligned[chips], strict=True)]
        # each chip alone moved by that same rotation (deg)
        assert max(abs(each[0][0] - rotation), abs(each[1][0] - rotation)) < 1e-7
        moved += float(np.hypot(*shift)) > 0.05
    assert moved >= 3  # the pointing errors (0.1-1") were corrected, not left alone


def test_relative_error_at_the_centroid_noise_bound(run):
    scene, _, out, _, report = run
    aligned = [i.wcs for i in _images(scene, out)]
    errors = scene.errors(aligned, relative=True)
    rms = float(np.sqrt(np.mean(np.square(errors["rms_mas"]))))
    bounds = [i["meta"]["noise_bound_mas"] for i in report["images"]
              if i["status"] == "SUCCESS"]
    # noise_bound_mas is the per-axis shift bound sqrt(sum sigma^2)/N of each fit; its
    # 2D size is sqrt(2) times that
    bound = math.sqrt(2.0) * float(np.sqrt(np.mean(np.square(bounds))))
    nominal = float(np.max(scene.errors(scene.nominal_wcs, relative=True)["rms_mas"]))
    print(f"HST 2-chip relative RMS {rms:.2f} mas, 2D noise bound {bound:.2f} mas, "
          f"before {nominal:.0f} mas")
    assert 0.5 < bound < 10.0  # centroid noise of ~0.3" pixels, hundreds of stars
    assert nominal > 100.0
    assert rms <= bound


def test_previous_wcs_is_alternate_o_exactly(run):
    scene, _, out, _, _ = run
    for path in scene.paths:
        with fits.open(path) as old, fits.open(out / path.name) as new:
            for version in (1, 2):
                before, after = old["SCI", version].header, new["SCI", version].header
                assert after["WCSNAMEO"] == before["WCSNAME"] == "IDC_2731450pi"
                assert after["WCSNAME"] == "FIT-REL"
                assert after["ALNSTAT"] in ("SUCCESS", "REFERENCE")
                assert "CD1_1" in after and "PC1_1" not in after  # HST's CD form kept
                archived = _wcs(after, new, key="O")
                np.testing.assert_array_equal(_sky(archived), _sky(_wcs(before, old)))
                assert archived.cpdis1 is not None and _wcs(after, new).det2im1 is not None
                for key in ("CRVAL1", "CRVAL2", "CD1_1", "CD2_2", "CRPIX1", "CTYPE1"):
                    assert after[f"{key}O"] == before[key]
                cd = _wcs(after, new).wcs.cd
                assert after["ORIENTAT"] == pytest.approx(
                    math.degrees(math.atan2(cd[0, 1], cd[1, 1])), abs=1e-9)


def test_rerun_on_outputs_keeps_o_and_archives_the_last_wcs(run, tmp_path):
    scene, _, out, _, _ = run
    inputs = [out / path.name for path in scene.paths]
    again = tmp_path / "again"
    assert main(["run", CONFIG, *map(str, inputs), "-o", str(again), "-q"]) == 0
    for path in scene.paths:
        with fits.open(path) as first, fits.open(out / path.name) as mid, \
                fits.open(again / path.name) as last:
            for version in (1, 2):
                header = last["SCI", version].header
                assert archived_keys(header) == ["O", "A"]
                assert header["WCSNAMEO"] == "IDC_2731450pi"
                assert header["WCSNAMEA"] == "FIT-REL"
                np.testing.assert_array_equal(_sky(_wcs(header, last, key="O")),
                                              _sky(_wcs(first["SCI", version].header, first)))
                np.testing.assert_array_equal(_sky(_wcs(header, last, key="A")),
                                              _sky(_wcs(mid["SCI", version].header, mid)))
    before = scene.errors([i.wcs for i in _images(scene, out)], relative=True)["rms_mas"]
    after = scene.errors([i.wcs for i in _images(scene, again)], relative=True)["rms_mas"]
    assert np.max(np.abs(np.asarray(after) - np.asarray(before))) < 1.0  # mas: stays aligned


# --- writing -------------------------------------------------------------------------------
def test_failed_chips_keep_their_wcs_and_get_no_archive(run, tmp_path):
    scene = run[0]
    images = aligncore.open_images(scene.paths[2])
    results = [ImageResult(name=i.name, status=Status.FAILED, reason="too few matches",
                           wcs=i.wcs) for i in images]
    target = write_fits_images(images, results, tmp_path / "x.fits", wcsname="FIT-REL",
                               version="t")
    with fits.open(scene.paths[2]) as a, fits.open(target) as b:
        for version in (1, 2):
            old, new = a["SCI", version].header, b["SCI", version].header
            assert new["ALNSTAT"] == "FAILED" and new["WCSNAME"] == old["WCSNAME"]
            assert archived_keys(new) == []
            for key in ("CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "A_2_0", "D2IMDIS1", "CPDIS1"):
                assert new[key] == old[key]
        for name in ("DQ", "ERR", "WCSDVARR", "D2IMARR"):
            np.testing.assert_array_equal(a[name, 2].data, b[name, 2].data)
    with pytest.raises(InputError, match="one output file is written from the images of one"):
        write_fits_images([images[0], aligncore.open_images(scene.paths[0])[0]], results,
                          tmp_path / "y.fits", wcsname="X", version="t")


def test_alternate_keys_o_first_then_free_letters():
    header = fits.Header(chip_headers(8)[0])
    assert free_key(header) == "O"
    assert archive_primary(header) == "O" and header["WCSNAMEO"] == "IDC_2731450pi"
    assert header["CD1_1O"] == header["CD1_1"] and header["A_ORDER"] == 4
    assert archive_primary(header) == "A" and archived_keys(header) == ["O", "A"]
    for letter in "BCDEFGHIJKLMNPQRSTUVWXYZ":
        header[f"WCSNAME{letter}"] = letter
    assert free_key(header) is None and archive_primary(header) is None
    bare = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 1.0 / 3.0})
    assert archive_primary(bare) == "O" and bare["WCSNAMEO"] == "ORIGINAL"
    assert bare["CRVAL1O"] == 1.0 / 3.0  # the value text is copied: the same double


def test_chip_headers_binning_keeps_the_sky_geometry():
    full, binned = chip_headers(1), chip_headers(4)
    for a, b in zip(full, binned, strict=True):
        wa, wb = WCS(a), WCS(b)
        x = np.array([0.0, 1000.0, 4095.0])
        y = np.array([0.0, 1500.0, 2047.0])
        # 1-based pixel p of the full chip is binned pixel (p - 0.5) / 4 + 0.5
        sky_a = np.column_stack(wa.all_pix2world(x + 1, y + 1, 1))
        sky_b = np.column_stack(wb.all_pix2world((x + 0.5) / 4 + 0.5, (y + 0.5) / 4 + 0.5, 1))
        np.testing.assert_allclose(sky_a, sky_b, rtol=0, atol=1e-11)
        assert (b["NAXIS1"], b["NAXIS2"]) == (1024, 512)


def test_chip_catalogs_are_named_after_file_and_chip(tmp_path):
    from aligncore.formats.catalog_files import catalog_path

    assert catalog_path(tmp_path, "j8_flc.fits[SCI,2]", "ecsv") == tmp_path / "j8_flc_sci2_cat.ecsv"
    assert catalog_path(tmp_path, "j8_flc.fits", "ecsv") == tmp_path / "j8_flc_cat.ecsv"


def test_chips_pickle_for_worker_processes_and_group_by_file_name(run):
    import pickle

    from aligncore.config import load_config
    from aligncore.pipeline import _resolve_images
    from aligncore.registry import default_registry

    scene = run[0]
    chip = aligncore.open_images(scene.paths[0])[1]
    copy = pickle.loads(pickle.dumps(chip))
    assert copy.wcs.cpdis2 is not None
    # astropy pickles a WCS through its header text: equal within 1e-12 deg (4 micro-arcsec)
    np.testing.assert_allclose(_sky(copy.wcs), _sky(chip.wcs), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(copy.load_pixels()[1], chip.load_pixels()[1])
    config = load_config(None, ['align.groups={"hst_000_flt.fits": "visit", '
                                '"hst_001_flt.fits[SCI,2]": "odd"}'])
    images = _resolve_images(scene.paths[:2], config, default_registry())
    assert [i.group_id for i in images] == ["visit", "visit", "hst_001_flt.fits", "odd"]
