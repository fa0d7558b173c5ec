"""Files of a simulated scene: FITS or ASDF images, truth JSON and catalogs.

Layout of a scene directory::

    img_000.fits ...   PRIMARY (DATE-OBS, MJD-OBS) + SCI (float32, nominal WCS,
                       SATURATE, BUNIT) + DQ (uint32, JWST bit values)
    img_000.asdf ...   (wcs="gwcs") tree: data (float32), dq (uint32), wcs (the
                       nominal gwcs), meta (wcsinfo, observation, saturate, ...)
    truth.json         parameters and, per image, true/nominal WCS keywords
                       and the applied errors
    stars.ecsv         the true star catalog
    refcat.ecsv        the Gaia-like reference catalog
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits
from astropy.time import Time

from aligncore.sim import gwcs_model as sim_gwcs
from aligncore.sim.render import DQ_DO_NOT_USE
from aligncore.sim.sky import wcs_from_header
from aligncore.types import AlignImage

if TYPE_CHECKING:
    from aligncore.sim.scene import Scene

__all__ = [
    "REFCAT_FILE",
    "STARS_FILE",
    "TRUTH_FILE",
    "TRUTH_FORMAT",
    "file_image",
    "jsonable",
    "memory_image",
    "read_truth",
    "wcs_from_truth",
    "write_scene",
]

TRUTH_FILE = "truth.json"
STARS_FILE = "stars.ecsv"
REFCAT_FILE = "refcat.ecsv"
TRUTH_FORMAT = "aligncore-simulation/1"


def _shape(item: dict[str, Any]) -> tuple[int, int]:
    ny, nx = item["shape"]
    return int(ny), int(nx)


def wcs_from_truth(spec: dict[str, Any], shape: tuple[int, int]) -> Any:
    """The WCS of a truth entry: FITS keywords -> astropy WCS, GWCS spec -> gwcs.WCS."""
    if sim_gwcs.is_spec(spec):
        return sim_gwcs.build_wcs(spec, shape)
    return wcs_from_header(spec, shape)


def _nominal_wcs(item: dict[str, Any]) -> Any:
    wcs = wcs_from_truth(item["nominal_wcs"], _shape(item))
    if sim_gwcs.is_spec(item["nominal_wcs"]):
        from aligncore.formats.common import WCSINFO_ATTRIBUTE

        setattr(wcs, WCSINFO_ATTRIBUTE, sim_gwcs.wcsinfo(item["nominal_wcs"]))
    return wcs


def memory_image(data: np.ndarray, dq: np.ndarray, item: dict[str, Any], epoch: Time) -> AlignImage:
    """An image held in memory; pixels flagged DO_NOT_USE are masked."""
    return AlignImage.from_arrays(
        data,
        _nominal_wcs(item),
        name=item["name"],
        mask=(dq & DQ_DO_NOT_USE) != 0,
        epoch=epoch,
        meta={"saturate": item["saturate"]},
    )


def _read_pixels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with fits.open(path, memmap=False) as hdul:
        data = np.asarray(hdul["SCI"].data, dtype=np.float32)
        dq = np.asarray(hdul["DQ"].data, dtype=np.uint32)
    return data, (dq & DQ_DO_NOT_USE) != 0


def _read_asdf_pixels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from aligncore.formats.asdf import open_asdf

    data, dq = open_asdf(path).load_pixels()
    return data.astype(np.float32), (np.asarray(dq) & DQ_DO_NOT_USE) != 0


def file_image(path: Path, item: dict[str, Any], epoch: Time) -> AlignImage:
    """An image whose pixels are read from ``path`` on demand (DO_NOT_USE pixels masked).

    ASDF images are opened with `aligncore.formats.asdf.open_asdf` (their WCS is read
    from the file); FITS images get the nominal WCS of the truth entry.
    """
    if path.suffix == ".asdf":
        from aligncore.formats.asdf import open_asdf

        image = open_asdf(path)
        image.loader = lambda: _read_asdf_pixels(path)
        image.epoch = epoch
        return image
    shape = _shape(item)
    return AlignImage(
        name=item["name"],
        wcs=wcs_from_header(item["nominal_wcs"], shape),
        shape=shape,
        path=path,
        epoch=epoch,
        loader=lambda: _read_pixels(path),
        meta={"saturate": item["saturate"]},
    )


def _image_hdus(
    data: np.ndarray, dq: np.ndarray, item: dict[str, Any], params: dict[str, Any]
) -> fits.HDUList:
    epoch = Time(params["epoch"], format="jyear")
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "ALIGNSIM"
    primary.header["FILENAME"] = item["name"]
    primary.header["DATE-OBS"] = (epoch.utc.isot, "observation epoch (UTC)")
    primary.header["MJD-OBS"] = (float(epoch.utc.mjd), "observation epoch (UTC)")
    primary.header["SIMSCEN"] = (params["scenario"], "aligncore simulation scenario")
    primary.header["SIMSEED"] = (params["seed"], "aligncore simulation seed")
    sci = fits.ImageHDU(data.astype(np.float32), name="SCI")
    sci.header["BUNIT"] = "electron"
    sci.header["SATURATE"] = (item["saturate"], "saturation level (electron)")
    sci.header.update(item["nominal_wcs"])
    sci.header["WCSNAME"] = "NOMINAL"
    return fits.HDUList([primary, sci, fits.ImageHDU(dq.astype(np.uint32), name="DQ")])


def _asdf_tree(
    data: np.ndarray, dq: np.ndarray, item: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    epoch = Time(params["epoch"], format="jyear")
    spec = item["nominal_wcs"]
    return {
        "data": data.astype(np.float32),
        "dq": dq.astype(np.uint32),
        "wcs": sim_gwcs.build_wcs(spec, _shape(item)),
        "meta": {
            "filename": item["name"],
            "telescope": "ALIGNSIM",
            "instrument": {"name": "NIRCAM-like"},
            "bunit": "electron",
            "saturate": float(item["saturate"]),
            "wcsinfo": sim_gwcs.wcsinfo(spec),
            "observation": {"date": epoch.utc.isot, "mjd": float(epoch.utc.mjd)},
            "simulation": {"scenario": params["scenario"], "seed": params["seed"]},
        },
    }


def write_scene(scene: Scene, pixels: list[tuple[np.ndarray, np.ndarray]], outdir: Path) -> None:
    """Write the images (``pixels``: science and DQ arrays), catalogs and truth."""
    outdir.mkdir(parents=True, exist_ok=True)
    for (data, dq), item in zip(pixels, scene.truth, strict=True):
        if sim_gwcs.is_spec(item["nominal_wcs"]):
            from aligncore.formats.asdf import write_asdf

            write_asdf(_asdf_tree(data, dq, item, scene.params), outdir / item["name"])
            continue
        _image_hdus(data, dq, item, scene.params).writeto(outdir / item["name"], overwrite=True)
    scene.stars.write(outdir / STARS_FILE, format="ascii.ecsv", overwrite=True)
    scene.refcat.write(outdir / REFCAT_FILE, format="ascii.ecsv", overwrite=True)
    doc = {"format": TRUTH_FORMAT, "params": scene.params, "images": scene.truth}
    (outdir / TRUTH_FILE).write_text(json.dumps(doc, indent=1))


def read_truth(directory: Path) -> dict[str, Any]:
    """The parsed ``truth.json`` of a scene directory."""
    path = directory / TRUTH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no simulation truth file")
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or doc.get("format") != TRUTH_FORMAT:
        raise ValueError(f"{path}: not an aligncore simulation truth file")
    return doc


def jsonable(value: Any) -> Any:
    """Tuples to lists and numpy scalars to Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
