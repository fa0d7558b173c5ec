"""Absolute accuracy at its limit: proper-motion errors, every detection, the bound.

The end-to-end check uses the truth detector of test_absolute.py (true positions
plus 0.02 px of noise, so that detection is not what is tested) on a NIRCam-like
GWCS scene whose reference catalog has position errors, proper motions and
proper-motion errors 10.5 years before the observation (benchmarks/bench_absolute.py
measures the same over 8 seeds with real detection).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.table import QTable

import aligncore
from aligncore.absolute import every_detection
from aligncore.catalogs import propagate, reference_table
from aligncore.config import load_config
from aligncore.refcat import read_reference_table
from aligncore.sim.truth import fit_error_rms, reference_variance
from test_absolute import CENTROID_NOISE_PIX, TruthPlugins

SCALE = 0.063
EPOCH, REFCAT_EPOCH = 2026.5, 2016.0
PM_ERROR = 0.3  # mas/yr for the brightest reference stars (x10 for the faintest)


def test_propagation_grows_position_errors_by_the_proper_motion_errors():
    table = reference_table([10.0, 10.001, 10.002], [20.0, 20.0, 20.0], ra_err=[1.0, 1.0, 2.0],
                            dec_err=[2.0, 2.0, 1.0], pmra=[5.0, np.nan, 3.0],
                            pmdec=[-4.0, np.nan, 1.0], pmra_err=[0.3, 0.3, np.nan],
                            pmdec_err=[0.4, 0.4, 0.1], epoch=2016.0)
    out = propagate(table, 2026.0, pm_mode="keep")
    # moved with known errors: 1 (+) 0.3 x 10 and 2 (+) 0.4 x 10 mas
    assert out["ra_err"][0] == pytest.approx(math.hypot(1.0, 3.0))
    assert out["dec_err"][0] == pytest.approx(math.hypot(2.0, 4.0))
    assert (out["ra_err"][1], out["dec_err"][1]) == (1.0, 2.0)  # not moved: kept as given
    assert out["ra_err"][2] == 2.0  # no pmra error: RA error as given
    assert out["dec_err"][2] == pytest.approx(math.hypot(1.0, 1.0))
    assert list(table["ra_err"]) == [1.0, 1.0, 2.0]  # the input is not modified
    plain = propagate(reference_table([10.0], [20.0], ra_err=[1.0], dec_err=[1.0], pmra=[5.0],
                                      pmdec=[1.0], epoch=2016.0), 2026.0)
    assert plain["ra_err"][0] == 1.0 and "pmra_err" not in plain.colnames


def test_reference_files_give_proper_motion_errors(tmp_path):
    import astropy.units as u

    path = tmp_path / "gaia.ecsv"
    table = QTable({"source_id": [1, 2], "ra": [10.0, 10.1] * u.deg, "dec": [1.0, 1.1] * u.deg,
                    "pmra": [1.0, 2.0] * u.mas / u.yr, "pmdec": [0.5, 0.1] * u.mas / u.yr,
                    "pmra_error": [0.02, 0.03] * u.arcsec / u.kyr,
                    "pmdec_error": [40.0, 50.0] * u.uas / u.yr})
    table.write(path)
    ref = read_reference_table(path, epoch=2016.0)
    np.testing.assert_allclose(ref["pmra_err"], [0.02, 0.03])
    np.testing.assert_allclose(ref["pmdec_err"], [0.04, 0.05])
    table.remove_columns(["pmra_error", "pmdec_error"])
    table.write(path, overwrite=True)
    assert "pmra_err" not in read_reference_table(path, epoch=2016.0).colnames


def test_every_detection_of_a_matched_star_joins_its_pair():
    # star A in images 0, 1, 2 (and a second, farther detection in image 2); star B in image
    # 0 and 1; a source of image 0 right beside A; an unmatched star C
    xy = np.array([[0.0, 0.0], [0.001, -0.001], [-0.002, 0.0], [0.02, 0.0],  # A
                   [5.0, 5.0], [5.001, 5.0],                                  # B
                   [0.003, 0.0],                                              # beside A, image 0
                   [9.0, 9.0]])                                               # C
    images = np.array([0, 1, 2, 2, 0, 1, 0, 1])
    combined = QTable({"tp_x": xy[:, 0], "tp_y": xy[:, 1], "image": images})
    source_idx, ref_idx = every_detection(combined, np.array([0, 5]), np.array([7, 3]), 0.03)
    pairs = sorted(zip(source_idx.tolist(), ref_idx.tolist(), strict=True))
    assert pairs == [(0, 7), (1, 7), (2, 7), (4, 3), (5, 3)]
    assert list(source_idx[:2]) == [0, 5]  # the matcher's pairs first
    empty = every_detection(combined, np.zeros(0, int), np.zeros(0, int), 0.03)
    assert empty[0].size == 0 and empty[1].size == 0


def test_fit_error_rms_is_the_least_squares_error():
    rng = np.random.default_rng(1)
    stars = rng.uniform(-30, 30, (50, 2))
    # a shift from N stars of equal variance v: 2 v / N in 2D
    assert fit_error_rms(stars, np.full(50, 4.0), stars, "shift") == pytest.approx(
        math.sqrt(2 * 4.0 / 50))
    # the Monte Carlo error of the weighted rshift fit agrees with the formula
    variance = rng.uniform(1.0, 25.0, 50)
    points = rng.uniform(-30, 30, (200, 2))
    predicted = fit_error_rms(stars, variance, points, "rshift")
    errors = []
    for _ in range(400):
        noise = rng.normal(size=(50, 2)) * np.sqrt(variance)[:, None]
        design = np.zeros((100, 3))
        centre = points.mean(axis=0)
        d = stars - centre
        design[0::2] = np.column_stack([np.ones(50), np.zeros(50), -d[:, 1]])
        design[1::2] = np.column_stack([np.zeros(50), np.ones(50), d[:, 0]])
        root = np.repeat(1.0 / np.sqrt(variance), 2)
        p = np.linalg.lstsq(design * root[:, None], noise.ravel() * root, rcond=None)[0]
        q = points - centre
        moved = np.column_stack([p[0] - p[2] * q[:, 1], p[1] + p[2] * q[:, 0]])
        errors.append(np.mean(np.sum(moved**2, axis=1)))
    assert math.sqrt(np.mean(errors)) == pytest.approx(predicted, rel=0.1)
    with pytest.raises(ValueError, match="geometry must be one of"):
        fit_error_rms(stars, variance, points, "affine")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Three 512^2 NIRCam-like GWCS exposures, 1" common pointing error; the reference
    catalog 10.5 years older with proper motions and their errors."""
    return aligncore.simulate("dither", n_images=3, seed=4, shape=(512, 512),
                              pixel_scale=SCALE, wcs="gwcs", n_stars=300,
                              common_pointing_error=1.0, pointing_error=(0.2, 1.0),
                              roll_error=0.02, proper_motion=5.0, refcat_pm_error=PM_ERROR,
                              epoch=EPOCH, refcat_epoch=REFCAT_EPOCH,
                              outdir=tmp_path_factory.mktemp("abs_limit"))


def _absolute(scene, refcat_path):
    registry = aligncore.build_registry(plugins=[TruthPlugins(scene, with_errors=True)])
    config = load_config(None, [
        "detector.plugin=truth", "detector.params={}", "absolute.enabled=true",
        "absolute.refcat.plugin=file",
        f"absolute.refcat.params={json.dumps({'path': str(refcat_path)})}",
        "absolute.save_gaia_catalog=true"], registry=registry)
    return aligncore.align(scene.images, config, registry=registry)


def test_absolute_error_at_the_catalog_bound(scene):
    """The absolute RMS against the truth is within 1.5x (one seed) of the bound: the error
    of a fit to the used reference stars with their errors at the epoch plus the centroid
    noise of their detections, and the relative error."""
    result = _absolute(scene, scene.paths[0].parent / "refcat.ecsv")
    info = result.meta["absolute"]
    assert info["status"] == "applied"
    assert info["n_pairs"] > 2 * info["n_used"]  # every detection of a star is fitted
    used = result.reference_catalog
    ids = np.asarray(used["id"])[np.asarray(used["used"], bool)]
    detected = [set(np.asarray(scene.true_sources(i)["id"])[
        (np.asarray(scene.true_sources(i)["snr"]) > 30)
        & ~np.asarray(scene.true_sources(i)["saturated"])].tolist())
        for i in range(len(scene.images))]
    k = np.array([sum(int(s) in d for d in detected) for s in ids], float)
    row = {int(i): n for n, i in enumerate(np.asarray(scene.refcat["id"]))}
    rows = np.array([row[int(i)] for i in ids])
    xy = np.column_stack(scene.plane.world_to_tp(np.asarray(scene.refcat["ra"], float)[rows],
                                                 np.asarray(scene.refcat["dec"], float)[rows]))
    centroid_var = (CENTROID_NOISE_PIX * SCALE * 1000.0) ** 2
    variance = reference_variance(scene.refcat, ids, EPOCH - REFCAT_EPOCH) + centroid_var / k
    ny, nx = scene.images[0].shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 8), np.linspace(0, ny - 1, 8))
    points = np.vstack([np.column_stack(scene.plane.world_to_tp(
        *aligncore.pixel_to_world(w, gx.ravel(), gy.ravel()))) for w in scene.true_wcs])
    fit = fit_error_rms(xy, variance, points, result.absolute.fitgeometry)
    relative = scene.errors_summary(result, relative=True)["rms_mas"]
    bound = math.hypot(fit, relative)
    absolute = scene.errors_summary(result, relative=False)["rms_mas"]
    assert 2.0 < fit < 8.0  # catalog-dominated: errors of 3-30 mas at the epoch, ~100 stars
    assert relative < 0.3 * fit
    assert absolute <= 1.5 * bound, (absolute, bound)
    nominal = scene.errors_summary(scene.nominal_wcs, relative=False)["rms_mas"]
    assert nominal > 100 * bound  # the 1" pointing error is removed
