"""The FITS WCS corrector: exactness, inverse, SIP kept, input untouched."""

import numpy as np
import pytest
from astropy.wcs import WCS

import aligncore
from aligncore import FitResult, TangentPlane


def make_wcs(sip: bool = False, use_cd: bool = True) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if sip else ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.02, 2.01]
    wcs.wcs.crpix = [512.5, 480.0]
    angle = np.radians(25.0)
    cd = 0.1 / 3600 * np.array([[-np.cos(angle), np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if use_cd:
        wcs.wcs.cd = cd
    else:
        wcs.wcs.cdelt = [0.1 / 3600, 0.1 / 3600]
        wcs.wcs.pc = cd / (0.1 / 3600)
    if sip:
        from astropy.wcs import Sip

        a = np.zeros((4, 4))
        b = np.zeros((4, 4))
        a[2, 0], a[0, 2], b[1, 1], a[3, 0] = 2e-6, -1e-6, 3e-6, 1e-9
        wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    wcs.wcs.set()
    return wcs


def rotation_fit(deg: float, scale: float, shift) -> FitResult:
    a = np.radians(deg)
    matrix = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return FitResult(matrix=matrix, shift=shift)


def grid(n=1024, step=64):
    y, x = np.mgrid[0:n:step, 0:n:step]
    return x.ravel().astype(float), y.ravel().astype(float)


@pytest.mark.parametrize("sip", [False, True])
@pytest.mark.parametrize("use_cd", [True, False])
def test_corrected_wcs_reproduces_the_correction(sip, use_cd):
    wcs = make_wcs(sip, use_cd)
    before = wcs.to_header(relax=True)
    plane = TangentPlane(150.0, 2.0)  # deliberately not at the image
    fit = rotation_fit(0.02, 1.00002, [1.7, -2.9])
    new = aligncore.get_plugin("corrector", "fitswcs")().correct(wcs, fit, plane)
    x, y = grid()
    expected = fit.apply(np.column_stack(plane.world_to_tp(*wcs.all_pix2world(x, y, 0))))
    got = np.column_stack(plane.world_to_tp(*new.all_pix2world(x, y, 0)))
    assert np.max(np.hypot(*(got - expected).T)) < 1e-5  # arcsec: 10 micro-arcsec
    assert wcs.to_header(relax=True) == before  # input untouched
    np.testing.assert_array_equal(new.wcs.crpix, wcs.wcs.crpix)
    if sip:
        np.testing.assert_array_equal(new.sip.a, wcs.sip.a)
        np.testing.assert_array_equal(new.sip.b, wcs.sip.b)


def test_correction_then_inverse_is_identity():
    wcs = make_wcs(sip=True)
    plane = TangentPlane(150.01, 2.0)
    fit = rotation_fit(-0.05, 0.99997, [3.0, 1.0])
    corrector = aligncore.get_plugin("corrector", "fitswcs")()
    back = corrector.correct(corrector.correct(wcs, fit, plane), fit.inverse(), plane)
    np.testing.assert_allclose(back.wcs.crval, wcs.wcs.crval, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.wcs.cd, wcs.wcs.cd, rtol=1e-9, atol=0)
    x, y = grid()
    ra0, dec0 = wcs.all_pix2world(x, y, 0)
    ra1, dec1 = back.all_pix2world(x, y, 0)
    assert np.max(np.abs(ra1 - ra0)) < 1e-10 and np.max(np.abs(dec1 - dec0)) < 1e-10


def test_result_independent_of_tangent_plane():
    wcs = make_wcs()
    near, far = TangentPlane(150.02, 2.01), TangentPlane(149.0, 3.0)
    fit_near = rotation_fit(0.01, 1.0, [0.5, -0.3])
    # the same sky correction expressed in the far plane, through its local linear map
    corrector = aligncore.get_plugin("corrector", "fitswcs")()
    target = corrector.correct(wcs, fit_near, near)
    x, y = grid()
    sky_before = np.column_stack(wcs.all_pix2world(x, y, 0))
    sky_after = np.column_stack(target.all_pix2world(x, y, 0))
    refit = aligncore.get_plugin("fitter", "affine")(fitgeometry="general", nclip=0).fit(
        np.column_stack(far.world_to_tp(*sky_before.T)),
        np.column_stack(far.world_to_tp(*sky_after.T)))
    other = corrector.correct(wcs, refit, far)
    np.testing.assert_allclose(other.all_pix2world(x, y, 0), target.all_pix2world(x, y, 0),
                               rtol=0, atol=2e-9)


def test_rejects_non_fits_wcs():
    corrector = aligncore.get_plugin("corrector", "fitswcs")()
    assert not corrector.accepts(object())
    with pytest.raises(aligncore.AlignError, match="fitswcs corrects 2D celestial"):
        corrector.correct(object(), FitResult.identity(), TangentPlane(0, 0))
