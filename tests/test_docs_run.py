"""The documentation runs: every shell command of README.md and docs/quickstart.md, and the
examples of docs/plugins.md, executed as written (on small simulated inputs).

Substitutions, so that the commands run in seconds without the user's data:
``img1.fits img2.fits img3.fits`` and ``data/*.fits`` become simulated images,
``aligncore simulate`` makes 256x256 images. The ``pip install`` commands are
not run here; they must be exactly the ones CI runs (``.ci/run``).
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

import aligncore
from aligncore.cli import EXIT_ABSOLUTE_FAILED, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, main

REPO = Path(__file__).resolve().parents[1]
SHELL_DOCS = ("README.md", "docs/quickstart.md")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def code_blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of one language in a Markdown file, in order."""
    return [body for lang, body in _FENCE.findall(path.read_text()) if lang == language]


def script_commands(text: str) -> list[str]:
    """Command lines of a shell script (``a && b`` gives two commands; comments skipped)."""
    return [part.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
            for part in line.split("&&") if part.strip()]


def shell_commands(path: Path) -> list[str]:
    """Every command line of the ``bash`` blocks of a Markdown file."""
    return [c for block in code_blocks(path, "bash") for c in script_commands(block)]


def _ci_commands() -> set[str]:
    """The commands of .ci/run's QUICKSTART lines (each split at ``&&``)."""
    script = (REPO / ".ci" / "run").read_text()
    block = script.split("QUICKSTART=(", 1)[1].split("\n)", 1)[0]
    lines = re.findall(r"^\s*'(.+)'$", block, re.MULTILINE)
    return {part.strip() for line in lines for part in line.split("&&")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory with the repository's configs and simulated inputs the docs name."""
    work = tmp_path_factory.mktemp("docs")
    shutil.copytree(REPO / "configs", work / "configs")
    scene = aligncore.simulate("dither", n_images=3, seed=3, shape=(256, 256), n_stars=60,
                               pointing_error=(0.1, 1.0), outdir=work / "data")
    for index, path in enumerate(scene.paths, start=1):
        shutil.copy(path, work / f"img{index}.fits")
    return work


def _argv(command: str, work: Path) -> list[str]:
    """The arguments after ``aligncore``, with globs expanded and small simulations."""
    words = shlex.split(command)
    assert words[0] == "aligncore", command
    argv = []
    for word in words[1:]:
        matches = sorted(glob.glob(str(work / word))) if "*" in word else []
        argv += [str(Path(m).relative_to(work)) for m in matches] or [word]
    if argv[0] == "simulate":
        argv += ["--size", "256", "--n-stars", "60"]
    return argv


def _documented(path: str) -> list[str]:
    return [c for c in shell_commands(REPO / path) if not c.startswith(("pip ", "pytest"))]


@pytest.mark.parametrize("doc", SHELL_DOCS)
def test_install_commands_are_the_ones_ci_runs(doc):
    installs = [c for c in shell_commands(REPO / doc) if c.startswith(("pip ", "pytest"))]
    assert installs, f"no install command in {doc}"
    assert set(installs) <= _ci_commands(), f"{doc} shows commands CI does not run"


@pytest.mark.parametrize("doc, command", [(doc, c) for doc in SHELL_DOCS
                                          for c in _documented(doc)])
def test_documented_command_runs(doc, command, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    code = main(_argv(command, workdir))
    out, err = capsys.readouterr()
    assert code == EXIT_OK, f"{doc}: `{command}` exited {code}\n{err}"
    assert "Traceback" not in out + err


def test_documented_exit_codes_are_the_cli_ones():
    readme = (REPO / "README.md").read_text()
    quickstart = (REPO / "docs" / "quickstart.md").read_text()
    assert f"the exit code is then {EXIT_FAILED}" in readme
    assert f"Configuration errors exit with {EXIT_CONFIG}" in readme
    assert f"Exit code {EXIT_ABSOLUTE_FAILED} means" in readme
    listed = re.findall(r"^- (\d): ", quickstart.split("What the exit code means")[1], re.M)
    assert listed == [str(c) for c in (EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_ABSOLUTE_FAILED)]


# --- docs/plugins.md ------------------------------------------------------------------------
PLUGINS_DOC = REPO / "docs" / "plugins.md"


def _python_block(marker: str) -> str:
    return next(b for b in code_blocks(PLUGINS_DOC, "python") if marker in b)


def _yaml_block(marker: str) -> str:
    return next(b for b in code_blocks(PLUGINS_DOC, "yaml") if marker in b)


@pytest.fixture
def small_pointing_errors(tmp_path) -> list[str]:
    """Three images whose pointing errors are within the example matcher's 0.3" radius."""
    scene = aligncore.simulate("dither", n_images=3, seed=5, shape=(256, 256), n_stars=60,
                               pointing_error=(0.05, 0.15), outdir=tmp_path / "in")
    return [str(p) for p in scene.paths]


def test_nearest_matcher_example_from_a_plugins_file(tmp_path, small_pointing_errors, capsys):
    (tmp_path / "my_matcher.py").write_text(_python_block("class NearestMatcher"))
    config = tmp_path / "config.yaml"
    config.write_text(_yaml_block("plugins: [my_matcher.py]"))
    out = tmp_path / "out"
    assert main(["run", str(config), *small_pointing_errors, "-o", str(out), "-q"]) == EXIT_OK
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["matcher"] == {"plugin": "nearest", "params": {"radius": 0.3}}
    assert {image["status"] for image in report["images"]} == {"SUCCESS", "REFERENCE"}


def test_params_of_a_plugin_in_a_local_file(tmp_path, capsys):
    (tmp_path / "my_matcher.py").write_text(_python_block("class NearestMatcher"))
    assert main(["params", "nearest", "--plugin-file", str(tmp_path / "my_matcher.py")]) == 0
    out = capsys.readouterr().out
    assert "matcher plugin 'nearest' (file:my_matcher.py -)" in out
    assert "radius: float > 0 = 0.5" in out and "match radius, arcsec" in out


def test_stage_timer_example_prints_from_a_plugins_file(tmp_path, small_pointing_errors,
                                                        capsys):
    (tmp_path / "timer.py").write_text(_python_block("class StageTimer"))
    config = tmp_path / "config.yaml"
    config.write_text("plugins: [timer.py]\n")
    assert main(["run", str(config), *small_pointing_errors, "-o", str(tmp_path / "out"),
                 "-q"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert sum(bool(re.fullmatch(r"detector daofind: \d+\.\d{3} s", x)) for x in lines) == 3
    assert any(re.fullmatch(r"matcher hist2d: \d+\.\d{3} s", x) for x in lines)
    assert any(re.fullmatch(r"fitter affine: \d+\.\d{3} s", x) for x in lines)


def test_match_error_fails_the_image_with_its_message_and_keeps_its_wcs(tmp_path,
                                                                         small_pointing_errors):
    """docs/plugins.md: a MatchError gives FAILED with the plugin's message, WCS untouched."""
    source = _python_block("class NearestMatcher").replace(
        "        img = np.column_stack",
        "        raise aligncore.MatchError('catalogs do not overlap')\n"
        "        img = np.column_stack")
    (tmp_path / "my_matcher.py").write_text(source)
    config = tmp_path / "config.yaml"
    config.write_text(_yaml_block("plugins: [my_matcher.py]"))
    out = tmp_path / "out"
    assert main(["run", str(config), *small_pointing_errors, "-o", str(out), "-q"]) == 1
    report = json.loads((out / "report.json").read_text())
    failed = [image for image in report["images"] if image["status"] == "FAILED"]
    assert len(failed) == 2
    assert all(image["reason"] == "catalogs do not overlap" for image in failed)
    from astropy.io import fits

    for image in failed:
        before = fits.getheader(image["path"], "SCI")
        after = fits.getheader(out / image["name"], "SCI")
        assert after["ALNSTAT"] == "FAILED" and after["ALNREAS"] == "catalogs do not overlap"
        assert (after["CRVAL1"], after["CRVAL2"]) == (before["CRVAL1"], before["CRVAL2"])
