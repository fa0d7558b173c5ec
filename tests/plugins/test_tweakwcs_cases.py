"""tweakwcs 0.9.3's own fitting test cases, run through aligncore's ``affine`` fitter.

Each test takes the inputs and the expected values of a case of tweakwcs's test suite
(tweakwcs 0.9.3 sdist, tweakwcs/tests/test_linearfit.py; BSD 3-clause, (c) AURA / STScI)
and shows that aligncore's options reproduce them; the case is named in each test.
The test code is aligncore's own. tweakwcs draws its inputs from an unseeded
``np.random``; here the same recipes are drawn from seeded generators.

Conventions: tweakwcs' ``iter_linear_fit(xy, uv)`` maps ``uv`` onto ``xy``
(``xy = F (uv - c) + s + c``); aligncore's ``iter_fit(image_xy, ref_xy)`` maps
``image_xy`` onto ``ref_xy`` (``ref = M image + shift``): ``image_xy = uv``,
``ref_xy = xy``, ``M = F`` and ``shift = s + c - F c``.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest

from aligncore_affine import AffineFitter, combine_weights, fit_affine, iter_fit, residual_statistic

LARGE = 1000  # tweakwcs' _LARGE_SAMPLE_SIZE
BAD_FRACTION = 0.2  # tweakwcs' _BAD_DATA_FRACTION
ATOL = 10 * LARGE * math.sqrt(np.finfo(np.longdouble).eps)  # tweakwcs' _ATOL (long double)


def build_fit_matrix(rot: tuple[float, float], scale: tuple[float, float]) -> np.ndarray:
    """tweakwcs' ``build_fit_matrix``: rotations of the x and y axes and their scales."""
    rx, ry = np.deg2rad(rot)
    return np.array([[scale[0] * math.cos(rx), -scale[1] * math.sin(ry)],
                     [scale[0] * math.sin(rx), scale[1] * math.cos(ry)]])


def ideal_large_data(kind: str, rng: np.random.Generator) -> dict:
    """test_linearfit.py fixture ``ideal_large_data`` (same recipe, seeded)."""
    uv = rng.random((LARGE, 2)) * [2047.0, 4095.0]
    angle = 360.0 * rng.random()
    s = 0.8 + 0.4 * rng.random()
    if kind == "shifts":
        rot, scale, proper, geometry = (0.0, 0.0), (1.0, 1.0), True, "shift"
    elif kind == "rshift":
        rot, scale, proper, geometry = (angle, angle), (1.0, 1.0), True, "rshift"
    elif kind == "rscale":
        rot, scale, proper, geometry = (angle, angle), (s, s), True, "rscale"
    elif kind == "rscale-flip-x":
        rot, scale, proper, geometry = ((angle + 180.0) % 360.0, angle), (s, s), False, "rscale"
    elif kind == "rscale-flip-y":
        rot, scale, proper, geometry = (angle, (angle + 180.0) % 360.0), (s, s), False, "rscale"
    else:  # affine
        offset = 150.0 * (rng.random() - 0.5) + 180.0 * rng.choice([0.0, 1.0])
        rot = (angle, (angle + offset) % 360.0)
        scale = tuple(0.8 + 0.4 * rng.random(2))
        rad = np.deg2rad(rot)
        proper = bool(np.prod(np.cos(rad)) + np.prod(np.sin(rad)) > 0)
        geometry = "general"
    shift = 200.0 * (rng.random(2) - 0.5)
    matrix = build_fit_matrix(rot, scale)
    return {"uv": uv, "xy": uv @ matrix.T + shift, "shift": shift, "matrix": matrix,
            "proper": proper, "geometry": geometry}


def weight_data(with_xy: bool, with_uv: bool, rng: np.random.Generator) -> dict:
    """test_linearfit.py fixture ``weight_data``: zero-weight points carry huge errors."""
    nbad, low, high = int(BAD_FRACTION * LARGE), 1000.0, 1.0e6

    def bad(n: int) -> np.ndarray:
        return rng.choice([-1, 1], (n, 2)) * (low + (high - low) * rng.random((n, 2)))

    out = {"wxy": None, "wuv": None, "idx_xy": np.zeros(0, int), "idx_uv": np.zeros(0, int)}
    if with_xy and with_uv:
        n_xy = int((0.3 + 0.4 * rng.random()) * nbad)
        out["wxy"], out["wuv"] = rng.random(LARGE), rng.random(LARGE)
        out["idx_xy"] = rng.choice(LARGE, n_xy, replace=False)
        out["idx_uv"] = rng.choice(LARGE, nbad - n_xy, replace=False)
    elif with_xy:
        out["wxy"], out["idx_xy"] = rng.random(LARGE), rng.choice(LARGE, nbad, replace=False)
    elif with_uv:
        out["wuv"], out["idx_uv"] = rng.random(LARGE), rng.choice(LARGE, nbad, replace=False)
    for side in ("xy", "uv"):
        if out[f"w{side}"] is not None:
            out[f"w{side}"][out[f"idx_{side}"]] = 0.0
    out["bad_xy"], out["bad_uv"] = bad(len(out["idx_xy"])), bad(len(out["idx_uv"]))
    return out


def pair_weights(wxy: np.ndarray | None, wuv: np.ndarray | None) -> np.ndarray | None:
    """tweakwcs' combination of image and reference weights: 1/w = 1/wxy + 1/wuv."""
    if wxy is None and wuv is None:
        return None
    if wxy is None or wuv is None:
        return wxy if wuv is None else wuv
    return combine_weights(wuv, wxy)


KINDS = ["shifts", "rshift", "rscale", "rscale-flip-x", "rscale-flip-y", "affine"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("weights", list(product([False, True], repeat=2)))
@pytest.mark.parametrize("clip_accum, noise", list(product([False, True], repeat=2)))
def test_iter_linear_fit_clip_style(kind, weights, clip_accum, noise):
    """tweakwcs case ``test_iter_linear_fit_clip_style``: zero weights exclude bad data;
    with noise (sigma 0.01) and 3 clipping passes at 2 sigma the transform is recovered to
    10 sigma, with every clipping statistic ~0 and the flip detected."""
    rng = np.random.default_rng(KINDS.index(kind) * 100 + 10 * weights[0] + weights[1]
                                + 1000 * clip_accum + 2000 * noise)
    data, w = ideal_large_data(kind, rng), weight_data(*weights, rng)
    xy, uv = data["xy"].copy(), data["uv"].copy()
    noise_sigma = 0.01
    if noise:
        xy += rng.normal(0.0, noise_sigma, xy.shape)
        atol, nclip = 10 * noise_sigma, 3
    else:
        atol, nclip = ATOL, 0
    if w["wxy"] is not None:
        xy[w["idx_xy"]] += w["bad_xy"]
    if w["wuv"] is not None:
        uv[w["idx_uv"]] += w["bad_uv"]
    fitter = AffineFitter(fitgeometry=data["geometry"], nclip=nclip, sigma=2.0,
                          clip_accum=clip_accum)
    fit = fitter.fit(uv, xy, pair_weights(w["wxy"], w["wuv"]))
    np.testing.assert_allclose(fit.shift, data["shift"], rtol=0, atol=atol)
    np.testing.assert_allclose(fit.matrix, data["matrix"], rtol=0, atol=atol)
    for value in (fit.rmse, fit.mae, fit.meta["std"], fit.meta["mad"]):
        assert value == pytest.approx(0.0, abs=atol)
    assert (np.linalg.det(fit.matrix) > 0) == data["proper"]
    n_bad = np.union1d(w["idx_xy"], w["idx_uv"]).size
    if nclip:
        assert fit.meta["nclip_passes"] > 0
        assert np.count_nonzero(fit.fitmask) < LARGE
    else:
        assert fit.meta["nclip_passes"] == 0
        assert np.count_nonzero(fit.fitmask) == LARGE - n_bad


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("nclip, clip_accum, weighted, noise", [
    (0, True, False, False), (0, True, True, False), (2, False, True, True)])
def test_iter_linear_fit_special_cases(kind, nclip, clip_accum, weighted, noise):
    """tweakwcs case ``test_iter_linear_fit_special_cases`` (nclip None -> 0; sigma 1)."""
    rng = np.random.default_rng(KINDS.index(kind) + 50 * nclip + 7 * weighted)
    data = ideal_large_data(kind, rng)
    xy = data["xy"]
    weights = None
    if weighted:
        wxy, wuv = 0.1 + 0.9 * rng.random((2, LARGE))
        weights = pair_weights(wxy, wuv)
    atol = ATOL
    if noise:
        xy = xy + rng.normal(0.0, 0.01, xy.shape)
        atol = 0.01
    fit = iter_fit(data["uv"], xy, data["geometry"], weights, nclip=nclip, sigma=1.0,
                   clip_accum=clip_accum)
    np.testing.assert_allclose(fit.shift, data["shift"], rtol=0, atol=atol)
    np.testing.assert_allclose(fit.matrix, data["matrix"], rtol=0, atol=atol)


@pytest.mark.parametrize("weighted", [False, True])
def test_iter_linear_fit_1point(weighted):
    """tweakwcs case ``test_iter_linear_fit_1point``: a shift from one point."""
    rng = np.random.default_rng(11 + weighted)
    xy = np.array([[1.0, 2.0]])
    shifts = 20 * (rng.random(2) - 0.5)
    weights = pair_weights(*(0.1 + 0.9 * rng.random((2, 1)))) if weighted else None
    # tweakwcs fits uv = xy + shifts onto xy: shift -shifts
    fit = fit_affine(xy + shifts, xy, "shift", weights)
    np.testing.assert_allclose(fit.shift, -shifts, rtol=0, atol=ATOL)
    np.testing.assert_allclose(fit.matrix, np.eye(2), rtol=0, atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
def test_iter_linear_fit_fitgeom_clip_all_data(kind):
    """tweakwcs case ``test_iter_linear_fit_fitgeom_clip_all_data``: a clipping threshold
    that would reject every point stops clipping; all points stay, no pass counted."""
    rng = np.random.default_rng(20 + KINDS.index(kind))
    data = ideal_large_data(kind, rng)
    # the case swaps the fixture's roles: fit xy onto uv + noise
    uv = data["xy"] + rng.normal(0.0, 0.01, (LARGE, 2))
    weights = pair_weights(*(0.1 + 0.9 * rng.random((2, LARGE))))
    fit = iter_fit(data["uv"], uv, data["geometry"], weights, nclip=100, sigma=1e-50)
    assert np.count_nonzero(fit.fitmask) == LARGE
    assert fit.meta["nclip_passes"] == 0


def test_compute_stat_invalid_weights():
    """tweakwcs case ``test_compute_stat_invalid_weights``: zero weights give NaN for every
    statistic."""
    points = np.random.default_rng(3).random((10, 2))
    for name in ("rmse", "mae", "std", "mad"):
        assert math.isnan(residual_statistic(points, name, np.zeros(10)))


def test_iter_rscale_invalid_scale():
    """tweakwcs case ``test_iter_rscale_invalid_scale``: a fixed scale of 0 is refused."""
    with pytest.raises(ValueError, match="a fixed scale must be a positive number, got 0"):
        fit_affine(np.zeros((4, 2)), np.zeros((4, 2)), "rscale", scale=0.0)
    with pytest.raises(ValueError, match="greater than 0"):
        AffineFitter(fitgeometry="rscale", scale=0.0)


def test_levmar2x2_multivariate():
    """tweakwcs case ``test_levmar2x2_multivariate``: (Shift(4.3) & Shift(-7.1)) | Rotation2D
    fitted to four points gives (4.3, -7.1, 45 deg); aligncore's rshift: ref = R (p + t)."""
    inputs = np.array([[10.0, 10.0], [10.0, 20.0], [20.0, 20.0], [20.0, 10.0]])
    outputs = np.array([[8.06101731, 12.16223664], [0.98994949, 19.23330445],
                        [8.06101731, 26.30437226], [15.13208512, 19.23330445]])
    fit = fit_affine(inputs, outputs, "rshift")
    rotation = math.degrees(math.atan2(fit.matrix[1, 0], fit.matrix[0, 0]))
    shift_before_rotation = np.linalg.solve(fit.matrix, fit.shift)
    np.testing.assert_allclose([*shift_before_rotation, rotation], [4.3, -7.1, 45.0],
                               rtol=1e-5, atol=1e-5)


def mad_clipping_data() -> tuple[np.ndarray, np.ndarray]:
    """test_linearfit.py ``test_iter_linear_fit_mad_clipping``'s inputs (seeded there)."""
    rng = np.random.default_rng(2)
    n, nbad = 1000, 350
    uv = rng.uniform(0, 4000, (n, 2))
    xy = uv + [1.5, -0.7] + rng.normal(0, 0.05, (n, 2))
    r = 6.0 * np.sqrt(rng.uniform(0, 1, nbad))
    phi = rng.uniform(0, 2 * np.pi, nbad)
    xy[:nbad] += np.c_[r * np.cos(phi), r * np.sin(phi)]
    return uv, xy


def test_iter_linear_fit_mad_clipping():
    """tweakwcs case ``test_iter_linear_fit_mad_clipping``: 35 % mismatches within 6 px;
    'rmse' clipping stalls, 'mad' clipping (accumulating, 20 passes at 3) recovers the shift
    to 0.02 px, better than 'rmse', and the reported mad is median |r| / sqrt(ln 2)."""
    uv, xy = mad_clipping_data()
    options = {"fitgeometry": "general", "nclip": 20, "sigma": 3.0, "clip_accum": True}
    fit = AffineFitter(**options, clip_statistic="mad").fit(uv, xy)
    fit_rmse = AffineFitter(**options, clip_statistic="rmse").fit(uv, xy)
    truth = np.array([1.5, -0.7])
    np.testing.assert_allclose(fit.shift, truth, atol=0.02)
    assert np.linalg.norm(fit.shift - truth) < np.linalg.norm(fit_rmse.shift - truth)
    norm = np.hypot(*fit.residuals[fit.fitmask].T)
    assert fit.meta["mad"] == pytest.approx(np.median(norm) / math.sqrt(math.log(2)),
                                            rel=1e-12)


def test_fixed_scale_rscale_is_rshift_at_scale_one_and_holds_another_scale():
    """tweakwcs' note on ``fit_rshift``: it is ``fit_rscale(scale=1)``; on the 'rshift'
    case both give the same fit, and a fixed scale of the data's scale recovers its
    rotation and shift exactly."""
    data = ideal_large_data("rshift", np.random.default_rng(5))
    fixed = iter_fit(data["uv"], data["xy"], "rscale", scale=1.0)
    rshift = iter_fit(data["uv"], data["xy"], "rshift")
    np.testing.assert_allclose(fixed.matrix, rshift.matrix, rtol=0, atol=1e-14)
    np.testing.assert_allclose(fixed.shift, rshift.shift, rtol=0, atol=1e-9)
    assert (fixed.fitgeometry, fixed.meta["fixed_scale"]) == ("rshift", 1.0)
    scaled = data["uv"] @ (1.1 * data["matrix"]).T + data["shift"]
    fit = AffineFitter(fitgeometry="rscale", scale=1.1).fit(data["uv"], scaled)
    np.testing.assert_allclose(fit.matrix, 1.1 * data["matrix"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(fit.shift, data["shift"], rtol=0, atol=ATOL)
    assert fit.scale == pytest.approx(1.1, abs=1e-12)


# --- the same numbers as tweakwcs itself, where it is installed ---------------------------
@pytest.mark.parametrize("statistic", ["rmse", "mae", "std", "mad"])
@pytest.mark.parametrize("geometry", ["shift", "rshift", "rscale", "general"])
def test_same_numbers_as_tweakwcs(statistic, geometry):
    """Unweighted accumulating clipping of the mad-clipping case: aligncore's fit equals
    tweakwcs' iter_linear_fit (mask, matrix, shift, statistics) to 1e-9."""
    linearfit = pytest.importorskip("tweakwcs.linearfit")
    uv, xy = mad_clipping_data()
    theirs = linearfit.iter_linear_fit(xy.copy(), uv.copy(), fitgeom=geometry, nclip=5,
                                       sigma=(2.5, statistic), clip_accum=True)
    ours = iter_fit(uv, xy, geometry, nclip=5, sigma=2.5, clip_statistic=statistic,
                    clip_accum=True)
    np.testing.assert_array_equal(ours.fitmask, theirs["fitmask"])
    assert ours.meta["nclip_passes"] == theirs["eff_nclip"]
    np.testing.assert_allclose(ours.matrix, np.asarray(theirs["matrix"], float), atol=1e-12)
    c = np.asarray(theirs["center"], float)
    np.testing.assert_allclose(ours.shift + ours.matrix @ c - c,
                               np.asarray(theirs["shift"], float), atol=1e-9)
    for name, value in (("rmse", ours.rmse), ("mae", ours.mae), ("std", ours.meta["std"]),
                        ("mad", ours.meta["mad"])):
        assert value == pytest.approx(theirs[name], rel=1e-9), name


@pytest.mark.parametrize("kind", KINDS)
def test_same_weighted_fit_as_tweakwcs(kind):
    """A weighted fit (image and reference weights, noise, no clipping) equals tweakwcs'
    (matrix, shift and the four weighted statistics)."""
    linearfit = pytest.importorskip("tweakwcs.linearfit")
    rng = np.random.default_rng(40 + KINDS.index(kind))
    data = ideal_large_data(kind, rng)
    xy = data["xy"] + rng.normal(0.0, 0.01, (LARGE, 2))
    wxy, wuv = 0.1 + 0.9 * rng.random((2, LARGE))
    theirs = linearfit.iter_linear_fit(xy.copy(), data["uv"].copy(), wxy, wuv,
                                       fitgeom=data["geometry"], nclip=0)
    ours = fit_affine(data["uv"], xy, data["geometry"], pair_weights(wxy, wuv))
    np.testing.assert_allclose(ours.matrix, np.asarray(theirs["matrix"], float), atol=1e-12)
    c = np.asarray(theirs["center"], float)
    np.testing.assert_allclose(ours.shift + ours.matrix @ c - c,
                               np.asarray(theirs["shift"], float), atol=1e-9)
    for name, value in (("rmse", ours.rmse), ("mae", ours.mae), ("std", ours.meta["std"]),
                        ("mad", ours.meta["mad"])):
        assert value == pytest.approx(theirs[name], rel=1e-9), name
