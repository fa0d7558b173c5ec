"""What a run's inputs name: image files, JWST associations, ``@`` lists and directories.

Every command that takes images (``aligncore run``, ``aligncore detect``) and
`aligncore.align` pass their arguments through `resolve_inputs`, which expands

- a JWST association (a ``.json`` file, e.g. ``jw01234-o001_image3_asn.json``)
  into its science members: ``products[0].members`` whose ``exptype`` is
  ``science`` (case-insensitive, as jwst's ``ModelLibrary`` reads it with
  ``asn_exptypes=["science"]``), each ``expname`` relative to the association's
  directory. A member's ``group_id``, when given, becomes the image's group;
- ``@list.txt`` (drizzlepac's convention) into the files it lists: one per line,
  the first whitespace-separated field (drizzlepac's optional second column, an
  IVM file, is ignored), ``#`` comments and blank lines skipped, relative paths
  relative to the list file;
- a directory into its files matching ``pattern`` (a glob, default `DEFAULT_PATTERN`),
  sorted by name;

and keeps any other argument as an image path. The image files themselves are
checked afterwards by `aligncore.preflight` (a missing list entry is reported
there as ``PATH: file not found``); the problems found here (a missing or
malformed association, a member that is not there, an empty list, a directory
without a match) raise one `InputError` whose text is a single line naming the
file.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aligncore.errors import InputError

if TYPE_CHECKING:
    from aligncore.types import AlignImage

__all__ = ["DEFAULT_PATTERN", "OUTPUT_ASSOCIATION", "Association", "Inputs", "expand_items",
           "is_association", "load_association", "output_association", "resolve_inputs"]

DEFAULT_PATTERN = "*_cal.fits"
"""Files taken from a directory input when no pattern is given (JWST calibrated images)."""
SCIENCE = "science"


@dataclass(frozen=True)
class Association:
    """A JWST association file as read: its content, its path and its science members."""

    path: Path
    content: dict[str, Any]
    members: tuple[Path, ...]
    groups: dict[Path, str]

    @property
    def member_meta(self) -> dict[str, str]:
        """``meta.asn`` of a member's data model, as jwst's ModelLibrary sets it."""
        meta = {"exptype": SCIENCE, "table_name": self.path.name}
        if isinstance(self.content.get("asn_pool"), str):
            meta["pool_name"] = self.content["asn_pool"]
        return meta


@dataclass(frozen=True)
class Inputs:
    """The image files of a run, in order, and what the arguments said about them.

    Attributes
    ----------
    paths : tuple of Path
        Image files, in the order given (an association's members in its order).
    groups : dict
        Image path -> group id given by an association member (``group_id``).
    associations : tuple of Association
        The associations read, for the output association (`aligncore.outputs`).
    """

    paths: tuple[Path, ...]
    groups: dict[Path, str] = field(default_factory=dict)
    associations: tuple[Association, ...] = ()

    def annotate(self, image: AlignImage) -> None:
        """Give an image read from an association member its ``group_id`` (when the
        member names one) and ``meta["asn"]`` (written as ``meta.asn`` of JWST outputs)."""
        if image.path is None:
            return
        path = Path(image.path)
        for association in self.associations:
            if path in association.members:
                image.meta["asn"] = association.member_meta
        if path in self.groups:
            image.group_id = self.groups[path]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: file not found" if not path.exists()
                         else f"{path}: is not a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a JWST association: not UTF-8 text ({exc.reason})"
                         ) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not a JWST association: invalid JSON at line {exc.lineno} "
                         f"column {exc.colno} ({exc.msg})") from None


def _members(path: Path, content: Any) -> list[Mapping[str, Any]]:
    """``products[0].members`` of an association, checked item by item."""
    products = content.get("products") if isinstance(content, Mapping) else None
    if not isinstance(products, list) or not products or not isinstance(products[0], Mapping):
        raise InputError(f"{path}: not a JWST association: no 'products' list")
    members = products[0].get("members")
    if not isinstance(members, list):
        raise InputError(f"{path}: not a JWST association: products[0] has no 'members' list")
    for index, member in enumerate(members):
        if not (isinstance(member, Mapping) and isinstance(member.get("expname"), str)
                and isinstance(member.get("exptype"), str)):
            raise InputError(f"{path}: not a JWST association: member {index} needs the "
                             "strings 'expname' and 'exptype'")
    return members


def load_association(path: str | Path) -> Association:
    """Read a JWST association and find its science members.

    Parameters
    ----------
    path : path
        The association (JSON), e.g. ``jw01234-o001_20240501t000000_image3_00001_asn.json``.

    Returns
    -------
    Association
        ``members``: the science members' paths (relative ``expname`` resolved
        against the association's directory); ``groups``: their ``group_id``
        when the association gives one.

    Raises
    ------
    InputError
        The file is missing, is not JSON, is not an association (``products[0].members``
        with ``expname`` and ``exptype``), has no science member, or names members
        that do not exist (all of them in one line).
    """
    path = Path(path)
    content = _read_json(path)
    science = [m for m in _members(path, content) if m["exptype"].lower() == SCIENCE]
    if not science:
        raise InputError(f"{path}: the association has no science member (exptype 'science')")
    paths = [path.parent / m["expname"] for m in science]
    missing = [m["expname"] for m, p in zip(science, paths, strict=True) if not p.is_file()]
    if missing:
        what = (f"member {missing[0]!r} not found" if len(missing) == 1 else
                f"{len(missing)} members not found: {', '.join(map(repr, missing))}")
        raise InputError(f"{path}: {what} (looked in {path.parent})")
    groups = {p: str(m["group_id"]) for m, p in zip(science, paths, strict=True)
              if m.get("group_id") not in (None, "")}
    return Association(path=path, content=content, members=tuple(paths), groups=groups)


def _read_list(argument: str) -> list[Path]:
    path = Path(argument[1:])
    if not path.is_file():
        raise InputError(f"{path}: list file not found" if not path.exists()
                         else f"{path}: list file is not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: list file is not UTF-8 text ({exc.reason})") from None
    entries = [line.split()[0] for line in lines
               if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise InputError(f"{path}: the list names no image (one path per line; '#' comments)")
    return [path.parent / entry for entry in entries]


def _read_directory(path: Path, pattern: str) -> list[Path]:
    found = sorted(p for p in path.glob(pattern) if p.is_file())
    if not found:
        raise InputError(f"{path}: no file matches {pattern!r} in this directory "
                         "(choose others with --pattern)")
    return found


def is_association(argument: str | Path) -> bool:
    """Whether an input argument names an association (a ``.json`` file name)."""
    return str(argument).lower().endswith(".json")


def resolve_inputs(arguments: Iterable[str | Path], pattern: str | None = None) -> Inputs:
    """Expand a run's input arguments into image files (see the module docstring).

    Parameters
    ----------
    arguments : iterable of str or Path
        Image files, associations (``*.json``), ``@list`` files and directories, mixed.
    pattern : str, optional
        Glob of the files taken from a directory (default `DEFAULT_PATTERN`).

    Returns
    -------
    Inputs

    Raises
    ------
    InputError
        One line naming the file at fault (see `load_association`; an empty list;
        a directory with no match; a pattern given without a directory).
    """
    paths: list[Path] = []
    groups: dict[Path, str] = {}
    associations: list[Association] = []
    directories = 0
    for argument in arguments:
        text = str(argument)
        if isinstance(argument, str) and text.startswith("@"):
            paths += _read_list(text)
        elif Path(text).is_dir():
            directories += 1
            paths += _read_directory(Path(text), pattern or DEFAULT_PATTERN)
        elif is_association(text):
            association = load_association(text)
            associations.append(association)
            paths += association.members
            groups.update(association.groups)
        else:
            paths.append(Path(text))
    if pattern is not None and not directories:
        raise InputError(f"--pattern {pattern!r} selects files of directory inputs, and no "
                         "input is a directory")
    return Inputs(paths=tuple(paths), groups=groups, associations=tuple(associations))


def expand_items(items: Sequence[Any]) -> tuple[list[Any], Inputs]:
    """`resolve_inputs` for `aligncore.align`: path items expanded in place, other items
    (opened images) kept; returns the items and the `Inputs` of the path items."""
    expanded: list[Any] = []
    resolved: list[Inputs] = []
    for item in items:
        if isinstance(item, str | Path):
            resolved.append(resolve_inputs([item]))
            expanded += resolved[-1].paths
        else:
            expanded.append(item)
    merged = Inputs(paths=tuple(p for r in resolved for p in r.paths),
                    groups={k: v for r in resolved for k, v in r.groups.items()},
                    associations=tuple(a for r in resolved for a in r.associations))
    return expanded, merged


OUTPUT_ASSOCIATION = "aligncore_asn.json"
"""Name of the output association when the inputs were not an association."""


def output_association(products: Sequence[tuple[Path, str | None]], outdir: Path,
                       inputs: Inputs | None = None) -> tuple[str, dict[str, Any]]:
    """The association listing a run's JWST products, for the next jwst step.

    Parameters
    ----------
    products : sequence of (Path, str or None)
        Each written image and its group id, in the order of the inputs.
    outdir : Path
        Where the association is written; ``expname`` values are relative to it.
    inputs : Inputs, optional
        What the run was given. When it came from one association, the output
        keeps that association's file name and fields (``asn_type``, ``asn_rule``,
        ``program``, ``products[0].name``, ...) and its first product's members
        that are not science exposures (paths made relative to ``outdir``); the
        science members become the products. Otherwise it is a level-3 association
        named `OUTPUT_ASSOCIATION` with product name ``aligncore`` (that name too when the
        input association is in ``outdir``: it is never replaced).

    Returns
    -------
    (str, dict)
        The file name and the association.
    """
    def relative(path: Path) -> str:
        return os.path.relpath(path, outdir)

    members = []
    for path, group in products:
        member: dict[str, Any] = {"expname": relative(path), "exptype": SCIENCE}
        if group:
            member["group_id"] = str(group)
        members.append(member)
    if inputs is not None and len(inputs.associations) == 1:
        source = inputs.associations[0]
        content = copy.deepcopy(source.content)
        product = content["products"][0]
        others = [dict(m, expname=relative(source.path.parent / m["expname"]))
                  for m in product["members"] if m["exptype"].lower() != SCIENCE]
        product["members"] = members + others
        content["products"] = [product]
        if (outdir / source.path.name).resolve() != source.path.resolve():
            return source.path.name, content
        return OUTPUT_ASSOCIATION, content  # never over the input association
    content = {"asn_type": "image3", "asn_rule": "aligncore", "asn_id": "aligncore",
               "asn_pool": "aligncore", "products": [{"name": "aligncore", "members": members}]}
    return OUTPUT_ASSOCIATION, content
