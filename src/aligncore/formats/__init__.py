"""Image formats: one module per format behind one reader/writer contract.

=========  ========================================  ======================================
format     module                                    claims a file when
=========  ========================================  ======================================
``asdf``   `aligncore.formats.asdf` (GWCS)            its suffix is ``.asdf``
``jwst``   `aligncore.formats.jwst` (stdatamodels)    FITS with ``DATAMODL`` or ``ASDF`` HDU
``fits``   `aligncore.formats.fits` (FITS WCS)        any other file
=========  ========================================  ======================================

Each format module has ``open_<format>(path, *, group_id=None) -> AlignImage`` (header,
WCS and shape at once, pixels on demand through a picklable loader) and
``write_<format>_image(image, result, target, *, wcsname, version) -> Path`` (a
corrected copy, written atomically). `open_image` and `write_image` ask the formats in
the order of `FORMATS`, like astropy's unified I/O registry asks its identifiers. The
modules are imported on first use, so `import aligncore` reads no format library.
Shared helpers (atomic writes, epochs, ``wcsinfo``) live in `aligncore.formats.common`;
source catalog files in `aligncore.formats.catalog_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aligncore.types import AlignImage, ImageResult

__all__ = ["FORMATS", "ImageFormat", "format_of", "open_image", "write_image"]


@dataclass(frozen=True)
class ImageFormat:
    """An image format: its name, its module and the names of its three functions.

    Attributes
    ----------
    name : str
        Format name (``image.meta["format"]``; FITS images leave it unset).
    module : str
        Module holding ``identify``, ``reader`` and ``writer``, imported on first use.
    identify, reader, writer : str
        Function names: ``identify(path) -> bool``, ``reader(path, *, group_id)``,
        ``writer(image, result, target, *, wcsname, version)``.
    suffixes : tuple of str
        File name suffixes (lower case) that claim a file without importing the module
        (``identify`` is then not called); empty: ask ``identify``.
    """

    name: str
    module: str
    identify: str
    reader: str
    writer: str
    suffixes: tuple[str, ...] = ()

    def claims(self, path: str | Path) -> bool:
        """True when this format claims ``path`` (by suffix, else by ``identify``)."""
        if self.suffixes:
            return Path(path).suffix.lower() in self.suffixes
        return bool(self.function("identify")(path))

    def function(self, role: str) -> Any:
        """The ``identify``, ``reader`` or ``writer`` function (imports the module)."""
        return getattr(import_module(self.module), getattr(self, role))


FORMATS = (
    ImageFormat("asdf", "aligncore.formats.asdf", "is_asdf", "open_asdf", "write_asdf_image",
                suffixes=(".asdf",)),
    ImageFormat("jwst", "aligncore.formats.jwst", "is_jwst_fits", "open_jwst", "write_jwst_image"),
    ImageFormat("fits", "aligncore.formats.fits", "is_fits", "open_fits", "write_fits_image"),
)
"""The image formats, in the order they are asked to claim a file (FITS last: the fallback)."""


def format_of(path: str | Path) -> ImageFormat:
    """The first format of `FORMATS` that claims ``path`` (FITS when no other does)."""
    for fmt in FORMATS[:-1]:
        if fmt.claims(path):
            return fmt
    return FORMATS[-1]


def open_image(path: str | Path, *, group_id: str | None = None) -> AlignImage:
    """Open an image lazily in whichever format claims it: header, WCS and shape now,
    pixels on demand.

    ``.asdf`` files are opened by `aligncore.formats.asdf.open_asdf` (GWCS images);
    JWST data-model files (``DATAMODL`` keyword or an ``ASDF`` extension, e.g.
    ``*_cal.fits``) by `aligncore.formats.jwst.open_jwst` (needs the ``jwst`` extra);
    other files by `aligncore.formats.fits.open_fits` (the ``SCI`` extension or the
    primary HDU, an optional ``DQ`` extension, a celestial FITS WCS).

    Parameters
    ----------
    path : path
        Image file.
    group_id : str, optional
        Group of the image; default: what the file says (``GROUPID``, ``meta.group_id``,
        the JWST exposure), if anything.

    Returns
    -------
    AlignImage
        The image, its pixels not read yet.

    Raises
    ------
    InputError
        The file is missing, unreadable in its format, has no 2D image or no celestial WCS.
    """
    path = Path(path)
    if path.suffix.lower() != ".asdf" and path.is_dir():
        from aligncore.errors import InputError

        raise InputError(f"{path}: is a directory, not an image file")
    return format_of(path).function("reader")(path, group_id=group_id)


def write_image(image: AlignImage, result: ImageResult, target: str | Path, *, wcsname: str,
                version: str) -> Path:
    """Write a corrected copy of ``image`` in its own format (atomically).

    The format is the one that opened the image (``image.meta["format"]``), else the one
    that claims its path.

    Returns
    -------
    Path
        ``target``.
    """
    name = image.meta.get("format")
    fmt = next((f for f in FORMATS if f.name == name), None)
    if fmt is None:
        fmt = format_of(image.path) if image.path is not None else FORMATS[-1]
    return fmt.function("writer")(image, result, target, wcsname=wcsname, version=version)
