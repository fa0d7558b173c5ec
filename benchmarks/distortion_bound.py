"""The Cramér-Rao expectation of `bench_distortion.py`'s ratio ``poly / exact``.

Run ``python benchmarks/distortion_bound.py --seeds 3`` (9 and 16 exposures, nominal
distortion wrong by 0.3 px). For each scene, the ``poly`` refinement's final joint
least-squares problem (its matches, star-based weights and geometry) gives the
covariance of every parameter, ``sigma^2 (A^T W A)^-1`` with ``sigma^2`` the fit's
chi-square per degree of freedom. Propagated to the 16 x 16 grid of every exposure (the
best common affine transform projected out, as `aligncore.Scene.errors_summary` does),
it is the expected relative RMS of:

- ``poly``: every exposure's affine correction and the detector's coefficients fitted;
- ``affine rshift``: the same fit with the distortion known (only the affine
  corrections, shift and rotation);
- ``affine rscale``: the same with a free scale per exposure (the geometry the global
  solver, the ``exact`` run, chooses for these scenes).

``poly / affine rscale`` is the ratio an unbiased estimator can expect against the
exact run; the measured ratio scatters about it. Also printed: the RMS over the detector
of the recovered field's error (its linear part removed: the exposures' fits absorb
it), measured against the simulator's truth and expected from the covariance.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

import aligncore
import aligncore_distortion.refine as refine_module
from aligncore.config import load_config
from aligncore.distortion import DistortionCorrection
from aligncore.geometry import N_PARAMS, design_block
from aligncore_distortion.stars import _jacobians

sys.path.insert(0, str(Path(__file__).parent))
from bench_distortion import SCENE

GRID = 16


def captured_fit(scene: aligncore.Scene) -> tuple:
    """Align with ``poly``; return the final joint problem and state (the guard's input)."""
    seen: dict = {}
    original = refine_module._worse_units

    def spy(problem, before, after, tolerance):
        seen.update(problem=problem, state=after)
        return original(problem, before, after, tolerance)

    refine_module._worse_units = spy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = aligncore.align(scene.images, load_config(None, ["distortion.plugin=poly"]))
    finally:
        refine_module._worse_units = original
    return result, seen.get("problem"), seen.get("state")


def grid_rows(problem, state, scene, geometry: str, with_distortion: bool):
    """Displacement of every grid point per parameter, the common affine projected out."""
    n_par = N_PARAMS[geometry]
    n_aff = len(problem.free) * n_par
    terms = state.terms if with_distortion else ()
    n_cols = n_aff + 2 * len(terms)
    info = problem.detectors[0]
    centers = {u: p.mean(axis=0) for u, p in problem.positions(state).items()}
    blocks, points = [], []
    for unit in problem.stars:
        image = scene.images[unit]
        ny, nx = image.shape
        x, y = (a.ravel() for a in np.meshgrid(np.linspace(0, nx - 1, GRID),
                                               np.linspace(0, ny - 1, GRID)))
        pix = np.column_stack([x, y])
        tp = np.column_stack(scene.plane.world_to_tp(*aligncore.pixel_to_world(image.wcs, x, y)))
        fit = state.fits[unit]
        where = fit.apply(tp)
        block = np.zeros((2 * len(x), n_cols))
        if unit in problem.free:
            k = problem.free[unit]
            block[:, k * n_par:(k + 1) * n_par] = design_block(where, centers[unit], geometry)
        if terms:
            gain = np.einsum("ab,nbc->nac", fit.matrix, _jacobians(image.wcs, pix, scene.plane,
                                                                  (ny, nx)))
            basis = info.basis(pix, terms)
            for axis in (0, 1):
                cols = slice(n_aff + axis * len(terms), n_aff + (axis + 1) * len(terms))
                block[:, cols] = (gain[:, :, axis, None] * basis[:, None, :]).reshape(
                    2 * len(x), len(terms))
        blocks.append(block)
        points.append(where)
    rows, where = np.vstack(blocks), np.vstack(points)
    common = np.zeros((2 * len(where), 6))
    common[0::2, 0] = common[1::2, 3] = 1.0
    common[0::2, 1], common[0::2, 2] = where[:, 0], where[:, 1]
    common[1::2, 4], common[1::2, 5] = where[:, 0], where[:, 1]
    q, _ = np.linalg.qr(common)
    return rows - q @ (q.T @ rows), len(where), n_aff


def expected_rms(problem, state, scene, geometry: str, with_distortion: bool,
                 variance: float) -> tuple[float, np.ndarray]:
    """Expected relative RMS (arcsec) over the grid, and the coefficients' covariance."""
    saved = problem.geometry
    problem.geometry = geometry
    try:
        design, _, weights, _ = problem.system(state if with_distortion else
                                               _without_terms(state), fit_only=False)
    finally:
        problem.geometry = saved
    normal = np.asarray((design.T @ design.multiply(weights[:, None])).todense())
    cov = variance * np.linalg.inv(normal)
    rows, n_points, n_aff = grid_rows(problem, state, scene, geometry, with_distortion)
    return float(np.sqrt(np.trace(rows @ cov @ rows.T) / n_points)), cov[n_aff:, n_aff:]


def _without_terms(state):
    out = state.copy()
    out.terms, out.coeffs = (), np.zeros((out.coeffs.shape[0], 2, 0))
    return out


def field_errors(problem, state, scene, cov) -> tuple[float, float]:
    """Measured and expected RMS (pixels) of the field's error, linear part removed."""
    info = problem.detectors[0]
    ny, nx = info.shape
    x, y = (a.ravel() for a in np.meshgrid(np.linspace(0, nx - 1, GRID),
                                           np.linspace(0, ny - 1, GRID)))
    fitted = DistortionCorrection(info.key, 3, info.center, info.scale, state.terms,
                                  tuple(state.coeffs[0, 0]), tuple(state.coeffs[0, 1]))
    truth = DistortionCorrection.from_dict(scene.params["distortion_truth"])
    error = np.column_stack(fitted.offsets(x, y)) - np.column_stack(truth.offsets(x, y))
    linear = np.column_stack([np.ones_like(x), x, y])

    def residual(values):
        return values - linear @ np.linalg.lstsq(linear, values, rcond=None)[0]

    measured = float(np.sqrt(np.mean(np.sum(residual(error) ** 2, axis=1))))
    basis = residual(info.basis(np.column_stack([x, y]), state.terms))
    n = len(state.terms)
    expected = np.sqrt(sum(np.trace(basis @ cov[a * n:(a + 1) * n, a * n:(a + 1) * n]
                                    @ basis.T) for a in (0, 1)) / len(x))
    return measured, float(expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print("| N | seed | measured poly / exact | expected poly / affine rscale | expected poly "
          "/ affine rshift | field error measured (px) | expected (px) |")
    print("|---|---|---|---|---|---|---|")
    for n_images in (9, 16):
        for seed in range(args.seeds):
            kwargs = dict(SCENE, n_images=n_images, seed=seed)
            wrong = aligncore.simulate(distortion_error=0.3, **kwargs)
            right = aligncore.simulate(**kwargs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exact = aligncore.align(right.images, load_config(None, []))
            result, problem, state = captured_fit(wrong)
            if problem is None or not (exact.ok and result.ok):
                print(f"| {n_images} | {seed} | (an image failed, or poly declined) | | | | |")
                continue
            chi2, rows = problem.chi2(state, fit_only=False)
            n_params = len(problem.free) * N_PARAMS[problem.geometry] + state.coeffs.size
            variance = chi2 / (rows - n_params)
            poly, cov = expected_rms(problem, state, wrong, problem.geometry, True, variance)
            rshift, _ = expected_rms(problem, state, wrong, "rshift", False, variance)
            rscale, _ = expected_rms(problem, state, wrong, "rscale", False, variance)
            measured = (wrong.errors_summary(result)["rms_pix"]
                        / right.errors_summary(exact)["rms_pix"])
            field, field_expected = field_errors(problem, state, wrong, cov)
            print(f"| {n_images} | {seed} | {measured:.2f} | {poly / rscale:.2f} | "
                  f"{poly / rshift:.2f} | {field:.4f} | {field_expected:.4f} |", flush=True)


if __name__ == "__main__":
    main()
