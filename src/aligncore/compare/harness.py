"""Fair, reproducible comparisons of alignment algorithms: ``aligncore compare SPEC -o DIR``.

A spec (YAML) lists *variants* — a base config plus overrides, local plugin
files allowed — and *datasets* — simulated scenarios with seeds and parameter
sweeps, or directories of images with an optional truth or reference catalog.
Every variant runs on every scene; each run is scored against the truth where
there is one (relative and absolute error on a pixel grid, centroid-noise
bound, counts, status, time per stage, peak memory).

Outputs in DIR::

    spec.yaml              the exact spec
    spec.json              resolved variant configs, scenes, seeds, versions
    runs/.../<variant>.json one record per run (re-running skips them)
    results.ecsv / .md     the tidy table: one row per run
    summary.ecsv / .md     per dataset, case and variant: median and spread
                           over seeds, success rate
    variants.md            per dataset and variant
    report.md              all of the above, with the figures
    report.html            the same in one self-contained page: sortable tables,
                           figures embedded
    fig_<dataset>.png      error and success rate vs the swept parameter
    fig_time.png           time per stage and peak memory per variant
    fig_residuals_<dataset>.png
                           residual maps: each variant's relative error field
                           over every image's pixel grid (first seed, up to
                           four cases)

Example
-------
>>> from aligncore.compare import run_compare                 # doctest: +SKIP
>>> out = run_compare("configs/compare-matchers.yaml", "out", jobs=2)  # doctest: +SKIP
>>> print(out.markdown("variants"))                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from aligncore.compare.html import write_compare_html
from aligncore.compare.maps import plot_residuals
from aligncore.compare.metrics import residual_vectors
from aligncore.compare.runner import Task, execute, fingerprint, read_record, run_path
from aligncore.compare.spec import Case, CompareSpecError, Comparison, Variant, load_spec
from aligncore.compare.tables import (
    add_agreement,
    markdown_table,
    plot_sweeps,
    plot_times,
    results_table,
    summary_table,
)

__all__ = [
    "CompareResult",
    "CompareSpecError",
    "Comparison",
    "load_spec",
    "markdown_table",
    "residual_vectors",
    "run_compare",
]

SUMMARY_COLUMNS = ("dataset", "case", "variant", "n_runs", "success_rate", "n_worse",
                   "n_failed", "n_fallback", "rel_rms_mas", "rel_rms_mas_spread", "rel_max_mas",
                   "abs_rms_mas", "noise_bound_mas", "noise_ratio", "n_matched",
                   "overlap_rms_mas", "agree_rms_mas", "refcat_rms_mas", "t_total",
                   "peak_mem_mb")
RESULT_COLUMNS = ("dataset", "case", "seed", "variant", "status", "rel_rms_mas", "rel_max_mas",
                  "abs_rms_mas", "nominal_rel_rms_mas", "noise_bound_mas", "noise_ratio",
                  "n_matched", "n_used", "n_fallback", "overlap_rms_mas", "agree_rms_mas",
                  "refcat_rms_mas", "t_detect", "t_relative", "t_total", "peak_mem_mb")


@dataclass
class CompareResult:
    """Tables and files of a finished comparison.

    Attributes
    ----------
    comparison : Comparison
        The validated spec.
    results : Table
        One row per run.
    summary : Table
        Per dataset, case and variant.
    variants : Table
        Per dataset and variant.
    files : dict
        Output name -> path.
    n_new, n_reused : int
        Runs executed now, and finished runs found in the output directory.
    """

    comparison: Comparison
    results: Table
    summary: Table
    variants: Table
    files: dict[str, Path] = field(default_factory=dict)
    n_new: int = 0
    n_reused: int = 0

    def table(self, which: str) -> Table:
        """``results``, ``summary`` or ``variants``."""
        return {"results": self.results, "summary": self.summary,
                "variants": self.variants}[which]

    def columns(self, which: str = "summary") -> list[str]:
        """The columns of a table worth showing (those with at least one value)."""
        columns = RESULT_COLUMNS if which == "results" else SUMMARY_COLUMNS
        if which == "variants":
            columns = tuple(c for c in columns if c != "case")
        return _informative(self.table(which), columns)

    def markdown(self, which: str = "summary") -> str:
        """``results``, ``summary`` or ``variants`` as a Markdown table."""
        return markdown_table(self.table(which), self.columns(which))


_ZERO_HIDDEN = ("n_fallback",)
"""Count columns shown only when one of their values is not zero."""


def _informative(table: Table, columns: Sequence[str]) -> list[str]:
    """Columns that hold at least one value (all-NaN / all-empty ones are left out)."""
    keep = []
    for name in columns:
        if name not in table.colnames:
            continue
        column = table[name]
        if column.dtype.kind == "f" and not any(math.isfinite(v) for v in column):
            continue
        if name in _ZERO_HIDDEN and not np.any(np.asarray(column) > 0):
            continue
        keep.append(name)
    return keep


# --- planning ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Run:
    case: Case
    variant: Variant
    fingerprint: str
    path: Path


def _plan(comparison: Comparison, outdir: Path) -> list[_Run]:
    return [
        _Run(case, variant, fingerprint(variant, case, comparison.grid),
             run_path(outdir, case, variant.name))
        for case in comparison.cases for variant in comparison.variants
    ]


def _reusable(run: _Run, force: bool) -> dict[str, Any] | None:
    if force:
        return None
    record = read_record(run.path)
    if record is None or record.get("fingerprint") != run.fingerprint or "exception" in record:
        return None
    return record


def _tasks(pending: Sequence[_Run], comparison: Comparison, outdir: Path, jobs: int
           ) -> list[Task]:
    """One task per scene; a scene's variants are split when there are fewer scenes than jobs."""
    by_case: dict[str, list[_Run]] = {}
    for run in pending:
        by_case.setdefault(run.case.key, []).append(run)
    pieces = max(1, math.ceil(jobs / max(1, len(by_case))))
    tasks = []
    for runs in by_case.values():
        case = runs[0].case
        size = math.ceil(len(runs) / min(pieces, len(runs)))
        for start in range(0, len(runs), size):
            chunk = runs[start:start + size]
            tasks.append(Task(case, tuple(r.variant for r in chunk),
                              tuple(r.fingerprint for r in chunk), str(outdir),
                              comparison.grid, comparison.memory))
    return tasks


def _context() -> Any:
    """Worker processes are forked on Linux (no re-import of aligncore or of the calling
    script; the pool forks all workers before the progress bar starts its thread) and
    spawned elsewhere, where a calling script needs ``if __name__ == "__main__":``."""
    if sys.platform.startswith("linux"):
        return get_context("fork")
    return get_context("spawn")


def _execute(tasks: Sequence[Task], jobs: int, started: Callable[[], None]
             ) -> Iterator[list[dict[str, Any]]]:
    """Run the tasks (in worker processes when ``jobs > 1``); ``started()`` is called once
    every worker exists."""
    if jobs <= 1 or len(tasks) <= 1:
        started()
        for task in tasks:
            yield execute(task)
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)),
                             mp_context=_context()) as pool:
        futures = [pool.submit(execute, task) for task in tasks]
        started()
        for future in as_completed(futures):
            yield future.result()


class _Progress:
    """A tqdm bar over the runs, created on demand; or with ``enabled="log"`` one line per
    finished run (``run 3/16 dither/default/seed 1 hist2d 2.1 s``) for a log file."""

    def __init__(self, enabled: bool | str, total: int, initial: int) -> None:
        self.enabled, self.total, self.initial = enabled, total, initial
        self.bar: Any = None
        self.count, self.last = initial, time.perf_counter()

    def start(self) -> None:
        if self.enabled and self.enabled != "log" and self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.initial, desc="compare", unit="run")

    def update(self, records: list[dict[str, Any]]) -> None:
        if self.bar is not None:
            self.bar.update(len(records))
        if self.enabled != "log":
            return
        now = time.perf_counter()
        for record in records:
            self.count += 1
            print(f"run {self.count}/{self.total} {record['dataset']}/{record['case']}/seed "
                  f"{record['seed']} {record['variant']} {(now - self.last) / len(records):.1f} s",
                  file=sys.stderr, flush=True)
        self.last = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- outputs -------------------------------------------------------------------------
def _write_spec(comparison: Comparison, outdir: Path, n_new: int, n_reused: int
                ) -> tuple[Path, dict[str, Any]]:
    from aligncore.registry import build_registry
    from aligncore.report import versions

    (outdir / "spec.yaml").write_text(comparison.text)
    doc = {
        "name": comparison.name,
        "spec_file": str(comparison.source),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(build_registry()),
        "spec": comparison.spec,
        "variants": [
            {"name": v.name, "config_file": v.config_path, "overrides": list(v.overrides),
             "plugin_files": v.plugin_hashes, "config": v.config}
            for v in comparison.variants
        ],
        "scenes": [{"dataset": c.dataset, "case": c.label, "seed": c.seed, "params": c.params}
                   for c in comparison.cases],
        "runs": {"total": comparison.n_runs, "new": n_new, "reused": n_reused},
    }
    path = outdir / "spec.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    return path, doc


def _write_tables(result: CompareResult, outdir: Path) -> None:
    for name, table in (("results", result.results), ("summary", result.summary),
                        ("variants", result.variants)):
        if len(table):
            path = outdir / f"{name}.ecsv"
            table.write(path, format="ascii.ecsv", overwrite=True)
            result.files[f"{name}.ecsv"] = path
        path = outdir / f"{name}.md"
        path.write_text(result.markdown(name) + "\n")
        result.files[f"{name}.md"] = path


def _write_figures(result: CompareResult, records: Sequence[dict[str, Any]], outdir: Path
                   ) -> list[Path]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    paths = plot_sweeps(result.summary, result.comparison.sweeps, outdir)
    time_figure = plot_times(result.results, outdir)
    if time_figure is not None:
        paths.append(time_figure)
    paths += plot_residuals(records, outdir)
    for path in paths:
        result.files[path.name] = path
    return paths


def _reproduce(comparison: Comparison, outdir: Path, versions: dict[str, str]) -> list[str]:
    seeds = {}
    for case in comparison.cases:
        if case.seed is not None:
            seeds.setdefault(case.dataset, []).append(case.seed)
    lines = [
        "## Reproduce",
        "",
        f"The spec `{comparison.source.name}` (copied to `spec.yaml`; the config and plugin "
        "files it names are relative to it), from its directory:",
        "",
        "```bash",
        f"aligncore compare {comparison.source.name} -o {outdir}",
        "```",
        "",
        "Stored runs whose fingerprint (resolved config, plugin file contents, scene "
        "parameters and seed) is unchanged are reused; `--force` runs everything again.",
        "",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "- seeds: " + ("; ".join(f"{d}: {', '.join(map(str, dict.fromkeys(s)))}"
                                 for d, s in seeds.items()) or "-"),
    ]
    for variant in comparison.variants:
        for path, digest in variant.plugin_hashes.items():
            lines.append(f"- {variant.name}: plugin file `{Path(path).name}` "
                         f"(SHA-256 {digest[:16]}...)")
    return [*lines, ""]


def _report(result: CompareResult, figures: Sequence[Path], reproduce: Sequence[str]) -> str:
    comparison = result.comparison
    spec = comparison.spec
    lines = [f"# Comparison: {comparison.name}", ""]
    if spec.get("description"):
        lines += [spec["description"].strip(), ""]
    seeds = sorted({c.seed for c in comparison.cases if c.seed is not None})
    lines += [
        f"{len(comparison.variants)} variants x {len(comparison.cases)} scenes = "
        f"{comparison.n_runs} runs ({result.n_new} run now, {result.n_reused} reused); "
        f"seeds {', '.join(map(str, seeds)) or '-'}. Spec: `spec.yaml`; resolved configs and "
        "versions: `spec.json`; every number: `results.ecsv`.",
        "",
        "## Variants",
        "",
        "| variant | config | overrides |",
        "|---|---|---|",
    ]
    for variant in comparison.variants:
        overrides = [o for o in variant.overrides if not o.startswith("plugins=")]
        plugins = ", ".join(Path(p).name for p in variant.plugin_hashes)
        text = "<br>".join(f"`{o}`" for o in overrides) or "-"
        if plugins:
            text += f"<br>plugins: {plugins}"
        config = Path(variant.config_path).name if variant.config_path else "default"
        lines.append(f"| {variant.name} | {config} | {text} |")
    lines += ["", "## Per variant", "", result.markdown("variants"), "",
              "## Per case (median and spread over seeds of the successful runs)", "",
              result.markdown("summary"), ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.name})" for p in figures]
        lines.append("")
    lines += [
        "Columns: `rel_*`/`abs_*` error against the truth on a pixel grid (relative: after "
        "removing the best common affine transform); `noise_bound_mas` centroid-noise limit "
        "of the fits and `noise_ratio` = rel_rms / bound; `agree_rms_mas` relative distance "
        f"to the `{comparison.baseline}` solution; status `worse`: an aligned image ended "
        "farther from the truth than its nominal WCS; `n_fallback` (shown when not zero): runs "
        "in which a fallback matcher (`align.fallback`) aligned an image.",
        "",
        *reproduce,
    ]
    return "\n".join(lines)


# --- the comparison ------------------------------------------------------------------
def run_compare(
    spec: Comparison | str | Path,
    outdir: str | Path,
    *,
    jobs: int = 1,
    force: bool = False,
    progress: bool | str = False,
    plots: bool = True,
) -> CompareResult:
    """Run every variant of a spec on every scene and write the tables.

    Parameters
    ----------
    spec : Comparison or path
        A validated spec (:func:`load_spec`) or its YAML file.
    outdir : path
        Output directory (created); runs already stored there with the same
        fingerprint are reused.
    jobs : int
        Worker processes (1: run in this process).
    force : bool
        Run everything again.
    progress : bool or "log"
        Show a progress bar over the runs; ``"log"``: one line per finished run
        on stderr instead (for a log file).
    plots : bool
        Write the figures (needs matplotlib).

    Returns
    -------
    CompareResult

    Raises
    ------
    CompareSpecError
        The spec has problems (all of them are listed, with file:line).
    """
    comparison = spec if isinstance(spec, Comparison) else load_spec(spec)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    runs = _plan(comparison, outdir)
    done: dict[Path, dict[str, Any]] = {}
    for run in runs:
        record = _reusable(run, force)
        if record is not None:
            done[run.path] = record
    pending = [run for run in runs if run.path not in done]
    n_reused = len(done)
    by_id = {(r.case.dataset, r.case.label, r.case.seed, r.variant.name): r.path
             for r in pending}
    bar = _Progress(progress, len(runs), n_reused)
    try:
        for records in _execute(_tasks(pending, comparison, outdir, jobs), jobs, bar.start):
            for record in records:
                ident = (record["dataset"], record["case"], record["seed"], record["variant"])
                done[by_id[ident]] = record
            bar.update(records)
    finally:
        bar.close()
    return _finish(comparison, outdir, [done[run.path] for run in runs], len(pending),
                   n_reused, plots)


def _finish(comparison: Comparison, outdir: Path, records: list[dict[str, Any]], n_new: int,
            n_reused: int, plots: bool) -> CompareResult:
    add_agreement(records, comparison.baseline)
    results = results_table(records)
    sweep_columns = [c for c in results.colnames
                     if any(c in params for params in comparison.sweeps.values())]
    result = CompareResult(
        comparison=comparison,
        results=results,
        summary=summary_table(results, ("dataset", "case", "variant"), sweep_columns),
        variants=summary_table(results, ("dataset", "variant")),
        n_new=n_new,
        n_reused=n_reused,
    )
    result.files["spec.json"], doc = _write_spec(comparison, outdir, n_new, n_reused)
    result.files["spec.yaml"] = outdir / "spec.yaml"
    _write_tables(result, outdir)
    figures = _write_figures(result, records, outdir) if plots else []
    report = outdir / "report.md"
    report.write_text(_report(result, figures, _reproduce(comparison, outdir, doc["versions"])))
    result.files["report.md"] = report
    result.files["report.html"] = write_compare_html(
        result, figures, outdir / "report.html",
        {which: result.columns(which) for which in ("results", "summary", "variants")},
        doc["versions"])
    return result

