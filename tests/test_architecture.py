"""The architecture as tests: import-linter contracts, a cheap ``import aligncore``.

The layering (docs/architecture.md) is declared in ``[tool.importlinter]`` of
pyproject.toml; ``lint-imports`` checks it here and in .ci/run. What ``import
aligncore`` and ``aligncore --help`` load is checked in fresh interpreters (the test
process has imported everything already). Speed itself is measured in
benchmarks/bench_cli.py, never here.
"""

from __future__ import annotations

import json
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest

import aligncore

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = {"aligncore.stages", "aligncore.catalogs", "aligncore.refcat",
                  "aligncore.geometry", "aligncore.global_solver", "aligncore.formats",
                  "aligncore.distortion", "aligncore.distortion_write"}
"""Modules a plugin may import besides the ``aligncore`` package itself: the stage
helpers, the reference-catalog helpers, the table of fit geometries and the global
least-squares solve that solver plugins build on, and the image-format helpers (with the
readers and writers of aligncore's own formats) that format plugins build on, and the
distortion correction (`aligncore.distortion`) that distortion refiners and writers share."""

# What `import aligncore` must leave unimported: heavy dependencies, the lab, the plugins.
NOT_ON_IMPORT = (
    "astropy.coordinates",
    "scipy.stats",
    "matplotlib",
    "aligncore.sim",
    "aligncore.compare",
    "aligncore.plots",
    "aligncore.jwst",
    "aligncore.htmlreport",
    "aligncore_daofind",
    "aligncore_hist2d",
)


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _loaded(code: str, more: Sequence[str] = ()) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which of `NOT_ON_IMPORT` (and more) it loaded."""
    probe = ("import json, sys\n" + code + "\nprint(json.dumps({p: any(m == p or "
             "m.startswith(p + '.') for m in sys.modules) for p in NAMES}))")
    names = [*NOT_ON_IMPORT, "numpy", "astropy", "pydantic", "aligncore.pipeline", *more]
    out = subprocess.run([sys.executable, "-c", f"NAMES = {names!r}\n{probe}"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_linter_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.importorskip("importlinter")  # skips: import-linter is not installed
        lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("lint-imports is not on PATH")
    result = subprocess.run([lint], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_private_module_is_forbidden_to_plugins() -> None:
    """A new module of aligncore is private (forbidden to plugins) until declared public."""
    forbidden = set(_contracts()["plugins-public-api"]["forbidden_modules"])
    modules = {f"aligncore.{info.name}" for info in pkgutil.iter_modules(aligncore.__path__)}
    assert forbidden == modules - PUBLIC_MODULES, (
        "pyproject.toml [tool.importlinter] plugins-public-api: forbidden_modules must list "
        f"every private module; add {sorted(modules - PUBLIC_MODULES - forbidden)}, remove "
        f"{sorted(forbidden - modules)}, or declare a module public here and in "
        "docs/architecture.md")
    assert {"aligncore.stages", "aligncore.catalogs"} <= modules


def test_every_plugin_package_is_a_root_package() -> None:
    plugins = {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()}
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    hint = "add every plugin package to the plugin lists of [tool.importlinter] in pyproject.toml"
    assert plugins <= set(config["root_packages"]), hint
    for contract in ("core-without-plugins", "plugins-independent", "plugins-public-api"):
        listed = _contracts()[contract]
        listed = listed.get("protected_modules") or listed.get("modules") or listed[
            "source_modules"]
        assert plugins == set(listed), f"{contract}: {hint}"


def test_import_aligncore_loads_no_heavy_module_no_lab_no_plugin() -> None:
    loaded = _loaded("import aligncore")
    assert not any(loaded[name] for name in NOT_ON_IMPORT), loaded
    assert not loaded["astropy"] and not loaded["pydantic"] and not loaded["numpy"], loaded


def test_public_names_load_on_first_use() -> None:
    loaded = _loaded("import aligncore\nassert aligncore.Detector and aligncore.hookimpl")
    assert not any(loaded[name] for name in NOT_ON_IMPORT), loaded
    loaded = _loaded("import aligncore\nassert callable(aligncore.simulate) and aligncore.Scene")
    assert loaded["aligncore.sim"] and not loaded["matplotlib"]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["run", "--help"]])
def test_cli_help_and_version_import_no_pipeline(argv: list[str]) -> None:
    loaded = _loaded("from aligncore.cli import main\ntry:\n    main(" + repr(argv) + ")\n"
                     "except SystemExit:\n    pass")
    assert not loaded["aligncore.pipeline"] and not loaded["astropy"], loaded
    assert not loaded["numpy"] and not loaded["pydantic"], loaded


def test_version_comes_from_the_installed_metadata() -> None:
    from importlib.metadata import version

    assert aligncore.__version__ == version("aligncore")
    out = subprocess.run([sys.executable, "-m", "aligncore.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"aligncore {aligncore.__version__}"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aligncore.nope  # noqa: B018
    assert {"align", "simulate", "open_image", "Detector"} <= set(dir(aligncore))


def test_a_fits_run_imports_no_gwcs(tmp_path: Path) -> None:
    """Opening a FITS image and building the stages leave gwcs unimported: the ASDF format
    claims files by suffix, the GWCS corrector imports gwcs when it corrects. (The asdf
    library itself comes with astropy.table's I/O registry, through asdf-astropy.)"""
    scene = aligncore.simulate("dither", n_images=1, shape=(64, 64), n_stars=5, seed=1,
                               outdir=tmp_path)
    code = ("import aligncore\nfrom aligncore.registry import build_registry\n"
            f"image = aligncore.open_image({str(scene.paths[0])!r})\n"
            "registry = build_registry()\n"
            "assert registry.get('corrector', 'gwcs').accepts(image.wcs) is False")
    loaded = _loaded(code, ["gwcs", "aligncore.formats.asdf", "aligncore_wcs"])
    assert loaded["aligncore_wcs"], loaded
    assert not loaded["gwcs"] and not loaded["aligncore.formats.asdf"], loaded
