"""Self-contained HTML pages: a page shell with inline CSS and JavaScript, sortable tables.

Everything a page needs is inside the one file (no CDN, no network), so a
report opens from a laptop, an e-mail attachment or a CI artifact alike.
Used by the run report (:mod:`aligncore.htmlreport.page`) and the comparison
report (:mod:`aligncore.compare.html`).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Column", "details", "esc", "img_png", "key_value_table", "page", "sortable_table"]

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;
max-width:1400px;padding:0 1em;color:#1b1f23;background:#fff}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.6em}h3{font-size:1.05em;margin:.8em 0 .3em}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #eee;
text-align:right;white-space:nowrap}td.t,th.t{text-align:left}
table.sortable th{cursor:pointer;background:#f4f6f8;position:sticky;top:0;user-select:none}
table.sortable th:after{content:" \\2195";color:#aaa}
table.sortable th.asc:after{content:" \\25B2";color:#333}
table.sortable th.desc:after{content:" \\25BC";color:#333}
.scroll{max-height:70vh;overflow:auto;border:1px solid #ddd;display:inline-block;max-width:100%}
tr.failed td{background:#fde8e8}tr.reference td{background:#e8f0fd}tr.skipped td{color:#888}
tr:target td{outline:2px solid #f0a020}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #ddd;border-radius:6px;
padding:.5em .9em;min-width:8em}.card b{display:block;font-size:1.5em}
.card.bad b{color:#c0392b}.card.good b{color:#1e8449}
.figs{display:flex;flex-wrap:wrap;gap:1em}.fig{border:1px solid #eee;padding:.4em}
.fig p{margin:.2em 0;font-size:12px;color:#555;max-width:520px}
pre{background:#f6f8fa;padding:.6em;overflow:auto;max-height:40em;font-size:12px}
details>summary{cursor:pointer;font-weight:600;margin:.4em 0}
svg text{font:11px sans-serif}.muted{color:#666}.legend span{margin-right:1em}
.swatch{display:inline-block;width:.9em;height:.9em;vertical-align:middle;margin-right:.3em;
border:1px solid #555}
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function(table){
  var heads=table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads,function(th,col){
    th.addEventListener("click",function(){
      var asc=!th.classList.contains("asc");
      Array.prototype.forEach.call(heads,function(h){h.classList.remove("asc","desc");});
      th.classList.add(asc?"asc":"desc");
      var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      var num=th.dataset.type==="num";
      rows.sort(function(a,b){
        var x=a.cells[col].dataset.v,y=b.cells[col].dataset.v;
        if(x===undefined){x=a.cells[col].textContent;}
        if(y===undefined){y=b.cells[col].textContent;}
        if(num){x=x===""?NaN:+x;y=y===""?NaN:+y;
          if(isNaN(x)&&isNaN(y)){return 0;}if(isNaN(x)){return 1;}if(isNaN(y)){return -1;}
          return asc?x-y:y-x;}
        return asc?x.localeCompare(y):y.localeCompare(x);
      });
      var frag=document.createDocumentFragment();
      rows.forEach(function(r){frag.appendChild(r);});
      body.appendChild(frag);
    });
  });
});
"""


def esc(value: Any) -> str:
    """HTML-escape ``str(value)`` (quotes included)."""
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Column:
    """One column of a sortable table.

    Parameters
    ----------
    title : str
        Header text.
    fmt : str
        Format spec for numbers (e.g. ``".3f"``); empty for text columns.
    tip : str
        Header tooltip (units, meaning).
    formatter : callable, optional
        ``formatter(number) -> str`` for numbers, instead of ``fmt``.
    """

    title: str
    fmt: str = ""
    tip: str = ""
    formatter: Callable[[float], str] | None = None

    @property
    def numeric(self) -> bool:
        """True when the column holds numbers (sorted numerically)."""
        return bool(self.fmt) or self.formatter is not None

    def text(self, number: float) -> str:
        """A finite number as shown in the table."""
        return self.formatter(number) if self.formatter else format(number, self.fmt)


def _cell(value: Any, column: Column) -> str:
    if column.numeric:
        number = _as_float(value)
        if number is None or not math.isfinite(number):
            return '<td data-v="">-</td>'
        return f'<td data-v="{number!r}">{esc(column.text(number))}</td>'
    return f'<td class="t">{esc("" if value is None else value)}</td>'


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool | str):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def sortable_table(columns: Sequence[Column], rows: Sequence[Sequence[Any]], *,
                   row_classes: Sequence[str] | None = None,
                   row_ids: Sequence[str] | None = None, table_id: str = "") -> str:
    """A table whose columns sort on a click (numbers numerically, missing values last).

    Parameters
    ----------
    columns : sequence of Column
        Header and formatting per column.
    rows : sequence of sequences
        Cell values (numbers, strings or None), one sequence per row.
    row_classes, row_ids : sequence of str, optional
        ``class`` and ``id`` attribute of each row (e.g. ``failed``).
    table_id : str
        ``id`` of the table element.
    """
    head = "".join(
        f'<th class="{"" if c.numeric else "t"}" data-type="{"num" if c.numeric else "text"}"'
        f'{f" title={_quote(c.tip)}" if c.tip else ""}>{esc(c.title)}</th>'
        for c in columns)
    body = []
    for k, row in enumerate(rows):
        attrs = ""
        if row_classes is not None and row_classes[k]:
            attrs += f' class="{esc(row_classes[k])}"'
        if row_ids is not None:
            attrs += f' id="{esc(row_ids[k])}"'
        cells = "".join(_cell(v, c) for v, c in zip(row, columns, strict=True))
        body.append(f"<tr{attrs}>{cells}</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (f'<div class="scroll"><table class="sortable"{ident}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _quote(text: str) -> str:
    return f'"{esc(text)}"'


def key_value_table(items: Mapping[str, Any]) -> str:
    """A two-column table of names and values."""
    rows = "".join(f'<tr><td class="t">{esc(k)}</td><td class="t">{esc(v)}</td></tr>'
                   for k, v in items.items())
    return f"<table>{rows}</table>"


def details(summary: str, body: str, *, open_: bool = False) -> str:
    """A collapsible section."""
    return f'<details{" open" if open_ else ""}><summary>{esc(summary)}</summary>{body}</details>'


def img_png(path: str | Path, alt: str) -> str:
    """An ``<img>`` with the PNG file embedded as base64."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<img alt="{esc(alt)}" style="max-width:100%" '
            f'src="data:image/png;base64,{data}">')


def page(title: str, body: str) -> str:
    """A complete HTML document with the shared style and the table-sorting script."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
            f"<body>{body}<script>{_JS}</script></body></html>\n")
