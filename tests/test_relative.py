"""Relative alignment: groups, the guard, failures that leave the others aligned, invariances."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import aligncore
from aligncore import Status
from aligncore.config import load_config


def copies(scene, tmp_path):
    paths = []
    for path in scene.paths:
        shutil.copy(path, tmp_path / path.name)
        paths.append(tmp_path / path.name)
    return paths


def offset_pointing(path, dx_arcsec, dy_arcsec, target=None):
    """Move an image's nominal pointing by (dx, dy) arcsec (East, North)."""
    target = target or path
    with fits.open(path) as hdul:
        header = hdul["SCI"].header
        dec = header["CRVAL2"]
        header["CRVAL1"] += dx_arcsec / 3600.0 / np.cos(np.radians(dec))
        header["CRVAL2"] += dy_arcsec / 3600.0
        hdul.writeto(target, overwrite=True)
    return target


@pytest.fixture(scope="module")
def quiet_scene(tmp_path_factory):
    """Four 512^2 dithers whose nominal pointing is nearly exact (errors added by the tests)."""
    return aligncore.simulate("dither", n_images=4, seed=21, shape=(512, 512), n_stars=150,
                              pointing_error=(0.001, 0.002), roll_error=1e-6,
                              scale_error=1e-9, outdir=tmp_path_factory.mktemp("quiet"))


def test_group_moves_as_one_rigid_body(quiet_scene, tmp_path):
    paths = copies(quiet_scene, tmp_path)
    offset_pointing(paths[1], 1.2, -0.8)
    offset_pointing(paths[2], 1.2, -0.8)   # same exposure: same pointing error
    offset_pointing(paths[3], -0.6, 0.9)
    config = load_config(None, ["align.groups={img_001.fits: visit1, img_002.fits: visit1}"])
    result = aligncore.align(paths, config)
    assert result.ok
    one, two = result["img_001.fits"], result["img_002.fits"]
    assert one.group_id == two.group_id == "visit1"
    np.testing.assert_array_equal(one.fit.matrix, two.fit.matrix)
    np.testing.assert_array_equal(one.fit.shift, two.fit.shift)
    truth = [WCS(fits.getheader(p, "SCI")) for p in quiet_scene.paths]
    for image in result:
        if image.status == Status.SUCCESS:
            assert image.wcs is not None
    errors = quiet_scene.errors(result)
    assert max(errors["rms_pix"]) < 0.1
    assert len(truth) == 4


def test_guard_rejects_a_correction_beyond_max_correction(quiet_scene, tmp_path):
    paths = copies(quiet_scene, tmp_path)
    offset_pointing(paths[2], 2.5, 1.5)
    config = load_config(None, ["align.max_correction=1.0"])
    images = [aligncore.open_image(p) for p in paths]
    result = aligncore.align(images, config)
    moved = result["img_002.fits"]
    assert moved.status == Status.FAILED
    assert "exceeds max_correction (1.00\")" in moved.reason
    assert moved.wcs is images[2].wcs and moved.fit is None
    assert sum(r.ok for r in result) == 3


def test_non_overlapping_image_fails_alone(quiet_scene, tmp_path):
    paths = copies(quiet_scene, tmp_path)
    other = aligncore.simulate("dither", n_images=1, seed=99, shape=(512, 512), n_stars=150,
                               ra=150.5, outdir=tmp_path / "other")
    far = tmp_path / "far.fits"
    shutil.copy(other.paths[0], far)
    offset_pointing(paths[1], 0.8, 0.4)
    result = aligncore.align([*paths, far])
    assert result["far.fits"].status == Status.FAILED
    assert result["far.fits"].reason.startswith("only 0 matched sources")
    assert sum(r.ok for r in result) == 4
    errors = quiet_scene.errors([r for r in result if r.name != "far.fits"])
    assert max(errors["rms_pix"]) < 0.1


def test_image_with_three_stars_fails_alone(quiet_scene, tmp_path):
    paths = copies(quiet_scene, tmp_path)
    stars = quiet_scene.true_sources(3)
    bright = stars[np.argsort(-np.asarray(stars["snr"]))][:3]
    with fits.open(paths[3]) as hdul:
        data = hdul["SCI"].data
        sky = np.random.default_rng(2).normal(np.median(data), 10.0, data.shape)
        for x, y in zip(np.round(bright["x"]).astype(int), np.round(bright["y"]).astype(int),
                        strict=True):
            box = np.s_[max(y - 8, 0):y + 9, max(x - 8, 0):x + 9]
            sky[box] = data[box]
        hdul["SCI"].data = sky.astype(np.float32)
        hdul.writeto(paths[3], overwrite=True)
    result = aligncore.align(paths)
    three = result["img_003.fits"]
    assert three.status == Status.FAILED and three.n_sources <= 5
    assert "matched sources (minobj=" in three.reason
    assert sum(r.ok for r in result) == 3


def test_twenty_arcsec_offset_fails_then_aligns_with_the_fallback(quiet_scene, tmp_path):
    paths = copies(quiet_scene, tmp_path)
    offset_pointing(paths[1], 20.0, 0.0)
    plain = aligncore.align(paths, load_config(None, ["matcher.params.searchrad=1.0",
                                                      "align.fallback=[]"]))
    assert plain["img_001.fits"].status == Status.FAILED
    assert "matched sources" in plain["img_001.fits"].reason or "not significant" in plain[
        "img_001.fits"].reason
    assert sum(r.ok for r in plain) == 3
    config = load_config(None, ["matcher.params.searchrad=1.0", "align.fallback=[triangles]"])
    rescued = aligncore.align(paths, config)
    assert rescued.ok, [r.reason for r in rescued]
    assert rescued["img_001.fits"].meta["matcher"] == "triangles"
    assert max(quiet_scene.errors(rescued)["rms_pix"]) < 0.1


def test_result_independent_of_the_tangent_plane(small_scene):
    centre = aligncore.align(small_scene.paths)
    plane = centre.tangent_plane
    moved = aligncore.align(small_scene.paths, load_config(
        None, [f"align.tangent_point=[{plane.ra0 + 2.0}, {plane.dec0 - 1.5}]"]))
    y, x = np.mgrid[0:512:32, 0:512:32]
    for a, b in zip(centre, moved, strict=True):
        ra_a, dec_a = a.wcs.all_pix2world(x.ravel(), y.ravel(), 0)
        ra_b, dec_b = b.wcs.all_pix2world(x.ravel(), y.ravel(), 0)
        diff = np.hypot((ra_a - ra_b) * np.cos(np.radians(dec_a)), dec_a - dec_b) * 3.6e6
        assert diff.max() < 0.05  # mas: 5e-4 pixel with the plane moved by 2.5 degrees


def test_sequential_and_global_both_align_and_report_overlaps(small_scene):
    for solver in ("sequential", "global"):
        result = aligncore.align(small_scene.paths, load_config(None, [f"align.solver={solver}"]))
        assert result.ok
        overlaps = result.meta["relative"]["overlaps"]
        assert len(overlaps) == 3 and all(o["n"] > 20 for o in overlaps)
        assert all(o["rms_mas"] < 30.0 for o in overlaps)  # DAO centroid noise, ~0.2 px
        assert max(small_scene.errors(result)["rms_pix"]) < 0.1
    assert result.meta["relative"]["global"]["iterations"] < 10


def test_crowded_field_at_fine_pixel_scale_with_default_config():
    scene = aligncore.simulate("crowded", n_images=3, seed=2, pixel_scale=0.03)
    assert min(len(scene.true_sources(i)) for i in range(3)) >= 5000  # per 1024^2 image
    result = aligncore.align(scene.images)
    assert result.ok
    assert max(scene.errors(result)["rms_pix"]) < 0.05
    # the seed's literal matching parameters drown in confusion here
    from pathlib import Path

    jwst = Path(__file__).resolve().parents[1] / "configs" / "jwst.yaml"
    seed_result = aligncore.align(scene.images, load_config(jwst))
    assert not seed_result.ok or max(scene.errors(seed_result)["rms_pix"]) > 0.05


def test_auto_geometry_picks_one_geometry_for_the_global_solution(small_scene):
    from aligncore.global_solver import AUTO_GEOMETRIES

    result = aligncore.align(small_scene.paths,
                             load_config(None, ["fitter.params.fitgeometry=auto"]))
    assert result.ok
    solved = result.meta["relative"]["global"]
    assert solved["geometry"] in AUTO_GEOMETRIES
    assert {r.fit.fitgeometry for r in result if r.status == Status.SUCCESS} == {
        solved["geometry"]}
    # and the corrections really are of that geometry (not a sequential fit's rotation or
    # scale with a global update on top)
    for r in result:
        if r.status != Status.SUCCESS:
            continue
        m = r.fit.matrix
        assert m[0, 0] == pytest.approx(m[1, 1], abs=1e-12)
        assert m[0, 1] == pytest.approx(-m[1, 0], abs=1e-12)
        if solved["geometry"] in ("rshift", "shift"):
            assert np.linalg.det(m) == pytest.approx(1.0, abs=1e-12)
        if solved["geometry"] == "shift":
            np.testing.assert_allclose(m, np.eye(2), atol=1e-12)
    # every simpler geometry tried was tested against its allowance, the last one failed
    # it unless the simplest was reached
    tests = solved["geometry_tests"]
    chosen = AUTO_GEOMETRIES.index(solved["geometry"])
    for name in AUTO_GEOMETRIES[1:chosen + 1]:
        assert tests[name]["chi2_increase"] <= tests[name]["allowance"]
    if chosen + 1 < len(AUTO_GEOMETRIES):
        rejected = tests[AUTO_GEOMETRIES[chosen + 1]]
        assert rejected["chi2_increase"] > rejected["allowance"]
    assert max(small_scene.errors(result)["rms_pix"]) < 0.05


def test_global_match_counts_are_pairs_like_the_fit(small_scene):
    """matched = pairs found (a source matched in several overlaps is in several pairs), the
    same count as fit.n_matched; used = pairs kept (fit.n_used); the fixed reference too."""
    result = aligncore.align(small_scene.paths)
    for image in result:
        assert image.n_matched == image.fit.n_matched >= image.fit.n_used > 0
        assert 0 < image.meta["n_sources_matched"] <= min(image.n_sources, image.n_matched)
        if image.status == Status.REFERENCE:
            np.testing.assert_array_equal(image.fit.matrix, np.eye(2))
            assert 0 < image.fit.rmse < 0.05 and image.fit.residuals.shape == (
                image.n_matched, 2)


def test_an_image_aligned_on_a_retry_keeps_no_reason_from_its_failed_attempt(small_scene,
                                                                             monkeypatch):
    import aligncore.relative as relative

    real_guard, calls = relative._guard, []

    def guard_failing_once(unit, *args):
        calls.append(unit.key)
        return "forced failure" if len(calls) == 1 else real_guard(unit, *args)

    monkeypatch.setattr(relative, "_guard", guard_failing_once)
    result = aligncore.align(small_scene.paths)
    assert calls.count(calls[0]) == 2  # the unit that failed first was tried again
    for image in result:
        assert image.status in (Status.SUCCESS, Status.REFERENCE)
        assert image.reason == "" and "rejected_fit" not in image.meta


def test_combined_catalog_pairs_are_bounded(small_scene, monkeypatch):
    import aligncore.combined as combined

    result = aligncore.align(small_scene.images)
    assert result.combined_catalog is not None and len(result.combined_catalog) > 50
    monkeypatch.setattr(combined, "MAX_LINK_PAIRS", 10)
    with pytest.warns(UserWarning, match=r"no combined catalog: combined catalog: \d+ source "
                      r"pairs lie within the linking radius .* \(more than 10\)"):
        bounded = aligncore.align(small_scene.images)
    assert bounded.combined_catalog is None
    assert bounded.ok  # the alignment itself is unaffected
    for image, reference in zip(bounded, result, strict=True):
        np.testing.assert_array_equal(image.fit.shift, reference.fit.shift)


def test_relative_settings_are_the_align_section_values_and_frozen():
    import dataclasses

    from aligncore.relative import RelativeSettings

    config = load_config(None, ["align.minobj=7", "align.max_correction=2.5",
                                "align.use_weights=false", "align.expand_refcat=true"])
    settings = RelativeSettings.from_section(config.align)
    for field in dataclasses.fields(RelativeSettings):
        assert getattr(settings, field.name) == getattr(config.align, field.name)
    assert (settings.minobj, settings.max_correction, settings.use_weights) == (7, 2.5, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.minobj = 3  # type: ignore[misc]


def test_relative_align_returns_outcomes_and_leaves_the_units_unchanged(small_scene):
    from aligncore.relative import RelativeSettings, relative_align
    from aligncore.units import UnitOutcome, apply_outcomes, build_units, union_tangent_plane

    config = load_config(None)
    registry = aligncore.build_registry()
    images = [aligncore.open_image(p) for p in small_scene.paths]
    detector = config.build_stage("detector", registry)
    plane = union_tangent_plane(images)
    units = build_units(images, [detector.detect(image) for image in images], plane)
    settings = RelativeSettings.from_section(config.align)
    outcomes, info = relative_align(
        units, settings, [config.build_stage("matcher", registry)],
        config.build_stage("fitter", registry), registry, config.build_stage("solver", registry))
    assert all(u.status is None and u.fit is None and u.meta == {} for u in units)
    assert set(outcomes) == {u.key for u in units} and info["order"]
    assert all(isinstance(o, UnitOutcome) for o in outcomes.values())
    assert sorted(o.status for o in outcomes.values()) == sorted(
        [Status.REFERENCE, Status.SUCCESS, Status.SUCCESS])
    apply_outcomes(units, outcomes)
    for unit in units:
        assert unit.fit is outcomes[unit.key].fit and unit.status == outcomes[unit.key].status
        assert unit.n_matched > 0 and unit.meta == outcomes[unit.key].meta

    from aligncore.global_solver import solve_global

    before = {u.key: (u.fit, u.n_matched, dict(u.meta)) for u in units}
    refined = solve_global(units, "rshift", sigma=3.0)
    assert isinstance(refined, aligncore.SolverResult) and refined.diagnostics["pairs"] >= 2
    assert {u.key: (u.fit, u.n_matched, u.meta) for u in units} == before  # not changed
    moved = [k for k, o in refined.outcomes.items() if o.fit is not before[k][0]]
    assert len(moved) == 3  # every unit got its global fit (the reference its statistics)


def test_user_offset_beyond_the_search_radius_is_accepted(quiet_scene, tmp_path):
    # issue 16: with use2dhist false and an 11" user offset, the guard's limit
    # (1.5 x searchrad + 1") refused the correct fit; the matcher's reach now
    # includes the offset it was told to start from
    paths = copies(quiet_scene, tmp_path)[:2]
    offset_pointing(paths[1], 0.0, 11.0)
    sets = ["matcher.params.searchrad=1.0", "matcher.params.use2dhist=false",
            "align.fallback=[]", "align.enforce_user_order=true"]  # img_000 is the reference
    without = aligncore.align(paths, load_config(None, sets))
    assert without["img_001.fits"].status == Status.FAILED
    result = aligncore.align(paths, load_config(None, [*sets, "matcher.params.yoffset=-11.0"]))
    assert result.ok, [r.reason for r in result]
    fit = result["img_001.fits"].fit
    np.testing.assert_allclose(fit.shift, [0.0, -11.0], atol=0.02)
    # the reference's nominal pointing is within 2 mas of the truth: compare directly
    grid = np.mgrid[0:512:64, 0:512:64].reshape(2, -1)
    corrected = result["img_001.fits"].wcs.pixel_to_world(*grid)
    true = quiet_scene.true_wcs[1].pixel_to_world(*grid)
    assert corrected.separation(true).arcsec.max() < 0.01  # 0.1 pixel


def test_without_scale_is_the_rshift_fit_to_the_kept_matches():
    """An ``rscale`` fit on a narrow strip, reduced to rotation + shift: the same rotation
    and the same correction at the kept matches' centroid as the ``rshift`` fit to them,
    no scale; other geometries pass unchanged."""
    from aligncore.relative import without_scale
    from aligncore_affine.fitting import iter_fit

    rng = np.random.default_rng(3)
    xy = np.column_stack([rng.uniform(-25, 25, 20), rng.uniform(22, 25, 20)])  # 3" strip
    angle = np.radians(0.01)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    uv = xy @ rot.T + [0.3, -0.2] + rng.normal(0, 0.005, xy.shape)
    uv[0] += 0.2  # an outlier both fits clip
    rscale = iter_fit(xy, uv, "rscale")
    assert not rscale.fitmask[0] and abs(np.sqrt(np.linalg.det(rscale.matrix)) - 1) > 1e-5
    reduced = without_scale(rscale, xy, uv, None)
    rshift = iter_fit(xy[rscale.fitmask], uv[rscale.fitmask], "rshift")
    assert reduced.fitgeometry == "rshift"
    assert np.linalg.det(reduced.matrix) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(reduced.matrix, rshift.matrix, atol=2e-8)
    np.testing.assert_allclose(reduced.apply(xy), rshift.apply(xy), atol=2e-6)
    assert reduced.n_used == rscale.n_used == 19
    assert reduced.rmse == pytest.approx(rshift.rmse, rel=1e-3)
    assert reduced.meta["scale_dropped"] == pytest.approx(
        np.sqrt(np.linalg.det(rscale.matrix)) - 1)
    shift = iter_fit(xy, uv, "shift")
    assert without_scale(shift, xy, uv, None) is shift
