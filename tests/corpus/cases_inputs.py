"""Corpus cases: input arguments that name images indirectly (JWST associations, @lists,
directories) and name them wrongly.

Each is one ``error:`` line naming the association, list or directory at fault, and
nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path

from corpus.harness import case, copy_images, default_config

NOTHING = "input error naming the file, nothing written"


def _run(work: Path, *inputs: str) -> list[str]:
    return ["run", default_config(work), *inputs, "-o", str(work / "out"), "-q"]


def _members(images: list[Path]) -> list[dict[str, str]]:
    return [{"expname": p.name, "exptype": "science"} for p in images]


@case("inputs", exit_code=1, message=r"x_asn\.json: member 'jw_gone_cal\.fits' not found",
      outcome=NOTHING)
def asn_missing_member(work: Path) -> list[str]:
    """A JWST association naming a science member that is not in its directory."""
    images = copy_images(work, 2)
    asn = images[0].parent / "x_asn.json"
    members = _members(images) + [{"expname": "jw_gone_cal.fits", "exptype": "science"}]
    asn.write_text(json.dumps({"products": [{"name": "p", "members": members}]}))
    return _run(work, str(asn))


@case("inputs", exit_code=1, message=r"x_asn\.json: not a JWST association: invalid JSON at "
      r"line \d+ column \d+", outcome=NOTHING)
def asn_malformed_json(work: Path) -> list[str]:
    """A JWST association cut in the middle of its JSON."""
    images = copy_images(work, 2)
    asn = images[0].parent / "x_asn.json"
    text = json.dumps({"products": [{"name": "p", "members": _members(images)}]}, indent=1)
    asn.write_text(text[: len(text) // 2])
    return _run(work, str(asn))


@case("inputs", exit_code=1, message=r"x_asn\.json: the association has no science member",
      outcome=NOTHING)
def asn_without_science(work: Path) -> list[str]:
    """A JWST association whose members are all background exposures."""
    images = copy_images(work, 2)
    asn = images[0].parent / "x_asn.json"
    members = [dict(m, exptype="background") for m in _members(images)]
    asn.write_text(json.dumps({"products": [{"name": "p", "members": members}]}))
    return _run(work, str(asn))


@case("inputs", exit_code=1, message=r"list\.txt: the list names no image", outcome=NOTHING)
def empty_at_list(work: Path) -> list[str]:
    """An @list file with only comments and blank lines."""
    copy_images(work, 2)
    listing = work / "list.txt"
    listing.write_text("# exposures of visit 1\n\n   \n")
    return _run(work, f"@{listing}")


@case("inputs", exit_code=1, message=r"img_009\.fits: file not found", outcome=NOTHING)
def at_list_missing_entry(work: Path) -> list[str]:
    """An @list file naming an image that does not exist (relative to the list)."""
    images = copy_images(work, 2)
    listing = images[0].parent / "list.txt"
    listing.write_text("\n".join([p.name for p in images] + ["img_009.fits"]) + "\n")
    return _run(work, f"@{listing}")


@case("inputs", exit_code=1, message=r"in: no file matches '\*_cal\.fits' in this directory",
      outcome=NOTHING)
def directory_without_match(work: Path) -> list[str]:
    """A directory input holding no file that matches the default pattern `*_cal.fits`."""
    images = copy_images(work, 2)
    return _run(work, str(images[0].parent))


@case("inputs", exit_code=1, message=r"no file matches '\*\.asdf'", outcome=NOTHING)
def directory_pattern_without_match(work: Path) -> list[str]:
    """A directory input with a --pattern that matches none of its files."""
    images = copy_images(work, 2)
    return [*_run(work, str(images[0].parent)), "--pattern", "*.asdf"]
