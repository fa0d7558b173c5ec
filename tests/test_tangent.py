"""Gnomonic projection and pixel scale."""

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from aligncore import TangentPlane, pixel_scale
from aligncore.overlap import alignment_order, convex_overlap_area, overlap_matrix


@pytest.mark.parametrize("center", [(150.0, 2.0), (359.99, -45.0), (10.0, 89.5)])
def test_round_trip_and_against_astropy(center):
    plane = TangentPlane(*center)
    rng = np.random.default_rng(3)
    xi, eta = rng.uniform(-600, 600, (2, 200))
    ra, dec = plane.tp_to_world(xi, eta)
    back = plane.world_to_tp(ra, dec)
    np.testing.assert_allclose(back, (xi, eta), atol=1e-9)
    # astropy's own gnomonic offset frame gives the same angles
    frame = SkyCoord(*center, unit="deg").skyoffset_frame()
    offsets = SkyCoord(ra, dec, unit="deg").transform_to(frame)
    lon, lat = np.radians(offsets.lon.deg), np.radians(offsets.lat.deg)
    # gnomonic: (xi, eta) = (tan(lon), tan(lat)/cos(lon)) for the offset frame
    np.testing.assert_allclose(np.tan(lon) * 206264.80624709636, xi, atol=1e-6)
    np.testing.assert_allclose(np.tan(lat) / np.cos(lon) * 206264.80624709636, eta, atol=1e-6)


def test_far_hemisphere_is_nan():
    xi, eta = TangentPlane(0.0, 0.0).world_to_tp([180.0], [0.0])
    assert np.isnan(xi[0]) and np.isnan(eta[0])


def test_pixel_scale_of_a_rotated_tan_wcs():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [100.0, 100.0]
    angle = np.radians(37.0)
    wcs.wcs.cd = 0.11 / 3600 * np.array([[-np.cos(angle), np.sin(angle)],
                                         [np.sin(angle), np.cos(angle)]])
    assert pixel_scale(wcs, 99.0, 99.0) == pytest.approx(0.11, rel=1e-9)


def test_convex_overlap_of_squares():
    a = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    b = a + [5, 5]
    assert convex_overlap_area(a, b) == pytest.approx(25.0)
    assert convex_overlap_area(a, a + [20, 0]) == 0.0
    rotated = np.array([[5, -2], [12, 5], [5, 12], [-2, 5]], float)  # a diamond over the square
    assert 0 < convex_overlap_area(a, rotated) < 100


def test_alignment_order_follows_overlap():
    squares = [np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float) + [dx, 0]
               for dx in (0.0, 9.0, 3.0, 30.0)]
    overlaps = overlap_matrix(squares)
    assert overlaps[0, 2] == pytest.approx(70.0)
    order = alignment_order(overlaps, weights=[1, 1, 2, 1])
    assert order[:2] == [2, 0]           # the pair with most overlap; more sources first
    assert order[2] == 1 and order[3] == 3
