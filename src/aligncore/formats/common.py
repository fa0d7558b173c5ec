"""Helpers every image format shares: atomic writes, pixel checks, epochs, wcsinfo.

Nothing here knows a file format; `aligncore.formats.fits`, `aligncore.formats.asdf`
and `aligncore.formats.jwst` build on it (and never on each other's private names).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aligncore.errors import InputError

if TYPE_CHECKING:
    from astropy.time import Time

    from aligncore.types import ImageResult

__all__ = [
    "WCSINFO_ATTRIBUTE",
    "WCSINFO_KEYS",
    "alignment_record",
    "atomic_path",
    "checked_pixels",
    "current_umask",
    "finite_number",
    "mapping",
    "observation_epoch",
    "output_mode",
    "prepare_gwcs",
    "read_wcsinfo",
    "write_json",
]

WCSINFO_ATTRIBUTE = "aligncore_wcsinfo"
"""Attribute set on a `gwcs.WCS` read from a file: its ``meta.wcsinfo`` (a dict).

The ``gwcs`` corrector takes the V2/V3 tangent-plane angles from it."""
WCSINFO_KEYS = ("v2_ref", "v3_ref", "roll_ref", "ra_ref", "dec_ref")


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


def checked_pixels(path: str | Path, data: np.ndarray, dq: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate pixels read from ``path``: DQ shape matches, at least one finite value."""
    if dq is not None and dq.shape != data.shape:
        raise InputError(f"{path}: DQ shape {dq.shape} differs from SCI shape {data.shape}")
    if not np.isfinite(data).any():
        raise InputError(f"{path}: the science array has no finite pixel (all NaN/inf)")
    return data, dq


def serializable_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` made JSON-safe (values that JSON cannot hold become strings)."""
    return json.loads(json.dumps(dict(meta), default=str))


def write_json(data: Mapping[str, Any], target: str | Path) -> Path:
    """Write JSON atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return Path(target)


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one (for optional tree nodes)."""
    return value if isinstance(value, Mapping) else {}


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (booleans and non-numbers are None)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return None
    number = float(value)
    return number if np.isfinite(number) else None


def read_wcsinfo(meta: Mapping[str, Any]) -> dict[str, float]:
    """The finite `WCSINFO_KEYS` of a data-model tree's ``meta.wcsinfo``."""
    info = mapping(meta.get("wcsinfo"))
    out = {}
    for key in WCSINFO_KEYS:
        number = finite_number(info.get(key))
        if number is not None:
            out[key] = number
    return out


def prepare_gwcs(wcs: Any, wcsinfo: Mapping[str, float], shape: tuple[int, ...],
                 path: Path) -> None:
    """Check a GWCS read from ``path`` maps 2 pixel axes to 2 sky axes; attach its
    ``wcsinfo`` (as `WCSINFO_ATTRIBUTE`) and the image shape when it has none.

    Raises
    ------
    InputError
        The GWCS does not map 2 pixel axes to 2 sky axes.
    """
    if wcs.pixel_n_dim != 2 or wcs.world_n_dim != 2:
        raise InputError(f"{path}: the GWCS must map 2 pixel axes to 2 sky axes "
                         f"(got {wcs.pixel_n_dim} -> {wcs.world_n_dim})")
    if wcsinfo:
        setattr(wcs, WCSINFO_ATTRIBUTE, wcsinfo)
    if wcs.pixel_shape is None:
        wcs.pixel_shape = (int(shape[1]), int(shape[0]))


def _header_epoch(header: Any) -> Time | None:
    from astropy.time import Time

    if "MJD-OBS" in header:
        with contextlib.suppress(Exception):
            return Time(float(header["MJD-OBS"]), format="mjd", scale="utc")
    if "DATE-OBS" in header:
        with contextlib.suppress(Exception):
            return Time(str(header["DATE-OBS"]), scale="utc")
    return None


def _meta_epoch(meta: Mapping[str, Any]) -> Time | None:
    from astropy.time import Time

    observation = mapping(meta.get("observation"))
    exposure = mapping(meta.get("exposure"))
    for value in (observation.get("mjd"), exposure.get("mid_time"), exposure.get("start_time")):
        if isinstance(value, Time):
            return value
        number = finite_number(value)
        if number is not None:
            return Time(number, format="mjd", scale="utc")
    date = observation.get("date")
    if isinstance(date, Time):
        return date
    if isinstance(date, str) and date:
        time = observation.get("time")
        text = f"{date}T{time}" if isinstance(time, str) and time and "T" not in date else date
        with contextlib.suppress(ValueError):
            return Time(text, scale="utc")
    return None


def observation_epoch(*sources: Any) -> Time | None:
    """The observation time of an image, from the first source that has one.

    Parameters
    ----------
    *sources : astropy.io.fits.Header or mapping
        FITS headers (``MJD-OBS``, else ``DATE-OBS``) or data-model ``meta`` trees
        (``observation.mjd``, ``exposure.mid_time`` or ``start_time`` in MJD, else
        ``observation.date`` [+ ``time``]), tried in order.

    Returns
    -------
    astropy.time.Time or None
        UTC time, or None when no source has a readable one.
    """
    for source in sources:
        is_header = hasattr(source, "cards")  # a FITS header; a tree is a plain mapping
        epoch = _header_epoch(source) if is_header else _meta_epoch(mapping(source))
        if epoch is not None:
            return epoch
    return None


def alignment_record(result: ImageResult, *, wcsname: str, version: str) -> dict[str, Any]:
    """What ``meta.aligncore`` of a data-model file records about the alignment of one image."""
    return {
        "status": result.status.value,
        "reason": result.reason,
        "n_matched": int(result.n_matched),
        "wcsname": wcsname if result.ok else None,
        "version": version,
        "fit": result.fit.summary() if result.fit is not None else None,
    }
