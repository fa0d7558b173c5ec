"""Corpus cases: broken or absurd FITS WCS keywords in the science header."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from astropy.io import fits

from corpus.harness import case, copy_images
from corpus.inputs import WCS_KEYS, edit_sci, patch_card, run_args

NOTHING = "input error naming the file and the keyword problem, nothing written"


def _second_broken(work: Path, change: Callable[[fits.Header], None]) -> list[str]:
    images = copy_images(work, 2)
    edit_sci(images[1], change)
    return run_args(work, images)


def _cards(**cards: object) -> Callable[[fits.Header], None]:
    """A header change setting the given keywords."""

    def change(header: fits.Header) -> None:
        header.update(cards)

    return change


SIP_CTYPES = {"CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP"}


def _raw_card(work: Path, key: str, value: str) -> list[str]:
    images = copy_images(work, 2)
    patch_card(images[1], key, value)
    return run_args(work, images)


def _scale_cd(factor: float) -> Callable[[fits.Header], None]:
    def change(header: fits.Header) -> None:
        for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
            header[key] = header[key] * factor

    return change


@case("wcs", exit_code=1, message=r"img_001\.fits: no celestial WCS", outcome=NOTHING)
def no_wcs(work: Path) -> list[str]:
    """A science header without any WCS keyword."""

    def strip(header: fits.Header) -> None:
        for key in WCS_KEYS:
            header.remove(key, ignore_missing=True)

    return _second_broken(work, strip)


@case("wcs", exit_code=1, message=r"img_001\.fits: the CD/PC\*CDELT matrix .* is singular",
      outcome=NOTHING)
def singular_cd(work: Path) -> list[str]:
    """A CD matrix with two equal rows (determinant 0)."""

    def singular(header: fits.Header) -> None:
        header["CD2_1"], header["CD2_2"] = header["CD1_1"], header["CD1_2"]

    return _second_broken(work, singular)


@case("wcs", exit_code=1, message=r"img_001\.fits: .*singular", outcome=NOTHING)
def zero_cd(work: Path) -> list[str]:
    """A CD matrix of zeros."""
    return _second_broken(work, _scale_cd(0.0))


@case("wcs", exit_code=1, message=r"img_001\.fits: CRVAL1 = .* is not a finite number",
      outcome=NOTHING)
def nan_crval(work: Path) -> list[str]:
    """CRVAL1 = NaN."""
    return _raw_card(work, "CRVAL1", "NaN")


@case("wcs", exit_code=1, message=r"img_001\.fits: CD1_1 = inf is not a finite number",
      outcome=NOTHING)
def inf_cd(work: Path) -> list[str]:
    """CD1_1 = 1E400 (overflows to infinity)."""
    return _raw_card(work, "CD1_1", "1E400")


@case("wcs", exit_code=1, message=r"img_001\.fits: .*(singular|CDELT)", outcome=NOTHING)
def zero_cdelt(work: Path) -> list[str]:
    """PC matrix with CDELT1 = 0 instead of a CD matrix."""

    def pc(header: fits.Header) -> None:
        scale = (header["CD1_1"] ** 2 + header["CD2_1"] ** 2) ** 0.5
        for i in (1, 2):
            for j in (1, 2):
                header[f"PC{i}_{j}"] = header.pop(f"CD{i}_{j}") / scale
        header["CDELT1"], header["CDELT2"] = 0.0, scale

    return _second_broken(work, pc)


@case("wcs", exit_code=1, message=r"img_001\.fits: pixel scale 1e-09 arcsec is outside",
      outcome=NOTHING)
def tiny_pixel_scale(work: Path) -> list[str]:
    """A pixel scale of 1e-9 arcsec (CD scaled down by 1e-8)."""
    return _second_broken(work, _scale_cd(1e-8))


@case("wcs", exit_code=1, message=r"img_001\.fits: pixel scale 3.6e\+04 arcsec is outside",
      outcome=NOTHING)
def ten_degree_pixels(work: Path) -> list[str]:
    """Pixels of 10 degrees."""
    return _second_broken(work, _scale_cd(3.6e5))  # 0.1"/px -> 36000"/px


@case("wcs", exit_code=1, message=r"img_001\.fits: no celestial WCS", outcome=NOTHING)
def linear_ctype(work: Path) -> list[str]:
    """CTYPE1/2 = 'LINEAR' (a WCS, but not on the sky)."""
    return _second_broken(work, _cards(CTYPE1="LINEAR", CTYPE2="LINEAR"))


@case("wcs", exit_code=1, message=r"img_001\.fits: .*(WCS|celestial)", outcome=NOTHING)
def unknown_projection(work: Path) -> list[str]:
    """CTYPE1/2 = 'RA---XYZ'/'DEC--XYZ' (no such projection)."""
    return _second_broken(work, _cards(CTYPE1="RA---XYZ", CTYPE2="DEC--XYZ"))


@case("wcs", exit_code=1, message=r"img_001\.fits: A_ORDER = 50: a SIP order must be",
      outcome=NOTHING)
def sip_order_50(work: Path) -> list[str]:
    """A TAN-SIP header with A_ORDER = B_ORDER = 50."""
    return _second_broken(work, _cards(**SIP_CTYPES, A_ORDER=50, B_ORDER=50))


@case("wcs", exit_code=1, message=r"img_001\.fits: CTYPE asks for SIP distortion but A_ORDER",
      outcome=NOTHING)
def sip_without_orders(work: Path) -> list[str]:
    """CTYPE '-SIP' without A_ORDER/B_ORDER or coefficients."""
    return _second_broken(work, _cards(**SIP_CTYPES))


@case("wcs", exit_code=1, message=r"img_001\.fits: CRVAL2 = 95.0 is not a latitude",
      outcome=NOTHING)
def dec_out_of_range(work: Path) -> list[str]:
    """CRVAL2 (declination) = 95 deg."""
    return _second_broken(work, _cards(CRVAL2=95.0))


@case("wcs", exit_code=1, message=r"img_001\.fits: .*CRPIX", outcome=NOTHING)
def nan_crpix(work: Path) -> list[str]:
    """CRPIX1 = NaN."""
    return _raw_card(work, "CRPIX1", "NaN")


@case("wcs", exit_code=0, message=None, outcome="aligned (the SIP terms are honoured)",
      writes=True)
def sip_order_zero_terms(work: Path) -> list[str]:
    """A valid TAN-SIP header of order 2 with all coefficients zero."""
    zeros = {f"{name}_{i}_{j}": 0.0 for name in "AB" for i, j in ((2, 0), (1, 1), (0, 2))}
    return _second_broken(work, _cards(**SIP_CTYPES, A_ORDER=2, B_ORDER=2, **zeros))


@case("wcs", exit_code=1,
      message=r"(?s)img_000\.fits: .*singular.*img_001\.fits: CRVAL2 = 95\.0",
      outcome="both images' problems listed at once, nothing written")
def two_broken_wcs(work: Path) -> list[str]:
    """Two images, each with a different WCS problem."""
    images = copy_images(work, 2)
    edit_sci(images[0], _scale_cd(0.0))
    edit_sci(images[1], _cards(CRVAL2=95.0))
    return run_args(work, images)


@case("wcs", exit_code=1, message=r"img_001\.fits: the first WCS axis must be the longitude",
      outcome="input error: the WCS axes must be longitude first, nothing written")
def swapped_axes(work: Path) -> list[str]:
    """A WCS with DEC as the first axis and RA as the second."""

    def swap(header: fits.Header) -> None:
        header["CTYPE1"], header["CTYPE2"] = "DEC--TAN", "RA---TAN"
        header["CRVAL1"], header["CRVAL2"] = header["CRVAL2"], header["CRVAL1"]
        header["CD1_1"], header["CD1_2"], header["CD2_1"], header["CD2_2"] = (
            header["CD2_1"], header["CD2_2"], header["CD1_1"], header["CD1_2"])

    return _second_broken(work, swap)


@case("wcs", exit_code=1,
      message=r"img_001\.fits: the sky axes are GLON/GLAT; aligncore needs equatorial",
      outcome="input error: aligncore works in equatorial (ICRS) coordinates, nothing written")
def galactic_frame(work: Path) -> list[str]:
    """One image with a galactic (GLON/GLAT) WCS among equatorial ones."""
    return _second_broken(work, _cards(CTYPE1="GLON-TAN", CTYPE2="GLAT-TAN"))


@case("wcs", exit_code=1, message=r"img_001\.fits: RADESYS = 'FK4': aligncore needs ICRS",
      outcome="input error: B1950 coordinates are not silently taken as ICRS, nothing written")
def fk4_frame(work: Path) -> list[str]:
    """A WCS in the FK4 (B1950) frame."""
    return _second_broken(work, _cards(RADESYS="FK4", EQUINOX=1950.0))
