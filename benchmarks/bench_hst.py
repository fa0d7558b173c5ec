"""HST multi-chip benchmark: ``aligncore run`` against drizzlepac's TweakReg on the same files.

Simulated two-chip WFC3/UVIS-like exposures (`aligncore.sim.hst.simulate_hst`: the real
chip geometry and SIP, a rigid pointing error of 0.1-1" and a roll of up to 0.02 deg per
exposure), written once per seed (untimed). Each tool aligns a fresh copy of the files as a
fresh process (whole-process time: interpreter start, imports, detection, matching,
fitting, header updates):

- ``aligncore run configs/default.yaml FILES -o OUT``;
- ``TweakReg(FILES, updatehdr=True, ...)`` (drizzlepac), its source finder set to the
  simulated PSF (``conv_width`` = FWHM, ``threshold`` 5), ``searchrad`` 2", ``fitgeometry``
  ``rscale``, 3 clipping iterations at 3 sigma, updating the copies in place.

The error of each result is measured on a grid over every chip against the truth, after
removing the best common affine transform (what a relative alignment cannot see), and
printed with the centroid-noise bound of aligncore's fits (2D, the RMS over exposures) and
the ratios TweakReg / aligncore.

Run (drizzlepac 3.11 in the same environment, e.g. a venv with ``pip install
drizzlepac==3.11.*`` and ``pip install -e .``)::

    python benchmarks/bench_hst.py                    # 4 exposures, binning 4, seeds 1-3
    python benchmarks/bench_hst.py --binning 8 --seeds 1

Without drizzlepac only aligncore's rows are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "default.yaml"

TWEAKREG = """
import sys
from drizzlepac import tweakreg
files, fwhm = sys.argv[1:-1], float(sys.argv[-1])
tweakreg.TweakReg(files, updatehdr=True, interactive=False, shiftfile=False,
                  conv_width=fwhm, threshold=5.0, searchrad=2.0, see2dplot=False,
                  residplot="No plot", fitgeometry="rscale", nclip=3, sigma=3.0,
                  wcsname="TWEAK", reusename=True, clean=True)
"""


def _copy(paths: list[Path], directory: Path) -> list[Path]:
    directory.mkdir(parents=True)
    return [Path(shutil.copy2(path, directory / path.name)) for path in paths]


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{command[:3]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout + proc.stderr


def _errors(scene, directory: Path) -> float:
    """Relative RMS (mas) over every chip of the files in ``directory``."""
    import aligncore

    wcs = [image.wcs for path in scene.paths
           for image in aligncore.open_images(directory / path.name)]
    rms = np.asarray(scene.errors(wcs, relative=True)["rms_mas"], dtype=float)
    return float(np.sqrt(np.mean(rms**2)))


def _bound(report: Path) -> float:
    """The 2D centroid-noise bound (mas): sqrt(2) x the RMS of the fits' per-axis bounds."""
    images = json.loads(report.read_text())["images"]
    bounds = [i["meta"]["noise_bound_mas"] for i in images if i["status"] == "SUCCESS"]
    return math.sqrt(2.0) * float(np.sqrt(np.mean(np.square(bounds)))) if bounds else math.nan


def run_seed(seed: int, args: argparse.Namespace, work: Path, have_drizzlepac: bool) -> dict:
    from aligncore.sim.hst import simulate_hst

    scene = simulate_hst(args.exposures, outdir=work / "in", seed=seed, binning=args.binning,
                         n_stars=args.stars, fwhm=args.fwhm)
    row: dict = {"seed": seed, "chips": len(scene.names),
                 "before_mas": float(np.sqrt(np.mean(np.square(
                     scene.errors(scene.nominal_wcs)["rms_mas"]))))}
    ours = _copy(scene.paths, work / "ours")
    out = work / "ours-out"
    row["aligncore_s"], _ = _timed([sys.executable, "-m", "aligncore.cli", "run", str(CONFIG),
                                    *map(str, ours), "-o", str(out), "-q"], work)
    row["aligncore_mas"] = _errors(scene, out)
    row["bound_mas"] = _bound(out / "report.json")
    if have_drizzlepac:
        theirs = _copy(scene.paths, work / "tweakreg")
        row["tweakreg_s"], log = _timed([sys.executable, "-c", TWEAKREG,
                                         *[p.name for p in theirs], str(args.fwhm)],
                                        work / "tweakreg")
        (work / "tweakreg.log").write_text(log)
        row["tweakreg_mas"] = _errors(scene, work / "tweakreg")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=4)
    parser.add_argument("--binning", type=int, default=4)
    parser.add_argument("--stars", type=int, default=150, help="expected stars per chip")
    parser.add_argument("--fwhm", type=float, default=2.0, help="PSF FWHM (binned pixels)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    have = importlib.util.find_spec("drizzlepac") is not None
    if not have:
        print("drizzlepac is not installed: aligncore only (pip install 'drizzlepac==3.11.*')")
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="bench-hst-") as tmp:
            rows.append(run_seed(seed, args, Path(tmp), have))
    head = ["seed", "chips", "before_mas", "bound_mas", "aligncore_mas", "aligncore_s"]
    head += ["tweakreg_mas", "tweakreg_s", "error_ratio", "time_ratio"] if have else []
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        if have:
            row["error_ratio"] = row["tweakreg_mas"] / row["aligncore_mas"]
            row["time_ratio"] = row["tweakreg_s"] / row["aligncore_s"]
        print("| " + " | ".join(f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k])
                                for k in head) + " |")
    for key in ("aligncore_mas", "tweakreg_mas", "aligncore_s", "tweakreg_s"):
        if key in rows[0]:
            values = np.array([r[key] for r in rows])
            print(f"{key}: median {np.median(values):.2f}, RMS {np.sqrt(np.mean(values**2)):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
