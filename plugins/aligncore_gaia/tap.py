"""Client of a Gaia TAP service (the ESA Gaia archive by default), through pyvo.

An ADQL cone search on ``gaiadr3.gaia_source`` (or the DR1/DR2 table) is run
as a synchronous query; when the reply fills the synchronous row limit
(the archive caps synchronous results) or the service flags it as truncated
(``QUERY_STATUS = OVERFLOW``), the query is run again as an asynchronous job,
which has no such cap.

Why pyvo and not ``astroquery.gaia``: importing ``astroquery.gaia`` builds a
module-level client that contacts gea.esac.esa.int at import time (status
messages), and astroquery's TAP+ connections have no timeout. pyvo (installed
with astroquery) takes any TAP URL and a ``requests`` session, which here
carries the timeout.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from astropy.table import QTable, Table

import aligncore
from aligncore.refcat import CatalogServiceError, reference_table, retry_call

__all__ = ["DEFAULT_TAP_URL", "SYNC_ROW_LIMIT", "TAP_SERVICE", "TAP_TABLES", "TapClient",
           "cone_adql"]

DEFAULT_TAP_URL = "https://gea.esac.esa.int/tap-server/tap"
TAP_SERVICE = "Gaia TAP service"
SYNC_ROW_LIMIT = 2000
"""Rows a synchronous query may return before the job is re-run asynchronously."""

TAP_TABLES: dict[str, tuple[str, float]] = {
    "GAIADR1": ("gaiadr1.gaia_source", 2015.0),
    "GAIADR2": ("gaiadr2.gaia_source", 2015.5),
    "GAIADR3": ("gaiadr3.gaia_source", 2016.0),
}
"""Catalog name -> (table, epoch of its positions)."""

_COLUMNS = ("source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "ref_epoch",
            "phot_g_mean_mag")


def cone_adql(table: str, ra: float, dec: float, radius_deg: float) -> str:
    """ADQL selecting the astrometric columns of the stars within a cone."""
    return (
        f"SELECT {', '.join(_COLUMNS)} FROM {table} "
        f"WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        f"CIRCLE('ICRS', {ra % 360.0:.8f}, {dec:.8f}, {radius_deg:.8f}))"
    )


@dataclass
class TapClient:
    """Cone searches on a Gaia TAP service.

    Parameters
    ----------
    url : str, optional
        TAP base URL (the one ending in ``/tap``); default :data:`DEFAULT_TAP_URL`.
    timeout : float
        Seconds to wait for each HTTP exchange.
    retries, backoff : int, float
        Retries of transient failures (timeouts, refused connections,
        HTTP 5xx), first waiting ``backoff`` seconds, then doubling.
    sync_row_limit : int
        Row count at which a synchronous result is taken as cut.
    async_timeout : float
        Longest wait for an asynchronous job, seconds.
    sleep : callable, optional
        Waiting function between retries (default `time.sleep`).
    """

    url: str | None = None
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 1.0
    sync_row_limit: int = SYNC_ROW_LIMIT
    async_timeout: float = 600.0
    sleep: Callable[[float], None] | None = None

    @property
    def base(self) -> str:
        return (self.url or DEFAULT_TAP_URL).rstrip("/")

    def query(self, ra: float, dec: float, radius_deg: float, catalog: str = "GAIADR3"
              ) -> QTable:
        """Stars within ``radius_deg`` of ``(ra, dec)`` at the catalog epoch.

        Returns
        -------
        QTable
            Reference table (see `aligncore.catalogs.reference_table`);
            ``meta["tap_mode"]`` is ``"sync"`` or ``"async"``.

        Raises
        ------
        aligncore.catalogs.CatalogServiceError
        """
        if catalog.upper() not in TAP_TABLES:
            raise CatalogServiceError(
                TAP_SERVICE, f"catalog {catalog!r} is not served by TAP (choose one of "
                f"{', '.join(TAP_TABLES)}; GAIAREFCAT is served by the GSSS service)",
                url=self.base, advice="change refcat.params.catalog or service")
        table_name, ref_epoch = TAP_TABLES[catalog.upper()]
        adql = cone_adql(table_name, ra, dec, radius_deg)
        service = self._service()
        kwargs: dict[str, Any] = {"sleep": self.sleep} if self.sleep is not None else {}
        mode = "sync"
        result, attempts = self._run(lambda: service.run_sync(adql, maxrec=self.sync_row_limit),
                                     kwargs)
        if getattr(result, "query_status", None) == "OVERFLOW" or len(result) >= \
                self.sync_row_limit:
            mode = "async"
            result, more = self._run(
                lambda: service.run_async(adql, timeout=self.async_timeout), kwargs)
            attempts += more
        table = _to_table(result)
        out = _normalise(table, ref_epoch, self.base)
        out.meta.update(service="tap", url=self.base, catalog=catalog.upper(), table=table_name,
                        tap_mode=mode, attempts=attempts, ref_epoch=ref_epoch)
        return out

    def _service(self) -> Any:
        import pyvo

        return pyvo.dal.TAPService(self.base, session=_timeout_session(self.timeout))

    def _run(self, call: Callable[[], Any], kwargs: dict[str, Any]) -> tuple[Any, int]:
        def attempt() -> Any:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # overflow and VOTable notes: handled here
                    return call()
            except CatalogServiceError:
                raise
            except Exception as exc:
                raise _as_service_error(exc, self.base, self.timeout) from exc

        try:
            return retry_call(attempt, retries=self.retries, backoff=self.backoff,
                              transient=lambda e: isinstance(e, CatalogServiceError)
                              and e.transient, **kwargs)
        except CatalogServiceError as exc:
            if exc.transient:
                tries = self.retries + 1
                raise CatalogServiceError(
                    TAP_SERVICE, f"{exc.problem} (after {tries} attempt{'s' * (tries > 1)})",
                    url=self.base, transient=True) from None
            raise


def _timeout_session(timeout: float) -> Any:
    import requests

    class TimeoutSession(requests.Session):
        """A session giving every request a timeout unless the caller sets one."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            return super().request(method, url, *args, **kwargs)

    session = TimeoutSession()
    session.headers["User-Agent"] = f"aligncore/{aligncore.__version__} (gaia reference catalog)"
    return session


def _as_service_error(exc: Exception, url: str, timeout: float) -> CatalogServiceError:
    """pyvo/requests failure -> CatalogServiceError (transient for timeouts, refusals, 5xx)."""
    import requests
    from pyvo.dal import DALFormatError, DALQueryError, DALServiceError

    cause: Any = exc
    for _ in range(10):  # follow the chain of causes down to the requests error, if any
        if cause is None or isinstance(cause, requests.RequestException):
            break
        cause = getattr(cause, "cause", None) or cause.__cause__
    if isinstance(cause, requests.Timeout):
        return CatalogServiceError(TAP_SERVICE, f"no answer within {timeout:g} s", url=url,
                                   transient=True)
    if isinstance(cause, requests.ConnectionError):
        return CatalogServiceError(TAP_SERVICE, f"cannot connect ({_short(cause)})", url=url,
                                   transient=True)
    if isinstance(exc, DALQueryError):
        return CatalogServiceError(TAP_SERVICE, f"the query failed: {_short(exc)}", url=url)
    if isinstance(exc, DALFormatError):
        return CatalogServiceError(TAP_SERVICE, f"unreadable reply: {_short(exc)}", url=url)
    if isinstance(exc, DALServiceError):
        code = getattr(exc, "code", None) or 0
        transient = code >= 500 or code == 429
        what = f"HTTP error {code}" if code else _short(exc)
        return CatalogServiceError(TAP_SERVICE, what, url=url, transient=transient)
    return CatalogServiceError(TAP_SERVICE, f"unexpected failure: {_short(exc)}", url=url)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _to_table(result: Any) -> Table:
    try:
        return result.to_table()
    except Exception as exc:
        raise CatalogServiceError(TAP_SERVICE, f"unreadable reply: {_short(exc)}") from None


def _normalise(table: Table, ref_epoch: float, url: str) -> QTable:
    lower = {name.lower(): name for name in table.colnames}
    missing = [c for c in ("ra", "dec") if c not in lower]
    if missing:
        raise CatalogServiceError(
            TAP_SERVICE, f"malformed reply: no {'/'.join(missing)} column (columns: "
            f"{', '.join(table.colnames)})", url=url)

    def col(name: str) -> Any:
        return table[lower[name]] if name in lower else None

    epoch = col("ref_epoch")
    return reference_table(
        col("ra"), col("dec"), ids=col("source_id"), mag=col("phot_g_mean_mag"),
        ra_err=col("ra_error"), dec_err=col("dec_error"), pmra=col("pmra"), pmdec=col("pmdec"),
        epoch=epoch if epoch is not None else ref_epoch,
        meta={"ref_epoch": ref_epoch},
    )
