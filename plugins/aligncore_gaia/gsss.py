"""Client of the STScI GSSS catalog web service (``vo/CatalogSearch.aspx``).

Request: ``GET {base}/vo/CatalogSearch.aspx?RA=..&DEC=..[&EPOCH=..]&SR=..&FORMAT=CSV&CAT=..``
with RA, DEC and SR in degrees and EPOCH a decimal year (omitted: the
catalog's own epoch).

Reply: CSV text whose first line starts with ``#``, then a header line and one
line per star. ``No data records`` means an empty result; a body starting with
``Error`` is a failure. With EPOCH, stars with proper motions come back
moved; stars without come back at the catalog epoch with empty proper-motion
fields.
"""

from __future__ import annotations

import csv
import http.client
import io
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from astropy.table import QTable

import aligncore
from aligncore.refcat import CatalogServiceError, reference_table, retry_call

__all__ = [
    "DEFAULT_GSSS_URL",
    "GSSS_CATALOGS",
    "GSSS_SERVICE",
    "URL_ENV_VAR",
    "GsssClient",
    "parse_gsss_csv",
]

URL_ENV_VAR = "ASTROMETRIC_CATALOG_URL"
"""Environment variable with the service base URL (as in jwst/stcal)."""

DEFAULT_GSSS_URL = "https://gsss.stsci.edu/webservices"
GSSS_SERVICE = "STScI GSSS catalog service"

GSSS_CATALOGS: dict[str, float] = {
    "GAIADR1": 2015.0,
    "GAIADR2": 2015.5,
    "GAIADR3": 2016.0,
    "GAIAREFCAT": 2016.0,
}
"""Catalogs served, with the epoch of their positions (used when a reply has no epoch)."""

_NUMERIC = ("ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "mag", "epoch")
_USER_AGENT = f"aligncore/{aligncore.__version__} (gaia reference catalog)"


@dataclass
class GsssClient:
    """HTTP client of the GSSS catalog search.

    Parameters
    ----------
    base_url : str, optional
        Service base URL; default ``$ASTROMETRIC_CATALOG_URL`` or
        :data:`DEFAULT_GSSS_URL`.
    timeout : float
        Seconds to wait for the connection and for each read.
    retries : int
        Extra attempts after a transient failure (timeout, refused
        connection, HTTP 5xx or 429).
    backoff : float
        Seconds before the first retry, doubled for each further one.
    sleep : callable, optional
        Waiting function between retries (default `time.sleep`).
    """

    base_url: str | None = None
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 1.0
    sleep: Callable[[float], None] | None = None

    @property
    def base(self) -> str:
        url = self.base_url or os.environ.get(URL_ENV_VAR) or DEFAULT_GSSS_URL
        return url.rstrip("/")

    def url(self, ra: float, dec: float, radius_deg: float, catalog: str,
            epoch: float | None = None) -> str:
        """The request URL (parameters in the service's documented order)."""
        params = {"RA": f"{ra % 360.0:.8f}", "DEC": f"{dec:.8f}"}
        if epoch is not None:
            params["EPOCH"] = f"{epoch:.6f}"
        params.update({"SR": f"{radius_deg:.8f}", "FORMAT": "CSV", "CAT": catalog})
        return f"{self.base}/vo/CatalogSearch.aspx?{urllib.parse.urlencode(params)}"

    def query(self, ra: float, dec: float, radius_deg: float, catalog: str,
              epoch: float | None = None) -> QTable:
        """Stars within ``radius_deg`` of ``(ra, dec)``; see :func:`parse_gsss_csv`.

        Raises
        ------
        aligncore.catalogs.CatalogServiceError
            The service is unreachable, too slow, answers an HTTP error or
            an ``Error`` body, or sends data that cannot be read.
        """
        url = self.url(ra, dec, radius_deg, catalog, epoch)
        kwargs = {"sleep": self.sleep} if self.sleep is not None else {}
        try:
            body, attempts = retry_call(lambda: self._get(url), retries=self.retries,
                                        backoff=self.backoff, transient=_is_transient, **kwargs)
        except CatalogServiceError as exc:
            if exc.transient:
                tries = self.retries + 1
                raise CatalogServiceError(
                    GSSS_SERVICE, f"{exc.problem} (after {tries} attempt{'s' * (tries > 1)})",
                    url=url, transient=True) from None
            raise
        table = parse_gsss_csv(body, url=url, catalog=catalog, epoch=epoch)
        table.meta.update(service="gsss", url=self.base, catalog=catalog, attempts=attempts)
        return table

    def _get(self, url: str) -> str:
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT,
                                                       "Accept": "text/csv, text/plain"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            transient = exc.code >= 500 or exc.code == 429
            raise CatalogServiceError(GSSS_SERVICE, f"HTTP error {exc.code} {exc.reason}",
                                      url=url, transient=transient) from None
        except TimeoutError:
            raise CatalogServiceError(GSSS_SERVICE, f"no answer within {self.timeout:g} s",
                                      url=url, transient=True) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                problem = f"no answer within {self.timeout:g} s"
            else:
                problem = f"cannot connect ({reason})"
            raise CatalogServiceError(GSSS_SERVICE, problem, url=url, transient=True) from None
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            raise CatalogServiceError(GSSS_SERVICE, f"connection failed ({exc})", url=url,
                                      transient=True) from None
        return raw.decode("utf-8", errors="replace")


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, CatalogServiceError) and exc.transient


def parse_gsss_csv(text: str, *, url: str | None = None, catalog: str = "GAIADR3",
                   epoch: float | None = None) -> QTable:
    """Read a GSSS CSV reply into a reference table.

    Parameters
    ----------
    text : str
        The reply body.
    url : str, optional
        Request URL (for error messages).
    catalog : str
        Catalog queried (its epoch fills a missing ``epoch`` column).
    epoch : float, optional
        Epoch requested with EPOCH; stars without proper motion keep the
        catalog epoch (the service does not move them).

    Returns
    -------
    QTable
        ``id, ra, dec, mag, ra_err, dec_err`` (mas), ``pmra, pmdec`` (mas/yr,
        NaN when empty), ``epoch``; empty for ``No data records``.

    Raises
    ------
    aligncore.catalogs.CatalogServiceError
        For an ``Error`` reply or unreadable CSV (the message quotes it).
    """
    catalog_epoch = GSSS_CATALOGS.get(catalog.upper())
    meta = {"ref_epoch": catalog_epoch} if catalog_epoch is not None else {}
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if lines and lines[0][:5].lower() == "error":
        raise CatalogServiceError(GSSS_SERVICE, f"the service answered {lines[0][:300]!r}",
                                  url=url)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    if lines and lines[0][:5].lower() == "error":
        raise CatalogServiceError(GSSS_SERVICE, f"the service answered {lines[0][:300]!r}",
                                  url=url)
    if not lines or lines[0].strip().lower().startswith("no data records"):
        return reference_table([], [], meta=meta)
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    header = [name.strip() for name in rows[0]]
    lower = {name.lower(): i for i, name in enumerate(header)}
    if "ra" not in lower or "dec" not in lower:
        raise CatalogServiceError(
            GSSS_SERVICE, f"malformed reply: no ra/dec columns in {lines[0][:200]!r}", url=url)
    bad = [i + 2 for i, row in enumerate(rows[1:]) if len(row) != len(header)]
    if bad:
        raise CatalogServiceError(
            GSSS_SERVICE, f"malformed reply: line {bad[0]} has a different number of fields "
            f"than the header ({len(header)} columns)", url=url)
    data = {name: _column(rows[1:], lower, name, url) for name in _NUMERIC if name in lower}
    n = len(rows) - 1
    if np.any(~np.isfinite(data["ra"])) or np.any(~np.isfinite(data["dec"])):
        raise CatalogServiceError(GSSS_SERVICE, "malformed reply: empty or invalid ra/dec",
                                  url=url)
    pmra = data.get("pmra", np.full(n, np.nan))
    pmdec = data.get("pmdec", np.full(n, np.nan))
    with_pm = np.isfinite(pmra) & np.isfinite(pmdec)
    default_epoch = catalog_epoch if catalog_epoch is not None else np.nan
    epochs = data.get("epoch", np.full(n, np.nan))
    fallback = np.full(n, default_epoch)
    if epoch is not None:
        fallback[with_pm] = epoch
        # the service moves only stars with proper motions; the others keep the catalog epoch
        epochs = np.where(with_pm, epochs, default_epoch)
    epochs = np.where(np.isfinite(epochs), epochs, fallback)
    ids = [row[lower["objid"]].strip() for row in rows[1:]] if "objid" in lower else None
    return reference_table(
        data["ra"], data["dec"], ids=ids, mag=data.get("mag"), ra_err=data.get("ra_error"),
        dec_err=data.get("dec_error"), pmra=pmra, pmdec=pmdec, epoch=epochs, meta=meta)


def _column(rows: list[list[str]], lower: dict[str, int], name: str, url: str | None) -> np.ndarray:
    index = lower[name]
    values = np.full(len(rows), np.nan)
    for k, row in enumerate(rows):
        text = row[index].strip()
        if not text or text.lower() in ("nan", "null", "--"):
            continue
        try:
            values[k] = float(text)
        except ValueError:
            raise CatalogServiceError(
                GSSS_SERVICE, f"malformed reply: {name}={text[:40]!r} on data line {k + 1} is "
                "not a number", url=url) from None
    return values
