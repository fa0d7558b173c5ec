"""Files as users expect: modes, in-place, SIGTERM, one run per output directory,
output paths confined to the output directory, local plugin files refused on request."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import aligncore
from aligncore.cli import main
from aligncore.config import ConfigError, load_config
from aligncore.filelock import LOCK_NAME, OutputDirBusy, output_dir_lock, pid_alive
from aligncore.formats.common import output_mode
from aligncore.outputs import output_dir_problems

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Two small overlapping FITS images (read-only: copy to modify)."""
    return aligncore.simulate("dither", n_images=2, seed=3, shape=(256, 256), n_stars=60,
                              pointing_error=(0.1, 1.0), outdir=tmp_path_factory.mktemp("s"))


@pytest.fixture
def inputs(scene, tmp_path) -> list[Path]:
    target = tmp_path / "in"
    target.mkdir()
    return [Path(_copy(p, target / p.name)) for p in scene.paths]


def _copy(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes())
    return target


def _digests(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test; restored afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


# --- modes -----------------------------------------------------------------------------
@pytest.mark.parametrize(("mask", "expected"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_outputs_get_the_mode_open_would_give(inputs, tmp_path, umask, mask, expected):
    umask(mask)
    out = tmp_path / "out"
    assert main(["run", DEFAULT, *map(str, inputs), "-o", str(out), "-q"]) == 0
    written = sorted(out.iterdir())
    assert {p.name for p in written} >= {"report.json", *(p.name for p in inputs)}
    assert {p.name: _mode(p) for p in written} == {p.name: expected for p in written}


def test_in_place_keeps_the_inputs_mode(inputs, tmp_path, umask):
    umask(0o077)
    for path in inputs:
        path.chmod(0o664)
    before = _digests(inputs)
    assert main(["run", DEFAULT, *map(str, inputs), "-o", str(tmp_path / "rep"), "--in-place",
                 "-q"]) == 0
    assert _digests(inputs) != before  # updated ...
    assert [_mode(p) for p in inputs] == [0o664, 0o664]  # ... with their mode
    assert not list(inputs[0].parent.glob("*.tmp"))


def test_output_mode_of_new_and_existing_files(tmp_path, umask):
    umask(0o027)
    existing = tmp_path / "old.txt"
    existing.write_text("x")
    existing.chmod(0o604)
    assert output_mode(existing) == 0o604
    assert output_mode(tmp_path / "new.txt") == 0o640


# --- SIGTERM ---------------------------------------------------------------------------
SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from astropy.io import fits
    import aligncore.cli

    def slow_writeto(self, name, *args, **kwargs):
        with open(name, "wb") as stream:
            stream.write(b"SIMPLE  =                    T / partial")
        print("WRITING", name, flush=True)
        time.sleep(120)

    fits.HDUList.writeto = slow_writeto
    # the FITS writer copies the data bytes itself: stall there too
    import aligncore.formats.fits
    aligncore.formats.fits._copy_with_headers = lambda hdul, target: slow_writeto(hdul, target)
    sys.exit(aligncore.cli.main(sys.argv[1:]))
""")


def _signal_mid_write(argv: list[str], cwd: Path, signum: int) -> tuple[int, str, str]:
    """Run the CLI with a writer that stalls mid-file; send it ``signum`` there."""
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, *argv], cwd=cwd, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = ""
    try:
        while not marker.startswith("WRITING"):
            marker = process.stdout.readline()
            if not marker and process.poll() is not None:
                break
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert marker.startswith("WRITING"), f"never reached the write:\n{process.stderr}"
    return process.returncode, marker + out, err


@pytest.mark.parametrize(("signum", "exit_code", "said"),
                         [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
                         ids=["SIGTERM", "Ctrl-C"])
@pytest.mark.parametrize("in_place", [False, True], ids=["outdir", "in-place"])
def test_signal_mid_write_leaves_nothing_partial(inputs, tmp_path, in_place, signum, exit_code,
                                                 said):
    out = tmp_path / "out"
    before = _digests(inputs)
    argv = ["run", DEFAULT, *map(str, inputs), "-o", str(out), "-q"]
    code, out_text, err = _signal_mid_write(argv + (["--in-place"] if in_place else []),
                                            tmp_path, signum)
    assert code == exit_code, err
    assert said in err and "Traceback" not in err
    assert str(inputs[0].parent if in_place else out) in out_text  # stopped inside the write
    assert _digests(inputs) == before
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p not in inputs]
    assert leftovers == []  # no temp file, no partial output, no lock
    assert not out.exists()  # created by the run, left empty, removed again


# --- one run per output directory ------------------------------------------------------
def _holder(outdir: Path) -> subprocess.Popen:
    """Another process holding the output directory's lock."""
    code = ("import sys, time\nfrom aligncore.filelock import output_dir_lock\n"
            "with output_dir_lock(sys.argv[1]):\n    print('LOCKED', flush=True)\n"
            "    time.sleep(120)\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(outdir)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "LOCKED"
    return process


def test_second_run_refused_while_the_first_writes_then_stale_lock_taken_over(
        inputs, tmp_path, capsys):
    out = tmp_path / "out"
    holder = _holder(out)
    argv = ["run", DEFAULT, *map(str, inputs), "-o", str(out), "-q"]
    try:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"output directory {out} is in use by another aligncore run (pid {holder.pid})" \
            in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.kill()  # SIGKILL: no cleanup, the lock file stays with a dead pid
        holder.wait()
    assert (out / LOCK_NAME).read_text().strip() == str(holder.pid)
    assert not pid_alive(holder.pid)
    assert main(argv) == 0
    assert (out / "report.json").is_file()
    assert not (out / LOCK_NAME).exists()


def test_lock_file_of_a_live_process_is_respected(tmp_path):
    (tmp_path / LOCK_NAME).write_text(f"{os.getppid()}\n")
    with pytest.raises(OutputDirBusy, match=rf"in use by another aligncore run \(pid "
                                            rf"{os.getppid()}\)"), output_dir_lock(tmp_path):
        pass
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getppid()}\n"


def test_lock_removes_only_the_directories_it_created_when_empty(tmp_path):
    with output_dir_lock(tmp_path / "a" / "b") as lock:
        assert lock.read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / "a").exists()
    with output_dir_lock(tmp_path / "c"):
        (tmp_path / "c" / "result.txt").write_text("kept")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["result.txt"]


# --- output directory checks -----------------------------------------------------------
def test_output_dir_problems_name_each_path(tmp_path):
    image = tmp_path / "in" / "a.fits"
    image.parent.mkdir()
    image.write_bytes(b"")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert output_dir_problems(tmp_path / "new" / "dir", [image], False) == []
    assert output_dir_problems(image.parent, [image], True) == []
    assert output_dir_problems(a_file, [image], False) == [
        f"{a_file}: output directory exists and is not a directory"]
    assert output_dir_problems(a_file / "sub", [image], False) == [
        f"{a_file / 'sub'}: output directory cannot be created: {a_file} is a file, not a "
        "directory"]
    (same,) = output_dir_problems(image.parent, [image], False)
    assert same.startswith(f"{image}: output directory {image.parent} is this input's directory")


def test_jwst_outputs_may_go_beside_their_inputs(tmp_path):
    """``*_cal.fits`` data models are written as ``*_tweakreg.fits``: no clash with the input."""
    from astropy.io import fits

    model = tmp_path / "jw01_cal.fits"
    fits.PrimaryHDU(header=fits.Header([("DATAMODL", "ImageModel")])).writeto(model)
    plain = tmp_path / "other_cal.fits"
    fits.PrimaryHDU().writeto(plain)
    (problem,) = output_dir_problems(tmp_path, [model, plain], False)
    assert problem.startswith(f"{plain}: output directory")


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only directories")
def test_read_only_output_dir_is_a_problem(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert output_dir_problems(locked, [], False) == [
            f"{locked}: output directory is not writable"]
    finally:
        locked.chmod(0o755)


def test_unwritable_dirs_are_problems_for_any_user(tmp_path, monkeypatch):
    """The same checks with permissions denied by os.access (as for a non-root user)."""
    image = tmp_path / "in" / "a.fits"
    image.parent.mkdir()
    image.write_bytes(b"")
    denied = {tmp_path / "out", image.parent, tmp_path}
    monkeypatch.setattr("aligncore.outputs.os.access", lambda path, mode: path not in denied)
    (tmp_path / "out").mkdir()
    assert output_dir_problems(tmp_path / "out", [image], False) == [
        f"{tmp_path / 'out'}: output directory is not writable"]
    assert output_dir_problems(tmp_path / "new", [image], False) == [
        f"{tmp_path / 'new'}: output directory cannot be created: {tmp_path} is not writable"]
    (tmp_path / "ok").mkdir()
    assert output_dir_problems(tmp_path / "ok", [image], True) == [
        f"{image}: cannot update in place: its directory {image.parent} is not writable"]


def test_run_reports_output_problems_before_detection(inputs, capsys):
    code = main(["run", DEFAULT, *map(str, inputs), "-o", str(inputs[0].parent), "-q"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert len(err) == 2 and all(line.startswith(f"error: {p}:") for line, p in
                                 zip(err, inputs, strict=True))


@pytest.mark.parametrize("name", ["../x.json", "/tmp/x.json", "sub/report.json", "..", "a\\b"])
def test_report_name_must_stay_in_the_output_dir(tmp_path, name):
    config = tmp_path / "c.yaml"
    config.write_text(f"output:\n  dir: out\n  report: '{name}'\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    (problem,) = info.value.problems
    assert (problem.line, problem.key) == (3, "output.report")
    assert "plain file name in the output directory" in problem.message


# --- local plugin files ----------------------------------------------------------------
@pytest.fixture
def local_plugin_config(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "ran.txt"
    (tmp_path / "mine.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = tmp_path / "c.yaml"
    config.write_text("matcher:\n  plugin: hist2d\nplugins:\n  - mine.py\n")
    return config, marker


def test_local_plugin_file_runs_by_default(local_plugin_config):
    config, marker = local_plugin_config
    load_config(config)
    assert marker.exists()


@pytest.mark.parametrize("how", ["flag-before", "flag-after", "env"])
def test_local_plugins_refused(local_plugin_config, capsys, monkeypatch, how):
    config, marker = local_plugin_config
    argv = ["validate", str(config)]
    if how == "env":
        monkeypatch.setenv("ALIGNCORE_NO_LOCAL_PLUGINS", "1")
    else:
        argv = ["--no-local-plugins", *argv] if how == "flag-before" else [
            *argv, "--no-local-plugins"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{config}:4: plugins.0: plugin file mine.py" in err
    assert "run without --no-local-plugins and with ALIGNCORE_NO_LOCAL_PLUGINS unset" in err
    assert not marker.exists()  # the code never ran


def test_plugin_file_option_refused_too(local_plugin_config, capsys):
    config, marker = local_plugin_config
    code = main(["--no-local-plugins", "plugins", "--plugin-file",
                 str(config.parent / "mine.py")])
    assert code == 2
    assert "mine.py: local plugin files are refused" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.timeout(60)
def test_forked_child_dies_of_sigterm_instead_of_raising():
    """A worker forked inside the CLI's handler scope is killed by SIGTERM as usual."""
    from aligncore.filelock import sigterm_as_exit

    read_end, write_end = os.pipe()
    with sigterm_as_exit():
        pid = os.fork()
        if pid == 0:  # child: wait to be killed; exit 0 would mean the signal was swallowed
            try:
                os.write(write_end, b"ready")  # signals before this are lost by the fork
                signal.pause()
            finally:
                os._exit(0)
        assert os.read(read_end, 5) == b"ready"
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
    os.close(read_end)
    os.close(write_end)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
