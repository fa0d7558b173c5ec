"""Helpers shared by reference-catalog plugins and the absolute alignment.

- :func:`reference_table` builds a table with aligncore's reference columns
  (``id, ra, dec, mag, ra_err, dec_err, pmra, pmdec, epoch``), NaN where a
  value is unknown;
- :func:`propagate` moves positions from their catalog epoch to an
  observation epoch with the proper motions (`SkyCoord.apply_space_motion`)
  and applies a policy to stars without proper motion;
- :class:`CatalogCache` keeps query results on disk, keyed by service,
  catalog, cone and epoch;
- :func:`retry_call` retries transient failures with exponential backoff;
- :class:`CatalogServiceError` is the error a remote catalog raises when it
  cannot be used: it names the service and says what to do.

The implementation module: plugins import the documented public names from
:mod:`aligncore.refcat`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable
from astropy.time import Time

from aligncore.errors import AlignError, InputError
from aligncore.types import (
    COL_DEC,
    COL_DEC_ERR,
    COL_EPOCH,
    COL_ID,
    COL_MAG,
    COL_PMDEC,
    COL_PMDEC_ERR,
    COL_PMRA,
    COL_PMRA_ERR,
    COL_RA,
    COL_RA_ERR,
    META_DROPPED_ROWS,
    META_WARNINGS,
)

__all__ = [
    "CACHE_MODES",
    "DEFAULT_UNKNOWN_PM",
    "FALLBACK_ADVICE",
    "META_DROPPED_ROWS",
    "PM_MODES",
    "REFERENCE_COLUMNS",
    "CacheKey",
    "CacheMode",
    "CatalogCache",
    "CatalogServiceError",
    "PmMode",
    "as_jyear",
    "default_cache_dir",
    "drop_unusable_rows",
    "find_column",
    "has_proper_motion",
    "propagate",
    "reference_table",
    "retry_call",
    "row_epochs",
    "usable_rows",
]

PmMode = Literal["require", "inflate", "keep"]
CacheMode = Literal["use", "refresh", "off"]

PM_MODES: tuple[str, ...] = ("require", "inflate")
"""Policies for reference stars without proper motion (config ``refcat_pm``):
``require`` drops them, ``inflate`` keeps them with errors grown by
:data:`DEFAULT_UNKNOWN_PM` (or the configured value) times the epoch difference."""

CACHE_MODES: tuple[str, ...] = ("use", "refresh", "off")
"""``use``: read a cached result if there is one, else query and store;
``refresh``: always query and store; ``off``: never read nor write."""

DEFAULT_UNKNOWN_PM = 10.0
"""Proper motion (mas/yr per axis) assumed as the uncertainty of a star without one."""

REFERENCE_COLUMNS: tuple[str, ...] = (
    COL_ID, COL_RA, COL_DEC, COL_MAG, COL_RA_ERR, COL_DEC_ERR, COL_PMRA, COL_PMDEC, COL_EPOCH,
)
"""The columns :func:`reference_table` always provides, in order."""

FALLBACK_ADVICE = (
    "retry later, reuse a cached result (absolute.refcat_cache: use), or use a local "
    "catalog file (absolute.refcat: {plugin: file, params: {path: my_catalog.ecsv}})"
)
"""What a user can do when a catalog service fails (appended to error messages)."""

_MAS_PER_DEG = 3.6e6

T = TypeVar("T")


# --- errors and retries ------------------------------------------------------------------
class CatalogServiceError(AlignError):
    """A reference-catalog service could not be used (down, timeout, error reply, bad data).

    Parameters
    ----------
    service : str
        Human-readable service name, e.g. ``"STScI GSSS catalog service"``.
    problem : str
        What went wrong.
    url : str, optional
        The request URL (shown in the message).
    transient : bool
        True when retrying later may help (timeouts, HTTP 5xx, refused connections).
    advice : str, optional
        What to do; defaults to :data:`FALLBACK_ADVICE`.
    """

    def __init__(self, service: str, problem: str, *, url: str | None = None,
                 transient: bool = False, advice: str | None = None) -> None:
        self.service = service
        self.problem = problem
        self.url = url
        self.transient = transient
        where = f" ({url})" if url else ""
        super().__init__(f"{service}{where}: {problem}; {advice or FALLBACK_ADVICE}")


def retry_call(
    func: Callable[[], T],
    *,
    retries: int,
    backoff: float,
    transient: Callable[[BaseException], bool],
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int]:
    """Call ``func()``; retry it up to ``retries`` times while it raises a transient error.

    Parameters
    ----------
    func : callable
        The operation (no arguments).
    retries : int
        Extra attempts after the first one.
    backoff : float
        Seconds before the first retry; doubled before each further one.
    transient : callable
        ``transient(exc)`` is True for errors worth retrying.
    sleep : callable
        Waiting function (tests pass a fake).

    Returns
    -------
    value, attempts
        The result and the number of attempts made.

    Raises
    ------
    Exception
        The last error, when it is not transient or the retries are used up.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return func(), attempt
        except Exception as exc:
            if attempt > retries or not transient(exc):
                raise
            sleep(backoff * 2.0 ** (attempt - 1))


# --- tables ------------------------------------------------------------------------------
def reference_table(
    ra: Iterable[float],
    dec: Iterable[float],
    *,
    ids: Iterable[Any] | None = None,
    mag: Iterable[float] | None = None,
    ra_err: Iterable[float] | None = None,
    dec_err: Iterable[float] | None = None,
    pmra: Iterable[float] | None = None,
    pmdec: Iterable[float] | None = None,
    epoch: Iterable[float] | float | None = None,
    meta: Mapping[str, Any] | None = None,
    pmra_err: Iterable[float] | None = None,
    pmdec_err: Iterable[float] | None = None,
) -> QTable:
    """A reference table with every column of :data:`REFERENCE_COLUMNS`.

    Unknown values are NaN (masked input values become NaN too). Units:
    degrees for ``ra, dec``; mas for ``ra_err, dec_err``; mas/yr for
    ``pmra`` (times cos dec) and ``pmdec``; decimal Julian year for ``epoch``.
    The proper-motion errors ``pmra_err, pmdec_err`` (mas/yr) are optional
    columns, present when either is given (`propagate` grows the position
    errors with them).
    """
    ra_arr = _floats(ra)
    n = ra_arr.size

    def column(values: Any) -> np.ndarray:
        if values is None:
            return np.full(n, np.nan)
        if np.ndim(values) == 0:
            return np.full(n, np.nan if values is None else float(values))
        arr = _floats(values)
        if arr.size != n:
            raise ValueError(f"reference columns differ in length ({arr.size} != {n})")
        return arr

    table = QTable(meta=dict(meta or {}))
    table[COL_ID] = _ids(ids, n)
    table[COL_RA] = ra_arr % 360.0
    table[COL_DEC] = column(dec)
    table[COL_MAG] = column(mag)
    table[COL_RA_ERR] = column(ra_err)
    table[COL_DEC_ERR] = column(dec_err)
    table[COL_PMRA] = column(pmra)
    table[COL_PMDEC] = column(pmdec)
    table[COL_EPOCH] = column(epoch)
    if pmra_err is not None or pmdec_err is not None:
        table[COL_PMRA_ERR] = column(pmra_err)
        table[COL_PMDEC_ERR] = column(pmdec_err)
    return table


def find_column(colnames: Iterable[str], aliases: Iterable[str], label: str) -> str | None:
    """The one column of ``colnames`` named like one of ``aliases`` (case-insensitive).

    Parameters
    ----------
    colnames : iterable of str
        Columns of a table.
    aliases : iterable of str
        Accepted spellings, lower case.
    label : str
        What is looked for, for the error message (e.g. ``"cat.ecsv: 'ra'"``).

    Returns
    -------
    str or None
        The column name; None when no column matches.

    Raises
    ------
    InputError
        Several columns match (``ra`` and ``RA``, or ``ra`` and ``RAJ2000``): which
        one is meant is ambiguous; the message lists the candidates.
    """
    wanted = {alias.lower() for alias in aliases}
    candidates = [name for name in colnames if name.lower() in wanted]
    if len(candidates) > 1:
        raise InputError(f"{label}: ambiguous column, candidates {', '.join(candidates)}; "
                         "keep exactly one of them")
    return candidates[0] if candidates else None


def usable_rows(table: Any, columns: Iterable[str]) -> np.ndarray:
    """Boolean mask of the rows whose ``columns`` are all present, unmasked and finite."""
    keep = np.ones(len(table), dtype=bool)
    for name in columns:
        column = table[name]
        values = np.ma.asarray(getattr(column, "value", column))
        try:
            values = values.astype(float)
        except (TypeError, ValueError):
            raise InputError(f"column {name!r} is not numeric (dtype {values.dtype})") from None
        keep &= ~np.ma.getmaskarray(values) & np.isfinite(values.filled(np.nan))
    return keep


def drop_unusable_rows(table: Any, columns: Iterable[str], valid: Any = None) -> Any:
    """``table`` without the rows whose ``columns`` are masked or not finite.

    Parameters
    ----------
    table : Table
    columns : iterable of str
        Columns that must hold a finite number.
    valid : array of bool, optional
        Rows that are otherwise acceptable (e.g. a latitude within +-90 deg);
        the others are dropped and counted too.

    Returns
    -------
    Table
        The number of rows removed is added to ``meta['dropped_rows']`` (see
        `META_DROPPED_ROWS`); the table is returned unchanged (the same object)
        when every row is usable.

    Raises
    ------
    InputError
        A column is not numeric.
    """
    keep = usable_rows(table, columns)
    if valid is not None:
        keep &= np.asarray(valid, dtype=bool)
    if keep.all():
        return table
    out = table[keep]
    out.meta[META_DROPPED_ROWS] = int(table.meta.get(META_DROPPED_ROWS, 0)) + int((~keep).sum())
    return out


def _floats(values: Any) -> np.ndarray:
    """Float array (a copy); masked or None entries become NaN, units are dropped."""
    if isinstance(values, u.Quantity):
        values = values.value
    masked = np.ma.asarray(values, dtype=float)
    return np.array(masked.filled(np.nan), dtype=float).reshape(-1)


def _ids(ids: Any, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(1, n + 1, dtype=np.int64)
    raw = np.asarray(getattr(ids, "value", ids)).reshape(-1)
    if raw.size != n:
        raise ValueError(f"reference columns differ in length ({raw.size} != {n})")
    try:
        return raw.astype(np.int64)
    except (TypeError, ValueError):
        return raw.astype(str)


def has_proper_motion(table: QTable) -> np.ndarray:
    """Boolean per row: both proper-motion components are known."""
    if COL_PMRA not in table.colnames or COL_PMDEC not in table.colnames:
        return np.zeros(len(table), dtype=bool)
    return np.isfinite(_floats(table[COL_PMRA])) & np.isfinite(_floats(table[COL_PMDEC]))


def as_jyear(epoch: Time | float | str | None) -> float | None:
    """A Time, decimal year or ``"J2016.0"`` string as a decimal Julian year (None stays None)."""
    if epoch is None:
        return None
    if isinstance(epoch, Time):
        return float(epoch.jyear)
    if isinstance(epoch, str):
        text = epoch.strip().lstrip("Jj")
        return float(text)
    return float(epoch)


def row_epochs(table: QTable) -> np.ndarray:
    """Epoch (decimal year) of each row's position: the ``epoch`` column where known,
    else ``meta["epoch"]`` or ``meta["ref_epoch"]``; NaN when nothing says."""
    fallback = np.nan
    for key in ("epoch", "ref_epoch"):
        value = table.meta.get(key)
        if value is not None:
            try:
                fallback = float(as_jyear(value))  # type: ignore[arg-type]
                break
            except (TypeError, ValueError):
                continue
    if COL_EPOCH in table.colnames:
        epochs = _floats(table[COL_EPOCH])
        return np.where(np.isfinite(epochs), epochs, fallback)
    return np.full(len(table), fallback)


# --- epoch propagation -------------------------------------------------------------------
def propagate(
    table: QTable,
    epoch: Time | float,
    *,
    pm_mode: PmMode = "inflate",
    unknown_pm: float = DEFAULT_UNKNOWN_PM,
) -> QTable:
    """Move reference positions to ``epoch`` with their proper motions.

    Stars with both proper-motion components are moved with
    `astropy.coordinates.SkyCoord.apply_space_motion` (no parallax: distant
    stars) and get ``epoch`` in their epoch column; when the table has
    proper-motion errors (``pmra_err, pmdec_err``, mas/yr) their ``ra_err,
    dec_err`` grow in quadrature by them times ``|epoch - catalog epoch|``.
    Stars without proper motion are never treated as motionless:

    - ``"require"``: they are dropped;
    - ``"inflate"``: they are kept at their catalog position with ``ra_err,
      dec_err`` grown in quadrature by ``unknown_pm * |epoch - catalog epoch|``;
    - ``"keep"``: they are kept unchanged (NaN proper motion, their own epoch),
      so that a later call can apply one of the policies above (what catalog
      plugins do when asked for an epoch).

    Parameters
    ----------
    table : QTable
        Reference table (see :func:`reference_table`); not modified.
    epoch : Time or float
        Target epoch (decimal Julian year if a number).
    pm_mode : {"require", "inflate", "keep"}
    unknown_pm : float
        Proper-motion uncertainty (mas/yr per axis) assumed for ``inflate``.

    Returns
    -------
    QTable
        A new table. ``meta`` gets ``propagated_to`` (decimal year),
        ``n_moved``, ``n_no_pm``, ``n_dropped`` and, when rows have no known
        epoch, a message under ``warnings``.
    """
    if pm_mode not in ("require", "inflate", "keep"):
        raise ValueError(f"pm_mode must be 'require', 'inflate' or 'keep', got {pm_mode!r}")
    if not (unknown_pm >= 0):
        raise ValueError(f"unknown_pm must be >= 0 mas/yr, got {unknown_pm!r}")
    target = as_jyear(epoch)
    assert target is not None
    out = QTable(table, copy=True)
    out.meta = dict(table.meta)
    n = len(out)
    warn_list = list(out.meta.get(META_WARNINGS, []))
    epochs = row_epochs(out)
    known_epoch = np.isfinite(epochs)
    moving = has_proper_motion(out) & known_epoch
    no_pm = ~has_proper_motion(out)
    if np.any(~known_epoch):
        warn_list.append(f"{int(np.count_nonzero(~known_epoch))} reference stars have no "
                         "epoch: their positions are used as given")
    for name in (COL_RA_ERR, COL_DEC_ERR, COL_PMRA, COL_PMDEC, COL_EPOCH):
        if name not in out.colnames:
            out[name] = np.full(n, np.nan)
        else:
            out[name] = _floats(out[name])
    _grow_by_pm_errors(out, moving, np.abs(target - epochs))
    if np.any(moving):
        ra, dec = _apply_space_motion(
            _floats(out[COL_RA])[moving], _floats(out[COL_DEC])[moving],
            out[COL_PMRA][moving], out[COL_PMDEC][moving], epochs[moving], target)
        ra_all, dec_all = _floats(out[COL_RA]), _floats(out[COL_DEC])
        ra_all[moving], dec_all[moving] = ra, dec
        out[COL_RA], out[COL_DEC] = ra_all, dec_all
        epoch_col = np.array(out[COL_EPOCH], dtype=float)
        epoch_col[moving] = target
        out[COL_EPOCH] = epoch_col
    keep = np.ones(n, dtype=bool)
    if pm_mode == "require":
        keep = ~no_pm
    elif pm_mode == "inflate":
        inflate = no_pm & known_epoch
        growth = unknown_pm * np.abs(target - epochs[inflate])
        for name in (COL_RA_ERR, COL_DEC_ERR):
            err = np.array(out[name], dtype=float)
            base = np.nan_to_num(err[inflate], nan=0.0)
            err[inflate] = np.hypot(base, growth)
            out[name] = err
        # the inflated stars stay at their catalog position and epoch
        out[COL_EPOCH] = np.where(inflate, epochs, np.asarray(out[COL_EPOCH], dtype=float))
    out.meta.update(
        propagated_to=float(target),
        n_moved=int(np.count_nonzero(moving)),
        n_no_pm=int(np.count_nonzero(no_pm)),
        n_dropped=int(np.count_nonzero(~keep)),
        pm_mode=pm_mode,
    )
    if warn_list:
        out.meta[META_WARNINGS] = warn_list
    return out[keep] if not np.all(keep) else out


def _grow_by_pm_errors(table: QTable, moving: np.ndarray, years: np.ndarray) -> None:
    """Grow ``ra_err, dec_err`` of the ``moving`` rows in quadrature by their proper-motion
    errors (``pmra_err, pmdec_err``, when the table has them) times ``years``."""
    for err_name, pm_name in ((COL_RA_ERR, COL_PMRA_ERR), (COL_DEC_ERR, COL_PMDEC_ERR)):
        if pm_name not in table.colnames:
            continue
        pm_err = _floats(table[pm_name])
        grow = moving & np.isfinite(pm_err)
        if not np.any(grow):
            continue
        err = np.array(table[err_name], dtype=float)
        err[grow] = np.hypot(np.nan_to_num(err[grow], nan=0.0), pm_err[grow] * years[grow])
        table[err_name] = err


def _apply_space_motion(ra: np.ndarray, dec: np.ndarray, pmra: Any, pmdec: Any,
                        epochs: np.ndarray, target: float) -> tuple[np.ndarray, np.ndarray]:
    coords = SkyCoord(
        ra=ra * u.deg,
        dec=dec * u.deg,
        pm_ra_cosdec=np.asarray(pmra, dtype=float) * u.mas / u.yr,
        pm_dec=np.asarray(pmdec, dtype=float) * u.mas / u.yr,
        obstime=Time(epochs, format="jyear", scale="tdb"),
        frame="icrs",
    )
    with warnings.catch_warnings():
        # ERFA notes that the (absent) distance was replaced by a large one.
        warnings.filterwarnings("ignore", message=".*distance overridden.*")
        moved = coords.apply_space_motion(new_obstime=Time(target, format="jyear", scale="tdb"))
    return np.asarray(moved.ra.deg, dtype=float), np.asarray(moved.dec.deg, dtype=float)


# --- cache -------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``<astropy cache dir>/aligncore/refcat`` (e.g. ``~/.cache/astropy/aligncore/refcat``)."""
    from astropy.config.paths import get_cache_dir_path

    return Path(get_cache_dir_path()) / "aligncore" / "refcat"


@dataclass(frozen=True)
class CacheKey:
    """What identifies a cached query result.

    Attributes
    ----------
    service : str
        Service (and URL) the result came from, e.g. ``"gsss https://..."``.
    catalog : str
        Catalog name, e.g. ``GAIADR3``.
    ra, dec, radius : float
        Cone centre and radius, degrees.
    epoch : float or None
        Requested epoch (decimal year), None for the catalog epoch.
    extra : tuple
        Anything else the result depends on (magnitude limits, columns, ...).
    """

    service: str
    catalog: str
    ra: float
    dec: float
    radius: float
    epoch: float | None = None
    extra: tuple[Any, ...] = field(default_factory=tuple)

    @property
    def group(self) -> str:
        """Directory name shared by all cones of one service/catalog/epoch/extra."""
        epoch = None if self.epoch is None else round(float(self.epoch), 6)
        text = json.dumps([self.service, self.catalog, epoch, list(self.extra)], default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        label = re.sub(r"[^A-Za-z0-9]+", "-", self.catalog).strip("-").lower() or "catalog"
        return f"{label}-{digest}"

    @property
    def filename(self) -> str:
        return f"ra{self.ra % 360.0:.7f}_dec{self.dec:+.7f}_r{self.radius:.7f}.ecsv"


_CONE_NAME = re.compile(r"^ra(?P<ra>[0-9.]+)_dec(?P<dec>[-+][0-9.]+)_r(?P<r>[0-9.]+)\.ecsv$")


class CatalogCache:
    """Query results on disk, one ECSV file per cone.

    A request is served from the cache when a stored cone of the same
    service, catalog, epoch and extras contains it (the stored rows are then
    cut to the requested cone), so re-running on the same images, or a
    subset of them, needs no network.

    Parameters
    ----------
    directory : path, optional
        Cache directory; default :func:`default_cache_dir`.
    mode : {"use", "refresh", "off"}
        See :data:`CACHE_MODES`.
    """

    def __init__(self, directory: str | Path | None = None, mode: CacheMode = "use") -> None:
        if mode not in CACHE_MODES:
            raise ValueError(f"cache mode must be one of {', '.join(CACHE_MODES)}; got {mode!r}")
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.mode = mode

    def __repr__(self) -> str:
        return f"CatalogCache({str(self.directory)!r}, mode={self.mode!r})"

    def path(self, key: CacheKey) -> Path:
        """Where the result of exactly ``key`` is stored."""
        return self.directory / key.group / key.filename

    def get(self, key: CacheKey) -> QTable | None:
        """The cached result for ``key`` (exact, or cut from a containing cone), or None."""
        if self.mode != "use":
            return None
        exact = self.path(key)
        if exact.exists():
            table = self._read(exact)
            if table is not None:
                return table
        folder = self.directory / key.group
        if not folder.is_dir():
            return None
        center = SkyCoord(key.ra * u.deg, key.dec * u.deg)
        for candidate in sorted(folder.glob("*.ecsv")):
            found = _CONE_NAME.match(candidate.name)
            if found is None:
                continue
            other = SkyCoord(float(found["ra"]) * u.deg, float(found["dec"]) * u.deg)
            if center.separation(other).deg + key.radius > float(found["r"]) + 1e-9:
                continue
            table = self._read(candidate)
            if table is None:
                continue
            return _cut_cone(table, center, key.radius)
        return None

    def put(self, key: CacheKey, table: QTable) -> Path | None:
        """Store ``table`` for ``key`` (atomically); returns the file, or None when off."""
        if self.mode == "off":
            return None
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = QTable(table, copy=True)
        stored.meta = {k: v for k, v in table.meta.items() if _yaml_safe(v)}
        stored.meta["cache_key"] = {
            "service": key.service, "catalog": key.catalog, "ra": key.ra, "dec": key.dec,
            "radius": key.radius, "epoch": key.epoch, "extra": [str(e) for e in key.extra],
        }
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".ecsv", dir=path.parent)
        os.close(fd)
        try:
            stored.write(tmp, format="ascii.ecsv", overwrite=True)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def fetch(self, key: CacheKey, query: Callable[[], QTable]) -> tuple[QTable, str]:
        """The cached result, or ``query()`` stored in the cache (empty results are not
        stored: an empty reply may be a service glitch).

        Returns
        -------
        table, status
            ``status`` is ``"hit"``, ``"miss"`` (queried and stored),
            ``"refresh"`` (queried and stored) or ``"off"``.
        """
        cached = self.get(key)
        if cached is not None:
            cached.meta["cache"] = "hit"
            return cached, "hit"
        table = query()
        status = {"use": "miss", "refresh": "refresh", "off": "off"}[self.mode]
        if len(table) > 0:  # an empty reply may be a glitch: never pinned in the cache
            self.put(key, table)
        table.meta["cache"] = status
        return table, status

    @staticmethod
    def _read(path: Path) -> QTable | None:
        try:
            table = QTable.read(path, format="ascii.ecsv")
        except Exception:  # a corrupt entry is a miss, not a failure
            return None
        table.meta.pop("cache_key", None)
        return table


def _cut_cone(table: QTable, center: SkyCoord, radius_deg: float) -> QTable:
    if len(table) == 0:
        return table
    stars = SkyCoord(_floats(table[COL_RA]) * u.deg, _floats(table[COL_DEC]) * u.deg)
    return table[stars.separation(center).deg <= radius_deg]


def _yaml_safe(value: Any) -> bool:
    if isinstance(value, str | int | float | bool) or value is None:
        return not (isinstance(value, float) and not math.isfinite(value))
    if isinstance(value, list | tuple):
        return all(_yaml_safe(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _yaml_safe(v) for k, v in value.items())
    return False
