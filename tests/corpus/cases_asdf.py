"""Corpus cases: broken ASDF images (GWCS)."""

from __future__ import annotations

from pathlib import Path

import asdf
import numpy as np

from corpus.harness import case, copy_images
from corpus.inputs import run_args

NOTHING = "input error naming the file, nothing written"


def _rewrite(path: Path, **changes: object) -> Path:
    """Rewrite an ASDF image with some tree entries replaced (None: removed)."""
    with asdf.open(path, lazy_load=False, memmap=False) as af:
        tree = {k: v for k, v in af.tree.items() if k not in ("asdf_library", "history")}
    for key, value in changes.items():
        if value is None:
            tree.pop(key, None)
        else:
            tree[key] = value
    asdf.AsdfFile(tree).write_to(path)
    return path


@case("asdf", exit_code=0, message=None, outcome="aligned", writes=True)
def good_asdf(work: Path) -> list[str]:
    """Two good ASDF images with a GWCS (the control case)."""
    return run_args(work, copy_images(work, 2, kind="gwcs"))


@case("asdf", exit_code=1, message=r"broken\.asdf: not a readable ASDF file", outcome=NOTHING)
def garbage_asdf(work: Path) -> list[str]:
    """Random bytes in a file named .asdf."""
    images = copy_images(work, 1, kind="gwcs")
    broken = work / "in" / "broken.asdf"
    broken.write_bytes(np.random.default_rng(0).bytes(5000))
    return run_args(work, [images[0], broken])


@case("asdf", exit_code=1, message=r"empty\.asdf: (not a readable ASDF file|empty)",
      outcome=NOTHING)
def empty_asdf(work: Path) -> list[str]:
    """An empty (0-byte) .asdf file."""
    images = copy_images(work, 1, kind="gwcs")
    empty = work / "in" / "empty.asdf"
    empty.write_bytes(b"")
    return run_args(work, [images[0], empty])


@case("asdf", exit_code=1, message=r"img_001\.asdf: truncated: block \d+ announces",
      outcome=NOTHING)
def truncated_asdf(work: Path) -> list[str]:
    """An ASDF image cut in the middle of its data block."""
    images = copy_images(work, 2, kind="gwcs")
    raw = images[1].read_bytes()
    images[1].write_bytes(raw[: len(raw) // 2])
    return run_args(work, images)


@case("asdf", exit_code=1, message=r"\.asdf: the tree's 'wcs' must be a gwcs\.WCS, got NoneType",
      outcome=NOTHING)
def asdf_without_wcs(work: Path) -> list[str]:
    """An ASDF image whose tree has no 'wcs'."""
    images = copy_images(work, 2, kind="gwcs")
    _rewrite(images[1], wcs=None)
    return run_args(work, images)


@case("asdf", exit_code=1, message=r"\.asdf: the tree's 'wcs' must be a gwcs\.WCS, got str",
      outcome=NOTHING)
def asdf_wcs_is_text(work: Path) -> list[str]:
    """An ASDF image whose 'wcs' is a string."""
    images = copy_images(work, 2, kind="gwcs")
    _rewrite(images[1], wcs="RA---TAN")
    return run_args(work, images)


@case("asdf", exit_code=1, message=r"\.asdf: the tree needs a 2D 'data' array", outcome=NOTHING)
def asdf_without_data(work: Path) -> list[str]:
    """An ASDF image whose tree has no 'data'."""
    images = copy_images(work, 2, kind="gwcs")
    _rewrite(images[1], data=None, dq=None)
    return run_args(work, images)


@case("asdf", exit_code=1, message=r"\.asdf: the tree needs a 2D 'data' array, got shape "
      r"\(2, 256, 256\)", outcome=NOTHING)
def asdf_cube(work: Path) -> list[str]:
    """An ASDF image whose 'data' is a 3D cube."""
    images = copy_images(work, 2, kind="gwcs")
    with asdf.open(images[1], lazy_load=False, memmap=False) as af:
        data = np.array(af.tree["data"])
    _rewrite(images[1], data=np.stack([data, data]), dq=None)
    return run_args(work, images)


@case("asdf", exit_code=1, message=r"\.asdf: 'data' must hold numbers", outcome=NOTHING)
def asdf_text_pixels(work: Path) -> list[str]:
    """An ASDF image whose 'data' is an array of strings."""
    images = copy_images(work, 2, kind="gwcs")
    _rewrite(images[1], data=np.full((256, 256), "x"), dq=None)
    return run_args(work, images)


@case("asdf", exit_code=1, message=r"\.asdf: 'data' must hold numbers", outcome=NOTHING)
def asdf_complex_pixels(work: Path) -> list[str]:
    """An ASDF image whose 'data' is complex."""
    images = copy_images(work, 2, kind="gwcs")
    _rewrite(images[1], data=np.ones((256, 256), complex), dq=None)
    return run_args(work, images)
