"""JWST pipeline step benchmark: `aligncore.jwst.AlignStep` against jwst's TweakRegStep.

Scenes: three 320x320 NIRCam-like exposures (0.063"/px, ~80 stars each, pointing
errors 0.2-1.5", roll errors up to 0.02 deg; ``aligncore.simulate(..., wcs="gwcs")``)
written as JWST ``ImageModel`` ``_cal.fits`` files with an image3 association (the
test helper ``tests/jwst_files.py``). Each association is aligned in one process by

- ``TweakRegStep``: jwst's step with its default parameters;
- ``AlignStep``: aligncore's step with its default parameters (aligncore's config);
- ``AlignStep jwst``: ``aligncore_config="jwst"`` (tweakreg's settings mapped);

all through ``Step.call`` (reading, detection, alignment, SIP fits; nothing saved).
Printed per seed: the relative RMS error against the truth (mas; a failed image keeps
its WCS), the time of the call (s), and the ratios to TweakRegStep.

Run: ``python benchmarks/bench_jwst_step.py [--seeds 21 22 23 24 25]`` (needs jwst;
CRDS is not asked: ``STPIPE_DISABLE_CRDS_STEPPARS`` is set).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("STPIPE_DISABLE_CRDS_STEPPARS", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import aligncore

STACKS = (("TweakRegStep", {}), ("AlignStep", {}), ("AlignStep jwst", {"aligncore_config": "jwst"}))


def _run(step: type, asn: Path, scene: aligncore.Scene, options: dict) -> tuple[float, float]:
    start = time.perf_counter()
    library = step.call(str(asn), **options)
    seconds = time.perf_counter() - start
    with library:
        models = list(library)
        wcss = [model.meta.wcs for model in models]
        for index, model in enumerate(models):
            library.shelve(model, index, modify=False)
    return scene.errors_summary(wcss)["rms_mas"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23, 24, 25])
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from jwst.tweakreg.tweakreg_step import TweakRegStep

    from aligncore.jwst import AlignStep
    from jwst_files import SHAPE, cal_file, cal_name, write_association

    classes = {"TweakRegStep": TweakRegStep, "AlignStep": AlignStep,
               "AlignStep jwst": AlignStep}
    print("| seed | " + " | ".join(f"{name} mas (s)" for name, _ in STACKS)
          + " | error ratio | time ratio |")
    print("|---" * (len(STACKS) + 3) + "|")
    with tempfile.TemporaryDirectory(prefix="bench-jwst-") as tmp:
        for seed in args.seeds:
            work = Path(tmp) / str(seed)
            scene = aligncore.simulate("dither", n_images=3, seed=seed, shape=SHAPE,
                                       pixel_scale=0.063, n_stars=80,
                                       pointing_error=(0.2, 1.5), roll_error=0.02,
                                       wcs="gwcs", outdir=work / "sim")
            files = [cal_file(p, work / cal_name(k), k) for k, p in enumerate(scene.paths)]
            asn = write_association(files, work / "x_asn.json")
            rows = [_run(classes[name], asn, scene, options) for name, options in STACKS]
            cells = " | ".join(f"{mas:.3f} ({sec:.2f})" for mas, sec in rows)
            print(f"| {seed} | {cells} | {rows[0][0] / rows[1][0]:.2f} | "
                  f"{rows[0][1] / rows[1][1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
