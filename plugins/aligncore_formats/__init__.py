"""aligncore's default image formats: FITS (FITS WCS), ASDF (GWCS), JWST and Roman data models.

Each format is an `aligncore.ImageFormat` registered through the ``aligncore``
entry-point group, like a third-party format. Their readers and writers live in
the public `aligncore.formats` package (``fits``, ``asdf``, ``jwst``) or in this
plugin (``aligncore_formats.roman``) and are imported on first use, so claiming a
``.asdf`` or FITS file imports neither asdf nor gwcs nor stdatamodels nor
roman_datamodels.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import aligncore

if TYPE_CHECKING:
    from aligncore import AlignImage, ImageResult

__all__ = ["AsdfFormat", "FitsFormat", "JwstFormat", "RomanFormat", "aligncore_add_formats"]
__version__ = aligncore.__version__


class _ModuleFormat(aligncore.ImageFormat):
    """A format whose reader and writer are functions of one module, imported on first use
    (the shape of astropy's ``register_reader`` / ``register_writer``)."""

    module: ClassVar[str] = ""
    reader: ClassVar[str] = ""
    writer: ClassVar[str] = ""

    def open(self, path: Path, *, group_id: str | None = None) -> AlignImage:
        """Open ``path`` with ``module.reader(path, group_id=...)``."""
        return getattr(import_module(self.module), self.reader)(path, group_id=group_id)

    def write(self, image: AlignImage, result: ImageResult, target: Path, *, wcsname: str,
              version: str) -> Path:
        """Write with ``module.writer(image, result, target, wcsname=..., version=...)``."""
        return getattr(import_module(self.module), self.writer)(
            image, result, target, wcsname=wcsname, version=version)


class FitsFormat(_ModuleFormat):
    """FITS images with a celestial FITS WCS (the ``SCI`` extension or the primary HDU,
    an optional ``DQ`` extension); a file with several ``SCI`` extensions (HST ACS/WFC,
    WFC3/UVIS) is one image per chip, the chips in one group, written back to one file.
    The fallback: it claims every file and its reader reports one that is not FITS."""

    name: ClassVar[str] = "fits"
    order: ClassVar[int] = 1000
    module: ClassVar[str] = "aligncore.formats.fits"
    reader: ClassVar[str] = "open_fits"
    writer: ClassVar[str] = "write_fits_image"

    @classmethod
    def identify(cls, path: Path) -> bool:
        """Always True (the format asked last)."""
        return True

    def open_images(self, path: Path, *, group_id: str | None = None) -> list[AlignImage]:
        """Every chip of ``path`` (`aligncore.formats.fits.open_fits_images`)."""
        from aligncore.formats.fits import open_fits_images

        return open_fits_images(path, group_id=group_id)

    def write_images(self, images: Sequence[AlignImage], results: Sequence[ImageResult],
                     target: Path, *, wcsname: str, version: str) -> Path:
        """One output file, every chip's header updated
        (`aligncore.formats.fits.write_fits_images`)."""
        from aligncore.formats.fits import write_fits_images

        return write_fits_images(images, results, target, wcsname=wcsname, version=version)


class AsdfFormat(_ModuleFormat):
    """ASDF files with a GWCS (``*.asdf``), claimed by suffix without importing asdf."""

    name: ClassVar[str] = "asdf"
    order: ClassVar[int] = 10
    module: ClassVar[str] = "aligncore.formats.asdf"
    reader: ClassVar[str] = "open_asdf"
    writer: ClassVar[str] = "write_asdf_image"

    @classmethod
    def identify(cls, path: Path) -> bool:
        """True for a ``.asdf`` suffix."""
        return Path(path).suffix.lower() == ".asdf"


class JwstFormat(_ModuleFormat):
    """JWST data-model FITS files (a ``DATAMODL`` keyword or an ``ASDF`` extension, e.g.
    ``*_cal.fits``; needs the ``jwst`` extra to open). Asked before plain FITS."""

    name: ClassVar[str] = "jwst"
    order: ClassVar[int] = 20
    module: ClassVar[str] = "aligncore.formats.jwst"
    reader: ClassVar[str] = "open_jwst"
    writer: ClassVar[str] = "write_jwst_image"

    @classmethod
    def identify(cls, path: Path) -> bool:
        """True for a FITS file with ``DATAMODL`` or an ``ASDF`` extension (never raises)."""
        from aligncore.formats.jwst import is_jwst_fits

        return is_jwst_fits(path)

    def output_name(self, path: Path) -> str:
        """``*_cal.fits`` -> ``*_tweakreg.fits``, like the JWST pipeline."""
        from aligncore.formats.jwst import output_name

        return output_name(Path(path).name)


class RomanFormat(_ModuleFormat):
    """Roman WFI level-2 images (an ASDF file whose tree has a top-level ``roman`` node,
    e.g. ``*_cal.asdf``; needs the ``roman`` extra to open). Asked before plain ASDF."""

    name: ClassVar[str] = "roman"
    order: ClassVar[int] = 5
    module: ClassVar[str] = "aligncore_formats.roman"
    reader: ClassVar[str] = "open_roman"
    writer: ClassVar[str] = "write_roman_image"

    @classmethod
    def identify(cls, path: Path) -> bool:
        """True for a ``.asdf`` file with a ``roman`` node (read from the YAML header;
        never raises)."""
        if Path(path).suffix.lower() != ".asdf":
            return False
        from aligncore_formats.roman import roman_tag

        return roman_tag(path) is not None

    def output_name(self, path: Path) -> str:
        """``*_cal.asdf`` -> ``*_tweakreg.asdf``, like romancal's tweakreg step."""
        from aligncore_formats.roman import output_name

        return output_name(Path(path).name)


@aligncore.hookimpl
def aligncore_add_formats() -> list[type[aligncore.ImageFormat]]:
    """Register the FITS, ASDF, JWST and Roman formats."""
    return [RomanFormat, AsdfFormat, JwstFormat, FitsFormat]
