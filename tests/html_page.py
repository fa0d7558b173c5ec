"""Parse an HTML report in tests: table rows by table id, SVG footprints, external links."""

from __future__ import annotations

from html.parser import HTMLParser

__all__ = ["parse"]


class _Page(HTMLParser):
    """Rows of the ``table_id`` table, SVG polygons, external references, element ids."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.images: list[str] = []
        self.rows: list[dict[str, str]] = []
        self.cells: list[list[str]] = []
        self.polygons: list[dict[str, str]] = []
        self.external: list[str] = []
        self.ids: set[str] = set()
        self._table = ""
        self._in_cell = False
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self._table = a.get("id", "")
        if tag == "tbody":
            self._in_body = True
        if tag == "tr" and self._table == self.table_id and self._in_body:
            self.rows.append(a)
            self.cells.append([])
        if tag == "td" and self._table == self.table_id and self._in_body and self.cells:
            self._in_cell = True
            self.cells[-1].append("")
        if tag == "polygon" and "fp" in a.get("class", ""):
            self.polygons.append(a)
        for key in ("src", "href"):
            value = a.get(key, "")
            if value.startswith(("http:", "https:", "//")):
                self.external.append(value)
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "link":
            self.external.append(a.get("href", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = ""
        if tag == "tbody":
            self._in_body = False
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells[-1][-1] += data


def parse(text: str, table_id: str = "images") -> _Page:
    """Parse a page; ``rows`` and ``cells`` are those of the table with ``table_id``."""
    parser = _Page(table_id)
    parser.feed(text)
    return parser
