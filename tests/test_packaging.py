"""What a stranger installs: the wheel carries every data file, the CI runs the README.

The wheel is built offline (``--no-build-isolation``, with the setuptools the
``test`` extra installs) from a copy of the sources, so the checkout stays clean.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = [REPO / "src" / "aligncore", *sorted((REPO / "plugins").glob("aligncore_*"))]
SKIPPED_SUFFIXES = {".py", ".pyc"}


def _data_files() -> list[str]:
    """Non-Python files of the packages, as wheel member names (``aligncore/data/x.yaml``)."""
    names = []
    for root in PACKAGE_ROOTS:
        for path in sorted(root.rglob("*")):
            if (path.is_file() and path.suffix not in SKIPPED_SUFFIXES
                    and "__pycache__" not in path.parts):
                names.append(f"{root.name}/{path.relative_to(root).as_posix()}")
    return names


TAG = "v1.2.3"
"""A release tag given to the copy the wheel is built from: the version must follow it."""


def _tag(source: Path, tag: str) -> None:
    """Make ``source`` a git repository whose one commit carries the release tag."""
    git = ["git", "-c", "user.name=aligncore tests", "-c", "user.email=tests@localhost",
           "-c", "commit.gpgsign=false", "-C", str(source)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "release"],
                 ["tag", "-a", tag, "-m", tag]):
        subprocess.run([*git, *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    source = tmp_path_factory.mktemp("source")
    for name in ("src", "plugins"):
        shutil.copytree(REPO / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    _tag(source, TAG)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(dist), str(source)],
                   check=True, capture_output=True, timeout=300)
    (path,) = dist.glob("aligncore-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


CHECKOUT_JUNK = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist",
                                       ".pytest_cache", ".ruff_cache", ".hypothesis", "*.tmp")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> list[str]:
    source = tmp_path_factory.mktemp("checkout") / "aligncore"
    shutil.copytree(REPO, source, ignore=CHECKOUT_JUNK)
    dist = tmp_path_factory.mktemp("sdist")
    code = f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"
    subprocess.run([sys.executable, "-c", code], cwd=source, check=True, capture_output=True,
                   timeout=300)
    (path,) = dist.glob("aligncore-*.tar.gz")
    with tarfile.open(path) as archive:
        return [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]


def test_sdist_is_a_complete_checkout(sdist):
    for name in ("README.md", "pyproject.toml", ".ci/run", "configs/default.yaml",
                 "configs/jwst.yaml", "src/aligncore/data/default.yaml", "src/aligncore/py.typed",
                 "docs/config.md", "tests/conftest.py", "tests/corpus/harness.py",
                 "tests/corpus/cases_yaml.py"):
        assert name in sdist, name
    assert not [n for n in sdist if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_contains_every_data_file(wheel):
    members = set(wheel.namelist())
    expected = _data_files()
    assert "aligncore/data/default.yaml" in expected
    assert "aligncore/py.typed" in expected
    missing = [name for name in expected if name not in members]
    assert not missing, f"package files missing from the wheel: {missing}"


def test_wheel_default_config_is_the_recommended_one(wheel):
    shipped = wheel.read("aligncore/data/default.yaml")
    assert shipped == (REPO / "configs" / "default.yaml").read_bytes()


def test_wheel_declares_py_typed_and_entry_points(wheel):
    assert wheel.read("aligncore/py.typed") == b""
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "aligncore = aligncore.cli:main" in text
    for plugin in ("daofind", "hist2d", "affine", "wcs"):
        assert re.search(rf"^{plugin} = aligncore_{plugin}$", text, re.MULTILINE), plugin


def test_code_reads_only_shipped_data_files():
    """Every ``Path(__file__)``-relative file the code names is a packaged data file."""
    shipped = set(_data_files())
    pattern = re.compile(r'Path\(__file__\)\.parent((?:\s*/\s*"[^"]+")+)')
    found = []
    for root in PACKAGE_ROOTS:
        for module in root.rglob("*.py"):
            for match in pattern.finditer(module.read_text()):
                parts = re.findall(r'"([^"]+)"', match.group(1))
                relative = module.parent.relative_to(root.parent).joinpath(*parts)
                found.append(relative.as_posix())
    assert "aligncore/data/default.yaml" in found
    assert set(found) <= shipped, f"read but not packaged: {sorted(set(found) - shipped)}"


def _quickstart_commands(text: str) -> list[str]:
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_ci_runs_the_readme_quickstart_word_for_word():
    readme = _quickstart_commands((REPO / "README.md").read_text())
    script = (REPO / ".ci" / "run").read_text()
    block = script.split("QUICKSTART=(", 1)[1].split("\n)", 1)[0]
    in_ci = re.findall(r"^\s*'(.+)'$", block, re.MULTILINE)
    assert readme == ["pip install -e . && aligncore demo", 'pip install -e ".[test]" && pytest']
    assert in_ci == readme
    assert "set -euo pipefail" in script


def test_version_comes_from_the_git_tag(wheel):
    name = Path(wheel.filename).name
    assert name.startswith(f"aligncore-{TAG[1:]}-"), name
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    assert f"\nVersion: {TAG[1:]}\n" in wheel.read(metadata).decode()


def test_cli_version_is_the_installed_distribution_version(capsys):
    from importlib.metadata import version

    from aligncore.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"aligncore {version('aligncore')}"
