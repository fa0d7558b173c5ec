"""JWST ``*_cal.fits`` images: stdatamodels ImageModels with a GWCS in their ASDF extension.

Reading needs the optional extra ``jwst`` (``pip install 'aligncore[jwst]'``,
which installs ``stdatamodels``); it is imported only when such a file is
opened. A file is treated as a JWST data model when its primary header has a
``DATAMODL`` keyword or it has an ``ASDF`` extension (`is_jwst_fits`).

Read (`open_jwst`): the ``SCI`` and ``DQ`` arrays (on demand), the GWCS
(``meta.wcs``), ``meta.wcsinfo`` (attached to the WCS as ``aligncore_wcsinfo``
for the ``gwcs`` corrector), the epoch (``meta.exposure.mid_time`` or
``start_time``, else ``meta.observation.date`` + ``time``) and the group: the
file's ``meta.group_id`` if set, else the JWST exposure name
``jw<program><observation><visit>_<visit group><sequence><activity>_<exposure>``
built from ``meta.observation`` (or read from the file name), so that the
detectors of one exposure move together, as in the JWST pipeline.

Written (`write_jwst_image`, which applies `apply_alignment` to a copy of the
model): as jwst 3.0's TweakRegStep leaves an aligned model. An image that moved
gets the corrected GWCS, a FITS SIP approximation of it with its inverse in
``meta.wcsinfo`` (hence in the ``SCI`` header; jwst's parameters: forward and
inverse errors <= 0.01 px, degrees 1-5, 12 x 12 sample points, the reference
pixel kept) and ``S_REGION`` from the new footprint (corners in gwcs'
``footprint`` order). The relative reference that was not moved keeps its WCS
and keywords exactly (no identity ``v2v3corr`` frame). Every image gets
``meta.group_id`` and ``meta.cal_step.tweakreg`` (``COMPLETE``; ``SKIPPED`` for
an image whose alignment failed), the ``meta.asn`` of the association it came
from, the outcome under ``meta.aligncore`` and the ``ALN*`` keywords in the
``SCI`` header. The output name replaces a ``_cal`` suffix by ``_tweakreg``
(`output_name`), the name jwst's Image3Pipeline gives its tweakreg products.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from aligncore.errors import InputError
from aligncore.formats.common import (
    alignment_record,
    atomic_path,
    checked_pixels,
    observation_epoch,
    prepare_gwcs,
    read_wcsinfo,
)
from aligncore.formats.fits import FitsPixels, fit_keywords
from aligncore.types import AlignImage, ImageResult

__all__ = [
    "INSTALL_HINT",
    "SIP_MAX_DEGREE",
    "SIP_MAX_INV_PIX_ERROR",
    "SIP_MAX_PIX_ERROR",
    "SIP_NPOINTS",
    "ModelPixels",
    "apply_alignment",
    "exposure_group",
    "image_from_model",
    "is_jwst_fits",
    "moved",
    "open_jwst",
    "output_name",
    "s_region",
    "sip_approximation",
    "write_jwst_image",
]

INSTALL_HINT = "pip install 'aligncore[jwst]'"
SIP_MAX_PIX_ERROR = 0.01
"""Largest error (pixels) of the FITS SIP approximation written with a corrected GWCS
(jwst's ``sip_max_pix_error``)."""
SIP_MAX_INV_PIX_ERROR = 0.01
"""Largest error (pixels) of the inverse SIP (``AP_``/``BP_``; jwst's ``sip_max_inv_pix_error``)."""
SIP_MAX_DEGREE = 5
"""Highest SIP degree tried, forward and inverse (jwst's ``update_fits_wcsinfo`` tries
``range(1, 6)``)."""
SIP_NPOINTS = 12
"""Sample points per axis of the SIP fits (jwst's ``sip_npoints``)."""

_GROUP_FIELDS = ("program_number", "observation_number", "visit_number", "visit_group",
                 "sequence_id", "activity_id", "exposure_number")
_EXPOSURE_NAME = re.compile(r"^(jw\d{11}_\d{5}_\d{5})", re.IGNORECASE)
_CAL_SUFFIX = re.compile(r"_cal(\.fits(?:\.gz)?)$", re.IGNORECASE)
_SIP_KEY = re.compile(r"^(a|b|ap|bp)_(order|\d+_\d+)$", re.IGNORECASE)
_LINEAR_KEYS = ("cdelt1", "cdelt2", "pc1_1", "pc1_2", "pc2_1", "pc2_2",
                "cd1_1", "cd1_2", "cd2_1", "cd2_2", "sipmxerr", "sipiverr")
_SIP_DEFAULTS: Mapping[str, Any] = {}
"""`sip_approximation`'s own defaults (jwst's parameters)."""
_ALN_CARD = re.compile(r"^ALN[A-Z0-9]*$")
_SIP_ERROR_CARDS = ("SIPMXERR", "SIPIVERR")


def is_jwst_fits(path: str | Path) -> bool:
    """True when ``path`` is a FITS file with a ``DATAMODL`` keyword or an ``ASDF`` extension.

    Never raises: unreadable files give False (the FITS reader reports them).
    """
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            return "DATAMODL" in hdul[0].header or "ASDF" in hdul
    except Exception:
        return False


def _datamodels(path: Path) -> Any:
    try:
        from stdatamodels.jwst import datamodels
    except ImportError:
        raise InputError(
            f"{path}: is a JWST data-model file (GWCS in an ASDF extension); reading it needs "
            f"the optional 'jwst' extra: {INSTALL_HINT}"
        ) from None
    return datamodels


def _open_model(path: Path) -> Any:
    datamodels = _datamodels(path)
    try:
        model = datamodels.open(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the JWST data model ({exc})") from None
    if not isinstance(model, datamodels.ImageModel):
        kind = type(model).__name__
        model.close()
        raise InputError(f"{path}: aligncore reads JWST ImageModel files (2D images such as "
                         f"*_cal.fits); this file holds a {kind}")
    return model


def exposure_group(meta: Mapping[str, Any], name: str = "") -> str | None:
    """The alignment group of a JWST image: ``meta.group_id``, else its exposure name.

    The exposure name ``jw<ppppp><ooo><vvv>_<gg><s><aa>_<eeeee>`` is built from
    ``meta.observation`` when all seven fields are present, otherwise taken from
    the start of the file ``name`` (``jw01234001001_02101_00001_nrca1_cal.fits``).
    Returns None when neither is available.
    """
    group = meta.get("group_id")
    if group is not None and str(group):
        return str(group)
    observation = meta.get("observation")
    observation = observation if isinstance(observation, Mapping) else {}
    parts = [observation.get(key) for key in _GROUP_FIELDS]
    if all(p is not None and str(p) for p in parts):
        p = [str(v) for v in parts]
        return f"jw{p[0]}{p[1]}{p[2]}_{p[3]}{p[4]}{p[5]}_{p[6]}"
    found = _EXPOSURE_NAME.match(Path(name).name)
    return found.group(1).lower() if found else None


def output_name(name: str) -> str:
    """Output file name of a corrected JWST image: ``*_cal.fits`` -> ``*_tweakreg.fits``.

    Other names are kept as they are.
    """
    return _CAL_SUFFIX.sub(r"_tweakreg\1", name)


@dataclass(frozen=True)
class ModelPixels:
    """Pixel loader of a data model already in memory (`image_from_model`)."""

    name: str
    data: np.ndarray
    dq: np.ndarray | None

    def __call__(self) -> tuple[np.ndarray, np.ndarray | None]:
        data = np.asarray(self.data, dtype=float)
        dq = None if self.dq is None else np.asarray(self.dq)
        return checked_pixels(Path(self.name), data, dq)


def image_from_model(model: Any, name: str, *, path: Path | None = None,
                     group_id: str | None = None, loader: Any = None) -> AlignImage:
    """An `AlignImage` of an open JWST ImageModel (its GWCS, meta and pixels).

    Parameters
    ----------
    model : stdatamodels.jwst.datamodels.ImageModel
        The data model.
    name : str
        The image's name (a file name).
    path : Path, optional
        The file the model was read from.
    group_id : str, optional
        Group of the image; default: `exposure_group`.
    loader : callable, optional
        Pixel loader; default: the model's own ``data`` and ``dq`` (`ModelPixels`).

    Raises
    ------
    InputError
        The model has no GWCS or its data are not 2D.
    """
    wcs = model.meta.wcs
    shape = tuple(model.data.shape)
    label = path or name
    if wcs is None:
        raise InputError(f"{label}: no GWCS (meta.wcs) in the ASDF extension; "
                         "run the JWST assign_wcs step first")
    if len(shape) != 2:
        raise InputError(f"{label}: science data must be 2D, got shape {shape}")
    meta = model.meta.instance
    wcsinfo = read_wcsinfo(meta)
    prepare_gwcs(wcs, wcsinfo, shape, Path(label))
    dq = model.dq if model.hasattr("dq") else None
    instrument = meta.get("instrument", {}) if isinstance(meta, dict) else {}
    return AlignImage(
        name=name,
        wcs=wcs,
        shape=(int(shape[0]), int(shape[1])),
        path=path,
        group_id=group_id or exposure_group(meta, name),
        epoch=observation_epoch(meta),
        loader=loader or ModelPixels(name, model.data, dq),
        meta={"format": "jwst", "saturate": None, "wcsinfo": wcsinfo,
              "model_type": type(model).__name__,
              **{key: str(instrument[word]) for key, word in (("instrument", "name"),
                                                              ("detector", "detector"))
                 if instrument.get(word)}},
    )


def open_jwst(path: str | Path, *, group_id: str | None = None) -> AlignImage:
    """Open a JWST ImageModel file (e.g. ``*_cal.fits``): GWCS and meta now, pixels on demand.

    Parameters
    ----------
    path : path
        FITS file written by stdatamodels, with the GWCS in its ASDF extension.
    group_id : str, optional
        Group of the image; default: `exposure_group` (``meta.group_id`` or the
        JWST exposure name).

    Returns
    -------
    AlignImage
        ``meta`` holds ``format`` ("jwst"), ``saturate`` (None: JWST flags
        saturation in DQ), ``wcsinfo`` and ``model_type``.

    Raises
    ------
    InputError
        stdatamodels is not installed (the message names ``pip install
        'aligncore[jwst]'``), the file is not an ImageModel, or has no GWCS.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with _open_model(path) as model:
        return image_from_model(model, path.name, path=path, group_id=group_id,
                                loader=FitsPixels(path, "SCI"))


def _pixel_box(wcs: Any, shape: tuple[int, int]) -> tuple[tuple[float, float], ...]:
    try:
        box = wcs.bounding_box
    except (NotImplementedError, AttributeError):
        box = None
    if box is not None:
        return tuple((float(lo), float(hi)) for lo, hi in box.bounding_box(order="F"))
    ny, nx = shape
    return ((-0.5, nx - 0.5), (-0.5, ny - 0.5))


def sip_approximation(
    wcs: Any, shape: tuple[int, int], crpix: tuple[float, float] | None = None, *,
    max_pix_error: float = SIP_MAX_PIX_ERROR, degree: int | None = None,
    max_inv_pix_error: float = SIP_MAX_INV_PIX_ERROR, inv_degree: int | None = None,
    npoints: int = SIP_NPOINTS,
) -> fits.Header:
    """FITS TAN-SIP header approximating a GWCS, with its inverse, as jwst writes it.

    gwcs ``to_fits_sip`` fits the forward SIP (``A_``, ``B_``) and the inverse
    (``AP_``, ``BP_``) on `SIP_NPOINTS` x `SIP_NPOINTS` points of the pixel box,
    keeping for each the lowest degree from 1 to `SIP_MAX_DEGREE` whose error
    is within `SIP_MAX_PIX_ERROR` (forward) or `SIP_MAX_INV_PIX_ERROR`
    (inverse); these are the parameters of jwst 3.0's ``update_fits_wcsinfo``.
    ``SIPMXERR`` and ``SIPIVERR`` in the header are the largest errors reached
    (pixels). When a degree cap is too low, the best fit is returned and a
    warning gives its error (gwcs 1.0.3 warns instead of raising; its own
    warnings are replaced by this one).

    Parameters
    ----------
    wcs : gwcs.WCS
        The WCS to approximate.
    shape : (ny, nx)
        Image shape, for the pixel box when the WCS has no bounding box.
    crpix : (float, float), optional
        1-based reference pixel to keep (default: the centre of the box).
    max_pix_error, max_inv_pix_error : float
        Largest forward and inverse errors sought (pixels).
    degree, inv_degree : int, optional
        A fixed forward or inverse degree (then its error is not sought).
    npoints : int
        Sample points per axis.
    """
    box = _pixel_box(wcs, shape)
    degrees = range(1, SIP_MAX_DEGREE + 1)
    fixed = {"SIPMXERR": degree is not None, "SIPIVERR": inv_degree is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = wcs.to_fits_sip(
            bounding_box=box, max_pix_error=max_pix_error,
            degree=degrees if degree is None else degree,
            max_inv_pix_error=max_inv_pix_error,
            inv_degree=degrees if inv_degree is None else inv_degree, npoints=npoints,
            crpix=None if crpix is None else [float(crpix[0]), float(crpix[1])],
        )
    for card, limit, order, what in (("SIPMXERR", max_pix_error, "A_ORDER", "FITS SIP"),
                                     ("SIPIVERR", max_inv_pix_error, "AP_ORDER",
                                      "inverse FITS SIP")):
        error = float(header.get(card, np.nan))
        if not fixed[card] and not error <= limit:
            warnings.warn(
                f"the {what} approximation of the GWCS reaches {error:.3g} px, not "
                f"{limit} px (degree {header.get(order, 1)}, at most "
                f"{SIP_MAX_DEGREE}); the GWCS itself is exact",
                stacklevel=2,
            )
    return header


def _update_wcsinfo(model: Any, header: fits.Header) -> None:
    """Replace the FITS WCS keywords of ``meta.wcsinfo`` by those of ``header``."""
    info = model.meta.wcsinfo.instance
    for key in list(info):
        if key in _LINEAR_KEYS or _SIP_KEY.match(key):
            del info[key]
    for key, value in header.items():
        if not key.upper().startswith("NAXIS"):
            info[key.lower()] = value


def s_region(wcs: Any, shape: tuple[int, int]) -> str | None:
    """``S_REGION`` of an image: the sky polygon of its pixel box's outer corners.

    The corners come in gwcs' ``footprint`` order, as jwst writes them: (x0, y0),
    (x0, y1), (x1, y1), (x1, y0); RA in [0, 360). None when a corner has no sky
    position.
    """
    (x0, x1), (y0, y1) = _pixel_box(wcs, shape)
    ra, dec = wcs(np.array([x0, x0, x1, x1]), np.array([y0, y1, y1, y0]),
                  with_bounding_box=False)
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        return None
    corners = " ".join(f"{a % 360.0:.9f} {d:.9f}" for a, d in zip(ra, dec, strict=True))
    return f"POLYGON ICRS  {corners}"


def _tree_safe(value: Any) -> Any:
    """``value`` without None (stdatamodels drops None from mappings but not from lists):
    None entries of mappings are removed, None items of lists become NaN."""
    if isinstance(value, Mapping):
        return {k: _tree_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [np.nan if v is None else _tree_safe(v) for v in value]
    return value


def _replace_sci_cards(model: Any, cards: Mapping[str, tuple[Any, str]], *, new_sip: bool) -> None:
    """Set ``cards`` in the SCI header kept by the model (``extra_fits``).

    Cards of an earlier run (``ALN*``, and those in ``cards``) are dropped; with
    ``new_sip``, so are SIP cards the JWST schema does not hold (e.g. an inverse
    SIP's ``AP_0_1``), which would contradict the new SIP keywords.
    """
    def stale(key: str) -> bool:
        key = key.upper()
        if key in cards or _ALN_CARD.match(key):
            return True
        return new_sip and (key in _SIP_ERROR_CARDS or _SIP_KEY.match(key) is not None)

    extra = model.instance.setdefault("extra_fits", {}).setdefault("SCI", {})
    kept = [card for card in extra.get("header", []) if not stale(str(card[0]))]
    extra["header"] = kept + [[key, value, comment] for key, (value, comment) in cards.items()]


def moved(image: AlignImage, result: ImageResult) -> bool:
    """Whether the alignment gave ``image`` a new WCS: aligned, and not the relative
    reference left where it was (an exact identity correction)."""
    if not result.ok or result.wcs is image.wcs:
        return False
    fit = result.fit
    return fit is None or not (np.array_equal(fit.matrix, np.eye(2))
                               and not np.any(fit.shift))


def apply_alignment(model: Any, image: AlignImage, result: ImageResult, *, wcsname: str,
                    version: str, sip: Mapping[str, Any] | None = _SIP_DEFAULTS) -> None:
    """Record the alignment of ``image`` in its open data model ``model`` (in place).

    An image that `moved` gets ``result.wcs`` as ``meta.wcs``, its FITS SIP
    approximation with inverse in ``meta.wcsinfo`` (`sip_approximation`, the
    reference pixel kept), a new ``S_REGION`` (`s_region`) and ``WCSNAME``.
    Otherwise the WCS and its keywords are kept exactly as they were. Every
    image gets ``meta.cal_step.tweakreg`` (``COMPLETE``, or ``SKIPPED`` when its
    alignment failed), ``meta.group_id`` (its group), ``meta.asn`` (from
    ``image.meta["asn"]``, set for the members of an association), the outcome
    under ``meta.aligncore`` (`aligncore.formats.common.alignment_record`, plus
    the SIP errors) and the ``ALN*`` keywords in the ``SCI`` header.

    ``sip`` holds `sip_approximation`'s options (default: jwst's); None leaves the
    FITS WCS keywords as they were (jwst's ``sip_approx = False``).
    """
    record = alignment_record(result, wcsname=wcsname, version=version)
    cards = dict(fit_keywords(result))
    new_wcs = moved(image, result)
    model.meta.cal_step.tweakreg = "COMPLETE" if result.ok else "SKIPPED"
    if result.group_id:
        model.meta.group_id = str(result.group_id)
    for key, value in (image.meta.get("asn") or {}).items():
        setattr(model.meta.asn, key, value)
    new_sip = new_wcs and sip is not None
    if new_wcs:
        model.meta.wcs = result.wcs
        region = s_region(result.wcs, image.shape)
        if region is not None:
            model.meta.wcsinfo.s_region = region
        cards["WCSNAME"] = (wcsname, "aligncore corrected WCS")
    if new_sip:
        wcsinfo = model.meta.wcsinfo
        crpix = (wcsinfo.crpix1, wcsinfo.crpix2)
        header = sip_approximation(result.wcs, image.shape,
                                   crpix if None not in crpix else None, **(sip or {}))
        _update_wcsinfo(model, header)
        record["sip_max_error_pix"] = float(header.get("SIPMXERR", np.nan))
        record["sip_max_inverse_error_pix"] = float(header.get("SIPIVERR", np.nan))
        cards.update(_inverse_cards(header))
    cards["ALNVERS"] = (version, "aligncore version")
    model.meta.aligncore = _tree_safe(record)
    _replace_sci_cards(model, cards, new_sip=new_sip)


def _inverse_cards(header: fits.Header) -> dict[str, tuple[Any, str]]:
    """The inverse SIP terms of degree 0 and 1 (``AP_0_1``, ``BP_1_0``, ...): the JWST
    schema has no keyword for them, so they go to the ``SCI`` header as extra cards and
    the inverse read from the header is complete."""
    return {key: (header[key], header.comments[key]) for key in header
            if _SIP_KEY.match(key) and key[:3] in ("AP_", "BP_")
            and not key.endswith("ORDER") and sum(map(int, key.split("_")[1:])) <= 1}


def write_jwst_image(
    image: AlignImage, result: ImageResult, target: str | Path, *, wcsname: str, version: str
) -> Path:
    """Write a copy of a JWST image with the alignment of ``result`` (atomically).

    The model is read again from ``image.path``, updated by `apply_alignment`
    and written to ``target`` (which may be the input itself), with
    ``meta.filename`` set to the target's name.
    """
    if image.path is None:
        raise InputError(f"{image.name}: cannot write an image that was not read from a file")
    target = Path(target)
    with _open_model(Path(image.path)) as model:
        apply_alignment(model, image, result, wcsname=wcsname, version=version)
        model.meta.filename = target.name
        with atomic_path(target) as tmp:
            model.to_fits(tmp, overwrite=True)
    return target
