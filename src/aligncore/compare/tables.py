"""Tables and figures of a comparison: tidy results, summaries, Markdown, plots.

The results table has one row per run (dataset, case, seed, variant) and one
column per metric. Summaries group it by (dataset, case, variant), taking the
median and spread over seeds of the runs that succeeded, and the success rate
over all runs. Figures need matplotlib (the ``plots`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from aligncore.compare.metrics import agreement

__all__ = [
    "METRIC_COLUMNS",
    "add_agreement",
    "markdown_table",
    "plot_sweeps",
    "plot_times",
    "results_table",
    "summary_table",
]

METRIC_COLUMNS = (
    "rel_rms_mas", "rel_max_mas", "rel_rms_pix", "rel_max_pix",
    "abs_rms_mas", "abs_max_mas", "abs_rms_pix", "abs_max_pix",
    "nominal_rel_rms_mas", "nominal_abs_rms_mas", "noise_bound_mas", "noise_ratio",
    "n_images", "n_aligned", "n_failed", "n_sources", "n_matched", "n_used", "n_fallback",
    "fit_rmse_mas",
    "overlap_rms_mas", "agree_rms_mas", "refcat_rms_mas", "refcat_n",
    "t_detect", "t_relative", "t_absolute", "t_correct", "t_total", "t_wall", "peak_mem_mb",
)
"""Numeric columns of the results table, in order (after the identifying ones)."""

_INT_COLUMNS = {"n_images", "n_aligned", "n_failed", "n_sources", "n_matched", "n_used",
                "n_fallback", "refcat_n"}
_SUMMARY_MEDIANS = ("rel_rms_mas", "rel_max_mas", "abs_rms_mas", "noise_bound_mas",
                    "noise_ratio", "n_matched", "overlap_rms_mas", "agree_rms_mas",
                    "refcat_rms_mas", "t_total", "peak_mem_mb")
_STAGES = ("detect", "relative", "absolute", "correct")


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _sweep_value(value: Any) -> Any:
    """A pair ``(v, v)`` reads as ``v``; other pairs as ``'lo-hi'``."""
    if isinstance(value, list | tuple):
        if len(value) == 2 and value[0] == value[1]:
            return value[0]
        return "-".join(str(v) for v in value)
    return value


def _sweep_columns(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    names: list[str] = []
    for record in records:
        names.extend(k for k in record.get("sweep") or {} if k not in names)
    columns = {}
    for name in names:
        values = [_sweep_value((r.get("sweep") or {}).get(name)) for r in records]
        present = [v for v in values if v is not None]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            columns[name] = [_number(v) for v in values]
        else:
            columns[name] = ["" if v is None else str(v) for v in values]
    return columns


def add_agreement(records: Sequence[dict[str, Any]], baseline: str) -> None:
    """Set ``metrics.agree_rms_mas`` of every record: its relative distance to the
    baseline variant's solution of the same scene (NaN without a baseline run)."""
    base = {(r["dataset"], r["case"], r["seed"]): r for r in records
            if r["variant"] == baseline}
    for record in records:
        ref = base.get((record["dataset"], record["case"], record["seed"]))
        value = math.nan
        if ref is not None and record.get("grid") and ref.get("grid"):
            value = 0.0 if ref is record else agreement(ref["grid"], record["grid"])
        record["metrics"]["agree_rms_mas"] = value


def results_table(records: Sequence[Mapping[str, Any]]) -> Table:
    """The tidy table: one row per run."""
    table = Table()
    table["dataset"] = [r["dataset"] for r in records]
    table["case"] = [r["case"] for r in records]
    for name, values in _sweep_columns(records).items():
        table[name] = values
    table["seed"] = [-1 if r["seed"] is None else int(r["seed"]) for r in records]
    table["variant"] = [r["variant"] for r in records]
    table["status"] = [r["metrics"]["status"] for r in records]
    for name in METRIC_COLUMNS:
        values = [_number(r["metrics"].get(name)) for r in records]
        if name == "noise_ratio":
            rel = [_number(r["metrics"].get("rel_rms_mas")) for r in records]
            bound = [_number(r["metrics"].get("noise_bound_mas")) for r in records]
            values = [a / b if b > 0 else math.nan for a, b in zip(rel, bound, strict=True)]
        if name in _INT_COLUMNS:
            table[name] = [int(v) if math.isfinite(v) else -1 for v in values]
        else:
            table[name] = values
    table["reason"] = [str(r["metrics"].get("reason") or r.get("exception") or "")
                       for r in records]
    for name in METRIC_COLUMNS:
        if name.endswith("_mas"):
            table[name].unit = "mas"
        elif name.endswith("_pix"):
            table[name].unit = "pix"
        elif name.startswith("t_"):
            table[name].unit = "s"
    return table


def _spread(values: np.ndarray) -> float:
    """Half the 16-84 percentile range (sigma for a normal distribution)."""
    if values.size < 2:
        return math.nan
    lo, hi = np.percentile(values, [16.0, 84.0])
    return float(hi - lo) / 2.0


def summary_table(results: Table, keys: Sequence[str], carry: Sequence[str] = ()) -> Table:
    """Per group of ``keys``: run counts, success rate, median and spread of the metrics.

    Medians and spreads are over the runs whose status is ``success``; a group
    without one has NaN. ``carry`` columns (constant within a group, e.g. the
    swept parameters of a case) are copied from the group's first run.
    """
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, row in enumerate(results):
        groups.setdefault(tuple(row[k] for k in keys), []).append(index)
    rows = []
    for key, indices in groups.items():
        sub = results[indices]
        ok = sub[sub["status"] == "success"]
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        for name in carry:
            row[name] = sub[name][0]
        row["n_runs"] = len(sub)
        row["success_rate"] = len(ok) / len(sub)
        row["n_worse"] = int(np.count_nonzero(sub["status"] == "worse"))
        row["n_failed"] = int(np.count_nonzero(sub["status"] == "failed"))
        row["n_fallback"] = int(np.count_nonzero(np.asarray(sub["n_fallback"]) > 0))
        for name in _SUMMARY_MEDIANS:
            values = np.asarray(ok[name], dtype=float) if len(ok) else np.zeros(0)
            values = values[np.isfinite(values)]
            row[name] = float(np.median(values)) if values.size else math.nan
            if name in ("rel_rms_mas", "abs_rms_mas"):
                row[f"{name}_spread"] = _spread(values)
        rows.append(row)
    table = Table(rows=rows, names=list(rows[0])) if rows else Table()
    for name in table.colnames:
        if name in results.colnames and results[name].unit is not None:
            table[name].unit = results[name].unit
        if name.endswith("_spread"):
            table[name].unit = "mas"
    return table


def _format(value: Any, name: str) -> str:
    if isinstance(value, str | np.str_):
        return str(value) or "-"
    number = _number(value)
    if not math.isfinite(number):
        return "-"
    if name == "success_rate":
        return f"{100 * number:.0f}%"
    if name.startswith(("n_", "refcat_n", "seed")) or name in ("n_runs",):
        return "-" if number < 0 else f"{int(number)}"
    if name.startswith("t_"):
        return f"{number:.2f}"
    if name == "noise_ratio":
        return f"{number:.2f}"
    if abs(number) >= 100:
        return f"{number:.0f}"
    if abs(number) >= 10:
        return f"{number:.1f}"
    return f"{number:.2f}"


def markdown_table(table: Table, columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of ``columns`` (default: all); NaN shows as ``-``."""
    columns = [c for c in (columns or table.colnames) if c in table.colnames]
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if table[c].dtype.kind in "USO" else "---:" for c in columns)
             + "|"]
    for row in table:
        lines.append("| " + " | ".join(_format(row[c], c) for c in columns) + " |")
    return "\n".join(lines)


# --- figures -------------------------------------------------------------------------
def _figure(nrows: int, height: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, height), layout="constrained")
    axes = fig.subplots(nrows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, axes


def _xvalues(column: Any) -> tuple[np.ndarray, list[str] | None]:
    if column.dtype.kind in "fiu":
        return np.asarray(column, dtype=float), None
    labels = list(dict.fromkeys(str(v) for v in column))
    return np.array([labels.index(str(v)) for v in column], dtype=float), labels


def plot_sweeps(summary: Table, sweeps: Mapping[str, Sequence[str]], outdir: Path
                ) -> list[Path]:
    """``fig_<dataset>.png`` per dataset swept over one parameter: error (median and
    spread over seeds, with the centroid-noise bound dotted) and success rate."""
    written = []
    variants = list(dict.fromkeys(summary["variant"])) if len(summary) else []
    for dataset, params in sweeps.items():
        if len(params) != 1 or params[0] not in summary.colnames:
            continue
        param = params[0]
        sub = summary[summary["dataset"] == dataset]
        if len(sub) == 0:
            continue
        x_all, labels = _xvalues(sub[param])
        fig, (ax_err, ax_ok) = _figure(2, 6.0)
        logx = labels is None and np.all(x_all > 0) and x_all.max() / x_all.min() > 8
        for k, variant in enumerate(variants):
            rows = np.flatnonzero(sub["variant"] == variant)
            if rows.size == 0:
                continue
            order = rows[np.argsort(x_all[rows])]
            x = _dodge(x_all[order], k, len(variants), logx)
            style = {"color": f"C{k}", "marker": _MARKERS[k % len(_MARKERS)]}
            err = np.asarray(sub["rel_rms_mas"][order], float)
            spread = np.nan_to_num(np.asarray(sub["rel_rms_mas_spread"][order], float))
            ax_err.errorbar(x, err, yerr=spread, label=variant, capsize=3, **style)
            bound = np.asarray(sub["noise_bound_mas"][order], float)
            if np.any(np.isfinite(bound)):
                ax_err.plot(x, bound, ls=":", color=style["color"], alpha=0.7)
            ax_ok.plot(x, 100 * np.asarray(sub["success_rate"][order], float), label=variant,
                       **style)
        if param == "n_stars" and labels is None:
            _sqrt_reference(ax_err, sub, x_all)
        ax_err.set_ylabel("relative RMS error [mas]")
        ax_err.set_title(f"{dataset}: error vs {param} (dotted: centroid-noise bound)")
        ax_err.legend(fontsize="small")
        ax_ok.set_ylabel("success rate [%]")
        ax_ok.set_ylim(-5, 105)
        ax_ok.set_xlabel(param)
        if logx:
            ax_ok.set_xscale("log")
            if param == "n_stars":
                from matplotlib.ticker import FuncFormatter

                ax_err.set_yscale("log")
                plain = FuncFormatter(lambda value, _: f"{value:g}")
                ax_err.yaxis.set_major_formatter(plain)
                ax_err.yaxis.set_minor_formatter(plain)
        ticks = np.unique(x_all)
        ax_ok.set_xticks(ticks, labels if labels is not None else [f"{t:g}" for t in ticks])
        ax_ok.minorticks_off()
        path = outdir / f"fig_{dataset}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _dodge(x: np.ndarray, k: int, n: int, log: bool) -> np.ndarray:
    """Shift variant ``k`` of ``n`` sideways a little so that equal curves stay visible."""
    step = (k - (n - 1) / 2.0) * 0.025
    if log:
        return x * np.exp(step)
    span = float(np.ptp(x)) if x.size > 1 else 1.0
    return x + step * (span or 1.0)


def _sqrt_reference(ax: Any, sub: Table, x_all: np.ndarray) -> None:
    """A dashed ``err ~ 1/sqrt(N)`` line through the median of all variants' points."""
    err = np.asarray(sub["rel_rms_mas"], float)
    ok = np.isfinite(err) & (err > 0) & (x_all > 0)
    if np.count_nonzero(ok) < 2:
        return
    amplitude = float(np.exp(np.median(np.log(err[ok] * np.sqrt(x_all[ok])))))
    x = np.geomspace(x_all[ok].min(), x_all[ok].max(), 50)
    ax.plot(x, amplitude / np.sqrt(x), ls="--", color="0.4", label=r"$\propto 1/\sqrt{N}$")


def plot_times(results: Table, outdir: Path) -> Path | None:
    """``fig_time.png``: median time per stage and per variant (all runs), and peak memory."""
    if len(results) == 0:
        return None
    variants = list(dict.fromkeys(results["variant"]))
    fig, (ax,) = _figure(1, 1.2 + 0.5 * len(variants))
    left = np.zeros(len(variants))
    for k, stage in enumerate(_STAGES):
        widths = []
        for variant in variants:
            values = np.asarray(results[f"t_{stage}"][results["variant"] == variant], float)
            values = values[np.isfinite(values)]
            widths.append(float(np.median(values)) if values.size else 0.0)
        if any(widths):
            ax.barh(range(len(variants)), widths, left=left, color=f"C{k}", label=stage)
            left += np.array(widths)
    for i, variant in enumerate(variants):
        mem = np.asarray(results["peak_mem_mb"][results["variant"] == variant], float)
        mem = mem[np.isfinite(mem)]
        if mem.size:
            ax.annotate(f" {np.median(mem):.0f} MB", (left[i], i), va="center",
                        fontsize="small")
    ax.set_yticks(range(len(variants)), variants)
    ax.invert_yaxis()  # the first variant on top
    ax.set_xlabel("median time per run [s] (label: peak memory)")
    ax.set_xlim(0, 1.25 * max(left.max(), 1e-3))
    fig.legend(fontsize="small", ncols=len(_STAGES), loc="outside upper center")
    path = outdir / "fig_time.png"
    fig.savefig(path, dpi=110)
    return path
