"""``report.html`` of ``aligncore compare``: the tables sortable, the figures embedded.

The same content as ``report.md`` in one self-contained file: the variants,
the per-variant and per-case summaries and every run as sortable tables
(failed runs marked), and the PNG figures inlined as base64.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from astropy.table import Table

from aligncore.compare.tables import _format
from aligncore.formats.common import atomic_path
from aligncore.htmlreport.markup import Column, esc, img_png, key_value_table, page, sortable_table

if TYPE_CHECKING:
    from aligncore.compare import CompareResult

__all__ = ["astropy_table_html", "write_compare_html"]

_RUN_CLASSES = {"failed": "failed", "worse": "failed", "exception": "failed"}


def _column(table: Table, name: str) -> Column:
    unit = table[name].unit
    tip = str(unit) if unit is not None else ""
    if table[name].dtype.kind in "fiub":
        return Column(name, tip=tip, formatter=lambda value, name=name: _format(value, name))
    return Column(name, tip=tip)


def astropy_table_html(table: Table, columns: Sequence[str], *, table_id: str = "") -> str:
    """A sortable HTML table of ``columns`` of an astropy table (runs not ``success`` marked).

    Rows whose ``status`` is ``failed`` or ``worse`` get the class ``failed``.
    """
    names = [c for c in columns if c in table.colnames]
    spec = [_column(table, name) for name in names]
    rows = [[row[name] if table[name].dtype.kind in "fiub" else str(row[name])
             for name in names] for row in table]
    classes = None
    if "status" in table.colnames:
        classes = [_RUN_CLASSES.get(str(s), "") for s in table["status"]]
    return sortable_table(spec, rows, row_classes=classes, table_id=table_id)


def write_compare_html(result: CompareResult, figures: Sequence[Path], path: Path,
                       columns: dict[str, Sequence[str]], versions: dict[str, str]) -> Path:
    """Write the comparison's ``report.html``.

    Parameters
    ----------
    result : CompareResult
        The finished comparison.
    figures : sequence of Path
        PNG figures to embed.
    path : Path
        Output file.
    columns : dict
        ``results``, ``summary`` and ``variants`` -> the columns to show.
    versions : dict
        Package versions of the run.

    Returns
    -------
    Path
    """
    comparison = result.comparison
    description = comparison.spec.get("description") or ""
    variants = {v.name: ", ".join(v.overrides) or "-" for v in comparison.variants}
    parts = [
        f"<h1>Comparison: {esc(comparison.name)}</h1>",
        f"<p>{esc(description.strip())}</p>" if description else "",
        f'<p class="muted">{len(comparison.variants)} variants x {len(comparison.cases)} '
        f"scenes = {comparison.n_runs} runs ({result.n_new} run now, {result.n_reused} "
        "reused). Click a header to sort; failed runs are red.</p>",
        "<h2>Variants</h2>", key_value_table(variants),
        "<h2>Per variant</h2>",
        astropy_table_html(result.variants, columns["variants"], table_id="variants"),
        "<h2>Per case</h2>",
        astropy_table_html(result.summary, columns["summary"], table_id="summary"),
        "<h2>Every run</h2>",
        astropy_table_html(result.results, columns["results"], table_id="results"),
    ]
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [f'<div class="fig">{img_png(p, p.stem)}</div>' for p in figures]
    parts += ["<h2>Versions</h2>", key_value_table(versions)]
    with atomic_path(path) as tmp:
        tmp.write_text(page(f"Comparison: {comparison.name}", "".join(parts)), encoding="utf-8")
    return path
