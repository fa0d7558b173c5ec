"""aligncore.catalogs: epoch propagation, pm policies, cache, retries, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import MaskedColumn, QTable
from astropy.time import Time

from aligncore.catalogs import (
    CacheKey,
    CatalogCache,
    CatalogServiceError,
    as_jyear,
    default_cache_dir,
    propagate,
    reference_table,
    retry_call,
    row_epochs,
)

ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0


def offset_sky(ra, dec, dxi, deta):
    x = np.asarray(dxi, float) / ARCSEC_PER_RAD
    y = np.asarray(deta, float) / ARCSEC_PER_RAD
    a0, d0 = np.radians(ra), np.radians(dec)
    denom = np.cos(d0) - y * np.sin(d0)
    return (np.degrees(a0 + np.arctan2(x, denom)) % 360.0,
            np.degrees(np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, denom))))


def catalog(n=50, seed=1, no_pm=5, dec0=2.0):
    rng = np.random.default_rng(seed)
    pmra, pmdec = rng.normal(0, 10, (2, n))
    pmra[:no_pm] = np.nan
    pmdec[:no_pm] = np.nan
    return reference_table(
        150 + rng.uniform(-0.05, 0.05, n), dec0 + rng.uniform(-0.05, 0.05, n),
        mag=rng.uniform(14, 20, n), ra_err=np.full(n, 0.5), dec_err=np.full(n, 0.4),
        pmra=pmra, pmdec=pmdec, epoch=2016.0)


@pytest.mark.parametrize("dec0", [2.0, 75.0])
def test_propagation_agrees_with_a_tangent_plane_offset(dec0):
    table = catalog(dec0=dec0)
    moved = propagate(table, Time(2026.0, format="jyear"), pm_mode="keep")
    ok = np.isfinite(np.asarray(table["pmra"]))
    ra, dec = offset_sky(np.asarray(table["ra"])[ok], np.asarray(table["dec"])[ok],
                         np.asarray(table["pmra"])[ok] * 10 / 1000,
                         np.asarray(table["pmdec"])[ok] * 10 / 1000)
    dra = (np.asarray(moved["ra"])[ok] - ra) * np.cos(np.radians(dec)) * 3.6e6
    ddec = (np.asarray(moved["dec"])[ok] - dec) * 3.6e6
    assert np.max(np.hypot(dra, ddec)) < 0.01  # mas, for ~100 mas motions
    shift = np.hypot((np.asarray(moved["ra"])[ok] - np.asarray(table["ra"])[ok])
                     * np.cos(np.radians(dec)), np.asarray(moved["dec"])[ok]
                     - np.asarray(table["dec"])[ok]) * 3.6e6
    assert np.median(shift) > 50  # the stars really moved
    assert np.all(np.asarray(moved["epoch"])[ok] == 2026.0)
    # keep: the stars without proper motion are untouched
    np.testing.assert_array_equal(np.asarray(moved["ra"])[~ok], np.asarray(table["ra"])[~ok])
    assert np.all(np.asarray(moved["epoch"])[~ok] == 2016.0)
    assert moved.meta["n_moved"] == 45 and moved.meta["n_no_pm"] == 5


def test_require_drops_and_inflate_grows_errors_of_stars_without_pm():
    table = catalog()
    required = propagate(table, 2026.0, pm_mode="require")
    assert len(required) == 45 and required.meta["n_dropped"] == 5
    assert np.all(np.isfinite(np.asarray(required["pmra"])))
    inflated = propagate(table, 2026.0, pm_mode="inflate", unknown_pm=10.0)
    assert len(inflated) == 50
    np.testing.assert_allclose(inflated["ra_err"][:5], math.hypot(0.5, 100.0))
    np.testing.assert_allclose(inflated["dec_err"][:5], math.hypot(0.4, 100.0))
    np.testing.assert_allclose(inflated["ra_err"][5:], 0.5)
    np.testing.assert_array_equal(inflated["ra"][:5], table["ra"][:5])
    assert np.all(np.asarray(inflated["epoch"])[:5] == 2016.0)
    assert len(table) == 50 and table["ra_err"][0] == 0.5  # input untouched


def test_propagation_needs_an_epoch_and_says_so():
    table = catalog()
    table["epoch"] = np.nan
    out = propagate(table, 2026.0, pm_mode="inflate")
    np.testing.assert_array_equal(out["ra"], table["ra"])
    assert "50 reference stars have no epoch" in out.meta["warnings"][0]
    table.meta["ref_epoch"] = 2015.5  # an epoch in the metadata is enough
    assert np.all(row_epochs(table) == 2015.5)
    assert propagate(table, 2026.0).meta["n_moved"] == 45


def test_propagate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="pm_mode must be 'require', 'inflate' or 'keep'"):
        propagate(catalog(), 2026.0, pm_mode="ignore")
    with pytest.raises(ValueError, match="unknown_pm must be >= 0"):
        propagate(catalog(), 2026.0, unknown_pm=-1.0)


def test_reference_table_fills_unknowns_with_nan():
    table = reference_table([1.0, 361.0], MaskedColumn([2.0, 3.0], mask=[False, False]),
                            pmra=MaskedColumn([1.0, 0.0], mask=[False, True]),
                            ids=["a1", "b2"], epoch=2016.0)
    np.testing.assert_allclose(table["ra"], [1.0, 1.0])
    assert np.isnan(table["pmra"][1]) and np.isnan(table["mag"][0])
    assert list(table["id"]) == ["a1", "b2"]
    assert list(table["epoch"]) == [2016.0, 2016.0]
    with pytest.raises(ValueError, match="differ in length"):
        reference_table([1.0, 2.0], [1.0])
    assert as_jyear("J2015.5") == 2015.5 and as_jyear(Time(2016.0, format="jyear")) == 2016.0


def test_retry_call_backs_off_on_transient_errors_only():
    waits: list[float] = []
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise CatalogServiceError("svc", "HTTP error 503", transient=True)
        return "ok"

    value, attempts = retry_call(flaky, retries=3, backoff=0.5,
                                 transient=lambda e: getattr(e, "transient", False),
                                 sleep=waits.append)
    assert (value, attempts) == ("ok", 3)
    assert waits == [0.5, 1.0]

    def broken():
        raise CatalogServiceError("svc", "bad request")

    waits.clear()
    with pytest.raises(CatalogServiceError, match="svc: bad request; retry later"):
        retry_call(broken, retries=3, backoff=0.5, transient=lambda e: e.transient,
                   sleep=waits.append)
    assert waits == []


def test_service_error_message():
    error = CatalogServiceError("STScI GSSS catalog service", "HTTP error 500",
                                url="http://x/y", transient=True)
    text = str(error)
    assert text.startswith("STScI GSSS catalog service (http://x/y): HTTP error 500; retry")
    assert "absolute.refcat: {plugin: file" in text and error.transient


def key(ra=150.0, dec=2.0, radius=0.02, epoch=None):
    return CacheKey(service="gsss http://h", catalog="GAIADR3", ra=ra, dec=dec, radius=radius,
                    epoch=epoch)


def test_cache_round_trip_and_containing_cones(tmp_path):
    cache = CatalogCache(tmp_path, "use")
    table = catalog(n=200)
    assert cache.get(key()) is None
    path = cache.put(key(radius=0.08), table)
    assert path.exists() and path.parent.parent == tmp_path
    back = cache.get(key(radius=0.08))
    assert len(back) == 200 and np.isnan(back["pmra"][0])
    np.testing.assert_allclose(back["ra"], table["ra"], rtol=0, atol=1e-12)
    inner = cache.get(key(ra=150.01, radius=0.02))
    assert 0 < len(inner) < 200
    assert cache.get(key(ra=150.07, radius=0.02)) is None  # sticks out of the stored cone
    assert cache.get(key(radius=0.02, epoch=2026.0)) is None  # another epoch
    path.write_text("garbage")
    assert cache.get(key(radius=0.08)) is None  # a corrupt entry is a miss


def test_cache_modes(tmp_path):
    table = catalog()
    calls = []

    def query():
        calls.append(1)
        return table

    for mode, statuses in (("use", ["miss", "hit"]), ("refresh", ["refresh", "refresh"]),
                           ("off", ["off", "off"])):
        cache = CatalogCache(tmp_path / mode, mode)
        assert [cache.fetch(key(), query)[1] for _ in range(2)] == statuses
    assert len(calls) == 5
    assert not (tmp_path / "off").exists()
    with pytest.raises(ValueError, match="cache mode must be one of use, refresh, off"):
        CatalogCache(tmp_path, "sometimes")
    assert default_cache_dir().parts[-2:] == ("aligncore", "refcat")


def test_cache_keeps_yaml_safe_metadata_only(tmp_path):
    table = catalog()
    table.meta.update(catalog="GAIADR3", odd=object(), nan=float("nan"))
    cache = CatalogCache(tmp_path)
    cache.put(key(), table)
    back = QTable.read(cache.path(key()), format="ascii.ecsv")
    assert back.meta["catalog"] == "GAIADR3" and "odd" not in back.meta
    assert back.meta["cache_key"]["catalog"] == "GAIADR3"
