"""Reading images lazily and writing outputs atomically.

Inputs are never modified unless the user asks for in-place updates; every
file is written to a temporary name in the target directory and renamed over
the final name only when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning

from aligncore.errors import InputError
from aligncore.types import COL_FLUX, COL_ID, COL_X, COL_Y, AlignImage, ImageResult

__all__ = [
    "CATALOG_FORMATS",
    "FitsPixels",
    "atomic_path",
    "catalog_path",
    "checked_pixels",
    "current_umask",
    "open_image",
    "output_mode",
    "read_catalog",
    "write_catalog",
    "write_fits_image",
    "write_json",
]

CATALOG_FORMATS = {"ecsv": ("ascii.ecsv", ".ecsv"), "fits": ("fits", ".fits"),
                   "parquet": ("parquet", ".parquet")}

_WCS_KEY_PREFIXES = ("A_", "B_", "AP_", "BP_")


def current_umask() -> int:
    """The process's file-creation mask (read from /proc where possible, without changing it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc: read by setting, then restore at once
    os.umask(mask)
    return mask


def output_mode(target: Path) -> int:
    """The permission bits a plain ``open(target, "w")`` would leave ``target`` with.

    An existing file keeps its mode (``--in-place`` keeps the input's mode); a new
    file gets ``0o666`` minus the umask.
    """
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    The result has the mode of :func:`output_mode` (that of the file it replaces,
    or ``0o666`` minus the umask). On any exception, including KeyboardInterrupt
    and SIGTERM turned into an exception, the temporary file is removed and
    ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        os.close(fd)
        yield tmp
        os.chmod(tmp, output_mode(target))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _science_hdu(hdul: fits.HDUList, path: Path) -> int:
    for index, hdu in enumerate(hdul):
        if hdu.name == "SCI" and hdu.data is not None:
            return index
    if hdul[0].data is not None:
        return 0
    for index, hdu in enumerate(hdul):
        if isinstance(hdu, fits.ImageHDU) and hdu.data is not None:
            return index
    raise InputError(f"{path}: no image data (no SCI extension and no data in the primary HDU)")


def _read_wcs(header: fits.Header, hdul: fits.HDUList, path: Path) -> WCS:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, fobj=hdul)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the WCS: {exc}") from None
    if not wcs.has_celestial or wcs.naxis != 2:
        raise InputError(f"{path}: no celestial WCS in the science header (need a 2D sky WCS)")
    return wcs


def _read_epoch(*headers: fits.Header) -> Time | None:
    for header in headers:
        if "MJD-OBS" in header:
            with contextlib.suppress(Exception):
                return Time(float(header["MJD-OBS"]), format="mjd", scale="utc")
        if "DATE-OBS" in header:
            with contextlib.suppress(Exception):
                return Time(str(header["DATE-OBS"]), scale="utc")
    return None


def checked_pixels(path: Path, data: np.ndarray, dq: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate pixels read from ``path``: DQ shape matches, at least one finite value."""
    if dq is not None and dq.shape != data.shape:
        raise InputError(f"{path}: DQ shape {dq.shape} differs from SCI shape {data.shape}")
    if not np.isfinite(data).any():
        raise InputError(f"{path}: the science array has no finite pixel (all NaN/inf)")
    return data, dq


@dataclass(frozen=True)
class FitsPixels:
    """Pixel loader of a FITS image: the science HDU ``sci`` (index or name) and an
    optional ``DQ`` extension. A plain object (not a closure), so that an image opened
    here can be sent to a worker process, which reads the pixels itself."""

    path: Path
    sci: int | str

    def __call__(self) -> tuple[np.ndarray, np.ndarray | None]:
        with fits.open(self.path, memmap=False) as hdul:
            data = np.asarray(hdul[self.sci].data, dtype=float)
            dq = None
            if "DQ" in hdul and hdul["DQ"].data is not None:
                dq = np.asarray(hdul["DQ"].data)
        return checked_pixels(self.path, data, dq)


def open_image(path: str | Path, *, group_id: str | None = None) -> AlignImage:
    """Open a FITS image lazily: header, WCS and shape now, pixels on demand.

    ``.asdf`` files are opened by `aligncore.io_asdf.open_asdf` (GWCS images);
    JWST data-model files (``DATAMODL`` keyword or an ``ASDF`` extension, e.g.
    ``*_cal.fits``) by `aligncore.io_jwst.open_jwst` (needs the ``jwst`` extra).

    The science array is the ``SCI`` extension, or the primary HDU's data; an
    optional ``DQ`` extension gives the data-quality flags.

    Parameters
    ----------
    path : path
        FITS file.
    group_id : str, optional
        Group of the image; default: the header's ``GROUPID`` keyword, if any.

    Raises
    ------
    InputError
        The file is missing, not FITS, has no 2D image or no celestial WCS.
    """
    path = Path(path)
    if path.suffix.lower() == ".asdf":
        from aligncore.io_asdf import open_asdf

        return open_asdf(path, group_id=group_id)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image file")
    from aligncore.io_jwst import is_jwst_fits, open_jwst

    if is_jwst_fits(path):
        return open_jwst(path, group_id=group_id)
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            hdul.verify("silentfix")
            sci_index = _science_hdu(hdul, path)
            header = hdul[sci_index].header.copy()
            primary = hdul[0].header.copy()
            shape = hdul[sci_index].data.shape
            wcs = _read_wcs(header, hdul, path)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{path}: {_fits_problem(exc)}") from None
    if len(shape) != 2:
        raise InputError(f"{path}: science data must be 2D, got shape {tuple(shape)}")
    saturate = header.get("SATURATE", primary.get("SATURATE"))
    return AlignImage(
        name=path.name,
        wcs=wcs,
        shape=(int(shape[0]), int(shape[1])),
        path=path,
        group_id=group_id or header.get("GROUPID") or primary.get("GROUPID"),
        epoch=_read_epoch(primary, header),
        loader=FitsPixels(path, sci_index),
        meta={"sci_hdu": sci_index, "saturate": float(saturate) if saturate is not None else None},
    )


def _strip_wcs(header: fits.Header, wcs: WCS) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        old_keys = list(wcs.to_header(relax=True).keys())
    for key in old_keys:
        header.remove(key, ignore_missing=True, remove_all=True)
    for key in list(header.keys()):
        if key.startswith(_WCS_KEY_PREFIXES):
            header.remove(key, ignore_missing=True, remove_all=True)
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2", "PC1_1", "PC1_2", "PC2_1", "PC2_2"):
        header.remove(key, ignore_missing=True, remove_all=True)


def _fits_problem(exc: OSError) -> str:
    """What is wrong with a file astropy could not open, without astropy's hints at
    options (``ignore_missing_simple``) that the command line cannot pass."""
    text = str(exc)
    if "SIMPLE" in text or "Empty or corrupt FITS file" in text:
        return "not a FITS file"
    return f"not a readable FITS file ({text.split('. If ')[0]})"


def _long_string(keyword: str, text: str, comment: str) -> tuple[str, str]:
    """A string value and comment for a card: the whole text (ASCII), continued on CONTINUE
    cards when long; the comment is dropped when it would not fit beside a one-card value."""
    value = text.encode("ascii", "replace").decode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fits.Card(keyword, value, comment).image  # noqa: B018 (formats the card)
    return (value, "") if caught else (value, comment)


def fit_keywords(result: ImageResult) -> dict[str, tuple[Any, str]]:
    """FITS keywords recording the alignment of one image."""
    cards: dict[str, tuple[Any, str]] = {
        "ALNSTAT": (result.status.value, "aligncore alignment status"),
        "ALNNMAT": (result.n_matched, "pairs found by the matcher"),
    }
    if result.reason:  # a long reason continues on CONTINUE cards (long-string convention)
        cards["ALNREAS"] = _long_string("ALNREAS", result.reason, "reason for the status")
    fit = result.fit
    if fit is not None:
        cards.update({
            "ALNGEOM": (fit.fitgeometry, "fit geometry"),
            "ALNSHX": (float(fit.shift[0]), "[arcsec] tangent-plane shift x"),
            "ALNSHY": (float(fit.shift[1]), "[arcsec] tangent-plane shift y"),
            "ALNROT": (float(fit.rotation), "[deg] rotation"),
            "ALNSCL": (float(fit.scale), "scale"),
            "ALNRMSE": (float(fit.rmse), "[arcsec] fit RMS residual"),
            "ALNNUSE": (fit.n_used, "pairs kept by the fit after clipping"),
        })
    return cards


def write_fits_image(
    image: AlignImage,
    result: ImageResult,
    target: str | Path,
    *,
    wcsname: str,
    version: str,
) -> Path:
    """Write a copy of ``image`` with the WCS of ``result`` (atomically).

    The science header's WCS keywords are replaced by those of ``result.wcs``
    when the image was aligned; otherwise the WCS is left exactly as it was
    and only the status keywords are added.
    """
    if image.path is None:
        raise InputError(f"{image.name}: cannot write an image that was not read from a file")
    target = Path(target)
    sci_index = int(image.meta.get("sci_hdu", 0))
    with fits.open(image.path, memmap=False) as hdul:
        header = hdul[sci_index].header
        if result.ok and result.wcs is not image.wcs:
            _strip_wcs(header, image.wcs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                header.update(result.wcs.to_header(relax=True))
            header["WCSNAME"] = (wcsname, "aligncore corrected WCS")
        for key, (value, comment) in fit_keywords(result).items():
            header[key] = (value, comment)
        header["ALNVERS"] = (version, "aligncore version")
        with atomic_path(target) as tmp:
            hdul.writeto(tmp, overwrite=True, output_verify="silentfix")
    return target


def write_catalog(table: Table, target: str | Path, fmt: str = "ecsv") -> Path:
    """Write a catalog atomically in ``fmt`` (ecsv, fits or parquet)."""
    if fmt not in CATALOG_FORMATS:
        raise ValueError(f"catalog format {fmt!r}; expected one of {', '.join(CATALOG_FORMATS)}")
    astropy_format, _ = CATALOG_FORMATS[fmt]
    table = Table(table, copy=False)
    table.meta = _serializable_meta(table.meta)
    with atomic_path(target) as tmp:
        table.write(tmp, format=astropy_format, overwrite=True)
    return Path(target)


_CATALOG_ALIASES = {COL_X: ("x", "xcentroid", "x_centroid"),
                    COL_Y: ("y", "ycentroid", "y_centroid")}


def catalog_path(outdir: Path, image_name: str, fmt: str) -> Path:
    """``<outdir>/<stem>_cat.<ext>`` for an image file name."""
    stem = Path(image_name).name
    for suffix in (".fits.gz", ".fits", ".fit", ".asdf"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return outdir / f"{stem}_cat{CATALOG_FORMATS[fmt][1]}"


def read_catalog(path: str | Path) -> QTable:
    """Read a source catalog (ECSV, FITS, CSV, Parquet) with 0-based ``x``, ``y`` pixel columns.

    ``xcentroid``/``ycentroid`` are accepted for ``x``/``y``; ``id`` and ``flux``
    are added when missing.

    Raises
    ------
    InputError
        The file is missing, unreadable, or lacks pixel coordinates.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: catalog file not found")
    try:
        table = QTable.read(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the catalog: {exc}") from None
    lower = {name.lower(): name for name in table.colnames}
    for column, aliases in _CATALOG_ALIASES.items():
        found = next((lower[a] for a in aliases if a in lower), None)
        if found is None:
            raise InputError(f"{path}: no {column!r} column (0-based pixels); columns present: "
                             f"{', '.join(table.colnames)}")
        if found != column:
            table.rename_column(found, column)
    if COL_ID not in table.colnames:
        table[COL_ID] = np.arange(1, len(table) + 1)
    if COL_FLUX not in table.colnames:
        table[COL_FLUX] = np.ones(len(table))
    table.meta["source_file"] = str(path)
    return table


def _serializable_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(meta), default=str))


def write_json(data: Mapping[str, Any], target: str | Path) -> Path:
    """Write JSON atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return Path(target)
