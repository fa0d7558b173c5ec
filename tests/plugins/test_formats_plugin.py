"""The default image formats (plugin ``aligncore_formats``): order, claims, output names."""

from __future__ import annotations

from pathlib import Path

from aligncore_formats import AsdfFormat, FitsFormat, JwstFormat, aligncore_add_formats


def test_default_formats_ask_jwst_before_plain_fits() -> None:
    formats = sorted(aligncore_add_formats(), key=lambda cls: (cls.order, cls.name))
    assert [cls.name for cls in formats] == ["asdf", "jwst", "fits"]


def test_claims(tmp_path: Path) -> None:
    assert AsdfFormat.identify(tmp_path / "a.ASDF")
    assert not AsdfFormat.identify(tmp_path / "a.fits")
    assert not JwstFormat.identify(tmp_path / "missing_cal.fits")  # never raises
    assert FitsFormat.identify(tmp_path / "anything.dat")  # the fallback


def test_output_names() -> None:
    assert JwstFormat().output_name(Path("d/jw01_cal.fits")) == "jw01_tweakreg.fits"
    assert FitsFormat().output_name(Path("d/img_001.fits")) == "img_001.fits"
