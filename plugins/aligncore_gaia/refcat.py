"""The ``gaia`` reference catalog: GSSS web service or Gaia TAP, cached on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from astropy.coordinates import Angle, SkyCoord
from astropy.table import QTable
from astropy.time import Time
from pydantic import Field, model_validator

import aligncore
from aligncore.refcat import CacheKey, CatalogCache, as_jyear, propagate
from aligncore.stages import require_query_types
from aligncore_gaia.gsss import GSSS_CATALOGS, GsssClient
from aligncore_gaia.tap import TAP_TABLES, TapClient

__all__ = ["GaiaRefCatalog"]


class GaiaRefCatalog(aligncore.RefCatalog):
    """Gaia stars from the STScI GSSS catalog service or a Gaia TAP service.

    ``service: gsss`` (default, as jwst/stcal) queries
    ``{url}/vo/CatalogSearch.aspx`` with ``url`` from the parameter, else the
    ``ASTROMETRIC_CATALOG_URL`` environment variable, else
    https://gsss.stsci.edu/webservices. ``service: tap`` runs an ADQL cone
    search on ``gaiadr3.gaia_source`` (or the DR1/DR2 table) of the ESA Gaia
    archive or any TAP URL, through pyvo, as an asynchronous job when the
    synchronous row limit would cut the result.

    Transient failures (timeouts, refused connections, HTTP 5xx) are retried
    with exponential backoff; a service that stays down raises
    `aligncore.catalogs.CatalogServiceError` naming it and suggesting a cached
    result or a local catalog file. Results are cached on disk (``cache``).

    With an ``epoch``, GSSS moves the stars with proper motions itself (EPOCH
    parameter); TAP results are moved locally with
    `aligncore.catalogs.propagate`. Stars without proper motion are returned
    unmoved with NaN proper motions and their catalog epoch, for the caller's
    ``refcat_pm`` policy.
    """

    name = "gaia"

    class Params(aligncore.Params):
        catalog: Literal["GAIADR1", "GAIADR2", "GAIADR3", "GAIAREFCAT"] = Field(
            "GAIADR2",
            description="Catalog: GAIADR1, GAIADR2 (seed default), GAIADR3, or GAIAREFCAT "
            "(GSSS only).",
        )
        service: Literal["gsss", "tap"] = Field(
            "gsss", description="gsss: STScI GSSS web service; tap: Gaia archive TAP (pyvo)."
        )
        url: str | None = Field(
            None,
            description="Service URL. gsss: base URL (default $ASTROMETRIC_CATALOG_URL or "
            "https://gsss.stsci.edu/webservices); tap: TAP URL (default "
            "https://gea.esac.esa.int/tap-server/tap).",
        )
        timeout: float = Field(30.0, gt=0, description="Seconds to wait for each request.")
        retries: int = Field(
            3, ge=0, description="Retries after a transient failure (timeout, HTTP 5xx)."
        )
        backoff: float = Field(
            1.0, ge=0, description="Seconds before the first retry (doubled for each next one)."
        )
        cache: Literal["use", "refresh", "off"] = Field(
            "use",
            description="use: reuse a cached result when there is one; refresh: always "
            "query and update the cache; off: no cache.",
        )
        cache_dir: Path | None = Field(
            None, description="Cache directory (default <astropy cache dir>/aligncore/refcat)."
        )
        sync_row_limit: int = Field(
            2000, ge=1, description="tap: a synchronous result this long is re-run as an "
            "asynchronous job."
        )

        @model_validator(mode="after")
        def _catalog_for_service(self) -> GaiaRefCatalog.Params:
            if self.service == "tap" and self.catalog not in TAP_TABLES:
                raise ValueError(f"catalog {self.catalog} is not available with service 'tap' "
                                 f"(use one of {', '.join(TAP_TABLES)}, or service 'gsss')")
            return self

    params: Params

    def query(self, center: SkyCoord, radius: Angle, epoch: Time | None = None) -> QTable:
        """Stars within ``radius`` of ``center`` (positions at ``epoch`` where possible).

        Raises
        ------
        aligncore.catalogs.CatalogServiceError
            The service cannot be used; the message names it and what to do.
        """
        require_query_types(self.name, center, radius, epoch)
        p = self.params
        icrs = center.icrs
        ra, dec = float(icrs.ra.deg), float(icrs.dec.deg)
        radius_deg = float(Angle(radius).deg)
        year = as_jyear(epoch)
        if p.service == "gsss":
            client = GsssClient(p.url, timeout=p.timeout, retries=p.retries, backoff=p.backoff)
            base = client.base

            def fetch() -> QTable:
                return client.query(ra, dec, radius_deg, p.catalog, year)
        else:
            tap = TapClient(p.url, timeout=p.timeout, retries=p.retries, backoff=p.backoff,
                            sync_row_limit=p.sync_row_limit)
            base = tap.base

            def fetch() -> QTable:
                table = tap.query(ra, dec, radius_deg, p.catalog)
                return propagate(table, year, pm_mode="keep") if year is not None else table

        cache = CatalogCache(p.cache_dir, p.cache)
        key = CacheKey(service=f"{p.service} {base}", catalog=p.catalog, ra=ra, dec=dec,
                       radius=radius_deg, epoch=year)
        table, status = cache.fetch(key, fetch)
        table.meta.update(self.provenance())
        table.meta.update(service=p.service, url=base, catalog=p.catalog, cache=status,
                          ref_epoch=_catalog_epoch(p.catalog))
        return table


def _catalog_epoch(catalog: str) -> float:
    return GSSS_CATALOGS[catalog]
