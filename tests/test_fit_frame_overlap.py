"""``align.fit_frame: reference_pixels`` and ``align.overlap: catalog_hull`` (tweakwcs' fitting
frame and overlap test), on the inputs and expected values of tweakwcs 0.9.3's own cases
(tweakwcs/tests/test_imalign.py, test_wcsimage.py, conftest.py; BSD 3-clause, (c) AURA /
STScI). The test code is aligncore's own."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy import wcs as fitswcs

import aligncore
from aligncore.config import load_config
from aligncore.overlap import polygon_area
from aligncore.tangent import FramedPlane, TangentPlane, reference_pixel_frame
from aligncore.types import COL_TP_X, COL_TP_Y
from aligncore.units import build_units
from aligncore_affine import AffineFitter


def build_fit_matrix(rot, scale) -> np.ndarray:
    """tweakwcs' ``build_fit_matrix``."""
    rx, ry = np.deg2rad(np.broadcast_to(rot, 2))
    sx, sy = np.broadcast_to(scale, 2)
    return np.array([[sx * math.cos(rx), -sy * math.sin(ry)], [sx * math.sin(rx),
                                                               sy * math.cos(ry)]])


def mock_fits_wcs() -> fitswcs.WCS:
    """tweakwcs' conftest fixture ``mock_fits_wcs``: a skewed CD matrix (axes rotated by 36
    and 47 deg)."""
    w = fitswcs.WCS(naxis=2)
    w.wcs.cd = build_fit_matrix((36, 47), 1e-5)
    w.wcs.crval = [82.0, 12.0]
    w.wcs.crpix = [512.0, 512.0]
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.pixel_shape = [1024, 2048]
    w.wcs.set()
    return w


@pytest.mark.parametrize("shift, rot, scale, fitgeom", [
    ((12, -34), 0, 1, "shift"),
    ((12, -34), 15, 1.0123, "rscale"),
    ((12, -34), (15, 17), (1.0123, 0.9876), "general"),
])
def test_align_wcs_simple_ref_image_general(shift, rot, scale, fitgeom):
    """tweakwcs case ``test_align_wcs_simple_ref_image_general``: reference positions are the
    image's pixels moved by (shift, rotation, scale) in the image's own pixel frame and put
    on the sky with its (skewed) WCS; tweakwcs recovers shift, matrix, rotation and scale
    exactly (rmse < 1e-8). aligncore does with ``fit_frame: reference_pixels``; on the sky
    a rotation + scale cannot describe a pixel-frame similarity of a skewed WCS."""
    w = mock_fits_wcs()
    xy = 1024 * np.random.default_rng(7).random((100, 2))
    m = build_fit_matrix(rot, scale)
    ref_pixels = xy @ m.T + shift
    plane = TangentPlane(82.0, 12.0)
    frame = reference_pixel_frame(w, (2048, 1024), plane)
    assert isinstance(frame, FramedPlane)

    def on(plane_: TangentPlane, pixels: np.ndarray) -> np.ndarray:
        return np.column_stack(plane_.world_to_tp(*w.wcs_pix2world(pixels, 0).T))

    fit = AffineFitter(fitgeometry=fitgeom, nclip=0).fit(on(frame, xy), on(frame, ref_pixels))
    # the frame is the image's pixels about its linear reference point, times a scale s
    s = math.sqrt(abs(np.linalg.det(np.array(frame.frame))) * abs(np.linalg.det(
        w.wcs.cd * 3600.0)))
    crpix = np.array([511.0, 511.0])  # 0-based
    pixel_shift = fit.shift / s + crpix - fit.matrix @ crpix
    np.testing.assert_allclose(pixel_shift, shift, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fit.matrix, m, rtol=0, atol=1e-8)  # tweakwcs: np.allclose
    # tweakwcs: rmse < 1e-8; here in arcsec (3e-7 px): sky positions in degrees carry ~1e-9"
    assert fit.rmse < 1e-8
    assert np.linalg.det(fit.matrix) > 0  # proper
    if fitgeom == "rscale":
        assert math.degrees(math.atan2(fit.matrix[1, 0], fit.matrix[0, 0])) == pytest.approx(
            15.0, abs=1e-9)
        assert fit.scale == pytest.approx(1.0123, abs=1e-10)
        sky = AffineFitter(fitgeometry=fitgeom, nclip=0).fit(on(plane, xy), on(plane,
                                                                                ref_pixels))
        assert sky.rmse > 0.5  # arcsec: 14 pixels of 0.036"


def test_frame_round_trip_and_area():
    w = mock_fits_wcs()
    plane = TangentPlane(82.01, 12.02)
    frame = reference_pixel_frame(w, (2048, 1024), plane)
    ra, dec = w.wcs_pix2world([[0.0, 0.0], [1023.0, 2047.0], [400.0, 900.0]], 0).T
    back = frame.tp_to_world(*frame.world_to_tp(ra, dec))
    np.testing.assert_allclose(back, [ra, dec], rtol=0, atol=1e-11)
    assert abs(np.linalg.det(np.array(frame.frame))) == pytest.approx(1.0, abs=1e-9)
    assert frame.summary()["frame"] == [list(row) for row in frame.frame]


def test_fit_frame_reference_pixels_aligns_a_scene():
    scene = aligncore.simulate("dither", n_images=3, seed=3)
    config = load_config(None, ["align.fit_frame=reference_pixels", "align.solver=sequential",
                                "fitter.params.fitgeometry=rscale"])
    result = aligncore.align(scene.images, config)
    assert result.ok
    assert max(scene.errors(result)["rms_pix"]) < 0.05
    assert "frame" in result.meta["tangent_plane"]


def test_convex_hull_of_a_catalog():
    """tweakwcs case ``test_wcsrefcat_convex_hull``: a square's corners with points inside
    (and a corner given twice): the hull is the four corners."""
    x = [0, 0, 10, 10]
    y = [0, 10, 10, 0]
    scene = aligncore.simulate("dither", n_images=1, seed=1)
    image = scene.images[0]
    from astropy.table import QTable

    pixels = QTable({"x": np.array(x + [10, 3, 6, 7], float) * 50 + 100,
                     "y": np.array(y + [0, 5, 1, 8], float) * 50 + 100})
    plane = TangentPlane(*scene.params["center"])
    (unit,) = build_units([image], [pixels], plane, "catalog_hull")
    corners = {(float(a), float(b)) for a, b in unit.footprint}
    projected = {(float(a), float(b)) for a, b in zip(unit.catalog[COL_TP_X][:4],
                                                    unit.catalog[COL_TP_Y][:4], strict=True)}
    assert corners == projected
    (wcs_unit,) = build_units([image], [pixels], plane)
    assert polygon_area(unit.footprint) < 0.3 * polygon_area(wcs_unit.footprint)


def test_convex_hull_adjacent():
    """tweakwcs case ``test_convex_hull_adjacent`` (min_separation None): two nearly
    coincident vertices are both kept."""
    x = np.array([0.0, 10.0, 10.0, 5.001, 5.0, 0.0])
    y = np.array([0.0, 0.0, 10.0, 11.000001, 11.0, 10.0])
    scene = aligncore.simulate("dither", n_images=1, seed=1)
    from astropy.table import QTable

    plane = TangentPlane(*scene.params["center"])
    pixels = QTable({"x": x * 40 + 200, "y": y * 40 + 200})
    (unit,) = build_units(scene.images, [pixels], plane, "catalog_hull")
    assert len(unit.footprint) == 6


def test_overlap_catalog_hull_aligns_a_scene():
    scene = aligncore.simulate("dither", n_images=4, seed=5)
    result = aligncore.align(scene.images, load_config(None, ["align.overlap=catalog_hull"]))
    assert result.ok
    assert max(scene.errors(result)["rms_pix"]) < 0.05
