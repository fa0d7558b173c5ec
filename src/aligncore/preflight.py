"""Checking every input before any work starts, and reporting every problem at once.

`check_inputs` looks at each image file and at the user's reference catalog file
(absolute alignment with a local catalog) without reading any pixel:

- a FITS file is walked header by header: every header must end (``END`` card)
  and every HDU's data (``|BITPIX| / 8 * GCOUNT * (PCOUNT + NAXIS1 * ... * NAXISn)``
  bytes, padded to 2880) must be present, so a truncated file is found before
  detection instead of when its pixels are read;
- the science image is opened as `aligncore.formats.open_images` opens it (every chip
  of a multi-chip file, each problem naming its chip): a numeric 2D
  image with a usable celestial WCS (finite CRVAL, non-singular CD or PC * CDELT,
  pixel scale within 1e-4 arcsec .. 1 deg, sane SIP orders; see
  `aligncore.formats.fits.wcs_problems`);
- ASDF files must hold every binary block their block headers announce, and are
  opened with `aligncore.formats.asdf.open_asdf` (2D numeric ``data`` and a GWCS);
- the reference catalog stage's `~aligncore.RefCatalog.check` reports what would
  make its query fail (the ``file`` catalog: unreadable, no or ambiguous ra/dec
  columns, fewer than ``absolute.min_gaia`` usable rows).

Each problem is one `Problem` whose text is ``"PATH: problem"``.
"""

from __future__ import annotations

import gzip
import io
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from astropy.io import fits

from aligncore.errors import AlignError, InputError

if TYPE_CHECKING:
    from aligncore.config import Config
    from aligncore.registry import Registry
    from aligncore.types import AlignImage

__all__ = ["ASDF_BLOCK_MAGIC", "FITS_BLOCK", "MAX_HDUS", "Problem", "asdf_layout_problems",
           "check_image", "check_inputs", "data_size", "fits_layout_problems", "raise_problems"]

FITS_BLOCK = 2880
"""Size of a FITS block (bytes): headers and data are padded to it."""
MAX_HDUS = 1000
"""HDUs walked per file at most (a file with more is not checked further)."""
_CHUNK = 1 << 22
XTENSION = b"XTENSION"
"""How every FITS extension header starts; other bytes after an HDU end the walk."""
SIMPLE = b"SIMPLE  ="
"""How every FITS file starts."""
_CUT_HEADER = ("not multiple of 2880", "missing END card")
"""What astropy says of a header whose file ends before its END card."""
_Stream = io.BufferedReader | gzip.GzipFile


@dataclass(frozen=True)
class Problem:
    """One problem of one input: ``str(problem)`` is ``"PATH: message"``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _padded(size: int) -> int:
    return -(-size // FITS_BLOCK) * FITS_BLOCK


def data_size(header: fits.Header) -> int:
    """Bytes of data (before padding) that a FITS header announces."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    axes = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)]
    if header.get("SIMPLE") and header.get("GROUPS") and axes[0] == 0:
        axes = axes[1:]  # random groups: NAXIS1 = 0 is not a data axis
    count = 1
    for n in axes:
        count *= n
    pcount, gcount = int(header.get("PCOUNT", 0)), int(header.get("GCOUNT", 1))
    return abs(int(header["BITPIX"])) // 8 * gcount * (pcount + count)


def _skip(handle: _Stream, size: int) -> int:
    """Move ``size`` bytes forward; returns how many bytes there were to skip."""
    if not isinstance(handle, gzip.GzipFile):
        start = handle.tell()
        end = handle.seek(0, 2)
        skipped = min(size, end - start)
        handle.seek(start + skipped)
        return skipped
    skipped = 0
    while skipped < size:
        chunk = handle.read(min(_CHUNK, size - skipped))
        if not chunk:
            break
        skipped += len(chunk)
    return skipped


def _open_bytes(path: Path) -> _Stream:
    with path.open("rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def _walk(handle: _Stream) -> str | None:
    """The first layout problem of an open FITS stream, or None."""
    if handle.peek(len(SIMPLE))[:len(SIMPLE)] != SIMPLE:
        return "not a FITS file"
    for index in range(MAX_HDUS):
        if index > 0 and handle.peek(len(XTENSION))[:len(XTENSION)] != XTENSION:
            return None  # the end of the file (or padding after it, as astropy accepts)
        try:
            header = fits.Header.fromfile(handle)
            size = _padded(data_size(header))
        except (OSError, ValueError, TypeError, KeyError, EOFError) as exc:
            if isinstance(exc, EOFError) or any(text in str(exc) for text in _CUT_HEADER):
                return f"truncated: the file ends inside the header of HDU {index}"
            what = "not a readable FITS file" if index == 0 else f"HDU {index}: unreadable header"
            return f"{what} ({exc})"
        available = _skip(handle, size)
        if available < size:
            return (f"truncated: HDU {index} announces {size} bytes of data, only {available} "
                    "are in the file")
    return None


def fits_layout_problems(path: str | Path) -> list[str]:
    """Whether a FITS file (plain or gzip) holds every header and every byte of data.

    Returns
    -------
    list of str
        At most one problem (``"empty file"``, ``"not a readable FITS file (...)"``,
        ``"truncated: ..."``), without the path.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        return ["empty file (0 bytes)"]
    try:
        with _open_bytes(path) as handle:
            problem = _walk(handle)
    except (OSError, EOFError) as exc:
        problem = f"unreadable ({exc})"
    return [problem] if problem else []


ASDF_BLOCK_MAGIC = b"\xd3BLK"
_ASDF_HEADER = struct.Struct(">IIQQQ")  # flags, compression, allocated, used, data sizes


def _first_block(handle: io.BufferedReader) -> int:
    """Offset of the first ASDF block magic (-1 when there is none), read in chunks."""
    tail, base = b"", 0
    while chunk := handle.read(_CHUNK):
        found = (tail + chunk).find(ASDF_BLOCK_MAGIC)
        if found >= 0:
            return base - len(tail) + found
        base += len(chunk)
        tail = chunk[-(len(ASDF_BLOCK_MAGIC) - 1):]
    return -1


def asdf_layout_problems(path: str | Path) -> list[str]:
    """Whether every binary block of an ASDF file is complete (its allocated bytes present).

    Block headers (ASDF standard: magic, header size, flags, compression,
    allocated/used/data sizes, checksum) are read one after the other from the
    first block; the data are skipped, nothing is decompressed or loaded.

    Returns
    -------
    list of str
        At most one problem (``"truncated: ..."``), without the path.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        offset, index = _first_block(handle), 0
        while offset >= 0:
            handle.seek(offset)
            head = handle.read(len(ASDF_BLOCK_MAGIC) + 2 + _ASDF_HEADER.size)
            if not head.startswith(ASDF_BLOCK_MAGIC):
                return []  # the block index, or the end of the file
            if len(head) < len(ASDF_BLOCK_MAGIC) + 2 + _ASDF_HEADER.size:
                return [f"truncated: block {index} has an incomplete header"]
            (header_size,) = struct.unpack_from(">H", head, len(ASDF_BLOCK_MAGIC))
            allocated = _ASDF_HEADER.unpack_from(head, len(ASDF_BLOCK_MAGIC) + 2)[2]
            data_start = offset + len(ASDF_BLOCK_MAGIC) + 2 + header_size
            offset = data_start + allocated
            if offset > size:
                return [f"truncated: block {index} announces {allocated} bytes, only "
                        f"{max(size - data_start, 0)} are in the file"]
            index += 1
    return []


_FITS_FORMATS = ("fits", "jwst")
"""Formats whose files get the FITS layout checks (ASDF files get the ASDF ones; a plugin
format's files only what its reader reports)."""


def check_image(path: str | Path, registry: Registry | None = None,
                opened: dict[Path, list[AlignImage]] | None = None) -> list[Problem]:
    """Problems of one image file (FITS or ASDF), without reading its pixels.

    Parameters
    ----------
    path : path
        The image file.
    registry : Registry, optional
        Whose image formats open it (default: the installed plugins).
    opened : dict, optional
        When given, the images opened by the check (one, or one per chip of a multi-chip
        file) are stored under ``Path(path)``, so that a caller about to open the same
        file does not read its headers twice.

    Returns
    -------
    list of Problem
        Empty when the image looks usable.
    """
    from aligncore.formats import format_of, open_images

    path = Path(path)
    if not path.exists():
        return [Problem(str(path), "file not found")]
    if path.is_dir():
        return [Problem(str(path), "is a directory, not an image file")]
    try:
        fmt = format_of(path, registry).name
    except InputError as exc:
        return [_as_problem(path, str(exc))]
    layout = (fits_layout_problems(path) if fmt in _FITS_FORMATS
              else asdf_layout_problems(path) if fmt == "asdf" else [])
    if layout:
        return [Problem(str(path), message) for message in layout]
    try:
        images = open_images(path, registry=registry)
    except InputError as exc:
        return [_as_problem(path, str(exc))]
    if opened is not None:
        opened[path] = images
    return []


def _as_problem(path: Path, text: str) -> Problem:
    """An InputError's message ``"PATH: problem"`` as a Problem (the path not repeated)."""
    prefix = f"{path}: "
    return Problem(str(path), text[len(prefix):] if text.startswith(prefix) else text)


def _duplicates(paths: Sequence[Path]) -> list[Problem]:
    seen: dict[Path, int] = {}
    problems = []
    for path in paths:
        key = path.resolve()
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            problems.append(Problem(str(path), "given more than once"))
    return problems


def _refcat_problems(config: Config, registry: Registry | None) -> list[Problem]:
    """What the configured reference catalog stage finds wrong before it is queried."""
    if not config.absolute.enabled:
        return []
    from aligncore.registry import build_registry
    from aligncore.stages import RefCatalog

    try:
        refcat = config.build_stage("refcatalog",
                                    registry or build_registry(config.plugin_files()))
        assert isinstance(refcat, RefCatalog)
        lines = refcat.check(int(config.absolute.min_gaia))
    except AlignError as exc:
        lines = [str(exc)]
    problems = []
    for line in lines:
        path, _, message = line.partition(": ")
        problems.append(Problem(path, message) if message else Problem("refcat", line))
    return problems


def check_inputs(paths: Iterable[str | Path], config: Config | None = None, *,
                 registry: Registry | None = None,
                 opened: dict[Path, list[AlignImage]] | None = None) -> list[Problem]:
    """Every problem of the inputs of a run, before any detection starts.

    Parameters
    ----------
    paths : iterable of path
        Image files (FITS, FITS.gz, ASDF, JWST ``*_cal.fits``).
    config : Config, optional
        The run's config: with absolute alignment enabled, its reference catalog
        stage is checked too (`~aligncore.RefCatalog.check`).
    registry : Registry, optional
        Plugin registry used to build the reference catalog stage.
    opened : dict, optional
        Filled with the images the checks opened, by ``Path`` (see `check_image`).

    Returns
    -------
    list of Problem
        Empty when every input looks usable; otherwise one problem per line,
        in the order of the inputs.
    """
    paths = [Path(p) for p in paths]
    problems = [problem for path in paths
                for problem in check_image(path, registry, opened)]
    problems += _duplicates(paths)
    if config is not None:
        problems += _refcat_problems(config, registry)
    # Output-directory problems (outputs.output_dir_problems) are added by the command
    # line, which knows the output directory: see the OUTPUT-DIR-CHECK marker in
    # aligncore.cli._inputs_ok.
    return problems


def raise_problems(problems: Sequence[Problem]) -> None:
    """Raise one `InputError` listing every problem (one per line); nothing if none."""
    if problems:
        lines = [str(p) for p in problems]
        raise InputError(lines[0] if len(lines) == 1 else
                         f"{len(lines)} input problems:\n  " + "\n  ".join(lines))
