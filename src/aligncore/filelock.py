"""One aligncore run per output directory, and a clean exit on SIGTERM.

A run that writes into a directory holds ``<dir>/.aligncore.lock`` while it
works: the file is locked with ``fcntl.flock`` (released by the kernel if the
process dies) and records the owner's process id. A second run finds the lock
taken and stops with :class:`OutputDirBusy` before writing anything. A lock
file left behind by a process that no longer exists is taken over.

:func:`sigterm_as_exit` turns SIGTERM into a :class:`Terminated` exception, so
that ``finally`` blocks and context managers (temporary files, this lock) clean
up exactly as they do for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from aligncore.errors import AlignError

__all__ = [
    "LOCK_NAME",
    "OutputDirBusy",
    "OutputDirError",
    "Terminated",
    "lock_owner",
    "output_dir_lock",
    "pid_alive",
    "sigterm_as_exit",
]

LOCK_NAME = ".aligncore.lock"
"""File name of the lock inside an output directory."""


class OutputDirError(AlignError):
    """The output directory cannot be created or locked."""


class OutputDirBusy(OutputDirError):
    """Another live aligncore run holds the output directory."""


class Terminated(BaseException):
    """The process received SIGTERM (a BaseException, like KeyboardInterrupt)."""


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine.

    Parameters
    ----------
    pid : int
        Process id (> 0).

    Returns
    -------
    bool
        True if the process exists (even when owned by another user).
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_owner(lock_file: Path) -> int | None:
    """The process id recorded in a lock file, or None (missing, empty or unreadable)."""
    try:
        text = lock_file.read_text().strip()
    except (OSError, ValueError):  # missing, unreadable, not text
        return None
    return int(text) if text.isdigit() else None


def _busy(outdir: Path, pid: int | None) -> OutputDirBusy:
    owner = f"pid {pid}" if pid is not None else "pid unknown"
    return OutputDirBusy(
        f"output directory {outdir} is in use by another aligncore run ({owner}); wait for it "
        f"to finish, choose another output directory, or remove {outdir / LOCK_NAME} if no "
        "such run exists")


def _open_locked(lock_file: Path, outdir: Path) -> int:
    """Open ``lock_file`` and flock it; the descriptor refers to the file now at that path."""
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(outdir, lock_owner(lock_file)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous owner removed the file meanwhile: lock the new one


def _claim(fd: int, lock_file: Path, outdir: Path) -> None:
    """Record this process in the locked file, unless a live other process claims it."""
    owner = lock_owner(lock_file)
    if owner is not None and owner != os.getpid() and pid_alive(owner):
        raise _busy(outdir, owner)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _created_dirs(outdir: Path) -> list[Path]:
    """Create ``outdir`` (and parents); return the directories created, deepest first."""
    missing = []
    current = outdir
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    outdir.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(dirs: list[Path]) -> None:
    for directory in dirs:
        with contextlib.suppress(OSError):
            directory.rmdir()


@contextlib.contextmanager
def output_dir_lock(outdir: str | Path) -> Iterator[Path]:
    """Hold the lock of an output directory for the duration of the ``with`` block.

    The directory is created if needed; directories created here are removed
    again on exit when nothing was written into them.

    Parameters
    ----------
    outdir : path
        The output directory.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    OutputDirBusy
        A live aligncore run holds the directory (the message names its pid).
    """
    outdir = Path(outdir)
    try:
        created = _created_dirs(outdir)
    except OSError as exc:
        raise OutputDirError(f"{outdir}: cannot create the output directory: "
                             f"{exc.strerror or exc}") from None
    lock_file = outdir / LOCK_NAME
    fd = -1
    try:
        fd = _open_locked(lock_file, outdir)
        _claim(fd, lock_file, outdir)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        _remove_empty(created)
        if isinstance(exc, OSError):
            raise OutputDirError(f"{lock_file}: cannot lock the output directory: "
                                 f"{exc.strerror or exc}") from None
        raise
    try:
        yield lock_file
    finally:
        lock_file.unlink(missing_ok=True)  # while still holding the lock
        os.close(fd)
        _remove_empty(created)


_HANDLER_PID: list[int] = []


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    if _HANDLER_PID and os.getpid() != _HANDLER_PID[-1]:
        # a forked worker inherited the handler: die as if it had none
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only).

    The previous handler is restored on exit. In another thread the block
    changes nothing (Python delivers signals to the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    _HANDLER_PID.append(os.getpid())
    try:
        yield
    finally:
        _HANDLER_PID.pop()
        signal.signal(signal.SIGTERM, previous)
