"""Corpus cases: command-line usage (examples of the format)."""

from __future__ import annotations

from pathlib import Path

from corpus.harness import case, copy_images, default_config


@case("cli", exit_code=1, message=r"missing\.fits", outcome="input error naming the file")
def missing_image(work: Path) -> list[str]:
    """An input image path that does not exist."""
    images = copy_images(work, 1)
    return ["run", default_config(work), str(images[0]), str(work / "in" / "missing.fits"),
            "-o", str(work / "out")]


@case("cli", exit_code=0, message=None, outcome="aligned, outputs written", writes=True)
def good_run(work: Path) -> list[str]:
    """Two good overlapping images (the control case)."""
    images = copy_images(work, 2)
    return ["run", default_config(work), *map(str, images), "-o", str(work / "out"), "-q"]
