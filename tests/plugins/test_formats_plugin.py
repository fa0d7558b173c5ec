"""The default image formats (plugin ``aligncore_formats``): order, claims, output names."""

from __future__ import annotations

from pathlib import Path

from aligncore_formats import (
    AsdfFormat,
    FitsFormat,
    JwstFormat,
    RomanFormat,
    aligncore_add_formats,
)


def test_default_formats_ask_jwst_before_plain_fits() -> None:
    formats = sorted(aligncore_add_formats(), key=lambda cls: (cls.order, cls.name))
    assert [cls.name for cls in formats] == ["roman", "asdf", "jwst", "fits"]


def test_claims(tmp_path: Path) -> None:
    assert AsdfFormat.identify(tmp_path / "a.ASDF")
    assert not AsdfFormat.identify(tmp_path / "a.fits")
    assert not JwstFormat.identify(tmp_path / "missing_cal.fits")  # never raises
    assert FitsFormat.identify(tmp_path / "anything.dat")  # the fallback
    # Roman: a .asdf file whose YAML tree has a top-level roman node (no asdf import)
    roman = tmp_path / "r_cal.asdf"
    roman.write_bytes(b"#ASDF 1.0.0\n%YAML 1.1\n--- !core/asdf-1.1.0\nroman: "
                      b"!<asdf://stsci.edu/datamodels/roman/tags/wfi_image-2.2.0>\n  meta: {}\n")
    plain = tmp_path / "plain.asdf"
    plain.write_bytes(b"#ASDF 1.0.0\n%YAML 1.1\n--- !core/asdf-1.1.0\ndata: 1\n")
    assert RomanFormat.identify(roman) and not RomanFormat.identify(plain)
    assert not RomanFormat.identify(tmp_path / "missing.asdf")  # never raises
    assert not RomanFormat.identify(tmp_path / "r_cal.fits")


def test_output_names() -> None:
    assert JwstFormat().output_name(Path("d/jw01_cal.fits")) == "jw01_tweakreg.fits"
    assert FitsFormat().output_name(Path("d/img_001.fits")) == "img_001.fits"
    assert RomanFormat().output_name(Path("d/r1_wfi01_cal.asdf")) == "r1_wfi01_tweakreg.asdf"
