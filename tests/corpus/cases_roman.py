"""Corpus cases: Roman WFI files (skipped without the optional roman_datamodels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus.harness import case, copy_images
from corpus.inputs import run_args

NOTHING = "input error naming the file, nothing written"


def _l2_files(work: Path, n: int) -> list[Path]:
    """``n`` simulated GWCS exposures as Roman L2 files in ``work/in`` (skips the case when
    roman_datamodels is not installed)."""
    pytest.importorskip("roman_datamodels")
    from roman_files import make_l2, roman_name

    sources = copy_images(work, n, kind="gwcs", subdir="sim")
    target = work / "in"
    target.mkdir(parents=True, exist_ok=True)
    paths = [make_l2(path, target / roman_name(k), k) for k, path in enumerate(sources)]
    for path in sources:
        path.unlink()
    return paths


@case("roman", exit_code=0, message=None, outcome="aligned", writes=True)
def good_roman(work: Path) -> list[str]:
    """Two Roman level-2 images (the control case; needs roman_datamodels)."""
    return run_args(work, _l2_files(work, 2))


@case("roman", exit_code=1, message=r"_uncal\.asdf: aligncore reads Roman level-2 "
          r"ImageModel files .* holds a ScienceRawModel", outcome=NOTHING)
def roman_level1(work: Path) -> list[str]:
    """A Roman level-1 ramp file (ScienceRawModel) among level-2 images."""
    from roman_files import make_l1, roman_name

    images = _l2_files(work, 1)
    return run_args(work, [images[0], make_l1(work / "in" / roman_name(1, "uncal"))])


@case("roman", exit_code=1, message=r"_cal\.asdf: cannot read the (Roman data model|pixels)",
          outcome=NOTHING)
def roman_truncated(work: Path) -> list[str]:
    """A Roman level-2 image cut in the middle of its data blocks."""
    images = _l2_files(work, 2)
    raw = images[1].read_bytes()
    images[1].write_bytes(raw[: len(raw) // 2])
    return run_args(work, images)
