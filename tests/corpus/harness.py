"""The corpus harness: the `Case` record, shared input builders and the checks.

A case module defines cases with the :func:`case` decorator::

    @case("fits", exit_code=1, message=r"truncated", outcome="input error, nothing written")
    def truncated_fits(work: Path) -> list[str]:
        '''A FITS file cut in the middle of its pixel data.'''
        images = copy_images(work, 2)
        ...
        return ["run", default_config(work), *map(str, images), "-o", str(work / "out")]

The function builds the inputs below ``work`` and returns the command line (the
arguments after ``aligncore``). Its docstring's first line is the case's
description in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aligncore

__all__ = [
    "CASES",
    "Case",
    "Snapshot",
    "case",
    "copy_images",
    "default_config",
    "scene_dir",
    "write_config",
]

Builder = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Case:
    """One bad input and the outcome it must give.

    Attributes
    ----------
    name : str
        Unique identifier (the builder's function name).
    group : str
        What the case breaks: ``fits``, ``asdf``, ``wcs``, ``pixels``, ``sources``,
        ``geometry``, ``output``, ``yaml``, ``refcat``, ``service``, ``plugin``, ``cli``.
    build : callable
        ``build(work) -> argv``: writes the inputs below ``work``, returns the
        command-line arguments.
    exit_code : int
        The exit code the command must return.
    message : str or None
        A regular expression that must occur in stderr (None: no requirement).
    outcome : str
        The expected outcome in words, for docs/reliability.md.
    writes : bool
        Whether outputs may be written (False: the output directory, if any, must
        not exist or be left exactly as it was).
    modifies : tuple of str
        Paths (relative to ``work``) that the case is allowed to change (``--in-place``).
    description : str
        One line: what the input is.
    """

    name: str
    group: str
    build: Builder
    exit_code: int
    message: str | None
    outcome: str
    writes: bool = False
    modifies: tuple[str, ...] = ()
    description: str = ""


CASES: list[Case] = []


def case(group: str, *, exit_code: int, message: str | None, outcome: str,
         writes: bool = False, modifies: tuple[str, ...] = ()) -> Callable[[Builder], Builder]:
    """Register the decorated builder as a corpus case."""

    def register(build: Builder) -> Builder:
        doc = (build.__doc__ or "").strip().splitlines()
        CASES.append(Case(name=build.__name__, group=group, build=build, exit_code=exit_code,
                          message=message, outcome=outcome, writes=writes, modifies=modifies,
                          description=doc[0] if doc else build.__name__))
        return build

    return register


# --- shared inputs ---------------------------------------------------------------------
_SCENES: dict[str, Path] = {}
_SCENE_ROOT: list[Path] = []


def set_scene_root(path: Path) -> None:
    """Where the harness caches simulated scenes (set once by the test session)."""
    _SCENE_ROOT[:] = [path]


def scene_dir(kind: str = "fits") -> Path:
    """A directory of simulated images, made once per session and never modified.

    ``fits``: three 256^2 FITS images (TAN, ~60 stars, 0.1-1" pointing errors)
    with ``refcat.ecsv``; ``gwcs``: the same as ASDF files with a GWCS.
    """
    if kind not in _SCENES:
        root = _SCENE_ROOT[0] if _SCENE_ROOT else Path.cwd()
        outdir = root / f"corpus-scene-{kind}"
        aligncore.simulate("dither", n_images=3, seed=3, shape=(256, 256), n_stars=60,
                           pointing_error=(0.1, 1.0), outdir=outdir, wcs=kind)
        _SCENES[kind] = outdir
    return _SCENES[kind]


def copy_images(work: Path, n: int = 2, kind: str = "fits", subdir: str = "in") -> list[Path]:
    """Copy ``n`` good simulated images into ``work/subdir``; returns their paths."""
    source = scene_dir(kind)
    suffix = ".fits" if kind == "fits" else ".asdf"
    target = work / subdir
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for path in sorted(source.glob(f"*{suffix}"))[:n]:
        paths.append(Path(shutil.copy2(path, target / path.name)))
    return paths


def write_config(work: Path, text: str, name: str = "config.yaml") -> str:
    """Write a YAML config below ``work``; returns its path as a string."""
    path = work / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


REPO = Path(__file__).resolve().parents[2]


def default_config(work: Path) -> str:
    """A copy of the recommended config, ``configs/default.yaml``."""
    return write_config(work, (REPO / "configs" / "default.yaml").read_text())


# --- checks ----------------------------------------------------------------------------
@dataclass
class Snapshot:
    """Content hash and mode of every file below a directory."""

    files: dict[str, tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def take(cls, root: Path) -> Snapshot:
        files = {}
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                files[str(path.relative_to(root))] = (digest, stat.S_IMODE(path.stat().st_mode))
        return cls(files)

    def changed(self, other: Snapshot) -> list[str]:
        """Files of this snapshot that are missing, or differ in content or mode, in ``other``."""
        return sorted(name for name, value in self.files.items()
                      if other.files.get(name) != value)

    def added(self, other: Snapshot) -> list[str]:
        """Files of ``other`` that this snapshot does not have."""
        return sorted(set(other.files) - set(self.files))
