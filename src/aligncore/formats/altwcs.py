"""Alternate WCS keys of a FITS header: keeping the previous WCS when it is replaced.

FITS allows up to 26 alternate descriptions of a header's WCS beside the primary one,
each a copy of the WCS keywords with a one-letter suffix (``CRVAL1O``, ``CD1_1O``,
``WCSNAMEO``, ...; FITS paper I, section 3.5). HST's convention: key ``O`` holds the
original WCS (``WCSNAMEO = 'OPUS'`` in MAST files) and is never overwritten; every
later WCS goes to the next free letter. `archive_primary` follows it: before the
primary WCS of a chip is replaced, its keywords are copied verbatim (so
``astropy.wcs.WCS(header, fobj, key='O')`` reads back exactly the WCS that was
replaced) under ``O`` when ``O`` is free, else under the first free key ``A``..``Z``.

Distortion keywords without an alternate form (SIP ``A_p_q``, ``D2IMDIS``, ``CPDIS``
and their lookup-table extensions) are shared by every key; aligncore never changes
them, so an archived WCS keeps meaning what it meant.
"""

from __future__ import annotations

import re
import string

from astropy.io import fits

__all__ = ["ORIGINAL_KEY", "archive_primary", "archived_keys", "free_key"]

ORIGINAL_KEY = "O"
"""The alternate key of the original WCS (HST convention)."""

_PRIMARY_WCS = re.compile(
    r"^(WCSAXES|WCSNAME|RADESYS|EQUINOX|LONPOLE|LATPOLE|MJDREF|"
    r"CTYPE[12]|CUNIT[12]|CRPIX[12]|CRVAL[12]|CDELT[12]|CRDER[12]|CSYER[12]|CNAME[12]|"
    r"CD[12]_[12]|PC[12]_[12]|PV[12]_\d{1,2}|PS[12]_\d{1,2})$")
"""Primary WCS keywords of a 2D image that have an alternate form (keyword + letter)."""

_KEY_ORDER = ORIGINAL_KEY + "".join(c for c in string.ascii_uppercase if c != ORIGINAL_KEY)


def archived_keys(header: fits.Header) -> list[str]:
    """Alternate keys in use (a ``CTYPE1a`` or ``WCSNAMEa`` keyword), in `free_key` order."""
    return [key for key in _KEY_ORDER if f"CTYPE1{key}" in header or f"WCSNAME{key}" in header]


def free_key(header: fits.Header) -> str | None:
    """``O`` when it is free, else the first free letter ``A``..``Z``; None when all are used."""
    used = set(archived_keys(header))
    return next((key for key in _KEY_ORDER if key not in used), None)


def archive_primary(header: fits.Header, default_name: str = "ORIGINAL") -> str | None:
    """Copy the primary WCS keywords of ``header`` to the first free alternate key.

    Parameters
    ----------
    header : astropy.io.fits.Header
        A science header; updated in place.
    default_name : str
        ``WCSNAMEa`` when the primary WCS has no ``WCSNAME``.

    Returns
    -------
    str or None
        The key used, or None when all 26 keys are taken (nothing copied).
    """
    key = free_key(header)
    if key is None:
        return None
    cards = [card for card in header.cards if _PRIMARY_WCS.match(card.keyword)]
    for card in cards:
        header.append(_renamed(card, f"{card.keyword}{key}"), end=True)
    if not any(card.keyword == "WCSNAME" for card in cards):
        header[f"WCSNAME{key}"] = (default_name, "name of the world coordinate system")
    return key


def _renamed(card: fits.Card, keyword: str) -> fits.Card:
    """``card`` under another keyword, its value text kept as written (a number read back
    from it is the same double; astropy would re-format a float to 16 digits)."""
    if isinstance(card.value, str) or len(card.image) != fits.Card.length:
        return fits.Card(keyword, card.value, card.comment)
    return fits.Card.fromstring(f"{keyword:<8}{card.image[8:]}")
