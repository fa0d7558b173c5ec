"""Builders of bad inputs shared by the FITS, WCS, sources, reference-catalog and ASDF cases."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import QTable

from corpus.harness import default_config, scene_dir, write_config

__all__ = [
    "absolute_config",
    "edit_sci",
    "file_refcat_config",
    "patch_card",
    "refcat_rows",
    "run_args",
    "scene_refcat",
    "set_sci_data",
    "star_image",
    "unused_port",
]

WCS_KEYS = ("WCSAXES", "CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "CRPIX1", "CRPIX2", "CRVAL1",
            "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "RADESYS", "WCSNAME")


def run_args(work: Path, images: list[Path], config: str | None = None) -> list[str]:
    """``run CONFIG IMAGES -o work/out -q``."""
    return ["run", config or default_config(work), *map(str, images), "-o", str(work / "out"),
            "-q"]


def edit_sci(path: Path, change: Callable[[fits.Header], None]) -> Path:
    """Apply ``change`` to the SCI header of a FITS file in place."""
    with fits.open(path, mode="update") as hdul:
        change(hdul["SCI"].header)
    return path


def set_sci_data(path: Path, data: np.ndarray, *, drop_dq: bool = True) -> Path:
    """Replace the SCI array of a FITS file (and drop the DQ extension) in place."""
    with fits.open(path) as hdul:
        header = hdul["SCI"].header.copy()
        primary = hdul[0].header.copy()
        dq = None if drop_dq else hdul["DQ"].copy()
    hdus = [fits.PrimaryHDU(header=primary), fits.ImageHDU(data, header=header, name="SCI")]
    if dq is not None:
        hdus.append(dq)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def patch_card(path: Path, key: str, value: str) -> Path:
    """Overwrite the value of card ``key`` with raw text (e.g. ``NaN``) in place.

    astropy refuses to write such values; the card image is edited byte by byte.
    """
    raw = bytearray(path.read_bytes())
    start = raw.index(f"{key:<8}= ".encode())
    raw[start:start + 80] = f"{key:<8}= {value:>20}".ljust(80).encode()
    path.write_bytes(bytes(raw))
    return path


def star_image(path: Path, n_stars: int, seed: int = 1) -> Path:
    """Replace the pixels of a FITS image by noise with ``n_stars`` bright Gaussian stars."""
    rng = np.random.default_rng(seed)
    shape = fits.getheader(path, "SCI")["NAXIS2"], fits.getheader(path, "SCI")["NAXIS1"]
    data = rng.normal(100.0, 5.0, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for x, y in rng.uniform(40, min(shape) - 40, (n_stars, 2)):
        data += 5000.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.2**2))
    return set_sci_data(path, data.astype(np.float32))


def refcat_rows(work: Path, table: QTable, name: str = "ref.ecsv") -> Path:
    """Write a reference table below ``work``."""
    path = work / name
    table.write(path, overwrite=True)
    return path


def scene_refcat() -> QTable:
    """The simulated scene's reference catalog (Gaia-like, ~ the scene's stars)."""
    return QTable.read(scene_dir("fits") / "refcat.ecsv")


def absolute_config(work: Path, refcat: str) -> str:
    """The recommended config with absolute alignment to ``refcat`` (a YAML mapping)."""
    text = (Path(default_config(work)).read_text()
            .replace("enabled: false            # seed name: align_to_gaia",
                     "enabled: true")
            .replace("    plugin: gaia\n    params: {}", f"    {refcat}"))
    return write_config(work, text)


def file_refcat_config(work: Path, path: Path) -> str:
    """Absolute alignment to the local reference file ``path``."""
    return absolute_config(work, f"plugin: file\n    params: {{path: '{path}'}}")


def unused_port() -> int:
    """A TCP port of 127.0.0.1 on which nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

