"""Writing a detector's distortion correction back: FITS SIP and the GWCS v2v3dist frame."""

from __future__ import annotations

import dataclasses
import io
import os

import asdf
import gwcs
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, DistortionLookupTable

import aligncore
from aligncore.distortion import DistortionCorrection
from aligncore.distortion_write import (
    DISTORTION_FRAME,
    apply_correction,
    apply_to_astropy_wcs,
    apply_to_fits_header,
    apply_to_gwcs,
    fit_sip,
    gwcs_solution,
)
from aligncore.sim import gwcs_model as sim_gwcs
from aligncore.sim.sky import cd_matrix, make_sip, wcs_header
from aligncore_wcs import GWCSCorrector

SHAPE = (1024, 2048)  # (ny, nx): not square, CRPIX away from the correction's centre
SCALE = 0.031  # arcsec / pixel
NIRCAM = os.path.join(os.path.dirname(gwcs.__file__), "tests", "data", "nircamwcs.asdf")


def correction(degree, shape=SHAPE, amp=0.3, seed=1, center=(1000.3, 480.7)):
    """Random terms of orders 2..degree, ``amp`` px at most anywhere in the unit square."""
    rng = np.random.default_rng(seed)
    terms = tuple((n - j, j) for n in range(2, degree + 1) for j in range(n + 1))
    cx, cy = rng.uniform(-1, 1, len(terms)), rng.uniform(-1, 1, len(terms))
    f = amp / max(np.abs(cx).sum(), np.abs(cy).sum())
    return DistortionCorrection("NIRCAM/NRCB1", degree, center, max(shape) / 2.0, terms,
                                tuple(cx * f), tuple(cy * f))


def grid(shape=SHAPE, n=37):
    ny, nx = shape
    x, y = np.meshgrid(np.linspace(-0.5, nx - 0.5, n), np.linspace(-0.5, ny - 0.5, n))
    return x.ravel(), y.ravel()


def fits_header(with_sip, shape=SHAPE, seed=3):
    sip = make_sip(shape, np.random.default_rng(seed)) if with_sip else None
    return fits.Header(wcs_header((150.0, 2.0), cd_matrix(SCALE, 30.0), shape, sip))


def sky_error_px(a, b):
    """Largest distance between two (n, 2) arrays of (ra, dec) in pixels of SCALE."""
    d = b - a
    d[:, 0] *= np.cos(np.radians(a[:, 1]))
    return float(np.max(np.hypot(d[:, 0], d[:, 1]))) * 3600.0 / SCALE


# --- DistortionCorrection -------------------------------------------------------------
def test_correction_offsets_and_dict_round_trip():
    c = correction(3)
    assert DistortionCorrection.from_dict(c.to_dict()) == c
    dx, dy = c.offsets(np.array([c.center[0]]), np.array([c.center[1]]))
    assert dx[0] == 0.0 and dy[0] == 0.0  # orders >= 2 vanish at the centre
    u = 0.5  # one term by hand: (2, 0) at u = 0.5, v = 0
    single = DistortionCorrection("X/Y", 2, (10.0, 20.0), 100.0, ((2, 0),), (0.4,), (-0.8,))
    dx, dy = single.offsets(10.0 + u * 100.0, 20.0)
    assert (float(dx), float(dy)) == pytest.approx((0.4 * u**2, -0.8 * u**2), abs=1e-15)


# --- FITS SIP -------------------------------------------------------------------------
@pytest.mark.parametrize("with_sip", [False, True])
@pytest.mark.parametrize("degree", [2, 3, 4, 5])
def test_sip_header_reproduces_the_corrected_mapping(with_sip, degree):
    header = fits_header(with_sip)
    before = header.copy()
    c = correction(degree)
    solution = fit_sip(header, c, SHAPE)
    new = solution.header
    assert header == before  # the input is untouched
    old_wcs, new_wcs = WCS(header), WCS(new)
    x, y = grid()
    dx, dy = c.offsets(x, y)
    want = np.column_stack(old_wcs.all_pix2world(x + dx, y + dy, 0))
    got = np.column_stack(new_wcs.all_pix2world(x, y, 0))
    error = sky_error_px(want, got)
    assert error < 1e-3
    assert error == pytest.approx(solution.max_error_px, abs=1e-5)  # the reported error
    if not with_sip:
        assert solution.exact and error < 1e-7  # a polynomial of the same degree
    # orders recorded, the SIP convention kept: CTYPE -SIP, CRVAL unchanged
    assert new["A_ORDER"] == new["B_ORDER"] == solution.order >= max(degree, 3 * with_sip)
    assert new["AP_ORDER"] == new["BP_ORDER"] == solution.inverse_order
    assert new["CTYPE1"] == "RA---TAN-SIP" and new["CTYPE2"] == "DEC--TAN-SIP"
    assert (new["CRVAL1"], new["CRVAL2"]) == (header["CRVAL1"], header["CRVAL2"])
    assert "A_1_0" not in new and "A_0_0" not in new  # linear part folded into CRPIX/CD
    # the inverse: astropy's SIP inverse and all_world2pix
    foc = new_wcs.sip_pix2foc(x, y, 0)
    back = np.column_stack(new_wcs.sip_foc2pix(*foc, 0))
    assert np.max(np.hypot(back[:, 0] - x, back[:, 1] - y)) < 0.01
    assert solution.inverse_max_error_px < 0.01
    pix = np.column_stack(new_wcs.all_world2pix(got[:, 0], got[:, 1], 0, tolerance=1e-8))
    assert np.max(np.hypot(pix[:, 0] - x, pix[:, 1] - y)) < 0.01


def test_same_detector_same_coefficients_in_every_exposure():
    """Two exposures of one detector (same SIP and CRPIX, other pointing and roll) get
    the same SIP polynomials, CRPIX and CD change relative to their own CD."""
    c = correction(3)
    first = fits_header(True)
    second = fits.Header(wcs_header((151.0, -30.0), cd_matrix(SCALE, 75.0), SHAPE,
                                    make_sip(SHAPE, np.random.default_rng(3))))
    new = [apply_to_fits_header(h, c, SHAPE) for h in (first, second)]
    sip = [{k: h[k] for k in h if k.startswith(("A_", "B_", "AP_", "BP_", "CRPIX"))}
           for h in new]
    assert sip[0] == sip[1] and len(sip[0]) > 20

    def cd(h):
        return np.array([[h[f"CD{i}_{j}"] for j in (1, 2)] for i in (1, 2)])

    np.testing.assert_allclose(np.linalg.solve(cd(first), cd(new[0])),
                               np.linalg.solve(cd(second), cd(new[1])), rtol=0, atol=1e-12)
    models = [apply_to_gwcs(sim_wcs(seed), c, SHAPE).get_transform("detector",
                                                                    DISTORTION_FRAME)
              for seed in (2, 5)]
    np.testing.assert_array_equal(models[0].parameters, models[1].parameters)
    np.testing.assert_array_equal(models[0].inverse.parameters, models[1].inverse.parameters)


def test_sip_header_survives_a_fits_file_round_trip(tmp_path):
    c = correction(3)
    new = apply_to_fits_header(fits_header(True), c, SHAPE)
    path = tmp_path / "sci.fits"
    fits.PrimaryHDU(np.zeros((2, 2), np.float32), header=new).writeto(path)
    read = WCS(fits.getheader(path))
    x, y = grid(n=11)
    np.testing.assert_allclose(read.all_pix2world(x, y, 0), WCS(new).all_pix2world(x, y, 0),
                               rtol=0, atol=1e-12)


def test_pc_cdelt_headers_stay_pc_cdelt_and_lookup_keywords_are_kept():
    header = fits_header(False)
    cd = np.array([[header[f"CD{i}_{j}"] for j in (1, 2)] for i in (1, 2)])
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        del header[key]
    header["CDELT1"], header["CDELT2"] = -SCALE / 3600.0, SCALE / 3600.0
    for i in (1, 2):
        for j in (1, 2):
            header[f"PC{i}_{j}"] = cd[i - 1, j - 1] / header[f"CDELT{i}"]
    header["D2IMEXT"] = "some_d2i.fits"
    header["D2IMERR1"] = 0.05
    c = correction(2)
    new = apply_to_fits_header(header, c, SHAPE)
    assert "CD1_1" not in new and new["PC1_1"] != header["PC1_1"]
    assert (new["D2IMEXT"], new["D2IMERR1"]) == ("some_d2i.fits", 0.05)
    x, y = grid(n=9)
    dx, dy = c.offsets(x, y)
    plain = header.copy()
    for key in ("D2IMEXT", "D2IMERR1"):
        del plain[key]
        del new[key]
    want = np.column_stack(WCS(plain).all_pix2world(x + dx, y + dy, 0))
    assert sky_error_px(want, np.column_stack(WCS(new).all_pix2world(x, y, 0))) < 1e-7


def test_apply_correction_picks_the_writer_by_type():
    c = correction(3)
    header = fits_header(True)
    wcs = WCS(header)
    wcs.pixel_shape = (SHAPE[1], SHAPE[0])
    new = apply_correction(wcs, c, SHAPE)
    assert isinstance(new, WCS) and new.pixel_shape == wcs.pixel_shape
    assert new.sip is not None and new.wcs.ctype[0] == "RA---TAN-SIP"
    x, y = grid(n=11)
    dx, dy = c.offsets(x, y)
    want = np.column_stack(wcs.all_pix2world(x + dx, y + dy, 0))
    assert sky_error_px(want, np.column_stack(new.all_pix2world(x, y, 0))) < 1e-3
    from_header = WCS(apply_correction(header, c, SHAPE))
    np.testing.assert_allclose(from_header.all_pix2world(x, y, 0), new.all_pix2world(x, y, 0),
                               rtol=0, atol=1e-10)
    assert apply_correction(sim_wcs(), c, SHAPE).available_frames[1] == DISTORTION_FRAME
    with pytest.raises(aligncore.AlignError, match="cannot write a distortion correction"):
        apply_correction({"CTYPE1": "RA---TAN"}, c, SHAPE)


def lookup_table(seed, amp):
    """A smooth 17 x 33 table over the image, 64-pixel cells, ``amp`` px at most."""
    gy, gx = np.mgrid[0:17, 0:33] / 16.0
    ph = np.random.default_rng(seed).uniform(0, 6, 3)
    values = amp * (np.sin(3 * gx + ph[0]) * np.cos(2 * gy + ph[1]) + 0.3 * np.sin(5 * gy + ph[2]))
    return DistortionLookupTable(values.astype(np.float32) / 1.3, (1.0, 1.0), (0.0, 0.0),
                                 (64.0, 64.0))


def test_lookup_tables_are_kept_and_their_change_absorbed():
    """An HST-like chip WCS: SIP, CPDIS tables of 3 px, a D2IM table of 0.5 px."""
    wcs = WCS(fits_header(True))
    wcs.pixel_shape = (SHAPE[1], SHAPE[0])
    wcs.cpdis1, wcs.cpdis2 = lookup_table(1, 3.0), lookup_table(2, 3.0)
    wcs.det2im1 = lookup_table(5, 0.5)
    c = correction(3)
    new = apply_to_astropy_wcs(wcs, c, SHAPE)
    assert (new.cpdis1, new.cpdis2, new.det2im1) == (wcs.cpdis1, wcs.cpdis2, wcs.det2im1)
    x, y = grid(n=101)
    dx, dy = c.offsets(x, y)
    want = np.column_stack(wcs.all_pix2world(x + dx, y + dy, 0))
    error = sky_error_px(want, np.column_stack(new.all_pix2world(x, y, 0)))
    # SIP fitted as if the tables moved with the pixels (first order): worse
    naive = WCS(fit_sip(wcs.to_header(relax=True), c, SHAPE).header)
    naive.cpdis1, naive.cpdis2, naive.det2im1 = wcs.cpdis1, wcs.cpdis2, wcs.det2im1
    first_order = sky_error_px(want, np.column_stack(naive.all_pix2world(x, y, 0)))
    assert error < 1e-3 and error < 0.8 * first_order
    pix = np.column_stack(new.all_world2pix(*new.all_pix2world(x, y, 0), 0, tolerance=1e-8))
    assert np.max(np.hypot(pix[:, 0] - x, pix[:, 1] - y)) < 0.01


def test_sip_refuses_non_tan_headers_and_bad_shapes():
    header = fits_header(False)
    header["CTYPE1"], header["CTYPE2"] = "RA---SIN", "DEC--SIN"
    with pytest.raises(aligncore.AlignError, match="SIP needs a 2D TAN header"):
        apply_to_fits_header(header, correction(2), SHAPE)
    with pytest.raises(aligncore.AlignError, match="shape must be"):
        apply_to_fits_header(fits_header(False), correction(2), (1, 5))
    with pytest.raises(aligncore.AlignError, match="expected a DistortionCorrection"):
        apply_to_fits_header(fits_header(False), {"degree": 2}, SHAPE)
    with pytest.raises(aligncore.AlignError, match="the image shape is needed"):
        apply_to_fits_header(fits_header(False), correction(2))
    sized = fits_header(False)
    sized["NAXIS"], sized["NAXIS1"], sized["NAXIS2"] = 2, SHAPE[1], SHAPE[0]
    assert apply_to_fits_header(sized, correction(2)) == apply_to_fits_header(
        sized, correction(2), SHAPE)
    short = unchecked(correction(2), coeffs_y=(0.1,))
    with pytest.raises(aligncore.AlignError, match="3 terms but 3 x and 1 y coefficients"):
        apply_to_gwcs(sim_wcs(), short, SHAPE)
    with pytest.raises(aligncore.AlignError, match="scale <= 0"):
        apply_to_fits_header(fits_header(False), unchecked(correction(2), scale=0.0), SHAPE)


def unchecked(c, **changes):
    """A copy of ``c`` with ``changes``, past any validation of the dataclass itself (the
    writers check again: a correction may come from a plugin or a hand-edited file)."""
    copy = object.__new__(DistortionCorrection)
    for field in dataclasses.fields(DistortionCorrection):
        object.__setattr__(copy, field.name, changes.get(field.name, getattr(c, field.name)))
    return copy


# --- GWCS -----------------------------------------------------------------------------
def sim_wcs(seed=2):
    d = sim_gwcs.make_distortion(SHAPE, SCALE, np.random.default_rng(seed))
    spec = sim_gwcs.make_spec(d, *sim_gwcs.pointing_for(d, (150.0, 2.0), 20.0), SHAPE)
    return sim_gwcs.build_wcs(spec)


def v2v3_error_px(old, new, c, shape=SHAPE):
    """Largest difference (px) between new(x, y) and old(x + dx, y + dy) in V2/V3."""
    x, y = grid(shape)
    dx, dy = c.offsets(x, y)
    want = np.column_stack(old.get_transform("detector", "v2v3")(x + dx, y + dy))
    got = np.column_stack(new.get_transform("detector", "v2v3")(x, y))
    return float(np.max(np.hypot(*(got - want).T))) / SCALE


@pytest.mark.parametrize("degree", [2, 3, 4, 5])
def test_gwcs_frame_reproduces_the_corrected_mapping_and_inverts(degree):
    old = sim_wcs()
    x, y = grid()
    sky_before = np.column_stack(old(x, y))
    c = correction(degree)
    solution = gwcs_solution(old, c, SHAPE)
    new = solution.wcs
    assert old.available_frames == ["detector", "v2v3", "world"]  # the input is untouched
    np.testing.assert_array_equal(np.column_stack(old(x, y)), sky_before)
    assert new.available_frames == ["detector", DISTORTION_FRAME, "v2v3", "world"]
    assert v2v3_error_px(old, new, c) < 1e-6  # the forward is the definition itself
    dx, dy = c.offsets(x, y)
    want = np.column_stack(old(x + dx, y + dy, with_bounding_box=False))
    assert sky_error_px(want, np.column_stack(new(x, y))) < 1e-3
    back = np.column_stack(new.invert(*new(x, y), with_bounding_box=False))
    assert np.max(np.hypot(back[:, 0] - x, back[:, 1] - y)) < 0.01
    assert solution.inverse_max_error_px < 0.01
    assert new.bounding_box.bounding_box(order="F") == old.bounding_box.bounding_box(order="F")


def test_gwcs_correction_round_trips_through_asdf():
    c = correction(3)
    new = apply_to_gwcs(sim_wcs(), c, SHAPE)
    buffer = io.BytesIO()
    asdf.AsdfFile({"wcs": new}).write_to(buffer)
    buffer.seek(0)
    x, y = grid(n=15)
    with asdf.open(buffer) as af:
        read = af["wcs"]
        assert read.available_frames == new.available_frames
        np.testing.assert_allclose(read(x, y), new(x, y), rtol=0, atol=1e-12)
        np.testing.assert_allclose(read.invert(*new(x, y)), new.invert(*new(x, y)), rtol=0,
                                   atol=1e-9)
        transform = read.get_transform("detector", DISTORTION_FRAME)
        assert transform.name == "aligncore distortion correction NIRCAM/NRCB1"


def test_affine_correction_after_the_distortion_frame():
    old = sim_wcs()
    c = correction(3)
    distorted = apply_to_gwcs(old, c, SHAPE)
    shifted = GWCSCorrector().correct_plane(distorted, np.eye(2), [0.5, -0.3])
    assert shifted.available_frames == ["detector", DISTORTION_FRAME, "v2v3", "v2v3corr",
                                        "world"]
    # the same plane shift applied to the WCS without the distortion, at (x + dx, y + dy)
    reference = GWCSCorrector().correct_plane(old, np.eye(2), [0.5, -0.3])
    x, y = grid()
    dx, dy = c.offsets(x, y)
    want = np.column_stack(reference(x + dx, y + dy, with_bounding_box=False))
    assert sky_error_px(want, np.column_stack(shifted(x, y))) < 1e-3
    back = np.column_stack(shifted.invert(*shifted(x, y), with_bounding_box=False))
    assert np.max(np.hypot(back[:, 0] - x, back[:, 1] - y)) < 0.01


def test_second_correction_composes_in_the_same_frame():
    old = sim_wcs()
    first, second = correction(3, seed=1), correction(2, seed=7, center=(1023.5, 511.5))
    twice = apply_to_gwcs(apply_to_gwcs(old, first, SHAPE), second, SHAPE)
    assert twice.available_frames.count(DISTORTION_FRAME) == 1
    x, y = grid()
    dx2, dy2 = second.offsets(x, y)
    dx1, dy1 = first.offsets(x + dx2, y + dy2)
    want = np.column_stack(old.get_transform("detector", "v2v3")(x + dx2 + dx1, y + dy2 + dy1))
    got = np.column_stack(twice.get_transform("detector", "v2v3")(x, y))
    assert np.max(np.hypot(*(got - want).T)) / SCALE < 1e-6
    back = np.column_stack(twice.invert(*twice(x, y), with_bounding_box=False))
    assert np.max(np.hypot(back[:, 0] - x, back[:, 1] - y)) < 0.01


def test_tweakwcs_corrects_a_wcs_with_the_distortion_frame():
    """jwst's tweakreg corrector (tweakwcs) accepts the layout and adds v2v3corr after v2v3."""
    tweakwcs = pytest.importorskip("tweakwcs.correctors")
    d = sim_gwcs.make_distortion(SHAPE, SCALE, np.random.default_rng(2))
    spec = sim_gwcs.make_spec(d, *sim_gwcs.pointing_for(d, (150.0, 2.0), 20.0), SHAPE)
    new = apply_to_gwcs(sim_gwcs.build_wcs(spec), correction(3), SHAPE)
    corrector = tweakwcs.JWSTWCSCorrector(new, sim_gwcs.wcsinfo(spec))
    corrector.set_correction(shift=[0.1, -0.2])
    assert corrector.wcs.available_frames == ["detector", DISTORTION_FRAME, "v2v3", "v2v3corr",
                                              "world"]
    x, y = grid(n=9)
    ra0, dec0 = new(x, y)
    ra1, dec1 = corrector.wcs(x, y)
    shift = [np.median((ra1 - ra0) * np.cos(np.radians(dec0))), np.median(dec1 - dec0)]
    np.testing.assert_allclose(np.array(shift) * 3600.0, [0.1, -0.2], rtol=0, atol=1e-6)


def test_gwcs_refuses_other_objects():
    with pytest.raises(aligncore.AlignError, match=r"expected a gwcs\.WCS"):
        apply_to_gwcs(WCS(fits_header(False)), correction(2), SHAPE)


@pytest.mark.skipif(not os.path.exists(NIRCAM), reason="gwcs does not ship nircamwcs.asdf")
def test_real_nircam_gwcs_takes_the_distortion_frame():
    shape = (2048, 2048)
    c = correction(3, shape=shape, center=(1023.5, 1023.5))
    with asdf.open(NIRCAM) as af:
        old = af.tree["wcs"]
        new = apply_to_gwcs(old, c, shape)
        assert new.available_frames == ["detector", DISTORTION_FRAME, "v2v3", "world"]
        x, y = grid(shape)
        dx, dy = c.offsets(x, y)
        want = np.column_stack(old.get_transform("detector", "v2v3")(x + dx, y + dy))
        got = np.column_stack(new.get_transform("detector", "v2v3")(x, y))
        assert np.max(np.hypot(*(got - want).T)) < 1e-6  # arcsec
        # our inverse adds at most 0.01 px to the file's own (~0.02 px) inverse error
        xb0, yb0 = old.invert(*old(x + dx, y + dy, with_bounding_box=False),
                              with_bounding_box=False)
        xb1, yb1 = new.invert(*new(x, y), with_bounding_box=False)
        assert np.max(np.hypot(xb1 - (xb0 - dx), yb1 - (yb0 - dy))) < 0.01
