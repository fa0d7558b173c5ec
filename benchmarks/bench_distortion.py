"""Distortion benchmark: ``distortion: poly`` against affine-only and an exact solver.

Run ``python benchmarks/bench_distortion.py`` (``--quick`` for one seed per case).
Per case (number of exposures N, distortion error at the corners, seed) one scene
is simulated twice with the same stars, layout, pointing errors and noise: with the
nominal distortion wrong by ``amplitude`` pixels at the farthest corner (a random
polynomial of orders 2 and 3, the same for all exposures), and with the nominal
distortion right. Three runs of `aligncore.align` with the default config:

- ``exact``: the right distortion, affine alignment (the global solver): the
  centroid-noise bound of a solver that knows the true distortion;
- ``affine``: the wrong distortion, affine alignment only (``distortion: none``,
  what tweakreg does);
- ``poly``: the wrong distortion, ``distortion: poly`` (degree auto).

The score is the relative RMS error (`aligncore.Scene.errors_summary`, relative: the
best common affine transform removed) over a 16 x 16 grid of every exposure: the
whole detector, corners included. Printed: each run's RMS (mas and pixels), the ratios
``poly / exact`` (target <= 1.3) and ``affine / exact``, the degree chosen, the held-back
RMS before/after and the largest error of the recovered distortion field against the
truth at the detector corners (pixels). With ``amplitude 0`` the ratio
``poly / affine`` is the no-harm check (target within 5 %).

Scenes: ``simulate("dither", shape=(512, 512), n_stars=400, dither_range=(0.2, 0.45))``
(dithers of 20-45 % of the field: a distortion is measured through the difference of
its values at the positions where one star falls in two exposures, so the dithers
must be a fair part of the field), no cosmic rays, hot pixels or saturated stars. A run
whose affine alignment fails an image is reported and left out of the summary.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import aligncore
from aligncore.config import load_config
from aligncore.distortion import DistortionCorrection

SCENE = {"scenario": "dither", "shape": (512, 512), "n_stars": 400,
         "dither_range": (0.2, 0.45), "cosmic_rays": 0, "hot_pixels": 0,
         "saturated_stars": 0}


def corner_error(result: aligncore.AlignResult, truth: dict | None) -> float:
    """Largest distance (pixels) between the recovered and the true correction at the
    detector corners; NaN when none was applied."""
    entries = result.meta.get("distortion", {})
    if truth is None or not entries:
        return float("nan")
    entry = next(iter(entries.values()))
    if not entry.get("correction"):
        return float("nan")
    fitted = DistortionCorrection.from_dict(entry["correction"])
    true = DistortionCorrection.from_dict(truth)
    ny, nx = SCENE["shape"]
    x = np.array([0.0, nx - 1.0, nx - 1.0, 0.0])
    y = np.array([0.0, 0.0, ny - 1.0, ny - 1.0])
    fx, fy = fitted.offsets(x, y)
    tx, ty = true.offsets(x, y)
    return float(np.max(np.hypot(fx - tx, fy - ty)))


def run(scene: aligncore.Scene, plugin: str) -> tuple[aligncore.AlignResult, float]:
    config = load_config(None, [f"distortion.plugin={plugin}"])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = aligncore.align(scene.images, config)
    return result, time.perf_counter() - start


def case(n_images: int, amplitude: float, seed: int) -> dict | None:
    kwargs = dict(SCENE, n_images=n_images, seed=seed)
    wrong = aligncore.simulate(distortion_error=amplitude, **kwargs) if amplitude else None
    right = aligncore.simulate(**kwargs)
    exact, _ = run(right, "none")
    scene = wrong or right
    affine, _ = run(scene, "none")
    poly, seconds = run(scene, "poly")
    if not (exact.ok and affine.ok):
        print(f"  N={n_images} amp={amplitude} seed={seed}: an image failed the affine "
              "alignment; left out")
        return None
    rms = {name: scene_.errors_summary(res)["rms_pix"] for name, scene_, res in (
        ("exact", right, exact), ("affine", scene, affine), ("poly", scene, poly))}
    entry = next(iter(poly.meta.get("distortion", {}).values()), {})
    held = entry.get("held_back") or {}
    row = {"n": n_images, "amp": amplitude, "seed": seed, **rms,
           "degree": entry.get("degree"), "applied": entry.get("applied"),
           "held_before": held.get("rms_before_mas") or float("nan"),
           "held_after": held.get("rms_after_mas") or float("nan"),
           "corner": corner_error(poly, scene.params.get("distortion_truth")),
           "seconds": seconds}
    print(f"  N={n_images:2d} amp={amplitude:.2f} seed={seed}: exact {rms['exact']:.4f} px, "
          f"affine {rms['affine']:.4f} px, poly {rms['poly']:.4f} px | poly/exact "
          f"{rms['poly'] / rms['exact']:.2f}, affine/exact {rms['affine'] / rms['exact']:.1f}, "
          f"poly/affine {rms['poly'] / rms['affine']:.3f} | degree {row['degree']}, applied "
          f"{row['applied']}, held-back {row['held_before']:.2f} -> {row['held_after']:.2f} "
          f"mas, corners {row['corner']:.4f} px, {seconds:.1f} s")
    if not row["applied"]:
        print(f"    declined: {entry.get('reason')}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed per case")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per case (default 3)")
    args = parser.parse_args()
    seeds = range(1 if args.quick else args.seeds)
    rows = []
    for n_images in (9, 16):
        for amplitude in (0.3, 0.0):
            print(f"N={n_images}, nominal distortion wrong by {amplitude} px at the corners")
            for seed in seeds:
                row = case(n_images, amplitude, seed)
                if row is not None:
                    rows.append(row)
    print("\nsummary (median over seeds)")
    print("| N | error at corners | exact (px) | affine (px) | poly (px) | poly / exact | "
          "affine / exact | poly / affine | corners: fit - truth (px) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n_images in (9, 16):
        for amplitude in (0.3, 0.0):
            sel = [r for r in rows if r["n"] == n_images and r["amp"] == amplitude]
            if not sel:
                continue
            med = {k: float(np.median([r[k] for r in sel])) for k in
                   ("exact", "affine", "poly", "corner")}
            ratio = float(np.median([r["poly"] / r["exact"] for r in sel]))
            affine = float(np.median([r["affine"] / r["exact"] for r in sel]))
            harm = float(np.median([r["poly"] / r["affine"] for r in sel]))
            print(f"| {n_images} | {amplitude} px | {med['exact']:.4f} | {med['affine']:.4f} | "
                  f"{med['poly']:.4f} | {ratio:.2f} | {affine:.1f} | {harm:.3f} | "
                  f"{med['corner']:.4f} |")


if __name__ == "__main__":
    main()
