"""Project-level contracts: public API only in default plugins, hooks documented and tested."""

import ast
import inspect
import re
from pathlib import Path

import aligncore
from aligncore import hookspecs
from aligncore.hookspecs import render_reference

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = sorted(p for p in (ROOT / "plugins").iterdir() if p.is_dir() and
                     p.name.startswith("aligncore_"))


def hook_names():
    return [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
            if name.startswith("aligncore_")]


def test_default_plugins_use_only_public_api():
    offenders = []
    for directory in PLUGIN_DIRS:
        for path in directory.rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    if node.value.id == "aligncore":
                        names = [f"aligncore.{node.attr}"]
                for name in names:
                    parts = name.split(".")
                    private = [p for p in parts[1:] if p.startswith("_") and not p.endswith("__")]
                    if parts[0] == "aligncore" and private:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert offenders == []


def test_plugin_public_names_exist():
    # everything the default plugins import from aligncore is in aligncore.__all__
    used = set()
    for directory in PLUGIN_DIRS:
        for path in directory.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "aligncore":
                    used.update(a.name for a in node.names)
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id == "aligncore" and node.attr != "__version__"):
                    used.add(node.attr)
    assert used - set(aligncore.__all__) == set()


def test_every_hook_is_documented():
    reference = (ROOT / "docs" / "hooks.md").read_text()
    assert reference.strip() == render_reference().strip(), (
        "docs/hooks.md is stale: regenerate it with `aligncore hooks > docs/hooks.md`")
    guide = (ROOT / "docs" / "plugins.md").read_text()
    for name in hook_names():
        function = getattr(hookspecs, name)
        doc = inspect.getdoc(function) or ""
        assert "Returns" in doc, f"{name}: docstring lacks a Returns section"
        for parameter in inspect.signature(function).parameters:
            assert parameter in doc, f"{name}: parameter {parameter!r} undocumented"
        assert f"## `{name}`" in reference
        assert name in guide or name.startswith("aligncore_add_"), f"{name} not in plugins.md"


def test_every_hook_is_exercised_by_a_test():
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py")
                        if p.name != Path(__file__).name)
    for name in hook_names():
        assert re.search(rf"def {name}\b|hook\.{name}\b", sources), f"no test implements {name}"


def test_config_reference_is_current():
    from aligncore.config import render_config_reference

    current = (ROOT / "docs" / "config-reference.md").read_text()
    assert current.strip() == render_config_reference().strip(), (
        "docs/config-reference.md is stale: `aligncore config-reference > "
        "docs/config-reference.md`")
