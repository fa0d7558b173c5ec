"""The simulator's GWCS mode: NIRCam-like distortion, pointing errors, ASDF files, truth."""

from __future__ import annotations

import math

import asdf
import numpy as np
import pytest
from astropy.table import QTable

import aligncore
from aligncore import COL_DEC, COL_FLUX, COL_RA, TangentPlane
from aligncore.cli import main
from aligncore.sim import Scene, simulate
from aligncore.sim import gwcs_model as sim_gwcs

QUIET = {"cosmic_rays": 0, "hot_pixels": 0, "saturated_stars": 0, "noise": False}


def _position_angle(wcs, x, y):
    ra0, dec0 = wcs(x, y)
    ra1, dec1 = wcs(x, y + 1.0)
    return math.degrees(math.atan2((ra1 - ra0) * math.cos(math.radians(dec0)), dec1 - dec0))


def test_gwcs_scene_has_nircam_like_frames_and_exact_truth():
    scene = simulate("mosaic", n_images=2, seed=4, shape=(256, 256), n_stars=0, wcs="gwcs",
                     **QUIET)
    for k, wcs in enumerate(scene.true_wcs):
        assert wcs.available_frames == ["detector", "v2v3", "world"]
        assert scene.truth[k]["name"] == f"img_{k:03d}.asdf"
        # the layout's position angle holds at the image centre
        delta = _position_angle(wcs, 127.5, 127.5) - scene.truth[k]["position_angle"]
        assert (delta + 180) % 360 - 180 == pytest.approx(0, abs=0.01)
    assert scene.errors_summary(scene.true_wcs, relative=False)["max_mas"] < 1e-6
    image = scene.images[0]
    assert image.wcs.aligncore_wcsinfo == sim_gwcs.wcsinfo(scene.truth[0]["nominal_wcs"])


def test_distortion_is_a_few_pixels_and_its_inverse_is_accurate():
    shape = (512, 512)
    dist = sim_gwcs.make_distortion(shape, 0.063, np.random.default_rng(3))
    wcs = sim_gwcs.build_wcs(sim_gwcs.make_spec(dist, 10.0, -30.0, 0.0, shape))
    g = np.linspace(-25.0, 536.0, 23)
    x, y = (a.ravel() for a in np.meshgrid(g, g))
    to_v2v3 = wcs.get_transform("detector", "v2v3")
    v2, v3 = to_v2v3(x, y)
    dx, dy = x - dist["xref"], y - dist["yref"]
    lin2 = dist["v2"]["c1_0"] * dx + dist["v2"]["c0_1"] * dy
    lin3 = dist["v3"]["c1_0"] * dx + dist["v3"]["c0_1"] * dy
    nonlinear = np.hypot(v2 - sim_gwcs.V2_REF - lin2, v3 - sim_gwcs.V3_REF - lin3) / 0.063
    assert 3.0 < nonlinear.max() < 9.0
    xb, yb = to_v2v3.inverse(v2, v3)
    assert np.max(np.hypot(xb - x, yb - y)) < 1e-5
    # star_pixels refines the inverse to the exact pixel
    sky = wcs(x, y, with_bounding_box=False)
    px, py = sim_gwcs.star_pixels(wcs, *sky, shape, margin=30.0)
    assert np.isfinite(px).all() and np.max(np.hypot(px - x, py - y)) < 1e-8


def test_nominal_gwcs_is_the_truth_moved_rotated_and_scaled():
    scene = simulate(n_images=2, seed=8, shape=(200, 300), n_stars=0, wcs="gwcs",
                     pointing_error=(1.0, 2.0), roll_error=0.5, scale_error=1e-3, **QUIET)
    ny, nx = 200, 300
    x, y = (a.ravel() for a in np.meshgrid(np.linspace(0, nx - 1, 9), np.linspace(0, ny - 1, 7)))
    for true, nominal, item in zip(scene.true_wcs, scene.nominal_wcs, scene.truth, strict=True):
        err, t, n = item["errors"], item["true_wcs"]["gwcs"], item["nominal_wcs"]["gwcs"]
        moved = TangentPlane(t["ra_ref"], t["dec_ref"]).world_to_tp(n["ra_ref"], n["dec_ref"])
        np.testing.assert_allclose(moved, err["shift_arcsec"], rtol=0, atol=1e-9)
        q_true = np.column_stack(TangentPlane(t["ra_ref"], t["dec_ref"]).world_to_tp(*true(x, y)))
        q_nom = np.column_stack(TangentPlane(n["ra_ref"], n["dec_ref"]).world_to_tp(*nominal(x, y)))
        rot = math.radians(err["roll_deg"])
        m = (1 + err["scale"]) * np.array([[math.cos(rot), -math.sin(rot)],
                                           [math.sin(rot), math.cos(rot)]])
        np.testing.assert_allclose(q_nom, q_true @ m.T, rtol=0, atol=2e-4)  # arcsec


def test_stars_rendered_where_the_true_gwcs_predicts():
    size, half = 512, 12
    scene = simulate("sparse", n_images=1, seed=7, shape=(size, size), n_stars=30, wcs="gwcs",
                     psf="gaussian", **QUIET)
    wcs = scene.true_wcs[0]
    ra, dec = np.asarray(scene.stars[COL_RA]), np.asarray(scene.stars[COL_DEC])
    x, y = sim_gwcs.star_pixels(wcs, ra, dec, (size, size), margin=0.0)
    flux = np.asarray(scene.stars[COL_FLUX])
    data = scene.images[0].load_pixels()[0].astype(float) - scene.params["sky"]
    checked = 0
    for i in np.flatnonzero(np.isfinite(x)):
        inside = half + 2 < min(x[i], y[i]) and max(x[i], y[i]) < size - half - 3
        dist = np.hypot(x - x[i], y - y[i])
        dist[i] = np.inf
        if not inside or flux[i] < 1000 or np.nanmin(dist) < 40:
            continue
        ic, jc = round(x[i]), round(y[i])
        box = data[jc - half: jc + half + 1, ic - half: ic + half + 1]
        yy, xx = np.mgrid[jc - half: jc + half + 1, ic - half: ic + half + 1]
        cx, cy = (box * xx).sum() / box.sum(), (box * yy).sum() / box.sum()
        assert math.hypot(cx - x[i], cy - y[i]) < 0.01
        checked += 1
    assert checked >= 5
    truth = scene.true_sources(0)
    assert isinstance(truth, QTable) and len(truth) >= checked


def test_asdf_files_written_and_loaded_back(tmp_path):
    kwargs = {"n_images": 2, "seed": 3, "shape": (96, 80), "n_stars": 40, "wcs": "gwcs"}
    scene = simulate(outdir=tmp_path / "scene", **kwargs)
    memory = simulate(**kwargs)
    assert scene.names == ["img_000.asdf", "img_001.asdf"]
    for k, path in enumerate(scene.paths):
        with asdf.open(path) as af:
            tree = af.tree
            assert tree["data"].dtype == np.float32 and tree["dq"].dtype == np.uint32
            assert tree["meta"]["wcsinfo"] == sim_gwcs.wcsinfo(scene.truth[k]["nominal_wcs"])
            assert tree["meta"]["saturate"] == scene.params["saturate"]
            x, y = np.array([0.0, 50.0, 79.0]), np.array([0.0, 90.0, 3.0])
            np.testing.assert_allclose(tree["wcs"](x, y), scene.nominal_wcs[k](x, y),
                                       rtol=0, atol=1e-12)
        data, mask = scene.images[k].load_pixels()
        assert data.dtype == np.float32 and mask.dtype == bool
        np.testing.assert_array_equal(data, memory.images[k].load_pixels()[0])
        np.testing.assert_array_equal(mask, memory.images[k].load_pixels()[1])
        assert scene.images[k].epoch.jyear == pytest.approx(2025.0)
        assert scene.images[k].meta["saturate"] == scene.params["saturate"]
    loaded = Scene.load(tmp_path / "scene")
    assert loaded.truth == memory.truth
    t1 = loaded.errors(loaded.nominal_wcs, relative=False)
    t2 = memory.errors(memory.nominal_wcs, relative=False)
    np.testing.assert_allclose(t1["rms_mas"], t2["rms_mas"], rtol=1e-12)


def test_fits_scenes_are_unchanged_by_the_gwcs_mode():
    fits_scene = simulate(n_images=1, seed=2, shape=(64, 64), n_stars=10, **QUIET)
    default = simulate(n_images=1, seed=2, shape=(64, 64), n_stars=10, wcs="fits", **QUIET)
    assert fits_scene.truth == default.truth and "CD1_1" in default.truth[0]["true_wcs"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wcs": "tan"}, "wcs must be one of 'fits', 'gwcs', got 'tan'"),
        ({"wcs": "gwcs", "sip": True}, r"sip must be False with wcs='gwcs'"),
    ],
)
def test_bad_wcs_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate(n_images=1, shape=(64, 64), **kwargs)


def test_cli_simulate_writes_gwcs_asdf_files(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "sparse", "-o", str(out), "--n-images", "2", "--size", "64",
                 "--wcs", "gwcs"]) == 0
    assert sorted(p.name for p in out.glob("*.asdf")) == ["img_000.asdf", "img_001.asdf"]
    image = aligncore.open_image(out / "img_001.asdf")
    assert image.wcs.available_frames == ["detector", "v2v3", "world"]
    assert "wrote 2 images" in capsys.readouterr().out
