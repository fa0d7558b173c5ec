"""Scaling benchmark: mosaics of many images on the serial, process-pool and Dask executors.

Run ``python benchmarks/bench_scale.py`` (``--sizes 16,64`` for a quick run).
It prints:

1. end to end, per mosaic size N and executor: wall time of `aligncore.align`
   on N simulated 512^2 images, its detection and alignment (``relative``)
   times from ``result.timings``, the peak RSS of the main process and its
   growth during the run, how many images aligned, whether every image's
   status and fit equal the serial executor's, and the worst relative WCS
   error against the simulation truth;
2. the alignment time alone against N, with its growth exponent between
   successive sizes and ``t / (N log N)`` normalised to the smallest N;
3. detection throughput on larger images (``--detect-size``, default 2048^2)
   where detection dominates: serial against processes and Dask, the Dask
   cluster both started by the run (what ``execution.executor: dask`` does)
   and already running and warm (``execution.address``);
4. with ``--geometry-n N`` (issue 16), the default config with nothing pinned
   against each pinned ``fitgeometry`` (``--pinned``) on mosaics of N tiles
   with ``--overlap`` (15 %) overlaps and ``--pointing-error`` (0.05-0.5"),
   one scene per ``--seeds`` value: tiles aligned, aligned tiles worse than
   their nominal WCS, the median / 90th percentile / largest error between
   overlapping tiles (`overlap_errors`), and how many tiles the retry ladder
   accepted on each rung. Run ``--sizes 0 --detect-images 0 --geometry-n 256
   --seeds 9,10,11 --n-stars 130`` for part 4 alone.

Scenes: ``simulate("mosaic", shape=(512, 512), n_stars=300)`` -- a
ceil(sqrt(N)) wide grid with 10 % overlaps and pointing errors up to 3".
Of the 300 stars per image daofind keeps ~135 above 5 sigma, so an overlap
strip (10 % of an image) holds only ~12-25 common sources. The runs therefore
pin ``align.minobj=10`` (at the seed's 15, the reference's first neighbours
can all fall short and nothing aligns; with ~100 stars per image even 10 is
too many) and ``fitter.params.fitgeometry=rshift`` (a free scale per image is
poorly constrained by 10 % strips: with rscale the 256-image mosaic ends
with relative errors of ~0.7 px median, ~5 px worst). ``--set`` overrides them.

Every (N, executor) run is a fresh Python process; its peak memory is the
``VmHWM`` of the main process (pool and Dask workers are other processes).
Scenes are simulated once per N into a temporary directory shared by the
executor runs (``--cache DIR`` keeps them between invocations; N = 1024 takes
~2 GB and several minutes to simulate). The machine's load average is
printed: other jobs on the same two cores slow the parallel executors most.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MOSAIC = {"shape": (512, 512), "n_stars": 300, "seed": 9}
# Pinned on top of the default config (later --set values win): overlap strips hold
# ~15 common sources, so minobj 10; rscale's free scale is poorly constrained by 10 %
# strips and its errors pile up across a large mosaic (docs/scaling.md), so rshift.
BENCH_SETS = ["align.minobj=10", "fitter.params.fitgeometry=rshift"]


# --- the child: one aligncore run, measured -----------------------------------------------
def _status_mb(key: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (current) resident memory of this process, MB.

    Read from /proc: ``getrusage``'s ``ru_maxrss`` would also count the pages the
    process shared with its parent before ``exec`` (the parent holds the scene).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(args: argparse.Namespace) -> None:
    """Align the images of ``args.child`` on one executor; pickle the measurements."""
    import aligncore
    from aligncore.config import load_config

    paths = sorted(Path(args.child).glob("img_*.fits"), key=lambda p: (len(p.name), p.name))
    sets = [f"execution.executor={args.executor}", f"execution.workers={args.workers}",
            *args.set]
    cluster = None
    if args.executor == "dask" and args.warm:
        import dask
        from dask.distributed import Client, LocalCluster

        from aligncore.execution import _LOCAL_CLUSTER_CONFIG

        # like the cluster the pipeline starts (its workers' allocator settings)
        with dask.config.set(_LOCAL_CLUSTER_CONFIG):
            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                   processes=True, dashboard_address=":0")
        sets.append(f"execution.address={cluster.scheduler_address}")
    config = load_config(None, sets)
    if cluster is not None:
        aligncore.align(paths, config)  # warm-up: worker imports and plugin registry
    baseline = _status_mb("VmRSS")
    start = time.perf_counter()
    result = aligncore.align(paths, config)
    wall = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    timings = {**result.timings, "tasks": sum(r.timings.get("detect", 0.0) for r in result)}
    if cluster is not None:
        Client(cluster).close()
        cluster.close()
    out = {
        "wall": wall,
        "timings": timings,
        "baseline_mb": baseline,
        "peak_mb": peak,
        "images": [(r.name, r.status.value, None if r.fit is None else
                    (r.fit.matrix.tolist(), r.fit.shift.tolist()), r.n_matched) for r in result],
        "wcs": [r.wcs for r in result],
        "ok": sum(r.ok for r in result),
        "rungs": [[a.get("rung", "") for a in r.meta.get("attempts", [])
                   if a.get("outcome") == "accepted"] for r in result],
        "tries": [[a.get("rung", "") for a in r.meta.get("attempts", [])] for r in result],
        "worse_than_nominal": 0,
    }
    Path(args.out).write_bytes(pickle.dumps(out))


# --- the parent: scenes, runs, tables -----------------------------------------------------
def scene_dir(cache: Path, n: int, shape: tuple[int, int], n_stars: int | None,
              seed: int, layout: dict | None = None) -> Path:
    extra = "".join(f"_{k}{v[0]}-{v[1]}" if isinstance(v, tuple) else f"_{k}{v}"
                    for k, v in sorted((layout or {}).items()))
    return cache / f"mosaic_n{n}_{shape[0]}x{shape[1]}_s{n_stars}_seed{seed}{extra}"


def get_scene(cache: Path, n: int, shape: tuple[int, int], n_stars: int | None, seed: int,
              layout: dict | None = None):
    """The simulated scene (written to, or read back from, the cache directory).

    ``layout``: further `aligncore.simulate` arguments (``mosaic_overlap``,
    ``pointing_error``).
    """
    import aligncore

    directory = scene_dir(cache, n, shape, n_stars, seed, layout)
    start = time.perf_counter()
    if (directory / "truth.json").exists():
        scene = aligncore.Scene.load(directory)
        how = "loaded"
    else:
        scene = aligncore.simulate("mosaic", n_images=n, shape=shape, n_stars=n_stars,
                                   seed=seed, outdir=directory, **(layout or {}))
        how = "simulated"
    print(f"  N={n}: scene {how} in {time.perf_counter() - start:.0f} s ({directory})",
          flush=True)
    return scene, directory


def run(directory: Path, executor: str, workers: int, sets: list[str], *,
        warm: bool = False) -> dict:
    """One measured run in a fresh Python process."""
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as handle:
        out = Path(handle.name)
    command = [sys.executable, __file__, "--child", str(directory), "--executor", executor,
               "--workers", str(workers), "--out", str(out)]
    command += ["--warm"] if warm else []
    for item in sets:
        command += ["--set", item]  # the child applies exactly these
    try:
        subprocess.run(command, check=True)
        return pickle.loads(out.read_bytes())
    finally:
        out.unlink(missing_ok=True)


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def aligned_errors(scene, res: dict) -> tuple[float, float]:
    """Worst and median relative WCS error (px) of the aligned images, against the truth.

    The common affine transform is fitted on the aligned images only: images that
    failed keep their nominal WCS, which no common transform can match.
    """
    import aligncore

    ok = [i for i, image in enumerate(res["images"]) if image[1] != "FAILED"]
    if len(ok) < 2:
        return math.nan, math.nan
    sub = aligncore.Scene(images=[scene.images[i] for i in ok],
                          true_wcs=[scene.true_wcs[i] for i in ok],
                          nominal_wcs=[scene.nominal_wcs[i] for i in ok],
                          stars=scene.stars, refcat=scene.refcat, params=scene.params)
    errors = np.asarray(sub.errors([res["wcs"][i] for i in ok], grid=8)["rms_pix"])
    return float(errors.max()), float(np.median(errors))


def overlap_errors(scene, res: dict, grid: int = 12) -> np.ndarray:
    """Relative error (mas) between overlapping tiles, one RMS per overlapping pair.

    For a grid of points of tile ``a`` that also fall on tile ``b`` (by the true WCS),
    the sky positions the two *aligned* WCSs give the same star are compared: what a
    mosaic shows as a doubled or displaced star. Failed tiles count with their WCS.
    """
    shapes = [image.shape for image in scene.images]
    centres = []
    for k, wcs in enumerate(scene.true_wcs):
        ny, nx = shapes[k]
        centres.append(np.ravel(wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)))
    centres = np.radians(np.asarray(centres))
    size = np.radians(max(shapes[0]) * 0.1 / 3600.0)  # 0.1"/px: the scene's pixel scale
    out = []
    for a in range(len(shapes)):
        ny, nx = shapes[a]
        gx, gy = np.meshgrid(np.linspace(0, nx - 1, grid), np.linspace(0, ny - 1, grid))
        gx, gy = gx.ravel(), gy.ravel()
        ra, dec = scene.true_wcs[a].pixel_to_world_values(gx, gy)
        cos_sep = (np.sin(centres[a, 1]) * np.sin(centres[:, 1]) + np.cos(centres[a, 1])
                   * np.cos(centres[:, 1]) * np.cos(centres[a, 0] - centres[:, 0]))
        for b in np.flatnonzero(np.arccos(np.clip(cos_sep, -1, 1)) < 1.5 * size):
            if b <= a:
                continue
            bx, by = scene.true_wcs[b].world_to_pixel_values(ra, dec)
            inside = (bx >= 0) & (bx <= shapes[b][1] - 1) & (by >= 0) & (by <= shapes[b][0] - 1)
            if inside.sum() < 3:
                continue
            ra_a, dec_a = res["wcs"][a].pixel_to_world_values(gx[inside], gy[inside])
            ra_b, dec_b = res["wcs"][b].pixel_to_world_values(bx[inside], by[inside])
            d = np.hypot((ra_a - ra_b) * np.cos(np.radians(dec_a)), dec_a - dec_b) * 3.6e6
            out.append(float(np.sqrt(np.mean(d**2))))
    return np.asarray(out)


def worse_than_nominal(scene, res: dict) -> int:
    """Aligned tiles whose relative error is larger than their nominal WCS's."""
    aligned = np.asarray(scene.errors(res["wcs"], grid=8)["rms_pix"])
    nominal = np.asarray(scene.errors(scene.nominal_wcs, grid=8)["rms_pix"])
    ok = np.array([image[1] != "FAILED" for image in res["images"]])
    return int(np.count_nonzero(ok & (aligned > nominal + 1e-3)))


def rung_table(res: dict) -> dict[str, int]:
    """How many tiles were accepted on each rung of the retry ladder."""
    counts: dict[str, int] = {}
    for accepted in res["rungs"]:
        for rung in accepted[-1:]:
            counts[rung] = counts.get(rung, 0) + 1
    return dict(sorted(counts.items()))


def geometries(args: argparse.Namespace, cache: Path) -> None:
    """The default config against every pinned geometry, on the issue's layout."""
    layout = {"mosaic_overlap": args.overlap, "pointing_error": tuple(args.pointing_error)}
    configs = [("default", [])] + [(g, [f"fitter.params.fitgeometry={g}"])
                                   for g in args.pinned.split(",") if g]
    print(f"\n4. Geometry: default config vs pinned fitgeometry; {args.geometry_n} tiles, "
          f"overlap {args.overlap:.0%}, pointing errors {args.pointing_error} arcsec, "
          f"n_stars={args.n_stars}")
    print(f"{'seed':>5} {'config':<9}{'aligned':>10}{'worse':>7}{'median mas':>12}"
          f"{'p90 mas':>10}{'max mas':>10}{'align s':>9}  rungs (accepted on)")
    for seed in args.seeds:
        scene, directory = get_scene(cache, args.geometry_n, MOSAIC["shape"], args.n_stars,
                                     seed, layout)
        for label, sets in configs:
            res = run(directory, "serial", 1, [*args.set, *sets])
            errors = overlap_errors(scene, res)
            worse = worse_than_nominal(scene, res)
            print(f"{seed:>5} {label:<9}{res['ok']:>5}/{args.geometry_n:<4}{worse:>7}"
                  f"{np.median(errors):>12.2f}{np.percentile(errors, 90):>10.2f}"
                  f"{errors.max():>10.1f}{res['timings']['relative']:>9.2f}  "
                  f"{json.dumps(rung_table(res))}", flush=True)
        del scene
    print("(error: RMS over each overlapping pair of the sky-position difference the two "
          "aligned WCSs give the same point; worse: aligned tiles with a larger error than "
          "their nominal WCS)")


def end_to_end(sizes: list[int], executors: list[str], args: argparse.Namespace,
               cache: Path) -> dict[tuple[int, str], dict]:
    shape, n_stars, seed = MOSAIC["shape"], args.n_stars, MOSAIC["seed"]
    results: dict[tuple[int, str], dict] = {}
    print(f"\n1. End to end, {shape[0]}x{shape[1]} images, n_stars={n_stars} "
          f"(workers={args.workers}; config: default + {' '.join(args.sets)})")
    print(f"{'N':>5} {'executor':<10}{'wall s':>8}{'setup':>7}{'detect':>8}{'align':>7}"
          f"{'peak MB':>9}{'growth':>8}{'aligned':>10}  {'= serial':<9}"
          f"{'err px max/median':>18}   load avg before -> after")
    for n in sizes:
        scene, directory = get_scene(cache, n, shape, n_stars, seed)
        for executor in executors:
            before = load()
            res = run(directory, executor, args.workers, args.sets)
            res["max_err"], res["median_err"] = aligned_errors(scene, res)
            res["load"] = (before, load())
            results[n, executor] = res
            serial = results.get((n, "serial"))
            same = "-" if serial is None else str(serial["images"] == res["images"])
            t = res["timings"]
            print(f"{n:>5} {executor:<10}{res['wall']:>8.1f}{t['setup']:>7.1f}{t['detect']:>8.1f}"
                  f"{t['relative']:>7.2f}{res['peak_mb']:>9.0f}"
                  f"{res['peak_mb'] - res['baseline_mb']:>8.0f}{res['ok']:>5}/{n:<4}  "
                  f"{same:<9}{res['max_err']:>9.3f}/{res['median_err']:<8.3f}   "
                  f"{before.split()[0]} -> {res['load'][1].split()[0]}", flush=True)
        del scene
    print("(setup: opening the image headers; detect: detection incl. starting the pool or "
          "cluster;\n align: result.timings['relative']; peak: max RSS of the main process; "
          "growth: peak - RSS before align();\n err: relative WCS error of the aligned images "
          "against the truth)")
    return results


def alignment_table(results: dict[tuple[int, str], dict], sizes: list[int],
                    executors: list[str]) -> None:
    print("\n2. Alignment time (result.timings['relative']) against N")
    print(f"{'N':>5}" + "".join(f"{e + ' s':>12}" for e in executors)
          + f"{'exponent':>10}{'t/(N log N)':>13}")
    first = None
    previous = None
    for n in sizes:
        times = [results[n, e]["timings"]["relative"] for e in executors]
        t = float(np.median(times))
        norm = t / (n * math.log(n))
        first = first or norm
        exponent = "" if previous is None else \
            f"{math.log(t / previous[1]) / math.log(n / previous[0]):.2f}"
        print(f"{n:>5}" + "".join(f"{x:>12.2f}" for x in times)
              + f"{exponent:>10}{norm / first:>13.2f}")
        previous = (n, t)
    print("(exponent: d log t / d log N of the median over executors between successive "
          "sizes; N log N alone gives ~1.1-1.2 here)")


def detection(args: argparse.Namespace, cache: Path, executors: list[str]) -> None:
    size, n = args.detect_size, args.detect_images
    print(f"\n3. Detection throughput: {n} images of {size}x{size} (default star density), "
          f"workers={args.workers}, best of {args.repeat} rounds")
    _, directory = get_scene(cache, n, (size, size), None, 5)
    rows = [("serial", "serial", False)]
    rows += [("processes", "processes", False)] if "processes" in executors else []
    if "dask" in executors:
        rows += [("dask (started by the run)", "dask", False),
                 ("dask (running, warm)", "dask", True)]
    best: dict[str, dict] = {}
    loads: dict[str, list[str]] = {label: [] for label, _, _ in rows}
    for _ in range(args.repeat):  # rounds alternate the executors: a busy spell hits all
        for label, executor, warm in rows:
            loads[label].append(load().split()[0])
            res = run(directory, executor, args.workers, args.sets, warm=warm)
            if label not in best or res["timings"]["detect"] < best[label]["timings"]["detect"]:
                best[label] = res
    print(f"{'executor':<28}{'detect s':>10}{'images/s':>10}{'x serial':>10}"
          f"{'s/image':>9}   load avg (1 min) before each round")
    serial_rate = n / best["serial"]["timings"]["detect"]
    for label, _, _ in rows:
        t = best[label]["timings"]
        rate = n / t["detect"]
        print(f"{label:<28}{t['detect']:>10.2f}{rate:>10.2f}{rate / serial_rate:>10.2f}"
              f"{t['tasks'] / n:>9.2f}   {' '.join(loads[label])}", flush=True)
    print("(started by the run: what execution.executor: dask does, incl. the LocalCluster "
          "start and the\n workers' first imports; running, warm: execution.address of a "
          "cluster that already ran the detector;\n s/image: wall time of one image's task "
          "on its worker -- it grows when other jobs take the cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,64,256,1024",
                        help="comma-separated mosaic sizes N (default 16,64,256,1024); "
                        "0: skip parts 1 and 2")
    parser.add_argument("--executors", default="serial,processes,dask")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-stars", type=int, default=MOSAIC["n_stars"],
                        help="expected stars per 512^2 image (default 300)")
    parser.add_argument("--set", action="append", default=[],
                        help="config override for every run, after the pinned "
                        f"{' '.join(BENCH_SETS)} (repeatable)")
    parser.add_argument("--cache", help="keep the simulated scenes in this directory")
    parser.add_argument("--pin", choices=["yes", "no"], default="yes",
                        help=f"pin {' '.join(BENCH_SETS)} in parts 1-3 (default yes)")
    parser.add_argument("--geometry-n", type=int, default=0,
                        help="part 4: tiles of the geometry comparison (0: skip)")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")],
                        default=[9], help="part 4: scene seeds (comma-separated)")
    parser.add_argument("--overlap", type=float, default=0.15, help="part 4: mosaic overlap")
    parser.add_argument("--pointing-error", type=float, nargs=2, default=[0.05, 0.5],
                        help="part 4: pointing error range (arcsec)")
    parser.add_argument("--pinned", default="shift,rshift,rscale",
                        help="part 4: the pinned geometries compared with the default")
    parser.add_argument("--detect-size", type=int, default=2048)
    parser.add_argument("--detect-images", type=int, default=32, help="0: skip part 3")
    parser.add_argument("--repeat", type=int, default=3, help="rounds in part 3 (best kept)")
    # internal: one measured run
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--executor", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    args.sets = [*(BENCH_SETS if args.pin == "yes" else []), *args.set]
    sizes = sorted(int(s) for s in args.sizes.split(","))
    executors = args.executors.split(",")
    if executors[0] != "serial":
        executors = ["serial", *[e for e in executors if e != "serial"]]
    print(f"cores: {os.cpu_count()}, load average at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="aligncore_bench_scale_") as tmp:
        cache = Path(args.cache) if args.cache else Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        if sizes != [0]:
            results = end_to_end(sizes, executors, args, cache)
            alignment_table(results, sizes, executors)
        if args.detect_images > 0:
            detection(args, cache, executors)
        if args.geometry_n > 0:
            geometries(args, cache)
    print(json.dumps({"load_average_end": load()}))


if __name__ == "__main__":
    main()
