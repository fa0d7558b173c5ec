"""Absolute alignment end to end: simulated scene, loopback GSSS/TAP server, file catalog.

The detector is a fake returning the true star positions with 0.02 px noise
(detection is not what is tested here); everything else is the real pipeline,
the real ``gaia``/``file`` plugins and a real HTTP server on 127.0.0.1
(``FakeCatalogService`` of test_gaia_service.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import socket
import warnings

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable

import aligncore
from aligncore.absolute import AbsoluteSettings, _propagated, _reference_at_source_epochs
from aligncore.catalogs import reference_table
from aligncore.config import load_config
from aligncore.outputs import write_outputs
from aligncore.tangent import TangentPlane, footprint_world
from test_gaia_service import FakeCatalogService

CENTROID_NOISE_PIX = 0.02
PIXEL_SCALE = 0.1  # arcsec


def make_scene(outdir=None, seed=3):
    """3 images of 512^2 sharing a 1.5" pointing error; 10 mas/yr over 10 years."""
    return aligncore.simulate("dither", n_images=3, seed=seed, shape=(512, 512), n_stars=150,
                              common_pointing_error=1.5, pointing_error=(0.1, 0.5),
                              proper_motion=10.0, epoch=2026.0, refcat_epoch=2016.0,
                              outdir=outdir)


class TruthPlugins:
    """Registers a ``truth`` detector returning the scene's true positions plus noise."""

    def __init__(self, scene, with_errors=False):
        self.scene = scene
        plugin = self

        class TruthDetector(aligncore.Detector):
            name = "truth"

            def detect(self, image):
                index = plugin.scene.names.index(image.name)
                stars = plugin.scene.true_sources(index)
                stars = stars[(stars["snr"] > 30) & ~stars["saturated"]]
                rng = np.random.default_rng(index)
                table = QTable()
                table[aligncore.COL_ID] = np.arange(len(stars))
                noise = rng.normal(0, CENTROID_NOISE_PIX, (2, len(stars)))
                table[aligncore.COL_X] = np.asarray(stars["x"]) + noise[0]
                table[aligncore.COL_Y] = np.asarray(stars["y"]) + noise[1]
                table[aligncore.COL_FLUX] = np.asarray(stars["flux"])
                if with_errors:
                    table[aligncore.COL_X_ERR] = np.full(len(stars), CENTROID_NOISE_PIX)
                    table[aligncore.COL_Y_ERR] = np.full(len(stars), CENTROID_NOISE_PIX)
                return table

        self.detector = TruthDetector

    @aligncore.hookimpl
    def aligncore_add_detectors(self):
        return [self.detector]


def sky_from(scene, seed=0, fraction=0.1):
    """The scene's Gaia-like catalog with the proper motions of ~10% of the stars removed."""
    sky = QTable(scene.refcat, copy=True)
    blank = np.random.default_rng(seed).random(len(sky)) < fraction
    for name in ("pmra", "pmdec"):
        values = np.asarray(sky[name], float).copy()
        values[blank] = np.nan
        sky[name] = values
    return sky


@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module")
def registry(scene):
    return aligncore.build_registry(plugins=[TruthPlugins(scene)])


@pytest.fixture(scope="module")
def server(scene):
    service = FakeCatalogService(sky_from(scene), catalog_epoch=2016.0)
    yield service
    service.close()


@pytest.fixture
def service(server):
    server.mode = "ok"
    server.delay = 1.0
    server.requests.clear()
    server.log.clear()
    return server


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def config_for(registry, refcat_params, *sets):
    params = json.dumps({"catalog": "GAIADR3", "cache": "off", "retries": 0, "backoff": 0.0,
                         "timeout": 5.0, **refcat_params})
    return load_config(None, ["detector.plugin=truth", "detector.params={}",
                              "absolute.enabled=true", f"absolute.refcat.params={params}",
                              *sets], registry=registry)


def run(scene, registry, refcat_params, *sets, images=None):
    config = config_for(registry, refcat_params, *sets)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = aligncore.align(images or scene.images, config, registry=registry)
    info = dict(result.meta["absolute"])
    info["python_warnings"] = [str(w.message) for w in caught]
    info["reference_catalog"] = result.reference_catalog
    return result, info


@pytest.fixture(scope="module")
def relative_only(scene, registry):
    config = load_config(None, ["detector.plugin=truth", "detector.params={}"], registry=registry)
    return aligncore.align(scene.images, config, registry=registry)


def error_bound_mas(scene, result, info):
    """Expected absolute RMS error: relative error plus the rshift fit error.

    The fit of n stars with per-axis errors sigma (centroid noise and catalog
    errors in quadrature) has a shift error sigma/sqrt(n) per axis, and a
    rotation error that adds about sigma^2/n to the mean squared error over
    the field (sources and grid points spread alike).
    """
    used = info["reference_catalog"]
    used = used[np.asarray(used["used"]) & np.isfinite(np.asarray(used["pmra"], float))]
    ref_var = np.mean((np.asarray(used["ra_err"]) ** 2 + np.asarray(used["dec_err"]) ** 2) / 2)
    sigma2 = (CENTROID_NOISE_PIX * PIXEL_SCALE * 1000.0) ** 2 + ref_var
    fit_mse = 3.0 * sigma2 / len(used)
    relative = scene.errors_summary(result, relative=True)["rms_mas"]
    return math.sqrt(relative**2 + fit_mse)


# --- acceptance: the three reference sources ------------------------------------------------
@pytest.mark.parametrize("source", ["gsss", "tap", "file"])
def test_common_pointing_error_is_removed(scene, registry, service, tmp_path, source):
    if source == "file":
        path = tmp_path / "gaia.ecsv"
        sky_from(scene).write(path)
        params = {"path": str(path)}
        sets = ["absolute.refcat.plugin=file"]
        config = load_config(None, ["detector.plugin=truth", "detector.params={}",
                                    "absolute.enabled=true", *sets,
                                    f"absolute.refcat.params={json.dumps(params)}",
                                    "absolute.save_gaia_catalog=true"], registry=registry)
        result = aligncore.align(scene.images, config, registry=registry)
        info = {**result.meta["absolute"], "reference_catalog": result.reference_catalog}
    else:
        url = service.tap_url if source == "tap" else service.url
        result, info = run(scene, registry, {"service": source, "url": url},
                           "absolute.save_gaia_catalog=true")
    nominal = scene.errors([image.wcs for image in scene.images], relative=False)
    absolute = scene.errors(result, relative=False)
    summary = scene.errors_summary(result, relative=False)
    assert min(nominal["rms_mas"]) > 1000  # the 1.5" common error (plus 0.1-0.5" each)
    assert info["status"] == "applied", info.get("reason")
    assert max(absolute["rms_pix"]) < 0.1
    bound = error_bound_mas(scene, result, info)
    assert summary["rms_mas"] <= 1.5 * bound, (summary["rms_mas"], bound)
    assert result.absolute is not None and result.ok
    assert info["n_matched"] >= 40 and info["n_used"] >= 35
    cone = info["cone"]
    assert cone["margin_arcsec"] == pytest.approx(6.0 + 2.0)  # searchrad + pointing_error
    assert cone["radius_arcsec"] == math.ceil(cone["footprint_radius_arcsec"] + 8.0)
    center = SkyCoord(cone["ra"], cone["dec"], unit="deg")
    for wcs, image in zip(scene.true_wcs, scene.images, strict=True):
        corners = SkyCoord(*footprint_world(wcs, image.shape), unit="deg")
        assert np.all(center.separation(corners).arcsec < cone["footprint_radius_arcsec"] + 2.0)
    if source == "file":
        # the label comes from the file's metadata ("aligncore simulation (Gaia-like)")
        assert info["refcat_name"] == "ALIGNCORE-SIMULATION-GAIA-LIKE"
        assert service.requests["total"] == 0
    else:
        assert info["refcat_name"] == "GAIADR3" and info["refcat"]["service"] == source
        assert service.requests["total"] == 1


def test_propagation_off_is_measurably_worse(scene, registry, service):
    on_result, _ = run(scene, registry, {"url": service.url})
    off_result, off = run(scene, registry, {"url": service.url}, "absolute.propagate=false")
    error_on = scene.errors_summary(on_result, relative=False)
    error_off = scene.errors_summary(off_result, relative=False)
    assert error_on["rms_pix"] < 0.02
    assert error_off["rms_pix"] > 0.1  # ~1 px motions, averaged over ~50 stars
    assert error_off["rms_mas"] > 10 * error_on["rms_mas"]
    assert off_result.absolute.rmse > 0.08 > 0.01 > on_result.absolute.rmse  # arcsec
    assert any("proper motions ignored" in w for w in off["warnings"])


def test_stars_without_proper_motion_dropped_or_inflated(scene, registry, service):
    inflate_result, inflate = run(scene, registry, {"url": service.url},
                                  "absolute.save_gaia_catalog=true")
    require_result, require = run(scene, registry, {"url": service.url},
                                  "absolute.refcat_pm=require", "absolute.save_gaia_catalog=true")
    n_no_pm = inflate["n_no_pm"]
    assert n_no_pm > 3
    assert require["n_dropped_no_pm"] == n_no_pm
    assert require["n_usable"] == require["n_found"] - n_no_pm
    assert inflate["n_inflated_no_pm"] == n_no_pm and inflate["n_usable"] == inflate["n_found"]
    kept = inflate["reference_catalog"]
    no_pm = ~np.isfinite(np.asarray(kept["pmra"], float))
    assert np.all(np.asarray(kept["ra_err"])[no_pm] > 99.0)  # 10 mas/yr x 10 yr, in mas
    # never fitted as motionless stars: their inflated errors leave them a negligible weight
    used = np.asarray(kept["used"], bool)
    weight = 1.0 / np.asarray(kept["ra_err"], float) ** 2
    assert weight[used & no_pm].sum() < 0.01 * weight[used].sum()
    for result in (inflate_result, require_result):
        assert max(scene.errors(result, relative=False)["rms_pix"]) < 0.1


def test_epoch_from_the_config_when_images_have_none(scene, registry, service):
    undated = [dataclasses.replace(image, epoch=None) for image in scene.images]
    result, info = run(scene, registry, {"url": service.url}, "absolute.epoch=2026.0",
                       images=undated)
    assert scene.errors_summary(result, relative=False)["rms_pix"] < 0.02
    assert set(info["epochs"].values()) == {2026.0}
    result, info = run(scene, registry, {"url": service.url}, images=undated)
    assert any("no observation epoch for img_000.fits" in w for w in info["warnings"])
    assert scene.errors_summary(result, relative=False)["rms_pix"] > 0.1


def test_each_source_is_compared_with_the_reference_at_its_own_epoch():
    plane = TangentPlane(150.0, 2.0)
    ra, dec = plane.tp_to_world(np.array([0.0, 10.0]), np.array([0.0, 5.0]))
    ref = reference_table(ra, dec, pmra=[100.0, np.nan], pmdec=[0.0, np.nan],
                                             ra_err=[0.1, 0.1], dec_err=[0.1, 0.1],
                                             epoch=2016.0)
    combined = QTable({"image": np.array([0, 1, 1])})
    section = AbsoluteSettings.from_section(
        load_config(None, ["absolute.refcat_pm=inflate"]).absolute)
    info = {"warnings": [], "epochs": {"a": 2016.0, "b": 2026.0}}
    tables, keys = _propagated(ref, combined, {0: 2016.0, 1: 2026.0}, section, info)
    assert sorted(tables) == [2016.0, 2026.0] and list(keys) == [2016.0, 2026.0, 2026.0]
    xy, err = _reference_at_source_epochs(tables, keys, np.array([0, 0, 1]), plane)
    np.testing.assert_allclose(xy[0], [0.0, 0.0], atol=1e-6)  # image a: catalog epoch
    np.testing.assert_allclose(xy[1], [1.0, 0.0], atol=1e-6)  # image b: 100 mas/yr x 10 yr
    np.testing.assert_allclose(xy[2], [10.0, 5.0], atol=1e-6)  # no pm: not moved ...
    assert err[2] == pytest.approx(math.hypot(0.1, 100.0) / 1000.0)  # ... but uncertain
    assert err[1] == pytest.approx(0.1 / 1000.0)


# --- failures keep the relative solution ------------------------------------------------------
@pytest.mark.parametrize(("mode", "message"), [
    ("down", r"reference catalog query failed: STScI GSSS catalog service .*cannot connect"),
    ("slow", r"reference catalog query failed: .*no answer within 0.2 s"),
    ("http500", r"reference catalog query failed: .*HTTP error 500"),
    ("malformed", r"reference catalog query failed: .*malformed reply"),
    ("error", r"reference catalog query failed: .*answered 'Error"),
    ("empty", r"0 reference stars found in the [0-9.]+\" cone around RA 1(49\.9|50\.0)\d+, "
              r"Dec (1\.9|2\.0)\d+ \(GAIADR3\); min_gaia=5 required"),
], ids=lambda value: value if " " not in value else "")
def test_failures_keep_the_relative_solution(scene, registry, service, relative_only,
                                             mode, message):
    url = closed_port_url() if mode == "down" else service.url
    service.mode = "ok" if mode == "down" else mode
    service.delay = 1.0
    result, info = run(scene, registry, {"url": url, "timeout": 0.2})
    assert result.absolute is None and info["status"] == "failed"
    assert re.search(message, info["reason"]), info["reason"]
    if mode != "empty":
        assert "use a local catalog file" in info["reason"]
    assert any("absolute alignment not applied" in w for w in info["python_warnings"])
    assert result.ok  # every image keeps its relative alignment ...
    for image, reference in zip(result, relative_only, strict=True):
        assert image.status == reference.status
        np.testing.assert_allclose(image.fit.matrix, reference.fit.matrix, rtol=0, atol=1e-15)
        np.testing.assert_allclose(image.fit.shift, reference.fit.shift, rtol=0, atol=1e-12)
    assert scene.errors_summary(result, relative=True)["rms_pix"] < 0.02
    assert scene.errors_summary(result, relative=False)["rms_mas"] > 1000  # ... not absolute


def test_min_gaia_message_gives_found_matched_and_required(scene, registry, service):
    _, info = run(scene, registry, {"url": service.url}, "absolute.min_gaia=80")
    assert info["status"] == "failed"
    found, usable, matched = info["n_found"], info["n_usable"], info["n_matched"]
    assert matched < 80 <= found
    assert info["reason"].startswith(f"{matched} sources matched to the reference catalog "
                                     f"({found} found in the ")
    assert f"{usable} usable, " in info["reason"] and info["reason"].endswith(
        "min_gaia=80 required")
    _, info = run(scene, registry, {"url": service.url}, "absolute.min_gaia=500")
    cone = info["cone"]
    assert info["reason"] == (f"{info['n_found']} reference stars found in the "
                              f"{cone['radius_arcsec']:.1f}\" cone around RA {cone['ra']:.6f}, "
                              f"Dec {cone['dec']:.6f} (GAIADR3); min_gaia=500 required")


def test_second_run_uses_the_cache_and_works_offline(scene, registry, service, tmp_path):
    cache = ["absolute.refcat_cache=use", f"absolute.refcat_cache_dir={tmp_path}"]
    params = {"url": service.url}
    params_no_cache = {k: v for k, v in params.items()}
    first, info1 = run_with_cache(scene, registry, params_no_cache, cache)
    assert service.requests["total"] == 1 and info1["refcat"]["cache"] == "miss"
    second, info2 = run_with_cache(scene, registry, params_no_cache, cache)
    assert service.requests["total"] == 1 and info2["refcat"]["cache"] == "hit"
    service.mode = "http500"  # the service goes down: the cached cone still serves
    third, info3 = run_with_cache(scene, registry, params_no_cache, cache)
    assert info3["status"] == "applied" and service.requests["total"] == 1
    for result in (second, third):
        np.testing.assert_allclose(result[0].fit.shift, first[0].fit.shift, atol=1e-12)


def run_with_cache(scene, registry, params, cache_sets):
    params_json = json.dumps({"catalog": "GAIADR3", "retries": 0, "timeout": 5.0, **params})
    config = load_config(None, ["detector.plugin=truth", "detector.params={}",
                                "absolute.enabled=true", f"absolute.refcat.params={params_json}",
                                *cache_sets], registry=registry)
    result = aligncore.align(scene.images, config, registry=registry)
    return result, result.meta["absolute"]


def test_seed_and_jwst_parameter_names(registry, tmp_path):
    (tmp_path / "seed.yaml").write_text(
        "absolute:\n  align_to_gaia: true\n  gaia_catalog: GAIADR3\n  abs_fitgeometry: shift\n"
        "  abs_searchrad: 3.0\n  abs_separation: 2.0\n  abs_tolerance: 0.5\n  abs_nclip: 1\n"
        "  abs_sigma: 2.5\n  save_abs_catalog: true\n")
    config = load_config(tmp_path / "seed.yaml", registry=registry)
    section = config.absolute
    assert section.enabled
    assert section.matcher.plugin == "hist2d"
    assert section.matcher.params == {"searchrad": 3.0, "separation": 2.0, "tolerance": 0.5}
    assert section.fitter.plugin == "affine"
    assert section.fitter.params == {"fitgeometry": "shift", "nclip": 1, "sigma": 2.5}
    assert section.save_gaia_catalog
    assert config.absolute.refcat.params["catalog"] == "GAIADR3"
    from aligncore.config import ConfigError

    with pytest.raises(ConfigError, match=r"absolute.refcat_pm: Input should be 'require' or "
                                          r"'inflate'"):
        load_config(None, ["absolute.refcat_pm=ignore"], registry=registry)


def test_absolute_stage_has_its_own_matcher_and_fitter(scene, registry, tmp_path):
    # the relative stage's matcher and fitter do not leak into the absolute stage
    path = tmp_path / "gaia.ecsv"
    sky_from(scene).write(path)
    config = load_config(None, ["detector.plugin=truth", "detector.params={}",
                                "absolute.enabled=true", "absolute.refcat.plugin=file",
                                f"absolute.refcat.params={json.dumps({'path': str(path)})}",
                                "matcher.params.searchrad=0.5",
                                "fitter.params.fitgeometry=general",
                                "absolute.fitter.params.fitgeometry=shift",
                                "absolute.matcher.params.searchrad=4.0"], registry=registry)
    assert config.absolute.matcher.params == {"searchrad": 4.0, "separation": 1.0,
                                              "tolerance": 0.7}
    result = aligncore.align(scene.images, config, registry=registry)
    info = result.meta["absolute"]
    assert info["status"] == "applied"
    assert info["fit"]["fitgeometry"] == "shift"
    assert info["cone"]["margin_arcsec"] == pytest.approx(4.0 + 2.0)


def test_seed_names_twice_are_a_problem(registry, tmp_path):
    from aligncore.config import ConfigError

    (tmp_path / "twice.yaml").write_text(
        "absolute:\n  abs_sigma: 2.0\n  fitter:\n    params: {sigma: 2.5}\n")
    with pytest.raises(ConfigError, match=r"twice.yaml:2: absolute.abs_sigma: "
                                          r"'fitter.params.sigma' and 'abs_sigma' are two names"):
        load_config(tmp_path / "twice.yaml", registry=registry)
    config = load_config(tmp_path / "twice.yaml", ["absolute.abs_sigma=1.5"], registry=registry)
    assert config.absolute.fitter.params["sigma"] == 1.5


# --- outputs ------------------------------------------------------------------------------------
def test_outputs_name_the_catalog_and_keep_relative_results_on_failure(tmp_path, service):
    scene = make_scene(outdir=tmp_path / "scene")
    registry = aligncore.build_registry(plugins=[TruthPlugins(scene, with_errors=True)])
    images = [aligncore.open_image(path) for path in scene.paths]
    result, info = run(scene, registry, {"url": service.url}, images=images)
    assert info["status"] == "applied"
    assert max(scene.errors(result, relative=False)["rms_pix"]) < 0.1
    config = config_for(registry, {"url": service.url})
    written = write_outputs(result, images, config, tmp_path / "ok", registry=registry)
    with fits.open(written[0]) as hdul:
        assert hdul["SCI"].header["WCSNAME"] == "FIT-REL-GAIADR3"

    service.mode = "http500"
    result, info = run(scene, registry, {"url": service.url}, images=images)
    assert info["status"] == "failed" and result.ok
    written = write_outputs(result, images, config, tmp_path / "failed", registry=registry)
    with fits.open(written[0]) as hdul:
        assert hdul["SCI"].header["WCSNAME"] == "FIT-REL"
    report = json.loads((tmp_path / "failed" / "report.json").read_text())
    assert "HTTP error 500" in report["meta"]["absolute"]["reason"]
    assert report["meta"]["absolute"]["status"] == "failed"


def test_magnitude_limits_select_the_reference_stars(scene, registry, service):
    result, info = run(scene, registry, {"url": service.url}, "absolute.mag_limits=[15.0, 17.0]",
                       "absolute.save_gaia_catalog=true")
    mags = np.asarray(scene.refcat["mag"])
    assert 5 <= info["n_usable"] < info["n_found"]
    used = info["reference_catalog"]
    assert np.all((np.asarray(used["mag"]) >= 15.0) & (np.asarray(used["mag"]) <= 17.0))
    assert np.count_nonzero((mags >= 15.0) & (mags <= 17.0)) >= info["n_usable"]
    assert info["status"] == "applied", info.get("reason")
    assert max(scene.errors(result, relative=False)["rms_pix"]) < 0.1


def test_absurd_search_cone_is_refused_before_the_query(scene, registry, service):
    # a pointing error of 6 deg would ask the service for every star in a 6 deg cone
    result, info = run(scene, registry, {"url": service.url}, "absolute.pointing_error=21600")
    assert result.absolute is None and info["status"] == "failed"
    assert re.search(r"search cone would have a radius of 6\.\d deg \(more than 5 deg\)",
                     info["reason"]), info["reason"]
    assert not service.requests  # the service was never asked
    assert result.ok


def test_absolute_settings_are_the_absolute_section_values_and_frozen():
    import dataclasses

    config = load_config(None, ["absolute.min_gaia=9", "absolute.pointing_error=4.5",
                                "absolute.refcat_pm=inflate"])
    settings = AbsoluteSettings.from_section(config.absolute)
    assert settings.refcat_plugin == config.absolute.refcat.plugin
    for field in dataclasses.fields(AbsoluteSettings):
        if field.name != "refcat_plugin":
            assert getattr(settings, field.name) == getattr(config.absolute, field.name)
    assert (settings.min_gaia, settings.pointing_error, settings.refcat_pm) == (
        9, 4.5, "inflate")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.min_gaia = 1  # type: ignore[misc]
