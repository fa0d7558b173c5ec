"""Plain-language text for the command line: parameter types in words, progress lines.

``aligncore params`` describes a parameter as ``float > 0``, ``int >= 1`` or
``'shift' | 'rshift'`` rather than with pydantic's reprs; `LogProgress` prints
one line per finished item when stderr is not a terminal (a log file, CI).
"""

from __future__ import annotations

import sys
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

__all__ = ["LogProgress", "bounds_in_words", "describe_params", "type_in_words"]

_BOUND_WORDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="),
                ("multiple_of", "a multiple of"), ("min_length", "length >="),
                ("max_length", "length <="))
_NUMBERS = (int, float)


def bounds_in_words(metadata: Iterable[Any]) -> str:
    """Constraints as words: ``> 0``, ``>= 1 and <= 10``, ``length >= 2`` ('' if none)."""
    words = []
    for item in metadata:
        for attribute, word in _BOUND_WORDS:
            value = getattr(item, attribute, None)
            if value is not None:
                words.append(f"{word} {value:g}" if isinstance(value, float) else
                             f"{word} {value}")
    return " and ".join(words)


def type_in_words(annotation: Any, bounds: str = "") -> str:
    """A type in words: ``float > 0 | 'auto'``, ``'shift' | 'rshift'``, ``int or None``.

    Parameters
    ----------
    annotation : type
        A field's annotation (``Literal``, unions, ``Annotated`` and generics included).
    bounds : str
        Constraints (from `bounds_in_words`) placed after the numeric members.
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        inner = " and ".join(b for b in (bounds, bounds_in_words(_metadata(extra))) if b)
        return type_in_words(base, inner)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        members = [type_in_words(a, bounds) for a in typing.get_args(annotation)]
        text = " | ".join(m for m in members if m != "None")
        return f"{text} or None" if "None" in members else text
    if annotation is type(None):
        return "None"
    if origin is not None:
        args = ", ".join(type_in_words(a) for a in typing.get_args(annotation) if a is not ...)
        return f"{getattr(origin, '__name__', str(origin))} of {args}" if args else str(origin)
    name = getattr(annotation, "__name__", str(annotation))
    return f"{name} {bounds}" if bounds and annotation in _NUMBERS else name


def _metadata(constraints: Iterable[Any]) -> list[Any]:
    """Flatten pydantic ``FieldInfo`` objects found in ``Annotated`` extras."""
    return [m for c in constraints for m in getattr(c, "metadata", [c])]


def describe_params(info: Any) -> list[str]:
    """The lines ``aligncore params NAME`` prints for one registered plugin."""
    lines = [f"{info.kind} plugin {info.name!r} ({info.distribution} {info.version})"]
    if info.summary:
        lines.append("  " + info.summary)
    fields = info.cls.Params.model_fields
    if not fields:
        lines.append("  (no parameters)")
    for name, field in fields.items():
        bounds = bounds_in_words(field.metadata)
        kind = type_in_words(field.annotation, bounds)
        if bounds and bounds not in kind:  # bounds on a non-numeric type (e.g. a length)
            kind += f" ({bounds})"
        default = ("required" if field.is_required()
                   else repr(field.get_default(call_default_factory=True)))
        lines.append(f"  {name}: {kind} = {default}")
        if field.description:
            lines.append(f"      {field.description}")
    return lines


class LogProgress:
    """Progress as one line per finished item: ``detect 3/16 img_002.fits 0.4 s``.

    A drop-in for the ``progress(items, description, total)`` wrappers the
    pipeline accepts, for when stderr is a log file rather than a terminal.

    Parameters
    ----------
    names : sequence of str
        Item names by index; an item that is an index, or a tuple starting
        with one, is printed with its name.
    stream : file, optional
        Where to write (default: ``sys.stderr`` at the time of writing).
    """

    def __init__(self, names: Sequence[str] = (), stream: TextIO | None = None) -> None:
        self.names = list(names)
        self.stream = stream

    def __call__(self, items: Iterable[Any], description: str, total: int) -> Iterator[Any]:
        """Yield ``items`` unchanged, writing one line after each."""
        start = time.perf_counter()
        for count, item in enumerate(items, start=1):
            yield item
            now = time.perf_counter()
            self.line(description, count, total, self._name(item), now - start)
            start = now

    def line(self, description: str, count: int, total: int, name: str,
             seconds: float) -> None:
        """Write one progress line."""
        label = f" {name}" if name else ""
        stream = self.stream or sys.stderr
        print(f"{description} {count}/{total}{label} {seconds:.1f} s", file=stream, flush=True)

    def _name(self, item: Any) -> str:
        index = item[0] if isinstance(item, tuple) and item else item
        if isinstance(index, int) and 0 <= index < len(self.names):
            return self.names[index]
        return ""


def progress_for(enabled: bool, interactive: bool, names: Sequence[str] = ()
                 ) -> Callable[[Iterable[Any], str, int], Iterable[Any]]:
    """The progress wrapper for a command: a tqdm bar on a terminal, `LogProgress`
    lines otherwise, nothing when disabled (``-q``)."""
    if not enabled:
        return lambda items, description, total: items
    if not interactive:
        return LogProgress(names)

    def bar(items: Iterable[Any], description: str, total: int) -> Iterable[Any]:
        from tqdm import tqdm

        return tqdm(items, desc=description, total=total, unit="image", leave=False)

    return bar
