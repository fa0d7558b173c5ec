"""The gwcs corrector: v2v3corr insertion, composition, plane conversion, round trips."""

from __future__ import annotations

import copy
import io
import math
import os

import asdf
import gwcs
import numpy as np
import pytest
from astropy.modeling.models import Identity, RotationSequence3D, Scale, Shift
from gwcs import coordinate_frames as cf
from gwcs.geometry import CartesianToSpherical, SphericalToCartesian

import aligncore
from aligncore import FitResult, TangentPlane
from aligncore.sim import gwcs_model as sim_gwcs
from aligncore_wcs import FITSWCSCorrector, GWCSCorrector
from aligncore_wcs.gwcs_corrector import frame_layout, reference_angles
from aligncore_wcs.v2v3corr import (
    CORRECTION_NAME,
    PlaneCorrection,
    RefAngles,
    correction_model,
    plane_from_v2v3,
    read_correction,
)
from conftest import simple_wcs

SHAPE = (1024, 1024)
NIRCAM = os.path.join(os.path.dirname(gwcs.__file__), "tests", "data", "nircamwcs.asdf")


def make_spec(ra=150.0, dec=2.0, pa=30.0, seed=1, shape=SHAPE):
    d = sim_gwcs.make_distortion(shape, 0.063, np.random.default_rng(seed))
    return sim_gwcs.make_spec(d, *sim_gwcs.pointing_for(d, (ra, dec), pa), shape)


def make_wcs(**kwargs):
    return sim_gwcs.build_wcs(make_spec(**kwargs))


def grid(shape=SHAPE, n=21):
    ny, nx = shape
    x, y = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    return x.ravel(), y.ravel()


def rotation_fit(shift, deg=0.0, scale=1.0) -> FitResult:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return FitResult(matrix=scale * np.array([[c, -s], [s, c]]), shift=shift)


def sky_error_mas(before, after, fit, plane, shape=SHAPE):
    """Largest distance (mas) between ``after`` and ``before`` moved by ``fit`` in ``plane``."""
    x, y = grid(shape)
    want = fit.apply(np.column_stack(plane.world_to_tp(*before(x, y))))
    got = np.column_stack(plane.world_to_tp(*after(x, y)))
    return 1000.0 * float(np.max(np.hypot(*(got - want).T)))


def assert_same_transform(a, b, x, y, atol=0.0):
    np.testing.assert_allclose(np.array(a(x, y)), np.array(b(x, y)), rtol=0, atol=atol)


# --- registration and structure ------------------------------------------------------
def test_registered_and_chosen_for_gwcs_only():
    assert aligncore.get_plugin("corrector", "gwcs") is GWCSCorrector
    wcs = make_wcs()
    assert GWCSCorrector.accepts(wcs) and not FITSWCSCorrector.accepts(wcs)
    assert not GWCSCorrector.accepts(simple_wcs())
    with pytest.raises(aligncore.AlignError, match=r"corrects gwcs\.WCS objects, got WCS"):
        GWCSCorrector().correct(simple_wcs(), rotation_fit([0.1, 0]), TangentPlane(150, 2))


def test_v2v3corr_inserted_after_v2v3_and_the_rest_unchanged():
    wcs = make_wcs()
    reference = copy.deepcopy(wcs)
    plane = TangentPlane(150.02, 2.01)
    new = GWCSCorrector().correct(wcs, rotation_fit([1.2, -0.4], 0.02), plane)
    assert new.available_frames == ["detector", "v2v3", "v2v3corr", "world"]
    x, y = grid()
    assert_same_transform(new.get_transform("detector", "v2v3"),
                          wcs.get_transform("detector", "v2v3"), x, y)
    v2, v3 = wcs.get_transform("detector", "v2v3")(x, y)
    assert_same_transform(new.get_transform("v2v3corr", "world"),
                          wcs.get_transform("v2v3", "world"), v2, v3)
    assert new.get_transform("v2v3", "v2v3corr").name == CORRECTION_NAME
    assert new.bounding_box.bounding_box(order="F") == wcs.bounding_box.bounding_box(order="F")
    # the input is untouched
    assert wcs.available_frames == ["detector", "v2v3", "world"]
    assert_same_transform(wcs, reference, x, y)


@pytest.mark.parametrize("offset_deg", [0.0, 0.05, 0.5])
def test_sky_result_equals_the_requested_sky_correction(offset_deg):
    wcs = make_wcs()
    plane = TangentPlane(150.0 + offset_deg, 2.0 - offset_deg)  # shared plane up to 42' away
    fit = rotation_fit([1.5, -0.8], deg=0.02, scale=1.0 + 3e-5)
    new = GWCSCorrector().correct(wcs, fit, plane)
    assert sky_error_mas(wcs, new, fit, plane) < 1e-3


def test_correction_then_its_inverse_restores_the_wcs():
    wcs = make_wcs()
    plane = TangentPlane(150.03, 1.99)
    fit = rotation_fit([0.9, 1.4], deg=-0.015, scale=1.00002)
    corrector = GWCSCorrector()
    back = corrector.correct(corrector.correct(wcs, fit, plane), fit.inverse(), plane)
    assert back.available_frames.count("v2v3corr") == 1
    x, y = grid()
    assert_same_transform(back, wcs, x, y, atol=1e-10)
    total = read_correction(back.get_transform("v2v3", "v2v3corr"))
    np.testing.assert_allclose(total.matrix, np.eye(2), rtol=0, atol=1e-12)
    np.testing.assert_allclose(total.shift, 0.0, rtol=0, atol=1e-9)


def test_second_correction_composes_into_one_frame():
    wcs = make_wcs()
    corrector = GWCSCorrector()
    m1, s1 = np.array([[1.0, 2e-4], [-2e-4, 1.0]]), np.array([0.5, -0.3])
    m2, s2 = np.array([[1.00001, -1e-4], [1e-4, 1.00001]]), np.array([-0.2, 0.7])
    once = corrector.correct_plane(wcs, m1, s1)
    twice = corrector.correct_plane(once, m2, s2)
    assert twice.available_frames == ["detector", "v2v3", "v2v3corr", "world"]
    total = read_correction(twice.get_transform("v2v3", "v2v3corr"))
    np.testing.assert_allclose(total.matrix, m2 @ m1, rtol=0, atol=1e-14)
    np.testing.assert_allclose(total.shift, m2 @ s1 + s2, rtol=0, atol=1e-12)
    # and a sky fit on a corrected WCS composes too, exactly
    plane = TangentPlane(150.01, 2.02)
    fit = rotation_fit([-0.6, 0.25], deg=0.01)
    third = corrector.correct(twice, fit, plane)
    assert third.available_frames.count("v2v3corr") == 1
    assert sky_error_mas(twice, third, fit, plane) < 1e-3


def test_plane_shift_moves_the_sky_by_that_shift_at_the_reference_point():
    spec = make_spec(pa=-70.0)
    wcs = sim_gwcs.build_wcs(spec)
    new = GWCSCorrector().correct_plane(wcs, np.eye(2), [0.5, -0.3])
    info = spec["gwcs"]
    plane = TangentPlane(info["ra_ref"], info["dec_ref"])  # the V2/V3 plane's axes: East/North
    assert sky_error_mas(wcs, new, rotation_fit([0.5, -0.3]), plane) < 1e-3


def test_inserted_after_v2v3vacorr_when_present():
    wcs = make_wcs()
    steps = [(step.frame, step.transform) for step in wcs.pipeline]
    va = cf.Frame2D(name="v2v3vacorr", axes_order=(0, 1), unit=steps[1][0].unit)
    ref = (sim_gwcs.V2_REF, sim_gwcs.V3_REF)
    aberration = ((Shift(-ref[0]) & Shift(-ref[1])) | (Scale(1.00005) & Scale(1.00005))
                  | (Shift(ref[0]) & Shift(ref[1])))
    vawcs = gwcs.WCS([steps[0], (steps[1][0], aberration), (va, steps[1][1]), steps[2]])
    vawcs.bounding_box = wcs.bounding_box.bounding_box(order="F")
    assert frame_layout(vawcs).v2v3 == "v2v3vacorr"
    plane = TangentPlane(150.0, 2.0)
    fit = rotation_fit([0.7, 0.2], 0.01)
    new = GWCSCorrector().correct(vawcs, fit, plane)
    assert new.available_frames == ["detector", "v2v3", "v2v3vacorr", "v2v3corr", "world"]
    assert sky_error_mas(vawcs, new, fit, plane) < 1e-3


def test_wcs_without_pixel_bounds_is_sampled_around_the_reference_point():
    wcs = make_wcs()
    wcs.bounding_box = None
    wcs.pixel_shape = None
    plane = TangentPlane(150.02, 2.02)
    fit = rotation_fit([1.0, -0.5], 0.02)
    new = GWCSCorrector().correct(wcs, fit, plane)
    assert sky_error_mas(wcs, new, fit, plane) < 1e-3


def _with_frames(wcs, names):
    """A copy of ``wcs`` (detector, v2v3, world) with its frames renamed/extended."""
    steps = [(copy.deepcopy(step.frame), step.transform) for step in wcs.pipeline]
    frames = []
    for name in names:
        frame = copy.deepcopy(steps[1][0])
        frame.name = name
        frames.append(frame)
    middle = [(frame, Identity(2)) for frame in frames[:-1]] + [(frames[-1], steps[1][1])]
    return gwcs.WCS([steps[0]] + middle + [steps[2]])


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["v2v3corr", "v2v3"], "'v2v3corr' must directly follow 'v2v3'"),
        (["v2v3", "other", "v2v3corr"], "'v2v3corr' must directly follow 'v2v3'"),
        (["v2v3vacorr", "v2v3"], "'v2v3vacorr' must directly follow 'v2v3'"),
        (["telescope"], "needs a 'v2v3' frame; frames: detector, telescope, world"),
    ],
)
def test_unsupported_frame_layouts_are_refused(names, message):
    wcs = _with_frames(make_wcs(), names)
    with pytest.raises(aligncore.AlignError, match=message):
        GWCSCorrector().correct(wcs, rotation_fit([0.1, 0.1]), TangentPlane(150, 2))


def test_v2v3_as_last_frame_and_foreign_correction_are_refused():
    wcs = make_wcs()
    steps = [(step.frame, step.transform) for step in wcs.pipeline]
    short = gwcs.WCS([steps[0], (steps[1][0], None)])
    with pytest.raises(aligncore.AlignError, match="'v2v3' cannot be the first or last frame"):
        frame_layout(short)
    foreign = _with_frames(wcs, ["v2v3", "v2v3corr"])  # an Identity is no plane correction
    with pytest.raises(aligncore.AlignError, match="not a V2/V3 tangent-plane correction"):
        GWCSCorrector().correct(foreign, rotation_fit([0.1, 0.1]), TangentPlane(150, 2))


def test_bad_plane_corrections_are_refused():
    corrector = GWCSCorrector()
    with pytest.raises(aligncore.AlignError, match="must be finite"):
        corrector.correct_plane(make_wcs(), [[1, 0], [0, np.nan]], [0, 0])
    with pytest.raises(aligncore.AlignError, match="singular"):
        corrector.correct_plane(make_wcs(), [[1, 1], [1, 1]], [0, 0])


def test_far_tangent_plane_with_a_large_rotation_warns():
    wcs = make_wcs()
    plane = TangentPlane(160.0, 12.0)  # 14 degrees away: a 5-degree rotation is not affine here
    with pytest.warns(UserWarning, match="not affine in the V2/V3 plane"):
        GWCSCorrector().correct(wcs, rotation_fit([0.0, 0.0], deg=5.0), plane)


# --- reference angles ----------------------------------------------------------------
def test_reference_angles_from_wcsinfo_transform_or_numerically():
    spec = make_spec(pa=123.0)
    info = spec["gwcs"]
    wcs = sim_gwcs.build_wcs(spec)
    parsed = reference_angles(wcs)
    assert parsed.source == "transform"
    assert (parsed.v2_ref, parsed.v3_ref) == pytest.approx((info["v2_ref"], info["v3_ref"]),
                                                            abs=1e-9)
    assert parsed.roll_ref == pytest.approx(info["roll_ref"], abs=1e-10)
    wcs.aligncore_wcsinfo = {"v2_ref": 100.0, "v3_ref": -500.0, "roll_ref": 10.0}
    assert reference_angles(wcs) == RefAngles(100.0, -500.0, 10.0, "wcsinfo")
    # a pointing written as two rotations cannot be parsed: angles found numerically
    steps = [(step.frame, step.transform) for step in sim_gwcs.build_wcs(spec).pipeline]
    split = ((Scale(1 / 3600) & Scale(1 / 3600)) | SphericalToCartesian(wrap_lon_at=180)
             | RotationSequence3D([info["v2_ref"] / 3600, -info["v3_ref"] / 3600,
                                   info["roll_ref"]], "zyx")
             | RotationSequence3D([info["dec_ref"], -info["ra_ref"]], "yz")
             | CartesianToSpherical(wrap_lon_at=360))
    other = gwcs.WCS([steps[0], (steps[1][0], split), steps[2]])
    other.bounding_box = ((-0.5, 1023.5), (-0.5, 1023.5))
    numeric = reference_angles(other)
    assert numeric.source == "numeric"
    assert numeric.roll_ref == pytest.approx(info["roll_ref"], abs=1e-8)  # ref pixel = centre
    assert (numeric.v2_ref, numeric.v3_ref) == pytest.approx((info["v2_ref"], info["v3_ref"]),
                                                              abs=1e-9)
    plane = TangentPlane(150.01, 2.0)
    fit = rotation_fit([0.4, -1.1], 0.02)
    assert sky_error_mas(other, GWCSCorrector().correct(other, fit, plane), fit, plane) < 1e-3


def test_plane_axes_are_east_and_north_at_the_reference_point():
    spec = make_spec(pa=47.0)
    info = spec["gwcs"]
    angles = RefAngles(info["v2_ref"], info["v3_ref"], info["roll_ref"])
    wcs = sim_gwcs.build_wcs(spec)
    x, y = grid(n=5)
    v2, v3 = wcs.get_transform("detector", "v2v3")(x, y)
    sky = TangentPlane(info["ra_ref"], info["dec_ref"]).world_to_tp(*wcs(x, y))
    np.testing.assert_allclose(plane_from_v2v3(angles, v2, v3), np.column_stack(sky),
                               rtol=0, atol=1e-9)


# --- serialisation and inverse -------------------------------------------------------
def test_corrected_wcs_round_trips_through_asdf_and_inverts_consistently():
    wcs = make_wcs()
    new = GWCSCorrector().correct(wcs, rotation_fit([1.1, 0.3], 0.02), TangentPlane(150, 2))
    buffer = io.BytesIO()
    asdf.AsdfFile({"wcs": new}).write_to(buffer)
    buffer.seek(0)
    with asdf.open(buffer) as af:
        loaded = af.tree["wcs"]
        x, y = grid()
        assert loaded.available_frames == new.available_frames
        assert_same_transform(loaded, new, x, y, atol=1e-12)
        assert_same_transform(loaded.get_transform("world", "v2v3corr"),
                              new.get_transform("world", "v2v3corr"), *new(x, y), atol=1e-9)
        again = GWCSCorrector().correct_plane(loaded, np.eye(2), [0.1, 0.0])  # still composable
        assert again.available_frames.count("v2v3corr") == 1
    xb, yb = new.invert(*new(x, y))
    assert np.max(np.hypot(xb - x, yb - y)) < 1e-3


def test_correction_model_read_back_and_exact_inverse():
    angles = RefAngles(86.1, -493.2, 359.9)
    correction = PlaneCorrection(angles, np.array([[1.0, 1e-4], [-1e-4, 1.0]]), np.array([2, -1]))
    model = correction_model(correction)
    back = read_correction(model)
    assert back.angles.same_plane(angles)
    np.testing.assert_allclose(back.matrix, correction.matrix, rtol=0, atol=1e-15)
    np.testing.assert_allclose(back.shift, correction.shift, rtol=0, atol=1e-12)
    v2, v3 = np.array([20.0, 150.0]), np.array([-560.0, -400.0])
    np.testing.assert_allclose(model.inverse(*model(v2, v3)), (v2, v3), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="not a V2/V3 tangent-plane correction"):
        read_correction(Identity(2))


def test_tweakwcs_and_aligncore_compose_each_others_corrections():
    tweakwcs = pytest.importorskip("tweakwcs.correctors")
    spec = make_spec()
    corrector = GWCSCorrector()
    ours = corrector.correct_plane(sim_gwcs.build_wcs(spec), np.eye(2), [0.5, -0.3])
    theirs = tweakwcs.JWSTWCSCorrector(ours, sim_gwcs.wcsinfo(spec))
    x, y = grid(n=5)
    np.testing.assert_allclose(theirs.det_to_world(x, y), ours(x, y), rtol=0, atol=1e-12)
    theirs.set_correction(shift=[0.1, 0.2])
    both = corrector.correct_plane(theirs.wcs, np.eye(2), [0.1, 0.1])
    assert both.available_frames.count("v2v3corr") == 1
    total = read_correction(both.get_transform("v2v3", "v2v3corr"))
    np.testing.assert_allclose(total.shift, [0.7, 0.0], rtol=0, atol=1e-9)


# --- the NIRCam GWCS shipped with gwcs -----------------------------------------------
@pytest.mark.skipif(not os.path.exists(NIRCAM), reason="gwcs does not ship nircamwcs.asdf")
def test_real_nircam_gwcs_takes_a_tangent_plane_shift():
    with asdf.open(NIRCAM) as af:
        wcs = af.tree["wcs"]
        angles = reference_angles(wcs)
        assert angles.source == "transform"
        ra_ref, dec_ref = wcs.get_transform("v2v3", "world")(angles.v2_ref, angles.v3_ref)
        plane = TangentPlane(float(ra_ref), float(dec_ref))
        corrector = GWCSCorrector()
        shift = rotation_fit([0.5, -0.3])
        shape = (2048, 2048)
        for new in (corrector.correct_plane(wcs, np.eye(2), [0.5, -0.3]),
                    corrector.correct(wcs, shift, plane)):
            assert new.available_frames == ["detector", "v2v3", "v2v3corr", "world"]
            assert sky_error_mas(wcs, new, shift, plane, shape) < 1e-3
        # the correction adds nothing to the file's own inverse error (~0.02 px)
        x, y = grid(shape)
        xb0, yb0 = wcs.invert(*wcs(x, y))
        xb1, yb1 = new.invert(*new(x, y))
        assert np.max(np.hypot(xb1 - xb0, yb1 - yb0)) < 1e-6
        buffer = io.BytesIO()
        asdf.AsdfFile({"wcs": new}).write_to(buffer)
        buffer.seek(0)
        with asdf.open(buffer) as copy_af:
            assert_same_transform(copy_af.tree["wcs"], new, x, y, atol=1e-12)
