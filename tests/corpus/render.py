"""Render the corpus as Markdown tables, one per group, for docs/reliability.md.

Usage (from the repository root)::

    python tests/corpus/render.py            # print the tables
    python tests/corpus/render.py --write    # replace them in docs/reliability.md
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import corpus as corpus_package  # noqa: E402 (after making tests/ importable)
from corpus.harness import CASES, REPO, Case  # noqa: E402

__all__ = ["DOC", "END", "START", "load_cases", "render_table", "replace_table"]

DOC = REPO / "docs" / "reliability.md"
START = "<!-- corpus-table-start -->"
END = "<!-- corpus-table-end -->"


def load_cases() -> list[Case]:
    """Import every ``cases_*`` module of the corpus; returns all registered cases."""
    for module in pkgutil.iter_modules(corpus_package.__path__):
        if module.name.startswith("cases_"):
            importlib.import_module(f"corpus.{module.name}")
    return list(CASES)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(cases: Sequence[Case]) -> str:
    """Markdown: a heading and a table per group (groups sorted by name, cases by name)."""
    lines = [f"{len(cases)} cases."]
    for group in sorted({c.group for c in cases}):
        lines += ["", f"### {group}", "", "| case | input | expected outcome | exit |",
                  "|---|---|---|---|"]
        for item in sorted((c for c in cases if c.group == group), key=lambda c: c.name):
            lines.append(f"| `{item.name}` | {_cell(item.description)} | {_cell(item.outcome)} "
                         f"| {item.exit_code} |")
    return "\n".join(lines)


def replace_table(document: str, table: str) -> str:
    """``document`` with the text between the corpus markers replaced by ``table``."""
    head, start, rest = document.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"markers {START} ... {END} not found")
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: Sequence[str]) -> int:
    table = render_table(load_cases())
    if "--write" in argv:
        DOC.write_text(replace_table(DOC.read_text(), table))
        print(f"updated {DOC}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
