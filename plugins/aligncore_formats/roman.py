"""Roman WFI level-2 images (``*_cal.asdf``): roman_datamodels ImageModels with a GWCS.

Reading needs the optional extra ``roman`` (``pip install 'aligncore[roman]'``,
which installs ``roman_datamodels``); it is imported only when such a file is
opened. A file is a Roman data model when the top level of its ASDF tree has a
``roman`` node (`roman_tag` reads the tag from the YAML header without asdf).

Read (`open_roman`): ``roman.data`` and ``roman.dq`` (on demand), the GWCS
``roman.meta.wcs`` (romancal's frames ``detector -> v2v3 -> v2v3vacorr ->
world``), ``roman.meta.wcsinfo`` (attached to the WCS for the ``gwcs``
corrector), the epoch (the middle of ``meta.exposure.start_time`` and
``end_time``) and the group: ``meta.group_id``, else
``meta.observation.observation_id``, as romancal groups exposures. Only level-2
``ImageModel`` files are read; a level-1 (``ScienceRawModel``), ramp or mosaic
file is refused with a one-line error.

Written (`write_roman_image`): a copy of the model with the corrected GWCS
(the ``v2v3corr`` frame of the ``gwcs`` corrector, as romancal's tweakreg
inserts through tweakwcs; the WCS named after the WCS name of the run), an
updated ``meta.wcsinfo.s_region``, ``meta.cal_step.tweakreg`` (``COMPLETE`` or
``FAILED``), ``meta.wcs_fit_results`` (romancal's record of the fit) and the
outcome under ``meta.aligncore``. The output name replaces a ``_cal`` suffix by
``_tweakreg`` (`output_name`).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aligncore import AlignImage, ImageResult, InputError
from aligncore.formats import (
    WCSINFO_KEYS,
    alignment_record,
    atomic_path,
    checked_pixels,
    finite_number,
    prepare_gwcs,
)

__all__ = [
    "INSTALL_HINT",
    "RomanPixels",
    "fit_results",
    "open_roman",
    "output_name",
    "roman_tag",
    "s_region",
    "write_roman_image",
]

INSTALL_HINT = "pip install 'aligncore[roman]'"
L2_TAG = "wfi_image"
"""Name of the level-2 image tag (``asdf://stsci.edu/datamodels/roman/tags/wfi_image-*``)."""
_HEADER_BYTES = 1 << 20  # the YAML tree of a Roman file starts well within this
_ROMAN_NODE = re.compile(rb"^roman:[ \t]*!<?([^\s>]+)", re.MULTILINE)
_BLOCK_MAGIC = b"\xd3BLK"
_CAL_SUFFIX = re.compile(r"_cal(\.asdf)$", re.IGNORECASE)
_PLACEHOLDER = -999999.0  # roman_datamodels' "not set" number
_PLACEHOLDER_TEXT = ("", "?")


def roman_tag(path: str | Path) -> str | None:
    """The tag of the top-level ``roman`` node of an ASDF file, or None.

    Reads the start of the YAML header only (no asdf import); never raises.
    """
    try:
        with open(path, "rb") as stream:
            head = stream.read(_HEADER_BYTES)
    except OSError:
        return None
    if not head.startswith(b"#ASDF"):
        return None
    head = head.split(_BLOCK_MAGIC, 1)[0]
    found = _ROMAN_NODE.search(head)
    return found.group(1).decode("ascii", "replace") if found else None


def output_name(name: str) -> str:
    """Output file name of a corrected Roman image: ``*_cal.asdf`` -> ``*_tweakreg.asdf``."""
    return _CAL_SUFFIX.sub(r"_tweakreg\1", name)


def _datamodels(path: Path) -> Any:
    try:
        import roman_datamodels
    except ImportError:
        raise InputError(f"{path}: is a Roman data-model file; reading it needs the optional "
                         f"'roman' extra: {INSTALL_HINT}") from None
    return roman_datamodels


def _open_model(path: Path) -> Any:
    """The level-2 ImageModel of ``path`` (open; the caller closes it)."""
    rdm = _datamodels(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        model = rdm.open(path)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read the Roman data model ({first})") from None
    if not isinstance(model, rdm.datamodels.ImageModel):
        kind = type(model).__name__
        model.close()
        raise InputError(f"{path}: aligncore reads Roman level-2 ImageModel files (WFI "
                         f"*_cal.asdf); this file holds a {kind}")
    return model


def _plain(value: Any) -> Any:
    """A roman_datamodels node as plain dicts and lists (other values as they are)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _wcsinfo(meta: Mapping[str, Any]) -> dict[str, float]:
    """The set `WCSINFO_KEYS` of ``meta.wcsinfo`` (roman_datamodels' -999999 is unset)."""
    info = meta.get("wcsinfo")
    info = info if isinstance(info, Mapping) else {}
    out = {}
    for key in WCSINFO_KEYS:
        number = finite_number(info.get(key))
        if number is not None and number != _PLACEHOLDER:
            out[key] = number
    return out


def _epoch(meta: Mapping[str, Any]) -> Any:
    """The middle of the exposure (``start_time``, ``end_time``: astropy Times), or None."""
    from astropy.time import Time

    exposure = meta.get("exposure")
    exposure = exposure if isinstance(exposure, Mapping) else {}
    start, end = exposure.get("start_time"), exposure.get("end_time")
    if not isinstance(start, Time):
        return None
    if isinstance(end, Time) and end >= start:
        return start + (end - start) / 2.0
    return start


def _group(meta: Mapping[str, Any]) -> str | None:
    """``meta.group_id``, else ``meta.observation.observation_id`` (romancal's groups)."""
    observation = meta.get("observation")
    observation = observation if isinstance(observation, Mapping) else {}
    for value in (meta.get("group_id"), observation.get("observation_id")):
        if value is not None and str(value) not in _PLACEHOLDER_TEXT:
            return str(value)
    return None


@dataclass(frozen=True)
class RomanPixels:
    """Pixel loader of a Roman image (``data`` and ``dq``); picklable."""

    path: Path

    def __call__(self) -> tuple[np.ndarray, np.ndarray | None]:
        model = _open_model(self.path)
        with model:
            try:
                data = np.array(getattr(model.data, "value", model.data), dtype=float)
                dq = getattr(model, "dq", None)
                dq = np.array(dq) if dq is not None else None
            except (OSError, ValueError, TypeError, KeyError, EOFError) as exc:
                raise InputError(f"{self.path}: cannot read the pixels ({exc})") from None
        return checked_pixels(self.path, data, dq)


def open_roman(path: str | Path, *, group_id: str | None = None) -> AlignImage:
    """Open a Roman level-2 image (``*_cal.asdf``): GWCS and meta now, pixels on demand.

    Parameters
    ----------
    path : path
        ASDF file written by roman_datamodels whose ``roman`` node is a WFI image.
    group_id : str, optional
        Group of the image; default ``meta.group_id``, else
        ``meta.observation.observation_id``.

    Returns
    -------
    AlignImage
        Its ``meta``: ``format`` is "roman", ``model_type`` the model's class,
        ``wcsinfo`` the reference angles found, ``saturate`` None (DQ flags it).

    Raises
    ------
    InputError
        Without roman_datamodels (naming the ``roman`` extra), for any model other
        than a level-2 image, and for an image without ``meta.wcs``.
    """
    path = Path(path)
    model = _open_model(path)
    with model:
        meta = _plain(model.meta)
        wcs = meta.get("wcs")
        shape = tuple(model.data.shape)
        model_type = type(model).__name__
    if wcs is None:
        raise InputError(f"{path}: no GWCS (meta.wcs); run romancal's assign_wcs step first")
    if len(shape) != 2:
        raise InputError(f"{path}: science data must be 2D, got shape {shape}")
    wcsinfo = _wcsinfo(meta)
    prepare_gwcs(wcs, wcsinfo, shape, path)
    return AlignImage(
        name=path.name,
        wcs=wcs,
        shape=(int(shape[0]), int(shape[1])),
        path=path,
        group_id=group_id or _group(meta),
        epoch=_epoch(meta),
        loader=RomanPixels(path),
        meta={"format": "roman", "saturate": None, "wcsinfo": wcsinfo, "model_type": model_type},
    )


def s_region(wcs: Any, shape: tuple[int, int]) -> str | None:
    """``POLYGON ICRS`` of the footprint's pixel-edge corners (gwcs ``footprint`` order, as
    romancal's assign_wcs writes it); None when a corner is not finite."""
    box = wcs.bounding_box
    if box is None:
        ny, nx = shape
        box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    corners = np.asarray(wcs.footprint(box, center=False, axis_type="spatial"), float)
    if not np.all(np.isfinite(corners)):
        return None
    text = " ".join(f"{ra % 360.0:.9f} {dec:.9f}" for ra, dec in corners[:, :2])
    return f"POLYGON ICRS  {text}"


def fit_results(result: ImageResult, wcsname: str) -> dict[str, Any]:
    """``meta.wcs_fit_results``: romancal's names for the fit (``status``, ``fitgeom``,
    ``matrix``, ``shift``, ``rot``, ``scale``, ``skew``, ``rmse``, ``mae``, ``nmatches``)."""
    record: dict[str, Any] = {"status": "SUCCESS" if result.ok else "FAILED",
                              "nmatches": int(result.n_matched), "wcsname": wcsname}
    fit = result.fit
    if fit is not None:
        record.update(fitgeom=fit.fitgeometry, matrix=np.asarray(fit.matrix, float).tolist(),
                      shift=np.asarray(fit.shift, float).tolist(), rot=float(fit.rotation),
                      scale=float(fit.scale), skew=float(fit.skew), rmse=float(fit.rmse),
                      mae=float(fit.mae))
    return record


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [np.nan if v is None else _without_none(v) for v in value]
    return value


def write_roman_image(
    image: AlignImage, result: ImageResult, target: str | Path, *, wcsname: str, version: str
) -> Path:
    """Write a copy of a Roman image with the WCS of ``result`` (atomically).

    When the image was aligned, ``meta.wcs`` becomes a copy of ``result.wcs``
    named ``wcsname`` and ``meta.wcsinfo.s_region`` follows the new footprint;
    otherwise the WCS is kept exactly as it was. ``meta.cal_step.tweakreg`` (when
    the file has a ``cal_step``) becomes ``COMPLETE`` for every image aligned
    (reference included) and ``FAILED`` otherwise; ``meta.wcs_fit_results``
    (`fit_results`) and ``meta.aligncore`` (`aligncore.formats.alignment_record`)
    record the outcome. ``target`` may be the input itself.
    """
    if image.path is None:
        raise InputError(f"{image.name}: cannot write an image that was not read from a file")
    target = Path(target)
    model = _open_model(Path(image.path))
    with model:
        meta = model.meta
        if result.ok and result.wcs is not image.wcs:
            wcs = copy.copy(result.wcs)
            wcs.name = wcsname
            meta["wcs"] = wcs
            region = s_region(wcs, image.shape)
            if region is not None and "wcsinfo" in meta:
                meta.wcsinfo["s_region"] = region
        if isinstance(meta.get("cal_step"), Mapping):
            meta.cal_step["tweakreg"] = "COMPLETE" if result.ok else "FAILED"
        meta["wcs_fit_results"] = _without_none(fit_results(result, wcsname))
        meta["aligncore"] = _without_none(alignment_record(result, wcsname=wcsname,
                                                           version=version))
        _save(model, target)
    return target


def _save(model: Any, target: Path) -> None:
    """Save ``model`` as ``target`` atomically; roman_datamodels records the name it writes
    to in ``meta.filename``, so the file is written under its own name in a hidden
    directory beside ``target`` and moved over it."""
    with atomic_path(target) as tmp:
        staging = tmp.with_name(f"{tmp.name}.d")
        staging.mkdir()
        try:
            written = staging / target.name
            model.to_asdf(written)
            os.replace(written, tmp)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
