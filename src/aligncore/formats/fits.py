"""FITS images with a FITS WCS (TAN, TAN-SIP): reading them lazily, writing corrected copies.

The science array is the ``SCI`` extension, or the primary HDU's data; an optional
``DQ`` extension gives the data-quality flags. A file with several ``SCI`` extensions
(HST ACS/WFC, WFC3/UVIS) is one image per chip (`open_fits_images`), each with its own
WCS (lookup-table distortions included) and ``DQ``, all in one group. The WCS is
checked before any work (`wcs_problems`). A corrected copy gets, per chip, the new WCS
keywords, ``WCSNAME``, the previous WCS as an alternate WCS (key ``O`` first,
`aligncore.formats.altwcs`) and the ``ALN*`` keywords (`fit_keywords`), written
atomically.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from aligncore.errors import InputError
from aligncore.formats.altwcs import archive_primary
from aligncore.formats.common import atomic_path, checked_pixels, observation_epoch
from aligncore.types import AlignImage, ImageResult

FITS_BLOCK_SIZE = 2880  # bytes: headers and data are padded to whole blocks

__all__ = [
    "HST_DQ_BITMASK",
    "MAX_PIXEL_SCALE",
    "MAX_SIP_ORDER",
    "MIN_PIXEL_SCALE",
    "FitsPixels",
    "fit_keywords",
    "header_shape",
    "is_fits",
    "open_fits",
    "open_fits_images",
    "wcs_problems",
    "write_fits_image",
    "write_fits_images",
]

_WCS_KEY_PREFIXES = ("A_", "B_", "AP_", "BP_")


_IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
MIN_PIXEL_SCALE = 1e-4
"""Smallest pixel scale (arcsec) accepted in a FITS WCS."""
MAX_PIXEL_SCALE = 3600.0
"""Largest pixel scale (arcsec, one degree) accepted in a FITS WCS."""
MAX_SIP_ORDER = 9
"""Highest SIP polynomial order accepted (``A_ORDER``, ``B_ORDER``, ``AP_ORDER``, ``BP_ORDER``)."""


def header_shape(header: fits.Header) -> tuple[int, ...]:
    """Data shape (numpy order) declared by a header's ``NAXISn`` keywords; () without data."""
    try:
        naxis = int(header.get("NAXIS", 0))
        shape = tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1))
    except (TypeError, ValueError):
        return ()
    return shape if shape and min(shape) > 0 else ()


def _has_image(hdu: Any) -> bool:
    return isinstance(hdu, _IMAGE_HDUS) and bool(header_shape(hdu.header))


def _science_hdu(hdul: fits.HDUList, path: Path) -> int:
    """Index of the science image: ``SCI``, else the primary HDU, else the first image
    extension; chosen from the headers alone (no pixel is read)."""
    for index, hdu in enumerate(hdul):
        if hdu.name == "SCI":
            if not isinstance(hdu, _IMAGE_HDUS):
                raise InputError(f"{path}: the SCI extension is a {type(hdu).__name__}, not an "
                                 "image of numbers")
            if header_shape(hdu.header):
                return index
    for index, hdu in enumerate(hdul):
        if _has_image(hdu):
            return index
    raise InputError(f"{path}: no image data (no SCI extension and no data in the primary HDU)")


def _sip_problems(header: fits.Header) -> list[str]:
    """SIP orders present when the CTYPE asks for SIP, integers within 0..MAX_SIP_ORDER."""
    problems = []
    sip = any(str(header.get(f"CTYPE{i}", "")).upper().endswith("-SIP") for i in (1, 2))
    for key in ("A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER"):
        value = header.get(key)
        if value is None:
            if sip and key in ("A_ORDER", "B_ORDER"):
                problems.append(f"CTYPE asks for SIP distortion but {key} is missing")
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not (
                0 <= value <= MAX_SIP_ORDER):
            problems.append(f"{key} = {value!r}: a SIP order must be an integer in "
                            f"0..{MAX_SIP_ORDER}")
    return problems


_NUMERIC_WCS_KEYS = ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2", "CD1_1",
                     "CD1_2", "CD2_1", "CD2_2", "PC1_1", "PC1_2", "PC2_1", "PC2_2")


def _header_value(header: fits.Header, key: str) -> Any:
    try:
        return header.get(key)
    except (ValueError, fits.VerifyError):
        return "unparsable"


def _keyword_problems(header: fits.Header) -> list[str]:
    """WCS keywords that are present but not finite numbers; a latitude beyond +-90 deg."""
    problems = []
    for key in _NUMERIC_WCS_KEYS:
        value = _header_value(header, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            problems.append(f"{key} = {value!r} is not a finite number")
    for axis in (1, 2):
        ctype = str(_header_value(header, f"CTYPE{axis}") or "").upper()
        value = _header_value(header, f"CRVAL{axis}")
        if (ctype.startswith("DEC") or ctype[1:4] == "LAT") and isinstance(
                value, int | float) and abs(value) > 90.0:
            problems.append(f"CRVAL{axis} = {value} is not a latitude (must be within "
                            "-90..90 deg)")
    return problems


def _wcslib_message(exc: Exception) -> str:
    """An astropy/wcslib error on one line, without wcslib's source locations."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("ERROR ")]
    return " ".join(kept) or str(exc)


def _linear_matrix(wcs: WCS, header: fits.Header | None) -> np.ndarray:
    """The celestial CD matrix (deg/pixel): the header's CD when it has one (wcslib would
    replace an all-zero CD by a unit matrix), else the WCS's CD, or PC times CDELT."""
    if header is not None and any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2)):
        return np.array([[float(header.get(f"CD{i}_{j}", 0.0)) for j in (1, 2)]
                         for i in (1, 2)])
    core = wcs.celestial.wcs
    if core.has_cd():
        return np.array(core.cd, dtype=float)
    return np.array(core.get_pc(), dtype=float) * np.array(core.get_cdelt(), dtype=float)[:, None]


def wcs_problems(wcs: WCS, header: fits.Header | None = None) -> list[str]:
    """What makes a FITS WCS unusable for alignment (empty when it is usable).

    Checks a 2D equatorial WCS (RA first), finite ``CRPIX`` and ``CRVAL`` with the
    latitude within +-90 deg, a finite non-singular linear matrix (CD, or PC times
    CDELT) and a pixel scale within `MIN_PIXEL_SCALE` .. `MAX_PIXEL_SCALE` arcsec.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
    header : astropy.io.fits.Header, optional
        The header it was read from: its CD keywords are checked as written (wcslib
        silently replaces an all-zero CD matrix).

    Returns
    -------
    list of str
        One line per problem, without the file name.
    """
    try:
        return _checked_wcs(wcs, header)
    except (ValueError, IndexError, TypeError, AttributeError) as exc:  # wcslib's errors
        return [f"cannot read the WCS: {_wcslib_message(exc)}"]


def _checked_wcs(wcs: WCS, header: fits.Header | None) -> list[str]:
    if not wcs.has_celestial or wcs.naxis != 2:
        return ["no celestial WCS in the science header (need a 2D sky WCS)"]
    if (wcs.wcs.lngtyp, wcs.wcs.lattyp) != ("RA", "DEC"):
        return [f"the sky axes are {wcs.wcs.lngtyp}/{wcs.wcs.lattyp}; aligncore needs "
                "equatorial RA/DEC axes (its tangent plane and reference catalogs are ICRS)"]
    if wcs.wcs.radesys not in ("", "ICRS", "FK5"):
        return [f"RADESYS = {wcs.wcs.radesys!r}: aligncore needs ICRS (or FK5 J2000) "
                "coordinates, like its reference catalogs"]
    if (wcs.wcs.lng, wcs.wcs.lat) != (0, 1):
        return ["the first WCS axis must be the longitude (CTYPE1 = 'RA---...', CTYPE2 = "
                "'DEC--...'); this header has them the other way round"]
    crval = np.array(wcs.wcs.crval, dtype=float)
    if not np.all(np.isfinite(crval)):
        return [f"CRVAL {crval.tolist()} is not finite"]
    crpix = np.array(wcs.wcs.crpix, dtype=float)
    if not np.all(np.isfinite(crpix)):
        return [f"CRPIX {crpix.tolist()} is not finite"]
    problems = []
    lat = wcs.wcs.lat
    if lat >= 0 and abs(crval[lat]) > 90.0:
        problems.append(f"CRVAL{lat + 1} = {crval[lat]} is not a latitude (must be within "
                        "-90..90 deg)")
    matrix = _linear_matrix(wcs, header)
    if not np.all(np.isfinite(matrix)):
        return [*problems, f"the CD/PC*CDELT matrix {matrix.tolist()} is not finite"]
    det = abs(float(np.linalg.det(matrix)))
    size = float(np.max(np.abs(matrix)))
    if size == 0.0 or det <= 1e-12 * size * size:
        return [*problems, f"the CD/PC*CDELT matrix {matrix.tolist()} is singular (no pixel "
                           "scale)"]
    scale = math.sqrt(det) * 3600.0
    if not MIN_PIXEL_SCALE <= scale <= MAX_PIXEL_SCALE:
        problems.append(f"pixel scale {scale:.3g} arcsec is outside {MIN_PIXEL_SCALE:g} .. "
                        f"{MAX_PIXEL_SCALE:g} arcsec")
    return problems


def _read_wcs(header: fits.Header, hdul: fits.HDUList, where: str) -> WCS:
    """The WCS of one science header, its lookup-table distortions (``D2IMARR``,
    ``WCSDVARR`` extensions of ``hdul``) included; ``where`` prefixes the error."""
    problems = _keyword_problems(header) + _sip_problems(header)
    if problems:
        raise InputError(f"{where}: " + "; ".join(problems))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, fobj=hdul)
    except Exception as exc:
        raise InputError(f"{where}: cannot read the WCS: {_wcslib_message(exc)}") from None
    problems = wcs_problems(wcs, header)
    if problems:
        raise InputError(f"{where}: " + "; ".join(problems))
    return wcs


def _check_dq_shape(hdul: fits.HDUList, dq: int | str | None, shape: tuple[int, ...],
                    where: str) -> None:
    """The ``DQ`` extension ``dq``, if any, has the science shape (from the headers)."""
    if dq is None or dq not in hdul:
        return
    dq_shape = header_shape(hdul[dq].header)
    if dq_shape and dq_shape != shape:
        raise InputError(f"{where}: DQ shape {dq_shape} differs from SCI shape {shape}")


HST_DQ_BITMASK = 1 | 2 | 4 | 8 | 16 | 128 | 256 | 512 | 2048 | 4096 | 8192
"""DQ bits that make a pixel unusable in an HST (WFC3, ACS) file: 15263.

Masked: Reed-Solomon error (1), fill (2), bad detector pixel (4), aperture feature or
deviant zero read (8), hot pixel (16), bad column (128), full-well saturation (256), bad
flat (512), A-to-D saturation (2048), cosmic rays found by AstroDrizzle (4096) and by
calwf3/calacs (8192). Kept: CTE tail or unstable pixel (32), warm pixel (64, a few
percent of the pixels of an aged detector, corrected by the dark), charge trap (1024),
ghost/crosstalk (16384). Given to the detector as ``meta["dq_bitmask"]``; its own
``dq_bitmask`` parameter, when set, wins."""


def _is_hst(primary: fits.Header) -> bool:
    return str(primary.get("TELESCOP", "")).strip().upper() == "HST"


@dataclass(frozen=True)
class FitsPixels:
    """Pixel loader of a FITS image: the science HDU ``sci`` (index or name) and its data
    quality HDU ``dq`` (index or name; ``"DQ"``, the first ``DQ`` extension, by default;
    None for none). A plain object (not a closure), so that an image opened here can be
    sent to a worker process, which reads the pixels itself. ``chip`` (``"SCI,2"``)
    names the chip of a multi-chip file in error messages."""

    path: Path
    sci: int | str
    dq: int | str | None = "DQ"
    chip: str = ""

    def __call__(self) -> tuple[np.ndarray, np.ndarray | None]:
        where = f"{self.path}: {self.chip}" if self.chip else self.path
        try:
            with fits.open(self.path, memmap=False) as hdul:
                data = np.asarray(hdul[self.sci].data, dtype=float)
                dq = None
                if self.dq is not None and self.dq in hdul and hdul[self.dq].data is not None:
                    dq = np.asarray(hdul[self.dq].data)
        except (OSError, ValueError, TypeError, EOFError) as exc:
            raise InputError(f"{where}: cannot read the pixels ({exc})") from None
        return checked_pixels(where, data, dq)


def is_fits(path: str | Path) -> bool:
    """True for any path: FITS is the format tried last, and its reader reports a file
    that is not FITS."""
    return True


def _chip_hdus(hdul: fits.HDUList, path: Path) -> list[int]:
    """Indices of the ``SCI`` image extensions with data, when there are two or more (a
    multi-chip file: HST ACS/WFC, WFC3/UVIS); otherwise an empty list."""
    chips = [index for index, hdu in enumerate(hdul)
             if hdu.name == "SCI" and isinstance(hdu, _IMAGE_HDUS) and header_shape(hdu.header)]
    if len(chips) < 2:
        return []
    versions = [hdul[index].ver for index in chips]
    repeated = sorted({v for v in versions if versions.count(v) > 1})
    if repeated:
        raise InputError(f"{path}: {versions.count(repeated[0])} SCI extensions have EXTVER "
                         f"{repeated[0]}; the chips of a file need distinct EXTVER numbers")
    return chips


def _dq_hdu(hdul: fits.HDUList, version: int) -> int | None:
    """Index of the ``DQ`` extension with EXTVER ``version``, or None."""
    for index, hdu in enumerate(hdul):
        if hdu.name == "DQ" and hdu.ver == version:
            return index
    return None


@dataclass(frozen=True)
class _Opened:
    """What `open_fits_images` reads from the headers of one science HDU."""

    index: int
    header: fits.Header
    shape: tuple[int, int]
    wcs: WCS
    dq: int | str | None
    chip: str


def _open_science(hdul: fits.HDUList, index: int, dq: int | str | None, where: str,
                  chip: str) -> _Opened:
    header = hdul[index].header.copy()
    shape = header_shape(header)
    if len(shape) != 2:
        raise InputError(f"{where}: science data must be 2D, got shape {tuple(shape)}")
    _check_dq_shape(hdul, dq, shape, where)
    wcs = _read_wcs(header, hdul, where)
    return _Opened(index, header, (int(shape[0]), int(shape[1])), wcs, dq, chip)


def _read_headers(path: Path) -> tuple[fits.Header, list[_Opened]]:
    """The primary header and each science HDU (one per chip) of a FITS file."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image file")
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            hdul.verify("silentfix")
            primary = hdul[0].header.copy()
            chips = _chip_hdus(hdul, path)
            if not chips:
                return primary, [_open_science(hdul, _science_hdu(hdul, path), "DQ",
                                               str(path), "")]
            opened = []
            for index in chips:
                chip = f"SCI,{hdul[index].ver}"
                opened.append(_open_science(hdul, index, _dq_hdu(hdul, hdul[index].ver),
                                            f"{path}: {chip}", chip))
            return primary, opened
    except InputError:
        raise
    except (OSError, ValueError, EOFError, fits.VerifyError) as exc:
        raise InputError(f"{path}: {_fits_problem(exc)}") from None


def open_fits_images(path: str | Path, *, group_id: str | None = None) -> list[AlignImage]:
    """Open every image of a FITS file lazily: headers, WCS and shapes now, pixels on demand.

    A file with two or more ``SCI`` extensions (an HST ACS/WFC or WFC3/UVIS ``flt``/``flc``
    file) gives one image per chip, named ``file.fits[SCI,k]`` (``k`` its EXTVER), each
    with its own WCS (TAN-SIP and the lookup-table distortions ``D2IMARR`` / ``WCSDVARR``
    when the header names them), its own ``DQ`` extension (the one with the same EXTVER)
    and one group id shared by all chips: the exposure moves as one rigid unit. Any other
    file gives one image, as `open_fits`.

    Parameters
    ----------
    path : path
        FITS file.
    group_id : str, optional
        Group of the images; default: the header's ``GROUPID`` keyword, else (chips) the
        file name.

    Returns
    -------
    list of AlignImage
        ``meta`` holds ``sci_hdu`` (the science HDU's index), ``saturate``, ``chip``
        (``"SCI,k"``, chips only) and, for HST files (``TELESCOP = 'HST'``),
        ``dq_bitmask`` (`HST_DQ_BITMASK`).

    Raises
    ------
    InputError
        The file is missing or not FITS, or a chip has no 2D image, no usable celestial
        WCS or a DQ extension of another shape; the message names the chip.
    """
    path = Path(path)
    primary, opened = _read_headers(path)
    chips = len(opened) > 1
    images = []
    for science in opened:
        header = science.header
        saturate = header.get("SATURATE", primary.get("SATURATE"))
        meta: dict[str, Any] = {"format": "fits", "sci_hdu": science.index,
                                "saturate": float(saturate) if saturate is not None else None}
        meta.update(_detector_meta(header, primary, science.chip if chips else None))
        if chips:
            meta["chip"] = science.chip
        if _is_hst(primary):
            meta["dq_bitmask"] = HST_DQ_BITMASK
        group = group_id or header.get("GROUPID") or primary.get("GROUPID")
        images.append(AlignImage(
            name=f"{path.name}[{science.chip}]" if chips else path.name,
            wcs=science.wcs,
            shape=science.shape,
            path=path,
            group_id=group or (path.name if chips else None),
            epoch=observation_epoch(primary, header),
            loader=FitsPixels(path, science.index, science.dq, science.chip),
            meta=meta,
        ))
    return images


def open_fits(path: str | Path, *, group_id: str | None = None) -> AlignImage:
    """Open a FITS image lazily: header, WCS and shape now, pixels on demand.

    Parameters
    ----------
    path : path
        FITS file with one 2D science array (``SCI`` extension or primary HDU) and a
        celestial FITS WCS.
    group_id : str, optional
        Group of the image; default: the header's ``GROUPID`` keyword, if any.

    Returns
    -------
    AlignImage
        ``meta`` holds ``sci_hdu`` (the science HDU's index), ``saturate`` and, when the
        headers say, ``instrument``, ``detector`` (and ``detector_key`` for a CCDCHIP).

    Raises
    ------
    InputError
        The file is missing, not FITS, has no 2D image or no celestial WCS, or holds
        several chips (open those with `open_fits_images`).
    """
    images = open_fits_images(path, group_id=group_id)
    if len(images) > 1:
        raise InputError(f"{path}: holds {len(images)} SCI chips; open it with "
                         "aligncore.open_images (one image per chip)")
    return images[0]


def _detector_meta(header: fits.Header, primary: fits.Header,
                   chip_name: str | None = None) -> dict[str, str]:
    """``instrument``, ``detector`` (INSTRUME, DETECTOR) and, for a chip of a multi-chip
    file (its CCDCHIP, else ``chip_name`` such as ``SCI,2``), ``detector_key``: what names
    the detector of a distortion correction (`aligncore.distortion.detector_key`)."""
    out = {}
    for key, word in (("instrument", "INSTRUME"), ("detector", "DETECTOR")):
        value = header.get(word, primary.get(word))
        if value not in (None, ""):
            out[key] = str(value).strip()
    chip = header.get("CCDCHIP")
    if chip is None and chip_name is not None:
        chip = chip_name.split(",")[-1]
    if chip is not None and out:
        out["detector_key"] = (f"{out.get('instrument', 'unknown')}/"
                               f"{out.get('detector', 'unknown')}/CHIP{chip}").upper()
    return out


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


def _fits_problem(exc: Exception) -> str:
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
    """Write a copy of ``image`` with the WCS of ``result`` (atomically); see
    `write_fits_images`."""
    return write_fits_images([image], [result], target, wcsname=wcsname, version=version)


def write_fits_images(
    images: Sequence[AlignImage],
    results: Sequence[ImageResult],
    target: str | Path,
    *,
    wcsname: str,
    version: str,
) -> Path:
    """Write one copy of the file the ``images`` (its chips) were opened from, every chip's
    header updated from its result (atomically).

    A chip that was aligned gets the WCS of its result: the primary WCS keywords are
    replaced (in the CD form when the header had a CD matrix), ``WCSNAME`` is set to
    ``wcsname`` and ``ORIENTAT`` (when present) follows the new CD matrix; the WCS it
    replaces is kept as an alternate WCS (`aligncore.formats.altwcs.archive_primary`: key
    ``O`` when free, HST's convention for the original, else the next free letter). A chip
    that was not aligned keeps its WCS exactly as it was; every chip gets the ``ALN*``
    status keywords (`fit_keywords`). Every other HDU is copied byte for byte.
    """
    paths = {image.path for image in images}
    if len(paths) != 1 or None in paths or len(images) != len(results):
        raise InputError(f"{', '.join(i.name for i in images)}: one output file is written "
                         "from the images of one input file, with one result each")
    path = Path(next(iter(paths)))  # type: ignore[arg-type]
    target = Path(target)
    with fits.open(path, memmap=False) as hdul:
        for image, result in zip(images, results, strict=True):
            _update_header(hdul[int(image.meta.get("sci_hdu", 0))].header, image, result,
                           wcsname=wcsname, version=version)
        with atomic_path(target) as tmp:
            if not _copy_with_headers(hdul, tmp):
                hdul.writeto(tmp, overwrite=True, output_verify="silentfix")
    return target


def _update_header(header: fits.Header, image: AlignImage, result: ImageResult, *,
                   wcsname: str, version: str) -> None:
    """One science header: the corrected WCS (previous one archived) and the status."""
    if result.ok and result.wcs is not image.wcs:
        archive_primary(header)
        cd_form = any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2))
        _strip_wcs(header, image.wcs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            cards = result.wcs.to_header(relax=True)
        if cd_form:
            _to_cd_form(cards, result.wcs)
        header.update(cards)
        header["WCSNAME"] = (wcsname, "aligncore corrected WCS")
        if "ORIENTAT" in header:
            header["ORIENTAT"] = (_orientat(result.wcs), "[deg] position angle of image y axis")
    for key, (value, comment) in fit_keywords(result).items():
        header[key] = (value, comment)
    header["ALNVERS"] = (version, "aligncore version")


def _to_cd_form(cards: fits.Header, wcs: WCS) -> None:
    """Replace the ``PCi_j`` / ``CDELTi`` cards of a WCS header by ``CDi_j``."""
    matrix = _linear_matrix(wcs, None)
    for i in (1, 2):
        cards.remove(f"CDELT{i}", ignore_missing=True)
        for j in (1, 2):
            cards.remove(f"PC{i}_{j}", ignore_missing=True)
    previous = "CRPIX2"
    for i in (1, 2):
        for j in (1, 2):
            card = _exact_card(f"CD{i}_{j}", float(matrix[i - 1, j - 1]),
                               "Coordinate transformation matrix element")
            cards.insert(previous, card, after=True)
            previous = card.keyword


def _exact_card(keyword: str, value: float, comment: str) -> fits.Card:
    """A card holding ``value`` with every digit it needs to read back as the same double
    (astropy would write 16 significant digits)."""
    text = f"{keyword:<8}= {repr(value).upper():>20} / {comment}"
    return fits.Card.fromstring(text[:fits.Card.length])


def _orientat(wcs: WCS) -> float:
    """Position angle (deg, East of North) of the image's +y axis at CRPIX."""
    matrix = _linear_matrix(wcs, None)
    return float(np.degrees(np.arctan2(matrix[0, 1], matrix[1, 1])))


def _padded(size: int) -> int:
    """``size`` bytes rounded up to whole FITS blocks."""
    return -(-size // FITS_BLOCK_SIZE) * FITS_BLOCK_SIZE


def _copy_with_headers(hdul: fits.HDUList, target: Path) -> bool:
    """Write ``hdul`` to ``target`` as ``writeto(output_verify="silentfix")`` does, but
    copy each HDU's data bytes (and each unmodified header's bytes) from the input file
    instead of decoding and re-encoding the arrays; the pixels are never read into memory
    as arrays. Only for an uncompressed input file whose HDUs' data are not loaded and
    not tile-compressed; returns False (nothing written) otherwise, for ``writeto``."""
    fileobj = getattr(hdul, "_file", None)
    if (fileobj is None or fileobj.compression or not fileobj.name
            or target.name.endswith((".gz", ".bz2", ".xz", ".zip"))):
        return False
    hdul.readall()
    if any(isinstance(hdu, fits.CompImageHDU) or hdu._data_loaded or hdu._data_replaced
           or hdu._data_offset is None for hdu in hdul):
        return False
    ends = [hdu._data_offset + _padded(hdu._data_size) for hdu in hdul]
    if os.path.getsize(fileobj.name) < max(ends, default=0):
        return False  # a truncated input: let astropy decide
    hdul.verify("silentfix")
    with open(fileobj.name, "rb") as source, open(target, "wb") as out:
        for hdu in hdul:
            if hdu._header._modified:
                out.write(hdu._header.tostring().encode("ascii"))
                source.seek(hdu._data_offset)
            else:
                source.seek(hdu._header_offset)
                out.write(source.read(hdu._data_offset - hdu._header_offset))
            out.write(source.read(_padded(hdu._data_size)))
    return True


