"""The ``file`` reference catalog: formats, column names, units, epochs, errors."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.table import Table
from astropy.time import Time
from pydantic import ValidationError

import aligncore
from aligncore_refcats.file import read_reference_table

CENTER = SkyCoord(150.0, 2.0, unit="deg")


def gaia_like(n=40, seed=2) -> Table:
    """Columns spelled as in a Gaia archive export (upper and mixed case)."""
    rng = np.random.default_rng(seed)
    table = Table()
    table["SOURCE_ID"] = np.arange(100, 100 + n, dtype=np.int64)
    table["RA"] = 150.0 + rng.uniform(-0.01, 0.01, n)
    table["Dec"] = 2.0 + rng.uniform(-0.01, 0.01, n)
    table["ra_error"] = np.full(n, 0.3)
    table["DEC_ERROR"] = np.full(n, 0.4)
    table["PMRA"] = rng.normal(0, 10, n)
    table["pmDec"] = rng.normal(0, 10, n)
    table["Ref_Epoch"] = np.full(n, 2016.0)
    table["phot_g_mean_mag"] = rng.uniform(14, 20, n)
    table["PMRA"][:4] = np.nan
    table["pmDec"][:4] = np.nan
    return table


@pytest.mark.parametrize(("suffix", "fmt"), [(".ecsv", "ascii.ecsv"), (".fits", "fits"),
                                             (".csv", "ascii.csv"), (".vot", "votable")])
def test_formats_and_case_insensitive_columns(tmp_path, suffix, fmt):
    source = gaia_like()
    path = tmp_path / f"gaia{suffix}"
    source.write(path, format=fmt)
    table = read_reference_table(path)
    assert list(table.colnames) == ["id", "ra", "dec", "mag", "ra_err", "dec_err", "pmra",
                                    "pmdec", "epoch"]
    np.testing.assert_array_equal(table["id"], source["SOURCE_ID"])
    np.testing.assert_allclose(table["ra"], source["RA"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(table["dec_err"], 0.4)
    np.testing.assert_allclose(table["mag"], source["phot_g_mean_mag"], rtol=1e-6)
    assert np.count_nonzero(np.isnan(np.asarray(table["pmra"]))) == 4
    assert np.all(np.asarray(table["epoch"]) == 2016.0)


def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "gaia.parquet"
    gaia_like().write(path)
    assert len(read_reference_table(path)) == 40


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "gaia.parquet"
    path.write_bytes(b"PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(aligncore.InputError, match="pip install pyarrow"):
            read_reference_table(path)
    else:
        with pytest.raises(aligncore.InputError, match="cannot read the reference catalog"):
            read_reference_table(path)


def test_units_in_the_file_are_honoured(tmp_path):
    table = Table()
    table["RAJ2000"] = [10.0] * u.hourangle
    table["DEJ2000"] = [np.radians(2.0)] * u.rad
    table["e_RA"] = [0.001] * u.arcsec
    table["pm_ra"] = [0.01] * u.arcsec / u.yr
    path = tmp_path / "units.ecsv"
    table.write(path)
    out = read_reference_table(path)
    assert out["ra"][0] == pytest.approx(150.0)
    assert out["dec"][0] == pytest.approx(2.0)
    assert out["ra_err"][0] == pytest.approx(1.0)  # mas
    assert out["pmra"][0] == pytest.approx(10.0)  # mas/yr
    bad = Table({"ra": [1.0] * u.s, "dec": [1.0]})
    bad.write(tmp_path / "bad.ecsv")
    with pytest.raises(aligncore.InputError, match=r"column 'ra' has unit s, which cannot be "
                                                   r"converted to deg"):
        read_reference_table(tmp_path / "bad.ecsv")


def test_missing_coordinates_lists_the_columns_present(tmp_path):
    Table({"x": [1.0], "y": [2.0], "Mag": [3.0]}).write(tmp_path / "xy.csv")
    with pytest.raises(aligncore.InputError,
                       match=r"xy.csv: no ra and dec column \(looked for ra, ra_deg, radeg / dec,"
                             r" dec_deg, decdeg, any case\); columns present: x, y, Mag"):
        read_reference_table(tmp_path / "xy.csv")
    Table({"RA": [1.0]}).write(tmp_path / "ra.csv")
    with pytest.raises(aligncore.InputError, match="no dec column"):
        read_reference_table(tmp_path / "ra.csv")
    with pytest.raises(aligncore.InputError, match=r"nothere\.ecsv: reference catalog file not "
                                                   r"found"):
        read_reference_table(tmp_path / "nothere.ecsv")
    (tmp_path / "junk.fits").write_text("not a fits file")
    with pytest.raises(aligncore.InputError, match=r"junk\.fits: cannot read the reference"):
        read_reference_table(tmp_path / "junk.fits")


def test_query_cuts_the_cone_and_propagates_to_the_epoch(tmp_path):
    path = tmp_path / "gaia.ecsv"
    source = gaia_like(n=200)
    source.write(path)
    refcat = aligncore.get_plugin("refcatalog", "file")(path=path)
    radius = Angle(20.0, "arcsec")
    table = refcat.query(CENTER, radius)
    stars = SkyCoord(source["RA"], source["Dec"], unit="deg")
    assert len(table) == np.count_nonzero(stars.separation(CENTER) <= radius) > 0
    assert table.meta["plugin"] == "file" and table.meta["catalog"] == "gaia"
    moved = refcat.query(CENTER, Angle(0.05, "deg"), Time(2026.0, format="jyear"))
    still = refcat.query(CENTER, Angle(0.05, "deg"))
    has_pm = np.isfinite(np.asarray(still["pmdec"], float))
    shift = (np.asarray(moved["dec"]) - np.asarray(still["dec"])) * 3.6e6  # mas
    np.testing.assert_allclose(shift[has_pm], np.asarray(still["pmdec"])[has_pm] * 10.0,
                               atol=0.01)
    assert np.all(shift[~has_pm] == 0)  # no proper motion: not moved ...
    assert np.all(np.asarray(moved["epoch"])[~has_pm] == 2016.0)  # ... and still dated 2016
    assert np.all(np.asarray(moved["epoch"])[has_pm] == 2026.0)


def test_epoch_from_parameter_or_metadata(tmp_path):
    table = Table({"ra": [150.0], "dec": [2.0], "pmra": [0.0], "pmdec": [36.0]})
    table.write(tmp_path / "noepoch.ecsv")
    assert np.isnan(read_reference_table(tmp_path / "noepoch.ecsv")["epoch"][0])
    assert read_reference_table(tmp_path / "noepoch.ecsv", epoch=2000.0)["epoch"][0] == 2000.0
    table.meta["epoch"] = "J2015.5"
    table.write(tmp_path / "meta.ecsv")
    assert read_reference_table(tmp_path / "meta.ecsv")["epoch"][0] == 2015.5
    refcat = aligncore.get_plugin("refcatalog", "file")(path=tmp_path / "noepoch.ecsv",
                                                        epoch=2000.0)
    moved = refcat.query(CENTER, Angle(1.0, "deg"), Time(2001.0, format="jyear"))
    assert (moved["dec"][0] - 2.0) * 3.6e6 == pytest.approx(36.0, abs=0.01)


def test_parameters():
    cls = aligncore.get_plugin("refcatalog", "file")
    with pytest.raises(ValidationError, match="path"):
        cls()
    with pytest.raises(ValidationError, match="extra"):
        cls(path="x.ecsv", columns="ra")
