"""Image formats: the public helpers format plugins build on, and `open_image`.

A format is an `aligncore.ImageFormat` plugin registered with the
``aligncore_add_formats`` hook (aligncore's own FITS, ASDF and JWST formats are the
default plugin ``aligncore_formats``). `open_image` and `write_image` ask the
registry's formats in order, like astropy's unified I/O registry asks its
identifiers; the first that claims a path opens it and writes its output.

The helpers below (atomic writes, pixel and GWCS checks, observation epochs, the
alignment record of data-model files) are public API for format plugins. The
readers and writers of aligncore's own formats live in ``aligncore.formats.fits``,
``.asdf`` and ``.jwst``; source catalog files in ``aligncore.formats.catalog_files``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aligncore.formats.common import (
    WCSINFO_ATTRIBUTE,
    WCSINFO_KEYS,
    alignment_record,
    atomic_path,
    checked_pixels,
    finite_number,
    mapping,
    observation_epoch,
    output_mode,
    prepare_gwcs,
    read_wcsinfo,
    write_json,
)

if TYPE_CHECKING:
    from aligncore.registry import Registry
    from aligncore.stages import ImageFormat
    from aligncore.types import AlignImage, ImageResult

__all__ = [
    "WCSINFO_ATTRIBUTE",
    "WCSINFO_KEYS",
    "alignment_record",
    "atomic_path",
    "checked_pixels",
    "finite_number",
    "format_of",
    "image_format_of",
    "mapping",
    "observation_epoch",
    "open_image",
    "open_images",
    "output_mode",
    "prepare_gwcs",
    "read_wcsinfo",
    "write_image",
    "write_images",
    "write_json",
]


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from aligncore.registry import default_registry

    return default_registry()


def format_of(path: str | Path, registry: Registry | None = None) -> ImageFormat:
    """The first registered format that claims ``path`` (an instance).

    Parameters
    ----------
    path : path
        Image file.
    registry : Registry, optional
        Plugin registry; default: the installed plugins (`default_registry`).

    Raises
    ------
    InputError
        No format claims ``path`` (the message names the installed formats).
    """
    return _registry(registry).image_format(path)


def image_format_of(image: AlignImage, registry: Registry | None = None) -> ImageFormat:
    """The format that writes ``image``: the one that opened it (``meta["format"]``),
    else the one that claims its path."""
    found = _registry(registry).format_named(str(image.meta.get("format", "")))
    if found is not None:
        return found
    if image.path is None:
        from aligncore.errors import InputError

        raise InputError(f"{image.name}: in-memory images have no file format")
    return format_of(image.path, registry)


def open_image(path: str | Path, *, group_id: str | None = None,
               registry: Registry | None = None) -> AlignImage:
    """Open an image lazily in whichever format claims it: header, WCS and shape now,
    pixels on demand.

    The first registered format (`aligncore.ImageFormat`) that claims the file opens
    it. aligncore's own: ``.asdf`` files (GWCS images); JWST data-model files
    (``DATAMODL`` keyword or an ``ASDF`` extension, e.g. ``*_cal.fits``; needs the
    ``jwst`` extra); other files as FITS (the ``SCI`` extension or the primary HDU, an
    optional ``DQ`` extension, a celestial FITS WCS).

    Parameters
    ----------
    path : path
        Image file.
    group_id : str, optional
        Group of the image; default: what the file says (``GROUPID``, ``meta.group_id``,
        the JWST exposure), if anything.
    registry : Registry, optional
        Plugin registry whose formats are asked; default: the installed plugins.

    Returns
    -------
    AlignImage
        The image, its pixels not read yet.

    Raises
    ------
    InputError
        The file is missing, unreadable in its format, has no 2D image or no celestial
        WCS, or no installed format claims it; a multi-chip file (HST ACS/WFC, WFC3/UVIS)
        is refused rather than read in part: open it with `open_images`.
    """
    path = Path(path)
    if path.suffix.lower() != ".asdf" and path.is_dir():
        from aligncore.errors import InputError

        raise InputError(f"{path}: is a directory, not an image file")
    return format_of(path, registry).open(path, group_id=group_id)


def open_images(path: str | Path, *, group_id: str | None = None,
                registry: Registry | None = None) -> list[AlignImage]:
    """Open every image of a file lazily, in whichever format claims it.

    Like `open_image`, but a multi-chip file (an HST ACS/WFC or WFC3/UVIS ``flt``/``flc``
    file: several ``SCI`` extensions) gives one image per chip, named ``file[SCI,k]``,
    all with one group id (the exposure is one rigid unit); any other file one image.

    Returns
    -------
    list of AlignImage
        The images, in the order of the file's extensions, their pixels not read yet.

    Raises
    ------
    InputError
        As `open_image`; a chip's problem names the chip (``file: SCI,2: ...``).
    """
    path = Path(path)
    if path.suffix.lower() != ".asdf" and path.is_dir():
        from aligncore.errors import InputError

        raise InputError(f"{path}: is a directory, not an image file")
    return format_of(path, registry).open_images(path, group_id=group_id)


def write_images(images: Sequence[AlignImage], results: Sequence[ImageResult],
                 target: str | Path, *, wcsname: str, version: str,
                 registry: Registry | None = None) -> Path:
    """Write one corrected copy of the file ``images`` came from (all its chips, each with
    its result), in its own format (atomically).

    Returns
    -------
    Path
        ``target``.
    """
    return image_format_of(images[0], registry).write_images(
        images, results, Path(target), wcsname=wcsname, version=version)


def write_image(image: AlignImage, result: ImageResult, target: str | Path, *, wcsname: str,
                version: str, registry: Registry | None = None) -> Path:
    """Write a corrected copy of ``image`` in its own format (atomically).

    The format is the one that opened the image (``image.meta["format"]``), else the one
    that claims its path.

    Returns
    -------
    Path
        ``target``.
    """
    return image_format_of(image, registry).write(image, result, Path(target),
                                                  wcsname=wcsname, version=version)
