"""What the command line prints: parameter types in words, plain-text plugin summaries,
one line per problem, log-friendly progress, a quiet end when stdout is closed."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

import aligncore
from aligncore._cli_text import LogProgress, bounds_in_words, describe_params, type_in_words
from aligncore.cli import main
from aligncore.registry import plain_text

REPO = Path(__file__).resolve().parents[1]


class _Params(aligncore.Params):
    radius: float = Field(0.5, gt=0)
    count: int = Field(3, ge=1, le=10)
    geometry: Literal["shift", "rshift"] = "rshift"
    searchrad: float | Literal["auto"] = Field(1.0, gt=0)
    fwhm: float | None = None
    pair: tuple[float, float] = (0.1, 3.0)
    sized: Annotated[int, Field(ge=2)] = 2


def _field_words(name: str) -> str:
    field = _Params.model_fields[name]
    return type_in_words(field.annotation, bounds_in_words(field.metadata))


@pytest.mark.parametrize("name, words", [
    ("radius", "float > 0"),
    ("count", "int >= 1 and <= 10"),
    ("geometry", "'shift' | 'rshift'"),
    ("searchrad", "float > 0 | 'auto'"),
    ("fwhm", "float or None"),
    ("pair", "tuple of float, float"),
    ("sized", "int >= 2"),
])
def test_parameter_types_in_words(name, words):
    assert _field_words(name) == words


def test_params_output_has_no_pydantic_reprs(capsys):
    assert main(["params", "hist2d"]) == 0
    out = capsys.readouterr().out
    assert "searchrad: float > 0 | 'auto' = 1.0" in out
    assert "Gt(" not in out and "Ge(" not in out and "annotated_types" not in out


def test_describe_params_of_a_plugin_without_parameters():
    class Bare(aligncore.Matcher):
        """A *bare* matcher using ``nothing``."""

        name = "bare"

        def match(self, image_cat, ref_cat):
            return aligncore.MatchResult([], [])

    info = aligncore.PluginInfo("matcher", "bare", Bare, "p", "dist", "1.0")
    assert describe_params(info) == ["matcher plugin 'bare' (dist 1.0)",
                                     "  A bare matcher using nothing.", "  (no parameters)"]


@pytest.mark.parametrize("text, plain", [
    ("Uses :func:`~photutils.detection.DAOStarFinder`.", "Uses photutils.detection.DAOStarFinder."),
    ("Set ``searchrad`` to `auto`.", "Set searchrad to auto."),
    ("A *fast* and **robust** fit.", "A fast and robust fit."),
    ("See :class:`the WCS <astropy.wcs.WCS>`.", "See the WCS."),
])
def test_plain_text_drops_rst_markup(text, plain):
    assert plain_text(text) == plain


def test_plugins_table_is_plain_text(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "hist2d" in out and "`" not in out and ":func:" not in out


def test_summary_joins_a_wrapped_first_paragraph():
    class Wrapped(aligncore.Fitter):
        """Fit with a summary that wraps
        onto a second line.

        Details that are not part of the summary.
        """

        name = "wrapped"

    info = aligncore.PluginInfo("fitter", "wrapped", Wrapped, "p", "d", "1")
    assert info.summary == "Fit with a summary that wraps onto a second line."


def test_log_progress_prints_one_line_per_item_with_its_name():
    stream = io.StringIO()
    progress = LogProgress(["a.fits", "b.fits", "c.fits"], stream=stream)
    assert list(progress([2, (0, "outcome")], "detect", 2)) == [2, (0, "outcome")]
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"detect 1/2 c\.fits \d+\.\d s", lines[0])
    assert re.fullmatch(r"detect 2/2 a\.fits \d+\.\d s", lines[1])


def test_run_progress_in_a_log_and_none_with_quiet(small_scene, tmp_path, capsys):
    config = str(REPO / "configs" / "default.yaml")
    paths = list(map(str, small_scene.paths))
    assert main(["run", config, *paths, "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split()[:3] for line in err] == [
        ["detect", f"{k}/3", f"img_00{k - 1}.fits"] for k in (1, 2, 3)]
    assert main(["run", config, *paths, "-o", str(tmp_path / "b"), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_each_warning_is_printed_once_as_one_line(small_scene, tmp_path, capsys):
    (tmp_path / "empty.py").write_text("import aligncore\n")
    config = tmp_path / "config.yaml"
    config.write_text((REPO / "configs" / "default.yaml").read_text() + "plugins: [empty.py]\n")
    with warnings.catch_warnings():
        assert main(["run", str(config), *map(str, small_scene.paths), "-o",
                     str(tmp_path / "out"), "-q"]) == 0
    err = capsys.readouterr().err
    assert err == f"warning: plugin file {tmp_path / 'empty.py'} registers nothing: it has no " \
                  "@aligncore.hookimpl function or class\n"


def test_a_closed_stdout_ends_quietly(tmp_path):
    """``aligncore hooks | head -0``: no BrokenPipeError traceback."""
    env = {**os.environ, "PYTHONUNBUFFERED": "0"}
    process = subprocess.Popen([sys.executable, "-c", "from aligncore.cli import main; "
                                "import sys; sys.exit(main(['hooks']))"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # before the command writes anything
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) in (0, 141)
    assert err == ""


def test_simulate_help_describes_scenarios_and_knobs(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    for words in ("dither", "random dithers", "mosaic", "sparse", "crowded", "--pointing-error",
                  "--n-stars", "--pixel-scale", "--fwhm", "--proper-motion", "--epoch",
                  "0.1\"/pixel"):
        assert words in out


def test_simulate_passes_the_knobs_on(tmp_path, capsys):
    assert main(["simulate", "sparse", "-o", str(tmp_path / "s"), "--n-images", "2",
                 "--size", "128", "--pixel-scale", "0.05", "--pointing-error", "0.2", "0.4",
                 "--proper-motion", "3", "--epoch", "2030"]) == 0
    scene = aligncore.Scene.load(tmp_path / "s")
    assert scene.params["pixel_scale"] == 0.05 and scene.params["epoch"] == 2030.0
    assert list(scene.params["pointing_error"]) == [0.2, 0.4]
    assert scene.params["proper_motion"] == 3.0


def test_compare_progress_in_a_log(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent("""\
        variants:
          - name: default
        metrics: {memory: false}
        datasets:
          - name: d
            simulate: {n_images: 2, shape: [256, 256], n_stars: 60, pointing_error: [0.1, 0.3]}
        """))
    assert main(["compare", str(spec), "-o", str(tmp_path / "out"), "--no-plots"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and re.fullmatch(r"run 1/1 d/\S+/seed \d+ default \d+\.\d s", err[0])
    assert json.loads((tmp_path / "out" / "spec.json").read_text())["variants"]


def test_a_broken_entry_point_is_reported_once_by_plugins(monkeypatch, capsys):
    import importlib.metadata

    real = importlib.metadata.entry_points

    def with_a_broken_one(**kwargs):
        found = list(real(**kwargs))
        if kwargs.get("group") == "aligncore":
            found.append(importlib.metadata.EntryPoint(
                name="broken", value="aligncore_no_such_module_xyz", group="aligncore"))
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", with_a_broken_one)
    assert main(["plugins"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: aligncore plugin broken (unknown) "
                                               "failed to import and is skipped")
