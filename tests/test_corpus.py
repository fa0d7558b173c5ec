"""Run every case of the bad-input corpus (tests/corpus) through the command line.

Each case must: return its exit code with its message and no traceback; leave
every input byte-identical with its mode; leave no temporary or partial file;
write nothing when the case says nothing is written.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import traceback

import pytest

import corpus as corpus_package
from aligncore.cli import main
from corpus.harness import CASES, Case, Snapshot, set_scene_root

for _module in pkgutil.iter_modules(corpus_package.__path__):
    if _module.name.startswith("cases_"):
        importlib.import_module(f"corpus.{_module.name}")


@pytest.fixture(scope="session", autouse=True)
def _corpus_scenes(tmp_path_factory):
    set_scene_root(tmp_path_factory.mktemp("corpus-scenes"))


def test_corpus_is_large_and_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 60, f"only {len(CASES)} corpus cases"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = case.build(work)
    before = Snapshot.take(work)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:
        pytest.fail(f"crashed:\n{traceback.format_exc()}")
    out, err = capsys.readouterr()
    after = Snapshot.take(work)
    assert "Traceback" not in err + out, err
    assert code == case.exit_code, f"exit {code}, expected {case.exit_code}\n{err}"
    if case.message is not None:
        assert re.search(case.message, err), f"{case.message!r} not in stderr:\n{err}"
    changed = [name for name in before.changed(after) if name not in case.modifies]
    assert not changed, f"inputs modified or removed: {changed}"
    added = before.added(after)
    leftovers = [name for name in added if name.endswith(".tmp") or "/." in f"/{name}"]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    if not case.writes:
        assert not added, f"files written although nothing should be: {added}"


def test_docs_table_is_up_to_date():
    from corpus.render import DOC, END, START, render_table

    text = DOC.read_text()
    current = text[text.index(START) + len(START):text.index(END)].strip()
    assert current == render_table(CASES).strip(), (
        "docs/reliability.md is out of date: run python tests/corpus/render.py --write")
