"""The ``gaia`` reference catalog against a real HTTP server on 127.0.0.1.

``FakeCatalogService`` serves the STScI GSSS endpoint (CSV) and a TAP service
(sync queries and UWS async jobs, VOTable) from a sky catalog, filtering it by
the requested cone. Tests switch it into failure modes (error bodies, HTTP
500, slow replies, malformed CSV, no data) and count the requests it gets.
Nothing in the client is mocked: the plugin talks HTTP to the server.
"""

from __future__ import annotations

import io
import math
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from astropy.coordinates import Angle, SkyCoord
from astropy.io.votable.tree import Info
from astropy.table import MaskedColumn, QTable, Table
from astropy.time import Time
from pydantic import ValidationError

import aligncore
from aligncore.catalogs import CatalogServiceError
from aligncore_gaia import GaiaRefCatalog, GsssClient, parse_gsss_csv

ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0
GSSS_PATH = "/vo/CatalogSearch.aspx"
TAP_PATH = "/tap"


# --- the fake service ---------------------------------------------------------------------
def offset_sky(ra, dec, dxi, deta):
    """Move points by (dxi, deta) arcsec in their own tangent plane (the service's own maths)."""
    x = np.asarray(dxi, float) / ARCSEC_PER_RAD
    y = np.asarray(deta, float) / ARCSEC_PER_RAD
    a0, d0 = np.radians(ra), np.radians(dec)
    denom = np.cos(d0) - y * np.sin(d0)
    new_ra = a0 + np.arctan2(x, denom)
    new_dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, denom))
    return np.degrees(new_ra) % 360.0, np.degrees(new_dec)


def angular_distance(ra, dec, ra0, dec0):
    """Degrees (haversine)."""
    ra, dec, ra0, dec0 = (np.radians(np.asarray(v, float)) for v in (ra, dec, ra0, dec0))
    h = np.sin((dec - dec0) / 2) ** 2 + np.cos(dec) * np.cos(dec0) * np.sin((ra - ra0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(h)))


class FakeCatalogService:
    """GSSS and TAP endpoints on a random free port of 127.0.0.1.

    Attributes
    ----------
    sky : QTable
        ``id, ra, dec, ra_err, dec_err, pmra, pmdec, mag`` at ``catalog_epoch``
        (NaN proper motion = none).
    mode : str
        ``ok``, ``empty`` ("No data records"), ``error`` ("Error ..." body),
        ``http500``, ``slow`` (sleeps ``delay`` s first), ``malformed``, or
        ``flaky`` (HTTP 500 for the first ``flaky_failures`` requests).
    requests : Counter
        Requests per endpoint (``gsss``, ``tap_sync``, ``tap_async``, ``tap_job``,
        ``tap_result``) and ``total``.
    log : list
        (endpoint, parameters) of every request.
    """

    def __init__(self, sky: QTable, catalog_epoch: float = 2016.0) -> None:
        self.sky = sky
        self.catalog_epoch = catalog_epoch
        self.mode = "ok"
        self.delay = 1.0
        self.flaky_failures = 1
        self.requests: Counter = Counter()
        self.log: list[tuple[str, dict]] = []
        self.jobs: dict[str, dict] = {}
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                service._handle(self, "GET")

            def do_POST(self):
                service._handle(self, "POST")

            def do_DELETE(self):
                service._handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def tap_url(self) -> str:
        return self.url + TAP_PATH

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- dispatch ------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlparse(handler.path)
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        if method == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length).decode()
            params.update({k: v[-1] for k, v in urllib.parse.parse_qs(body).items()})
        path = parsed.path
        endpoint = self._endpoint(path)
        with self._lock:
            self.requests[endpoint] += 1
            self.requests["total"] += 1
            self.log.append((endpoint, params))
            count = self.requests["total"]
        try:
            if self.mode == "slow":
                time.sleep(self.delay)
            if self.mode == "http500" or (self.mode == "flaky" and count <= self.flaky_failures):
                return self._send(handler, 500, b"Internal Server Error", "text/plain")
            if endpoint == "gsss":
                return self._gsss(handler, params)
            if endpoint == "tap_sync":
                return self._tap_sync(handler, params)
            if endpoint in ("tap_async", "tap_job", "tap_result"):
                return self._tap_async(handler, method, path, params)
            return self._send(handler, 404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            return None

    @staticmethod
    def _endpoint(path: str) -> str:
        if path == GSSS_PATH:
            return "gsss"
        if path == f"{TAP_PATH}/sync":
            return "tap_sync"
        if path == f"{TAP_PATH}/async":
            return "tap_async"
        if path.startswith(f"{TAP_PATH}/async/") and "/results/" in path:
            return "tap_result"
        if path.startswith(f"{TAP_PATH}/async/"):
            return "tap_job"
        return "other"

    @staticmethod
    def _send(handler, status: int, body: bytes, content_type: str, headers=None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    # --- sky -----------------------------------------------------------------------------
    def cone(self, ra: float, dec: float, radius: float, epoch: float | None = None) -> QTable:
        """Sky rows within the cone (catalog-epoch positions), moved to ``epoch`` if given."""
        sky = self.sky
        inside = angular_distance(sky["ra"], sky["dec"], ra, dec) <= radius
        rows = QTable(sky[inside], copy=True)
        rows["epoch"] = np.full(len(rows), self.catalog_epoch)
        if epoch is not None and len(rows):
            pmra = np.asarray(rows["pmra"], float)
            pmdec = np.asarray(rows["pmdec"], float)
            moving = np.isfinite(pmra) & np.isfinite(pmdec)
            years = epoch - self.catalog_epoch
            ra_new, dec_new = offset_sky(np.asarray(rows["ra"], float)[moving],
                                         np.asarray(rows["dec"], float)[moving],
                                         pmra[moving] * years / 1000.0,
                                         pmdec[moving] * years / 1000.0)
            ra_all = np.asarray(rows["ra"], float).copy()
            dec_all = np.asarray(rows["dec"], float).copy()
            ra_all[moving], dec_all[moving] = ra_new, dec_new
            rows["ra"], rows["dec"] = ra_all, dec_all
            rows["epoch"] = np.where(moving, epoch, self.catalog_epoch)
        return rows

    # --- GSSS ----------------------------------------------------------------------------
    def _gsss(self, handler, params: dict) -> None:
        if self.mode == "error":
            return self._send(handler, 200, b"Error: catalog database unavailable\r\n",
                              "text/plain")
        if self.mode == "malformed":
            return self._send(handler, 200, b"<html><body>Service maintenance</body></html>",
                              "text/html")
        epoch = float(params["EPOCH"]) if "EPOCH" in params else None
        rows = self.cone(float(params["RA"]), float(params["DEC"]), float(params["SR"]), epoch)
        if self.mode == "empty" or len(rows) == 0:
            return self._send(handler, 200, b"#@0\r\nNo data records\r\n", "text/csv")
        header = ["ra", "ra_error", "dec", "dec_error", "pmra", "pmra_error", "pmdec",
                  "pmdec_error", "mag", "objID", "epoch"]
        lines = [f"#@{len(rows)} records from {params.get('CAT')}", ",".join(header)]
        for row in rows:
            pm = [float(row["pmra"]), float(row["pmdec"])]
            has_pm = all(math.isfinite(v) for v in pm)
            fields = [
                f"{float(row['ra']):.10f}", f"{float(row['ra_err']):.4f}",
                f"{float(row['dec']):.10f}", f"{float(row['dec_err']):.4f}",
                f"{pm[0]:.5f}" if has_pm else "", "0.05" if has_pm else "",
                f"{pm[1]:.5f}" if has_pm else "", "0.05" if has_pm else "",
                f"{float(row['mag']):.4f}", str(int(row["id"])), f"{float(row['epoch']):.4f}",
            ]
            lines.append(",".join(fields))
        body = ("\r\n".join(lines) + "\r\n").encode()
        return self._send(handler, 200, body, "text/csv")

    # --- TAP -----------------------------------------------------------------------------
    def _votable(self, query: str, maxrec: int | None) -> bytes:
        match = re.search(r"CIRCLE\(\s*'ICRS'\s*,\s*([-\d.eE+]+)\s*,\s*([-\d.eE+]+)\s*,"
                          r"\s*([-\d.eE+]+)\s*\)", query)
        table_match = re.search(r"FROM\s+(\S+)", query, re.IGNORECASE)
        assert match and table_match, query
        ra, dec, radius = (float(v) for v in match.groups())
        rows = self.cone(ra, dec, radius)
        status = "OK"
        if maxrec is not None and len(rows) > maxrec:
            rows, status = rows[:maxrec], "OVERFLOW"
        table = Table()
        table["source_id"] = np.asarray(rows["id"], dtype=np.int64)
        table["ra"] = np.asarray(rows["ra"], float)
        table["dec"] = np.asarray(rows["dec"], float)
        table["ra_error"] = np.asarray(rows["ra_err"], float)
        table["dec_error"] = np.asarray(rows["dec_err"], float)
        for name in ("pmra", "pmdec"):
            values = np.asarray(rows[name], float)
            table[name] = MaskedColumn(np.nan_to_num(values), mask=~np.isfinite(values))
        table["ref_epoch"] = np.full(len(rows), self.catalog_epoch)
        table["phot_g_mean_mag"] = np.asarray(rows["mag"], float)
        from astropy.io.votable import from_table

        votable = from_table(table)
        votable.resources[0].infos.append(Info(name="QUERY_STATUS", value=status))
        buffer = io.BytesIO()
        votable.to_xml(buffer)
        return buffer.getvalue()

    def _tap_sync(self, handler, params: dict) -> None:
        if self.mode == "malformed":
            return self._send(handler, 200, b"<VOTABLE><broken", "application/x-votable+xml")
        maxrec = int(params["MAXREC"]) if "MAXREC" in params else None
        body = self._votable(params["QUERY"], maxrec)
        return self._send(handler, 200, body, "application/x-votable+xml")

    def _tap_async(self, handler, method: str, path: str, params: dict) -> None:
        if path == f"{TAP_PATH}/async" and method == "POST":
            job_id = str(len(self.jobs) + 1)
            self.jobs[job_id] = {"query": params["QUERY"], "phase": "PENDING"}
            location = f"{self.tap_url}/async/{job_id}"
            return self._send(handler, 303, b"", "text/plain", {"Location": location})
        parts = path[len(f"{TAP_PATH}/async/"):].split("/")
        job = self.jobs.get(parts[0])
        if job is None:
            return self._send(handler, 404, b"no such job", "text/plain")
        if len(parts) == 2 and parts[1] == "phase" and method == "POST":
            if params.get("PHASE") == "RUN":
                job["phase"] = "COMPLETED"
            return self._send(handler, 303, b"", "text/plain",
                              {"Location": f"{self.tap_url}/async/{parts[0]}"})
        if len(parts) >= 3 and parts[1] == "results":
            return self._send(handler, 200, self._votable(job["query"], None),
                              "application/x-votable+xml")
        if method == "DELETE":
            job["phase"] = "ARCHIVED"
            return self._send(handler, 303, b"", "text/plain",
                              {"Location": f"{self.tap_url}/async"})
        result = f'<uws:result id="result" xlink:href="{self.tap_url}/async/{parts[0]}' \
                 '/results/result"/>' if job["phase"] == "COMPLETED" else ""
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<uws:job xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
            'xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1">'
            f"<uws:jobId>{parts[0]}</uws:jobId><uws:phase>{job['phase']}</uws:phase>"
            "<uws:executionDuration>0</uws:executionDuration>"
            "<uws:destruction>2099-01-01T00:00:00</uws:destruction>"
            "<uws:parameters/>"
            f"<uws:results>{result}</uws:results></uws:job>"
        )
        return self._send(handler, 200, xml.encode(), "text/xml")


def sky_catalog(n: int = 400, seed: int = 0, center=(150.0, 2.0), half_width_arcsec=120.0,
                no_pm_fraction=0.1) -> QTable:
    """A Gaia-like random sky (positions at 2016.0) around ``center``."""
    rng = np.random.default_rng(seed)
    xi = rng.uniform(-half_width_arcsec, half_width_arcsec, n)
    eta = rng.uniform(-half_width_arcsec, half_width_arcsec, n)
    ra, dec = offset_sky(np.full(n, center[0]), np.full(n, center[1]), xi, eta)
    sky = QTable()
    sky["id"] = np.arange(1, n + 1, dtype=np.int64)
    sky["ra"], sky["dec"] = ra, dec
    sky["ra_err"] = rng.uniform(0.05, 1.0, n)
    sky["dec_err"] = rng.uniform(0.05, 1.0, n)
    pmra, pmdec = rng.normal(0, 8.0, (2, n))
    blank = rng.random(n) < no_pm_fraction
    pmra[blank] = np.nan
    pmdec[blank] = np.nan
    sky["pmra"], sky["pmdec"] = pmra, pmdec
    sky["mag"] = rng.uniform(12.0, 20.0, n)
    return sky


@pytest.fixture(scope="module")
def service():
    server = FakeCatalogService(sky_catalog())
    yield server
    server.close()


@pytest.fixture
def fresh(service):
    """The module's server reset to normal operation with zeroed counters."""
    service.mode = "ok"
    service.delay = 1.0
    service.requests.clear()
    service.log.clear()
    return service


CENTER = SkyCoord(150.0, 2.0, unit="deg")
RADIUS = Angle(60.0, "arcsec")


def gaia(server, **params) -> GaiaRefCatalog:
    base = {"url": server.url, "catalog": "GAIADR3", "cache": "off", "retries": 0,
            "backoff": 0.0, "timeout": 5.0}
    if params.get("service") == "tap":
        base["url"] = server.tap_url
    base.update(params)
    return aligncore.get_plugin("refcatalog", "gaia")(base)


def expected_ids(service, radius=RADIUS) -> set[int]:
    return set(np.asarray(service.cone(150.0, 2.0, radius.deg)["id"]).tolist())


# --- GSSS ---------------------------------------------------------------------------------
def test_gsss_cone_search_returns_the_cone_in_aligncore_columns(fresh):
    table = gaia(fresh).query(CENTER, RADIUS)
    assert set(np.asarray(table["id"]).tolist()) == expected_ids(fresh)
    assert len(table) > 50
    for column in ("id", "ra", "dec", "mag", "ra_err", "dec_err", "pmra", "pmdec", "epoch"):
        assert column in table.colnames
    endpoint, params = fresh.log[0]
    assert endpoint == "gsss" and fresh.requests["total"] == 1
    assert params["CAT"] == "GAIADR3" and params["FORMAT"] == "CSV"
    assert "EPOCH" not in params
    assert float(params["SR"]) == pytest.approx(RADIUS.deg)
    assert float(params["RA"]) == pytest.approx(150.0) and float(params["DEC"]) == 2.0
    sky = fresh.sky[np.isin(fresh.sky["id"], table["id"])]
    order = np.argsort(np.asarray(sky["id"]))
    np.testing.assert_allclose(np.asarray(table["ra"])[np.argsort(np.asarray(table["id"]))],
                               np.asarray(sky["ra"])[order], atol=1e-9)
    assert table.meta["service"] == "gsss" and table.meta["cache"] == "off"
    assert np.all(np.asarray(table["epoch"]) == 2016.0)


def test_gsss_epoch_moves_stars_with_proper_motion_and_flags_the_others(fresh):
    table = gaia(fresh).query(CENTER, RADIUS, Time(2026.0, format="jyear"))
    assert float(fresh.log[0][1]["EPOCH"]) == 2026.0
    no_pm = ~np.isfinite(np.asarray(table["pmra"], float))
    assert 0 < np.count_nonzero(no_pm) < len(table)
    epochs = np.asarray(table["epoch"], float)
    assert np.all(epochs[no_pm] == 2016.0)  # unmoved: still at the catalog epoch
    assert np.all(epochs[~no_pm] == 2026.0)
    sky = {int(i): row for i, row in zip(fresh.sky["id"], fresh.sky, strict=True)}
    for row in table[~no_pm][:5]:
        truth = sky[int(row["id"])]
        ra, dec = offset_sky(truth["ra"], truth["dec"], truth["pmra"] * 10 / 1000,
                             truth["pmdec"] * 10 / 1000)
        assert abs(float(row["dec"]) - float(dec)) * 3.6e6 < 0.01  # mas
        assert abs(float(row["ra"]) - float(ra)) * 3.6e6 * math.cos(math.radians(2)) < 0.01


def test_gsss_base_url_from_environment(fresh, monkeypatch):
    monkeypatch.setenv("ASTROMETRIC_CATALOG_URL", fresh.url + "/")
    table = gaia(fresh, url=None).query(CENTER, RADIUS)
    assert len(table) > 0 and fresh.requests["gsss"] == 1
    assert table.meta["url"] == fresh.url


def test_gsss_no_data_records_is_an_empty_table(fresh):
    fresh.mode = "empty"
    table = gaia(fresh).query(CENTER, RADIUS)
    assert len(table) == 0
    assert {"id", "ra", "dec", "pmra", "epoch"} <= set(table.colnames)


def test_gsss_error_body_fails_at_once_naming_the_service(fresh):
    fresh.mode = "error"
    with pytest.raises(CatalogServiceError,
                       match=r"STScI GSSS catalog service .*answered 'Error: catalog database"
                             r".*local catalog file") as info:
        gaia(fresh, retries=3).query(CENTER, RADIUS)
    assert isinstance(info.value, aligncore.AlignError)
    assert fresh.requests["total"] == 1  # not transient: no retry


def test_gsss_http_500_is_retried_then_reported(fresh):
    fresh.mode = "http500"
    with pytest.raises(CatalogServiceError, match=r"HTTP error 500 .*after 3 attempts.*retry "
                                                   r"later"):
        gaia(fresh, retries=2, backoff=0.01).query(CENTER, RADIUS)
    assert fresh.requests["gsss"] == 3


def test_gsss_transient_failure_recovers_on_retry(fresh):
    fresh.mode = "flaky"
    fresh.flaky_failures = 1
    table = gaia(fresh, retries=2, backoff=0.01).query(CENTER, RADIUS)
    assert len(table) > 0 and fresh.requests["gsss"] == 2
    assert table.meta["attempts"] == 2


def test_gsss_slow_service_times_out(fresh):
    fresh.mode = "slow"
    fresh.delay = 1.0
    start = time.perf_counter()
    with pytest.raises(CatalogServiceError, match=r"no answer within 0.2 s .*after 2 attempts"):
        gaia(fresh, timeout=0.2, retries=1, backoff=0.01).query(CENTER, RADIUS)
    assert time.perf_counter() - start < 1.5  # > 2 s without timeouts
    assert fresh.requests["gsss"] == 2


def test_gsss_service_down_says_cannot_connect():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = GsssClient(f"http://127.0.0.1:{port}", timeout=1.0, retries=1, backoff=0.0)
    with pytest.raises(CatalogServiceError, match=r"cannot connect .*after 2 attempts.*"
                                                   r"absolute.refcat: \{plugin: file"):
        client.query(150.0, 2.0, 0.01, "GAIADR3")


def test_gsss_malformed_reply(fresh):
    fresh.mode = "malformed"
    with pytest.raises(CatalogServiceError, match=r"malformed reply: no ra/dec columns in "
                                                   r"'<html>"):
        gaia(fresh).query(CENTER, RADIUS)


@pytest.mark.parametrize(("text", "message"), [
    ("#@1\r\nra,dec,mag\r\n150.0,2.0\r\n", "line 2 has a different number of fields"),
    ("#@1\r\nra,dec,mag\r\n150.0,abc,12\r\n", r"dec='abc' on data line 1 is not a number"),
    ("#@1\r\nra,dec\r\n,2.0\r\n", "empty or invalid ra/dec"),
])
def test_gsss_csv_problems_are_named(text, message):
    with pytest.raises(CatalogServiceError, match=message):
        parse_gsss_csv(text)


def test_gsss_error_after_the_comment_line_is_a_failure():
    with pytest.raises(CatalogServiceError, match="answered 'Error: invalid catalog'"):
        parse_gsss_csv("#@0\r\nError: invalid catalog\r\n")


def test_gsss_csv_without_epoch_column_uses_the_catalog_epoch():
    table = parse_gsss_csv("#@2\nra,dec,pmra,pmdec,objID\n150,2,1.5,-2,7\n150.1,2.1,,,8\n",
                           catalog="GAIADR2", epoch=2025.0)
    np.testing.assert_array_equal(table["epoch"], [2025.0, 2015.5])
    assert list(table["id"]) == [7, 8]
    assert np.isnan(table["pmra"][1])


# --- TAP ----------------------------------------------------------------------------------
def test_tap_sync_cone_search(fresh):
    table = gaia(fresh, service="tap").query(CENTER, RADIUS)
    assert set(np.asarray(table["id"]).tolist()) == expected_ids(fresh)
    assert fresh.requests["tap_sync"] == 1 and fresh.requests["tap_async"] == 0
    query = fresh.log[0][1]["QUERY"]
    assert "FROM gaiadr3.gaia_source" in query and "CONTAINS(POINT('ICRS', ra, dec)" in query
    assert table.meta["tap_mode"] == "sync"
    no_pm = ~np.isfinite(np.asarray(table["pmra"], float))
    assert 0 < np.count_nonzero(no_pm) < len(table)  # masked proper motions became NaN
    assert np.all(np.asarray(table["epoch"]) == 2016.0)


def test_tap_switches_to_an_async_job_when_the_sync_limit_cuts_the_result(fresh):
    table = gaia(fresh, service="tap", sync_row_limit=10).query(CENTER, RADIUS)
    assert set(np.asarray(table["id"]).tolist()) == expected_ids(fresh)
    assert len(table) > 10
    assert table.meta["tap_mode"] == "async"
    assert fresh.requests["tap_sync"] == 1 and fresh.requests["tap_async"] == 1
    assert fresh.requests["tap_result"] == 1


def test_tap_epoch_is_applied_locally_with_proper_motions(fresh):
    table = gaia(fresh, service="tap").query(CENTER, RADIUS, Time(2026.0, format="jyear"))
    moved = fresh.cone(150.0, 2.0, RADIUS.deg, 2026.0)
    order = np.argsort(np.asarray(table["id"]))
    ref_order = np.argsort(np.asarray(moved["id"]))
    dra = (np.asarray(table["ra"])[order] - np.asarray(moved["ra"])[ref_order]) * 3.6e6
    ddec = (np.asarray(table["dec"])[order] - np.asarray(moved["dec"])[ref_order]) * 3.6e6
    assert np.max(np.abs(dra * np.cos(np.radians(2.0)))) < 0.01  # mas
    assert np.max(np.abs(ddec)) < 0.01
    np.testing.assert_array_equal(np.asarray(table["epoch"])[order],
                                  np.asarray(moved["epoch"])[ref_order])


def test_tap_http_500_and_timeout(fresh):
    fresh.mode = "http500"
    with pytest.raises(CatalogServiceError, match=r"Gaia TAP service .*HTTP error 500 .*after 2 "
                                                   r"attempts"):
        gaia(fresh, service="tap", retries=1, backoff=0.01).query(CENTER, RADIUS)
    assert fresh.requests["tap_sync"] == 2
    fresh.mode = "slow"
    with pytest.raises(CatalogServiceError, match=r"no answer within 0.2 s"):
        gaia(fresh, service="tap", timeout=0.2).query(CENTER, RADIUS)


def test_tap_malformed_votable(fresh):
    fresh.mode = "malformed"
    with pytest.raises(CatalogServiceError, match=r"Gaia TAP service .*unreadable reply"):
        gaia(fresh, service="tap").query(CENTER, RADIUS)


# --- cache --------------------------------------------------------------------------------
def test_cache_second_query_makes_no_request(fresh, tmp_path):
    refcat = gaia(fresh, cache="use", cache_dir=tmp_path)
    first = refcat.query(CENTER, RADIUS)
    assert fresh.requests["total"] == 1 and first.meta["cache"] == "miss"
    second = refcat.query(CENTER, RADIUS)
    assert fresh.requests["total"] == 1 and second.meta["cache"] == "hit"
    np.testing.assert_array_equal(second["id"], first["id"])
    np.testing.assert_allclose(second["ra"], first["ra"], rtol=0, atol=1e-12)
    assert np.count_nonzero(np.isnan(np.asarray(second["pmra"], float))) == np.count_nonzero(
        np.isnan(np.asarray(first["pmra"], float)))
    # a smaller cone inside the cached one is served from it, cut to size
    inner = refcat.query(CENTER, Angle(30.0, "arcsec"))
    assert fresh.requests["total"] == 1 and inner.meta["cache"] == "hit"
    assert set(np.asarray(inner["id"]).tolist()) == expected_ids(fresh, Angle(30.0, "arcsec"))
    # another epoch or another service is another entry
    refcat.query(CENTER, RADIUS, Time(2026.0, format="jyear"))
    gaia(fresh, service="tap", cache="use", cache_dir=tmp_path).query(CENTER, RADIUS)
    assert fresh.requests["total"] == 3
    # offline: the service is down, the cache still answers
    fresh.mode = "http500"
    assert len(refcat.query(CENTER, RADIUS)) == len(first)


def test_cache_refresh_queries_again_and_off_never_stores(fresh, tmp_path):
    gaia(fresh, cache="use", cache_dir=tmp_path).query(CENTER, RADIUS)
    table = gaia(fresh, cache="refresh", cache_dir=tmp_path).query(CENTER, RADIUS)
    assert table.meta["cache"] == "refresh" and fresh.requests["total"] == 2
    off_dir = tmp_path / "off"
    gaia(fresh, cache="off", cache_dir=off_dir).query(CENTER, RADIUS)
    gaia(fresh, cache="off", cache_dir=off_dir).query(CENTER, RADIUS)
    assert fresh.requests["total"] == 4 and not off_dir.exists()


def test_empty_results_are_not_cached(fresh, tmp_path):
    fresh.mode = "empty"
    gaia(fresh, cache="use", cache_dir=tmp_path).query(CENTER, RADIUS)
    fresh.mode = "ok"
    table = gaia(fresh, cache="use", cache_dir=tmp_path).query(CENTER, RADIUS)
    assert len(table) > 0 and fresh.requests["total"] == 2


# --- parameters ---------------------------------------------------------------------------
def test_parameters_are_validated():
    with pytest.raises(ValidationError, match="catalog GAIAREFCAT is not available with "
                                              "service 'tap'"):
        GaiaRefCatalog(service="tap", catalog="GAIAREFCAT")
    with pytest.raises(ValidationError, match="timeout"):
        GaiaRefCatalog(timeout=0)
    with pytest.raises(ValidationError, match="cache"):
        GaiaRefCatalog(cache="sometimes")
    assert GaiaRefCatalog().params.catalog == "GAIADR2"  # the seed's default
