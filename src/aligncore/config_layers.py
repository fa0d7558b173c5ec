"""Config files layered on a base: ``extends`` and where each value came from.

A config file is read on top of a base config: the recommended defaults
(``aligncore/data/default.yaml``) unless the file names another base with a
top-level ``extends:`` key:

- ``extends: jwst``: the JWST tweakreg step's documented defaults;
- ``extends: jwst-3.0``: jwst 3.0.0's TweakRegStep defaults;
- ``extends: default``: the recommended defaults (the same as no ``extends``);
- ``extends: none``: no base file, only the plugins' own defaults;
- ``extends: path/to/other.yaml``: another file, relative to this one (which
  may extend another in turn; a cycle is refused).

Mappings are merged key by key (the file wins); lists and plain values replace
the base's. A stage section that names another plugin than its base drops the
base's ``params`` (they belong to the other plugin). `Locator` remembers the
file and line each key came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["BUILTIN_CONFIGS", "NO_BASE", "Locator", "builtin_label", "merge_layers",
           "resolve_extends"]

BUILTIN_CONFIGS: dict[str, Path] = {
    "default": Path(__file__).parent / "data" / "default.yaml",
    "jwst": Path(__file__).parent / "data" / "jwst.yaml",
    "jwst-3.0": Path(__file__).parent / "data" / "jwst-3.0.yaml",
}
"""Names accepted by ``extends:`` -> the packaged config file."""

NO_BASE = "none"
"""``extends: none``: no base file (the plugins' and aligncore's own defaults)."""


def builtin_label(file: str) -> str:
    """A built-in config's path shown as ``<built-in jwst.yaml>``; other paths unchanged."""
    for path in BUILTIN_CONFIGS.values():
        if file == str(path):
            return f"<built-in {path.name}>"
    return file


class Locator:
    """Maps dotted keys to the file and YAML line they come from."""

    def __init__(self, file: str, node: yaml.Node | None) -> None:
        self.file = file
        self.lines: dict[tuple[str, ...], int] = {}
        self.files: dict[tuple[str, ...], str] = {}
        if node is not None:
            self._walk(node, ())
        self.files = dict.fromkeys(self.lines, file)

    def _walk(self, node: yaml.Node, path: tuple[str, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*path, str(key_node.value))
                self.lines[key] = key_node.start_mark.line + 1
                self._walk(value_node, key)
                self.lines[key] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, str(index)))

    def _known(self, path: Sequence[Any]) -> tuple[str, ...] | None:
        key = tuple(str(p) for p in path)
        while key:
            if key in self.lines:
                return key
            key = key[:-1]
        return () if () in self.lines else None

    def line(self, path: Sequence[Any]) -> int | None:
        """The line of ``path`` (or of its nearest given parent) in its file."""
        key = self._known(path)
        return None if key is None else self.lines[key]

    def file_of(self, path: Sequence[Any]) -> str:
        """The file ``path`` (or its nearest given parent) was read from."""
        key = self._known(path)
        return self.file if key is None else self.files.get(key, self.file)

    def origin(self, path: Sequence[Any]) -> str | None:
        """``file:line`` of exactly ``path`` if a file gave it, else None."""
        key = tuple(str(p) for p in path)
        if key not in self.lines:
            return None
        return f"{builtin_label(self.files.get(key, self.file))}:{self.lines[key]}"

    def rename(self, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        """Move the entries of ``old`` and the keys under it to ``new``."""
        for mapping in (self.lines, self.files):
            for key in [k for k in mapping if k[:len(old)] == old]:
                mapping[(*new, *key[len(old):])] = mapping.pop(key)

    def drop(self, prefix: tuple[str, ...]) -> None:
        """Forget ``prefix`` and the keys under it (values the merge discarded)."""
        for mapping in (self.lines, self.files):
            for key in [k for k in mapping if k[:len(prefix)] == prefix]:
                del mapping[key]

    def layered_on(self, base: Locator) -> Locator:
        """A locator of the merged config: this file's keys over ``base``'s."""
        merged = Locator(self.file, None)
        merged.lines = {**base.lines, **self.lines}
        merged.files = {**base.files, **self.files}
        return merged


def resolve_extends(value: Any, file: Path) -> Path | None:
    """The base file named by ``extends: value`` in ``file`` (None: no base).

    Raises
    ------
    ValueError
        ``value`` is not a built-in name or an existing file (the message lists
        the valid values).
    """
    if value is None or value == NO_BASE:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a built-in config name ({_names()}) or a path to a YAML "
                         f"file, got {value!r}")
    if value in BUILTIN_CONFIGS:
        return BUILTIN_CONFIGS[value]
    path = Path(value).expanduser()
    path = path if path.is_absolute() else file.parent / path
    if not path.is_file():
        raise ValueError(f"no built-in config {value!r} and no file {path}; valid: "
                         f"{_names()}, or a path to a YAML file relative to this one")
    return path


def _names() -> str:
    return ", ".join([*BUILTIN_CONFIGS, NO_BASE])


def merge_layers(base: Mapping[str, Any], child: Mapping[str, Any], locator: Locator,
                 stage_sections: set[tuple[str, ...]], path: tuple[str, ...] = ()) -> dict:
    """``child`` merged over ``base`` (neither is changed).

    Parameters
    ----------
    base, child : mapping
        Parsed config files (sections -> values).
    locator : Locator
        ``base``'s locator; the keys of a discarded base ``params`` are dropped
        from it (before it is layered under the child's).
    stage_sections : set of tuple of str
        Sections choosing a plugin (``("matcher",)``, ``("absolute", "fitter")``):
        when ``child`` names another plugin there, ``base``'s params are discarded.
    path : tuple of str
        The key of ``base``/``child`` within the config (for recursion).
    """
    merged = dict(base)
    for key, value in child.items():
        here = (*path, str(key))
        old = merged.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            if (here in stage_sections and "plugin" in value
                    and value["plugin"] != old.get("plugin")):
                old = {k: v for k, v in old.items() if k != "params"}
                locator.drop((*here, "params"))
            merged[key] = merge_layers(old, value, locator, stage_sections, here)
        else:
            merged[key] = value
    return merged
