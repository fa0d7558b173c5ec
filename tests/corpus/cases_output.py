"""Corpus cases: where outputs go (output directory, in-place updates, the run lock)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aligncore.filelock import LOCK_NAME
from corpus.harness import case, copy_images, default_config

IMAGES = ("in/img_000.fits", "in/img_001.fits")


def _run(work: Path, out: Path | str, *extra: str) -> list[str]:
    """``aligncore run`` of two good images into ``out``."""
    images = copy_images(work, 2)
    return ["run", default_config(work), *map(str, images), "-o", str(out), "-q", *extra]


def _run_locked(work: Path, lock: bytes) -> list[str]:
    """``aligncore run`` into ``out``, which already holds a lock file with ``lock``."""
    (work / "out").mkdir()
    (work / "out" / LOCK_NAME).write_bytes(lock)
    return _run(work, work / "out")


def _skip_as_root() -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@case("output", exit_code=1, message=r"out: output directory is not writable",
      outcome="refused before detection, nothing written")
def read_only_output_dir(work: Path) -> list[str]:
    """The output directory exists but is read-only (skipped as root)."""
    _skip_as_root()
    out = work / "out"
    out.mkdir()
    out.chmod(0o555)
    return _run(work, out)


@case("output", exit_code=1, message=r"out\.fits: output directory exists and is not a directory",
      outcome="refused before detection, the file untouched")
def output_is_a_file(work: Path) -> list[str]:
    """The output path names an existing regular file."""
    (work / "out.fits").write_bytes(b"not a directory")
    return _run(work, work / "out.fits")


@case("output", exit_code=1, message=r"notes\.txt is a file, not a directory",
      outcome="refused before detection, nothing written")
def output_inside_a_file(work: Path) -> list[str]:
    """The output directory would have to be created below a regular file."""
    (work / "notes.txt").write_text("hello\n")
    return _run(work, work / "notes.txt" / "aligned")


@case("output", exit_code=1, message=r"img_000\.fits: output directory .*in is this input's "
      r"directory(.|\n)*img_001\.fits: output directory",
      outcome="refused (one line per input), nothing written")
def output_dir_is_inputs_dir(work: Path) -> list[str]:
    """The output directory is the inputs' directory, without --in-place."""
    return _run(work, work / "in")


@case("output", exit_code=1, message=r"is this input's directory",
      outcome="refused like the directory itself, nothing written")
def output_dir_links_to_inputs(work: Path) -> list[str]:
    """The output directory is a symbolic link to the inputs' directory."""
    argv = _run(work, work / "link")
    (work / "link").symlink_to(work / "in", target_is_directory=True)
    return argv


@case("output", exit_code=0, message=None, outcome="inputs updated with their mode (0640) kept",
      writes=True, modifies=IMAGES)
def in_place_keeps_mode(work: Path) -> list[str]:
    """--in-place on inputs with mode 0640 (the snapshot checks nothing else changes)."""
    argv = _run(work, work / "report", "--in-place")
    for name in IMAGES:
        (work / name).chmod(0o640)
    return argv


@case("output", exit_code=0, message=None, outcome="allowed: the inputs are the outputs",
      writes=True, modifies=IMAGES)
def in_place_into_inputs_dir(work: Path) -> list[str]:
    """--in-place with the report going to the inputs' own directory."""
    return _run(work, work / "in", "--in-place")


@case("output", exit_code=2, message=r"output\.report: must be a plain file name",
      outcome="config error, nothing written")
def report_name_escapes(work: Path) -> list[str]:
    """output.report set to ../report.json (would land outside the output directory)."""
    return _run(work, work / "out", "--set", "output.report=../report.json")


@case("output", exit_code=2, message=r"config\.yaml:3: output\.report: must be a plain file name",
      outcome="config error with file:line, nothing written")
def report_name_absolute(work: Path) -> list[str]:
    """output.report is an absolute path in the config file."""
    argv = _run(work, work / "out")
    (work / "config.yaml").write_text("output:\n  dir: aligned\n  report: /tmp/report.json\n")
    return argv


@case("output", exit_code=1,
      message=r"out is in use by another aligncore run \(pid \d+\)",
      outcome="refused, the other run's lock and directory untouched")
def locked_by_live_run(work: Path) -> list[str]:
    """The output directory holds the lock of a live process."""
    return _run_locked(work, f"{os.getppid()}\n".encode())


@case("output", exit_code=0, message=None, outcome="stale lock taken over, outputs written",
      writes=True, modifies=(f"out/{LOCK_NAME}",))
def stale_lock(work: Path) -> list[str]:
    """The output directory holds the lock file of a process that no longer exists."""
    return _run_locked(work, f"{_dead_pid()}\n".encode())


@case("output", exit_code=0, message=None, outcome="unreadable lock taken over, outputs written",
      writes=True, modifies=(f"out/{LOCK_NAME}",))
def garbage_lock(work: Path) -> list[str]:
    """The lock file holds no process id (e.g. left empty by a crash)."""
    return _run_locked(work, b"\x00\xffgarbage")


@case("output", exit_code=0, message=None, outcome="directories created, outputs written",
      writes=True)
def output_dir_nested_missing(work: Path) -> list[str]:
    """The output directory and two of its parents do not exist yet."""
    return _run(work, work / "a" / "b" / "out")


@case("output", exit_code=0, message=None, outcome="previous outputs replaced, nothing else",
      writes=True, modifies=("out/img_000.fits", "out/report.json"))
def output_dir_has_previous_run(work: Path) -> list[str]:
    """The output directory holds the outputs of an earlier run."""
    (work / "out").mkdir()
    (work / "out" / "img_000.fits").write_bytes(b"old output")
    (work / "out" / "report.json").write_text("{}\n")
    (work / "out" / "keep.txt").write_text("not ours\n")
    return _run(work, work / "out")


@case("output", exit_code=1,
      message=r"b/img_000\.fits: has the same output file name as .*a/img_000",
      outcome="refused before detection, nothing written")
def inputs_share_a_file_name(work: Path) -> list[str]:
    """Two inputs from different directories with the same file name."""
    first = copy_images(work, 1, subdir="a")
    second = copy_images(work, 1, subdir="b")
    return ["run", default_config(work), str(first[0]), str(second[0]), "-o", str(work / "out")]
