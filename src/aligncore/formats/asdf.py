"""ASDF images with a GWCS: reading them lazily and writing corrected copies atomically.

The tree of an image file::

    data: 2D science array
    dq: optional data-quality array (integer flags, or boolean with True = bad)
    wcs: a gwcs.WCS (frames e.g. detector -> v2v3 -> world)
    meta:
      wcsinfo: {v2_ref, v3_ref (arcsec), roll_ref (deg), ra_ref, dec_ref (deg)}
      observation: {mjd: float} or {date: "YYYY-MM-DD[Thh:mm:ss]", time: "hh:mm:ss"}
      exposure: {group_id: str, mid_time or start_time: MJD}
      saturate: optional saturation level (data units)

A corrected copy is the same tree with the corrected ``wcs`` and the
alignment recorded under ``meta.aligncore`` (status, reason, matched count,
WCS name, aligncore version and the fit summary).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asdf
import numpy as np
from asdf.exceptions import AsdfConversionWarning
from gwcs import WCS

from aligncore.errors import InputError
from aligncore.formats.common import (
    alignment_record,
    atomic_path,
    checked_pixels,
    finite_number,
    mapping,
    observation_epoch,
    prepare_gwcs,
    read_wcsinfo,
)
from aligncore.types import AlignImage, ImageResult

__all__ = [
    "ASDF_SUFFIXES",
    "AsdfPixels",
    "is_asdf",
    "open_asdf",
    "write_asdf",
    "write_asdf_image",
]

ASDF_SUFFIXES = (".asdf",)
_SKIP_KEYS = ("asdf_library", "history")


def is_asdf(path: str | Path | None) -> bool:
    """True when ``path`` names an ASDF file (by its suffix)."""
    return path is not None and Path(path).suffix.lower() in ASDF_SUFFIXES


def _read_group(meta: Mapping[str, Any]) -> str | None:
    for value in (mapping(meta.get("exposure")).get("group_id"), meta.get("group_id")):
        if value is not None and str(value):
            return str(value)
    return None


@dataclass(frozen=True)
class AsdfPixels:
    """Pixel loader of an ASDF image (``data`` and an optional ``dq``); picklable, like
    `aligncore.formats.fits.FitsPixels`."""

    path: Path

    def __call__(self) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            with asdf.open(self.path, lazy_load=True, memmap=False, lazy_tree=True) as af:
                data = np.array(af.tree["data"], dtype=float)
                dq = af.tree.get("dq")
                dq = np.array(dq) if dq is not None else None
        except (OSError, ValueError, TypeError, KeyError, EOFError) as exc:
            raise InputError(f"{self.path}: cannot read the pixels ({exc})") from None
        return checked_pixels(self.path, data, dq)


def open_asdf(path: str | Path, *, group_id: str | None = None) -> AlignImage:
    """Open an ASDF image lazily: WCS, shape and meta now, pixels on demand.

    Parameters
    ----------
    path : path
        ASDF file whose tree has ``data`` (2D) and ``wcs`` (a `gwcs.WCS`).
    group_id : str, optional
        Group of the image; default ``meta.exposure.group_id``.

    Returns
    -------
    AlignImage
        ``meta`` holds ``format`` ("asdf"), ``saturate`` and ``wcsinfo``; the
        wcsinfo is also set on the WCS as ``aligncore_wcsinfo`` (the ``gwcs``
        corrector reads its reference angles there).

    Raises
    ------
    InputError
        The file is missing or not ASDF, or has no 2D ``data`` or no GWCS.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image file")
    with warnings.catch_warnings():
        # a node that fails to convert is reported below, with the file name
        warnings.simplefilter("ignore", AsdfConversionWarning)
        try:
            af = asdf.open(path, lazy_load=True, memmap=False)
        except Exception as exc:
            raise InputError(f"{path}: not a readable ASDF file ({exc})") from None
    with af:
        tree = af.tree
        shape = tuple(getattr(tree.get("data"), "shape", ()))
        dtype = np.dtype(getattr(tree.get("data"), "dtype", float))
        dq_shape = tuple(getattr(tree.get("dq"), "shape", shape))
        wcs = tree.get("wcs")
        meta = tree.get("meta")
        meta = dict(meta) if isinstance(meta, Mapping) else {}
    if len(shape) != 2:
        raise InputError(f"{path}: the tree needs a 2D 'data' array, got shape {shape or None}")
    if dq_shape != shape:
        raise InputError(f"{path}: dq shape {dq_shape} differs from data shape {shape}")
    if dtype.kind not in "biuf":
        raise InputError(f"{path}: 'data' must hold numbers, got dtype {dtype}")
    if isinstance(wcs, Mapping) and hasattr(wcs, "_tag"):
        raise InputError(f"{path}: the 'wcs' (tag {wcs._tag}) could not be read as a gwcs.WCS "
                         "(a truncated file, or a WCS this gwcs version does not know)")
    if not isinstance(wcs, WCS):
        raise InputError(f"{path}: the tree's 'wcs' must be a gwcs.WCS, got {type(wcs).__name__}")
    wcsinfo = read_wcsinfo(meta)
    prepare_gwcs(wcs, wcsinfo, shape, path)
    return AlignImage(
        name=path.name,
        wcs=wcs,
        shape=(int(shape[0]), int(shape[1])),
        path=path,
        group_id=group_id or _read_group(meta),
        epoch=observation_epoch(meta),
        loader=AsdfPixels(path),
        meta={"format": "asdf", "saturate": finite_number(meta.get("saturate")),
              "wcsinfo": wcsinfo},
    )


def write_asdf(tree: Mapping[str, Any], target: str | Path) -> Path:
    """Write ``tree`` as an ASDF file, atomically (a temporary file renamed over ``target``)."""
    with atomic_path(target) as tmp:
        asdf.AsdfFile(dict(tree)).write_to(tmp)
    return Path(target)


def write_asdf_image(
    image: AlignImage, result: ImageResult, target: str | Path, *, wcsname: str, version: str
) -> Path:
    """Write a copy of ``image``'s tree with the WCS of ``result`` (atomically).

    The tree's ``wcs`` is replaced by ``result.wcs`` when the image was
    aligned; otherwise it is kept exactly as it was. ``meta.aligncore`` records
    the outcome (see `alignment_record`). ``target`` may be the input itself.
    """
    if image.path is None:
        raise InputError(f"{image.name}: cannot write an image that was not read from a file")
    try:
        with asdf.open(image.path, lazy_load=False, memmap=False) as af:
            tree = {k: v for k, v in af.tree.items() if k not in _SKIP_KEYS}
    except Exception as exc:
        raise InputError(f"{image.path}: cannot read the ASDF tree ({exc})") from None
    if result.ok and result.wcs is not image.wcs:
        tree["wcs"] = result.wcs
    meta = dict(mapping(tree.get("meta")))
    meta["aligncore"] = alignment_record(result, wcsname=wcsname, version=version)
    tree["meta"] = meta
    return write_asdf(tree, target)
