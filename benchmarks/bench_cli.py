"""Whole-process benchmark: start-up of the command, and ``aligncore run`` against a script.

Start-up (best of ``--repeat`` fresh processes each)::

    python -c "import numpy"        the anchor
    aligncore --version             target <= 3x the anchor
    aligncore --help                target <= 3x the anchor
    python -c "import aligncore"    for reference

Whole process, on simulated FITS images written once (``aligncore.simulate``, untimed):
``aligncore run configs/default.yaml IMAGES -o OUT`` against
``python benchmarks/stack_script.py OUT IMAGES`` (photutils ``Background2D`` +
``DAOStarFinder`` at jwst's defaults, ``tweakwcs.align_wcs`` with ``XYXYMatch``, as
tweakreg runs them), both as fresh processes, best of ``--repeat``; target: aligncore
>= 8x faster. Scenes: ``dither`` (4 x 2048^2) and ``mosaic`` (3 x 3 x 2048^2).

Breakdown of each whole-process time: ``imports`` (the sum of the top-level imports of
that process, from ``python -X importtime``, measured in a separate run), ``work`` (what
the process reports: aligncore's ``report.json`` timings plus writing, the script's own
timers) and ``other`` (the rest: interpreter start, reading the config, ...).

Run::

    python benchmarks/bench_cli.py                 # start-up and both scenes
    python benchmarks/bench_cli.py --startup-only  # start-up only (seconds)
    python benchmarks/bench_cli.py --size 1024     # smaller images

Requires ``tweakwcs`` and ``photutils`` (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "default.yaml"
STACK = Path(__file__).resolve().parent / "stack_script.py"
SCENES = {"dither": {"scenario": "dither", "n_images": 4},
          "mosaic": {"scenario": "mosaic", "n_images": 9}}
STARTUP_TARGET, RUN_TARGET = 3.0, 8.0


def _aligncore_command() -> list[str]:
    """The installed ``aligncore`` script beside this interpreter (else ``-m aligncore.cli``)."""
    script = Path(sys.executable).parent / "aligncore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aligncore.cli"]


def best_time(command: Sequence[str], repeat: int, cwd: Path | None = None,
              ok_codes: Sequence[int] = (0,)) -> float:
    """Best wall time (s) of ``repeat`` fresh runs of ``command``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
        elapsed = time.perf_counter() - t0
        if proc.returncode not in ok_codes:
            raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n"
                               f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        best = min(best, elapsed)
    return best


def import_seconds(command: Sequence[str], cwd: Path | None = None) -> tuple[float, list[str]]:
    """Total time of the top-level imports of one run of ``command`` (``-X importtime``),
    and the five most expensive top-level packages."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env)
    total, top = 0, []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if match:  # no indentation: a top-level import (its cumulative time)
            total += int(match.group(1))
            top.append((int(match.group(1)), match.group(2).strip()))
    top.sort(reverse=True)
    return total / 1e6, [f"{name} {us / 1e6:.2f}s" for us, name in top[:5]]


def startup(repeat: int) -> dict[str, float]:
    """Best times of the anchor and the start-up commands; prints the ratios."""
    cli = _aligncore_command()
    commands = {
        'python -c "import numpy"': [sys.executable, "-c", "import numpy"],
        "aligncore --version": [*cli, "--version"],
        "aligncore --help": [*cli, "--help"],
        'python -c "import aligncore"': [sys.executable, "-c", "import aligncore"],
    }
    times = {name: best_time(cmd, repeat) for name, cmd in commands.items()}
    anchor = times['python -c "import numpy"']
    print(f"\nstart-up, best of {repeat} fresh processes")
    print(f"{'command':32s} {'seconds':>8s} {'x numpy':>8s}")
    for name, seconds in times.items():
        print(f"{name:32s} {seconds:8.3f} {seconds / anchor:8.2f}")
    for name in ("aligncore --version", "aligncore --help"):
        ratio = times[name] / anchor
        print(f"{name}: {ratio:.2f}x import numpy (target <= {STARTUP_TARGET:g}x): "
              f"{'PASS' if ratio <= STARTUP_TARGET else 'FAIL'}")
    return times


def _work_seconds(outdir: Path) -> float:
    report = json.loads((outdir / "report.json").read_text())
    timings = report.get("timings", {})
    return float(timings.get("total", 0.0))


def whole_process(name: str, size: int, seed: int, repeat: int, workdir: Path) -> None:
    """One scene: ``aligncore run`` and the stack script, side by side."""
    import aligncore

    kwargs = dict(SCENES[name])
    scenario = kwargs.pop("scenario")
    scene = aligncore.simulate(scenario, seed=seed, shape=(size, size),
                               outdir=workdir / name / "in", **kwargs)
    paths = [str(p) for p in scene.paths]
    ours_out, stack_out = workdir / name / "ours", workdir / name / "stack"
    ours = [*_aligncore_command(), "run", str(CONFIG), *paths, "-o", str(ours_out)]
    stack = [sys.executable, str(STACK), str(stack_out), *paths]

    def fresh_ours() -> list[str]:
        shutil.rmtree(ours_out, ignore_errors=True)
        return ours

    t_ours = min(best_time(fresh_ours(), 1, ok_codes=(0, 1)) for _ in range(repeat))
    work_ours = _work_seconds(ours_out)
    t_stack = best_time(stack, repeat, ok_codes=(0, 1))
    imp_ours, top_ours = import_seconds(fresh_ours())
    imp_stack, top_stack = import_seconds(stack)
    proc = subprocess.run(stack, capture_output=True, text=True)
    stack_timers = dict(re.findall(r"(\w+)=([\d.]+)", proc.stdout))
    work_stack = sum(float(stack_timers.get(k, 0.0)) for k in ("read", "detect", "align",
                                                                "write"))
    n = len(paths)
    print(f"\n{name}: {n} x {size}^2, best of {repeat} whole processes")
    print(f"{'':24s} {'total':>7s} {'imports':>8s} {'work':>7s} {'other':>7s}")
    for label, total, imp, work in (("aligncore run", t_ours, imp_ours, work_ours),
                                    ("photutils+tweakwcs", t_stack, imp_stack, work_stack)):
        print(f"{label:24s} {total:7.2f} {imp:8.2f} {work:7.2f} {total - imp - work:7.2f}")
    ratio = t_stack / t_ours
    print(f"aligncore is {ratio:.2f}x faster (target >= {RUN_TARGET:g}x): "
          f"{'PASS' if ratio >= RUN_TARGET else 'FAIL'}; without imports "
          f"{(t_stack - imp_stack) / max(t_ours - imp_ours, 1e-9):.2f}x")
    print(f"  aligncore imports: {', '.join(top_ours)}")
    print(f"  stack imports:     {', '.join(top_stack)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per command")
    parser.add_argument("--size", type=int, default=2048, help="image side (pixels)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenes", nargs="+", default=list(SCENES), choices=list(SCENES))
    parser.add_argument("--startup-only", action="store_true")
    args = parser.parse_args(argv)
    startup(args.repeat)
    if args.startup_only:
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        for name in args.scenes:
            whole_process(name, args.size, args.seed, max(1, min(args.repeat, 3)), Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
