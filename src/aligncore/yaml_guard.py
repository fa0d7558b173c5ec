"""Reading YAML someone else wrote: ``safe_load`` plus limits ``safe_load`` lacks.

``yaml.safe_load`` never runs code (no ``!!python/...`` tags), but it accepts
documents that are hostile in other ways. :func:`parse_yaml` refuses them with
a message and line instead of hanging, crashing or silently dropping data:

- bytes that are not UTF-8 text;
- nesting deeper than Python's recursion allows;
- anchors and aliases that expand to a huge or endless structure ("billion
  laughs", an alias inside its own anchor);
- a key given twice in one mapping (YAML would keep only the last).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["MAX_EXPANDED_NODES", "YamlProblem", "YamlRefused", "parse_yaml"]

MAX_EXPANDED_NODES = 100_000
"""Largest number of values a document may expand to once aliases are followed."""


@dataclass(frozen=True)
class YamlProblem:
    """One reason to refuse a document: line (1-based, None: whole file), key, message."""

    line: int | None
    key: str
    message: str


class YamlRefused(ValueError):
    """The document cannot be used; ``problems`` says why."""

    def __init__(self, problems: list[YamlProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, yaml.SequenceNode):
        yield from node.value


def _expanded_size(root: yaml.Node) -> int:
    """Number of nodes once every alias is copied out (memoized; cycles raise)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_nodes.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in _children(node)),
                             MAX_EXPANDED_NODES + 1)
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlRefused([YamlProblem(_line(node), "", "an alias refers to its own "
                                           "anchor (an endless structure)")])
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)]


def _duplicate_keys(root: yaml.Node) -> list[YamlProblem]:
    problems = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                name = str(key_node.value)
                if name in first and name != "<<":
                    problems.append(YamlProblem(
                        _line(key_node), ".".join((*path, name)),
                        f"duplicate key (first given on line {first[name]}); YAML would keep "
                        "only the last value: give it once"))
                first.setdefault(name, _line(key_node))
                stack.append((value_node, (*path, name)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, str(i))) for i, item in enumerate(node.value))
    return sorted(problems, key=lambda p: p.line or 0)


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise YamlRefused([YamlProblem(None, "", "nested too deeply to read")]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise YamlRefused([YamlProblem(line, "", f"character U+{code:04X} is not allowed in "
                                       "YAML text (a binary file?)")]) from None


def parse_yaml(raw: bytes) -> tuple[Any, yaml.Node | None]:
    """Decode, check and load one YAML document with ``safe_load`` semantics.

    Parameters
    ----------
    raw : bytes
        The file's content.

    Returns
    -------
    data : object
        The loaded document (None for an empty one).
    node : yaml.Node or None
        Its node tree, for line numbers.

    Raises
    ------
    YamlRefused
        Not UTF-8, too deep, alias bomb or recursive alias, duplicate keys.
    yaml.YAMLError
        Invalid YAML (syntax, unknown tag such as ``!!python/object``).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlRefused([YamlProblem(None, "", f"not a UTF-8 text file (byte {exc.start}: "
                                       f"{raw[exc.start:exc.start + 1]!r})")]) from None
    node = _compose(text)
    if node is None:
        return None, None
    if _expanded_size(node) > MAX_EXPANDED_NODES:
        raise YamlRefused([YamlProblem(_line(node), "", (
            f"anchors and aliases (&, *) expand this document to more than "
            f"{MAX_EXPANDED_NODES} values; refused (write the values out)"))])
    duplicates = _duplicate_keys(node)
    if duplicates:
        raise YamlRefused(duplicates)
    try:
        return yaml.safe_load(text), node
    except RecursionError:
        raise YamlRefused([YamlProblem(None, "", "nested too deeply to read")]) from None
