"""Simulated HST multi-chip exposures: two WFC3/UVIS-like chips per file, real geometry.

Each exposure is one ``*_flt.fits``-like file: a primary header (``TELESCOP = 'HST'``,
``INSTRUME = 'WFC3'``, ``DETECTOR = 'UVIS'``, the epoch) and, per chip, ``SCI``, ``ERR``
and ``DQ`` extensions with the same EXTVER. As in real WFC3/UVIS files, ``SCI,1`` is
UVIS2 and ``SCI,2`` is UVIS1 (``CCDCHIP``). The chips' WCS come from the real headers
shipped in ``aligncore/sim/data`` (TAN with a 4th-order SIP, the two chips 4096 x 2051
pixels with their real relative position, orientation and gap); ``binning`` shrinks them
(B x B pixels become one, the distortion in pixels rescaled) so that tests stay fast.

An exposure is placed on the sky by a rigid motion of the two-chip layout (a dither
offset and a roll about the layout's centre, in the tangent plane of the scene centre).
Its *nominal* WCS, the one written to the file, is the truth moved by another rigid
motion, the same for both chips: a pointing shift and a roll error about the exposure's
centre. An alignment must find that motion; `HstScene.errors` scores any solution.

With ``lookup=True`` each chip also gets lookup-table distortions, as in calibrated
HST files: a column-width correction (``D2IMARR``) and a smooth 2D table per axis
(``WCSDVARR``), used to render the pixels, so that a reader ignoring them is caught.

DQ flags use HST's bit values: hot pixels 16 (their pixels are bad), full-well
saturation 256, and warm pixels 64 whose values are good (a reader that masked every
flag would throw them away).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.time import Time
from astropy.wcs import WCS, DistortionLookupTable

from aligncore.sim import render as sim_render
from aligncore.sim import sky as sim_sky
from aligncore.sim.files import jsonable
from aligncore.sim.scene import _boost_saturated, _make_star_field, _render_image, _star_pixels
from aligncore.sim.truth import grid_errors, wcs_list
from aligncore.tangent import TangentPlane

__all__ = ["HST_DQ_HOT", "HST_DQ_SATURATED", "HST_DQ_WARM", "HstScene", "chip_headers",
           "simulate_hst"]

HST_DQ_HOT = 16
"""HST DQ bit: hot pixel (bad)."""
HST_DQ_WARM = 64
"""HST DQ bit: warm pixel (dark-corrected; its value is good)."""
HST_DQ_SATURATED = 256
"""HST DQ bit: full-well saturation."""
HST_TRUTH_FILE = "hst_truth.json"
UVIS_FILES = ("wfc3_uvis2.hdr", "wfc3_uvis1.hdr")
"""Header files of ``SCI,1`` (UVIS2) and ``SCI,2`` (UVIS1), as in WFC3/UVIS files."""
_CCDCHIP = (2, 1)
_LAYOUT_KEYS = ("NAXIS1", "NAXIS2", "COMMENT")


def chip_headers(binning: int = 1) -> list[fits.Header]:
    """The WCS headers of the two WFC3/UVIS chips (``SCI,1`` = UVIS2, ``SCI,2`` = UVIS1),
    binned ``binning`` x ``binning``: ``NAXISn`` divided, ``CRPIX`` moved to the same
    sky point, ``CD`` multiplied and each SIP coefficient ``A_p_q`` multiplied by
    ``binning**(p + q - 1)``, so that every binned pixel centre maps where it did."""
    headers = []
    data = resources.files("aligncore.sim") / "data"
    for name in UVIS_FILES:
        header = fits.Header.fromstring((data / name).read_text(), sep="\n")
        b = float(binning)
        for axis in (1, 2):
            header[f"NAXIS{axis}"] = int(header[f"NAXIS{axis}"]) // binning
            header[f"CRPIX{axis}"] = (float(header[f"CRPIX{axis}"]) - 0.5) / b + 0.5
        for i in (1, 2):
            for j in (1, 2):
                header[f"CD{i}_{j}"] = float(header[f"CD{i}_{j}"]) * b
        for key in list(header.keys()):
            parts = key.split("_")
            if len(parts) == 3 and parts[0] in ("A", "B") and parts[1].isdigit():
                order = int(parts[1]) + int(parts[2])
                header[key] = float(header[key]) * b ** (order - 1)
        headers.append(header)
    return headers


def _rotation(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s], [s, c]])


def _cd(header: fits.Header) -> np.ndarray:
    return np.array([[header["CD1_1"], header["CD1_2"]], [header["CD2_1"], header["CD2_2"]]],
                    dtype=float)


@dataclass(frozen=True)
class _Layout:
    """The chips in the tangent plane of their own centre: reference points (arcsec)."""

    headers: list[fits.Header]
    points: np.ndarray  # (n_chips, 2) arcsec, relative to the layout centre

    @classmethod
    def of(cls, headers: list[fits.Header]) -> _Layout:
        ra = np.array([h["CRVAL1"] for h in headers], dtype=float)
        dec = np.array([h["CRVAL2"] for h in headers], dtype=float)
        xyz = np.column_stack([np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
                               np.cos(np.radians(dec)) * np.sin(np.radians(ra)),
                               np.sin(np.radians(dec))]).mean(axis=0)
        centre = TangentPlane(math.degrees(math.atan2(xyz[1], xyz[0])) % 360.0,
                              math.degrees(math.atan2(xyz[2], math.hypot(xyz[0], xyz[1]))))
        return cls(headers, np.column_stack(centre.world_to_tp(ra, dec)))

    def placed(self, plane: TangentPlane, offset: np.ndarray, roll: float,
               ) -> list[fits.Header]:
        """Chip headers of the layout rolled by ``roll`` (deg) about its centre and moved
        to ``offset`` (arcsec) in ``plane``."""
        rot = _rotation(roll)
        out = []
        for header, point in zip(self.headers, self.points, strict=True):
            moved = rot @ point + offset
            ra, dec = plane.tp_to_world(moved[0], moved[1])
            new = header.copy()
            new["CRVAL1"], new["CRVAL2"] = float(ra), float(dec)
            new["LATPOLE"] = float(dec)
            cd = rot @ _cd(header)
            for i in (1, 2):
                for j in (1, 2):
                    new[f"CD{i}_{j}"] = float(cd[i - 1, j - 1])
            out.append(new)
        return out


def _lookup_tables(shape: tuple[int, int], chip: int) -> dict[str, DistortionLookupTable]:
    """Smooth lookup-table distortions of one chip (pixels): a column-width pattern and a
    2D table per axis (~0.3 px), different on each chip."""
    ny, nx = shape
    columns = np.arange(nx, dtype=float)
    d2im = (0.05 * np.sin(2.0 * np.pi * columns / 37.0 + chip)).astype(np.float32)[None, :]
    gx, gy = 33, 17
    u, v = np.meshgrid(np.linspace(0.0, 1.0, gx), np.linspace(0.0, 1.0, gy))
    table_x = 0.3 * np.sin(np.pi * (u + 0.3 * chip)) * np.cos(np.pi * v)
    table_y = -0.25 * np.cos(np.pi * u) * np.sin(np.pi * (v + 0.2 * chip))
    step = ((nx - 1) / (gx - 1), (ny - 1) / (gy - 1))
    return {
        "det2im1": DistortionLookupTable(d2im, (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)),
        "cpdis1": DistortionLookupTable(table_x.astype(np.float32), (1.0, 1.0), (1.0, 1.0),
                                        step),
        "cpdis2": DistortionLookupTable(table_y.astype(np.float32), (1.0, 1.0), (1.0, 1.0),
                                        step),
    }


def _chip_wcs(header: fits.Header, tables: dict[str, DistortionLookupTable] | None) -> WCS:
    wcs = WCS(header)
    if tables:
        for name, table in tables.items():
            setattr(wcs, name, table)
    wcs.array_shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    return wcs


@dataclass(eq=False)
class HstScene:
    """Simulated HST multi-chip exposures and their truth.

    Attributes
    ----------
    paths : list of Path
        One file per exposure.
    names : list of str
        The chip images in the order `aligncore.open_images` gives them
        (``hst_000_flt.fits[SCI,1]``, ``[SCI,2]``, then the next file).
    true_wcs, nominal_wcs : list of astropy.wcs.WCS
        Per chip, in the order of `names`.
    shapes : list of (ny, nx)
        Per chip.
    stars : QTable
        The true star catalog.
    errors_applied : list of dict
        Per exposure: ``shift_arcsec`` (xi, eta) and ``roll_deg`` of the rigid pointing
        error, and ``centre`` (the exposure centre in the scene's tangent plane, arcsec).
    params : dict
        The parameters of `simulate_hst`.
    """

    paths: list[Path]
    names: list[str]
    true_wcs: list[WCS]
    nominal_wcs: list[WCS]
    shapes: list[tuple[int, int]]
    stars: QTable
    errors_applied: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def plane(self) -> TangentPlane:
        """Tangent plane at the scene centre."""
        return TangentPlane(self.params["ra"], self.params["dec"])

    def errors(self, solutions: Any, relative: bool = True, *, grid: int = 16) -> Table:
        """Error of WCS solutions (one per chip, in the order of `names`) against the truth.

        Returns
        -------
        Table
            Columns ``name, rms_mas, max_mas``; ``relative`` removes the best common
            affine transform first.
        """
        candidates = wcs_list(solutions, len(self.names))
        dists, _ = grid_errors(self.true_wcs, candidates, self.shapes, self.plane,
                               relative=relative, grid=grid)
        table = Table(meta={"relative": relative})
        table["name"] = self.names
        table["rms_mas"] = [float(np.sqrt(np.mean(d**2))) for d in dists]
        table["max_mas"] = [float(np.max(d)) for d in dists]
        return table


def _params(**kwargs: Any) -> dict[str, Any]:
    """The parameters the scene helpers of `aligncore.sim.scene` read, for one chip."""
    binning = kwargs["binning"]
    if isinstance(binning, bool) or not isinstance(binning, int) or not 1 <= binning <= 16:
        raise ValueError(f"binning must be an integer in 1..16, got {binning!r}")
    if isinstance(kwargs["n_exposures"], bool) or not isinstance(
            kwargs["n_exposures"], int) or kwargs["n_exposures"] < 1:
        raise ValueError(f"n_exposures must be an integer >= 1, got {kwargs['n_exposures']!r}")
    headers = chip_headers(binning)
    shape = (int(headers[0]["NAXIS2"]), int(headers[0]["NAXIS1"]))
    scale = math.sqrt(abs(np.linalg.det(_cd(headers[0])))) * 3600.0
    return dict(kwargs, shape=shape, pixel_scale=scale, pointing_error=(0.0, kwargs[
        "pointing_error"]), common_pointing_error=0.0, psf="moffat", proper_motion=0.0,
        refcat_epoch=2016.0)


def simulate_hst(
    n_exposures: int = 3,
    *,
    outdir: str | Path,
    seed: int = 0,
    binning: int = 8,
    n_stars: int = 150,
    dither: float = 4.0,
    pointing_error: float = 1.0,
    roll_error: float = 0.02,
    fwhm: float = 2.0,
    sky: float = 40.0,
    read_noise: float = 3.0,
    noise: bool = True,
    cosmic_rays: int = 10,
    hot_pixels: int = 20,
    warm_pixels: int = 200,
    saturated_stars: int = 2,
    lookup: bool = False,
    ra: float = 83.16,
    dec: float = -67.74,
    epoch: float = 2024.0,
) -> HstScene:
    """Write ``n_exposures`` simulated two-chip WFC3/UVIS-like exposures to ``outdir``.

    Parameters
    ----------
    n_exposures : int
        Number of exposures (files ``hst_000_flt.fits`` ...).
    outdir : path
        Directory for the files and ``hst_truth.json`` (created if needed).
    seed : int
        Seed of every random draw.
    binning : int
        Pixels binned per axis (1: the real 4096 x 2051 chips; 8: 512 x 256).
    n_stars : int
        Expected number of stars per chip.
    dither : float
        Largest dither offset between exposures (arcsec, per axis).
    pointing_error : float
        Largest pointing shift error of an exposure (arcsec).
    roll_error : float
        Largest roll error of an exposure (deg).
    fwhm : float
        PSF FWHM (binned pixels).
    sky, read_noise : float
        Sky level and read noise (electrons).
    noise : bool
        Add Poisson and read noise.
    cosmic_rays, hot_pixels, warm_pixels, saturated_stars : int
        Per chip: cosmic-ray tracks (not flagged), hot pixels (half flagged 16),
        warm pixels (flagged 64, values untouched), saturated stars (flagged 256).
    lookup : bool
        Add lookup-table distortions (``D2IMARR``, ``WCSDVARR``) to every chip.
    ra, dec : float
        Scene centre (deg).
    epoch : float
        Observation epoch (Julian year).

    Returns
    -------
    HstScene
    """
    p = _params(n_exposures=n_exposures, seed=seed, binning=binning, n_stars=n_stars,
                dither=dither, pointing_error=pointing_error, roll_error=roll_error,
                fwhm=fwhm, sky=sky, read_noise=read_noise, noise=noise,
                cosmic_rays=cosmic_rays, hot_pixels=hot_pixels, warm_pixels=warm_pixels,
                saturated_stars=saturated_stars, lookup=lookup, ra=ra % 360.0, dec=dec,
                epoch=epoch)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    r_layout, r_errors, r_stars, r_pixels = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    layout = _Layout.of(chip_headers(binning))
    plane = TangentPlane(p["ra"], p["dec"])
    shape = p["shape"]
    tables = [_lookup_tables(shape, chip) if lookup else None for chip in range(2)]

    true_hdrs, nominal_hdrs, applied = [], [], []
    for _ in range(n_exposures):
        offset = r_layout.uniform(-dither, dither, size=2)
        roll = float(r_errors.uniform(-roll_error, roll_error))
        size, angle = r_errors.uniform(0.1 * pointing_error, pointing_error), r_errors.uniform(
            0.0, 2.0 * np.pi)
        shift = size * np.array([math.cos(angle), math.sin(angle)])
        true_hdrs.append(layout.placed(plane, offset, 0.0))
        nominal_hdrs.append(layout.placed(plane, offset + shift, roll))
        applied.append({"shift_arcsec": shift.tolist(), "roll_deg": roll,
                        "centre": offset.tolist()})
    true_wcs = [_chip_wcs(h, tables[c]) for hs in true_hdrs for c, h in enumerate(hs)]
    nominal_wcs = [_chip_wcs(h, tables[c]) for hs in nominal_hdrs for c, h in enumerate(hs)]

    peak, area = sim_render.psf_properties("moffat", fwhm)
    fluxes = sim_sky.FluxScale(area=area, pixel_variance=sky + read_noise**2)
    stars, _ = _make_star_field(p, true_wcs, fluxes, r_stars)
    positions = [_star_pixels(w, stars, shape, margin=64.0) for w in true_wcs]
    _boost_saturated(stars, positions, shape, saturated_stars, fluxes, r_stars)
    saturate = float(np.ceil(1.25 * (sky + peak * fluxes.brightest)))
    epoch_time = Time(epoch, format="jyear")
    paths, names = [], []
    chip_rngs = r_pixels.spawn(len(true_wcs))
    for k in range(n_exposures):
        name = f"hst_{k:03d}_flt.fits"
        hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [_primary(name, epoch_time, seed)]
        for c in range(2):
            index = 2 * k + c
            data, dq, _ = _render_image(p, positions[index], stars, saturate, chip_rngs[index])
            hdus += _chip_hdus(data, _hst_dq(dq, chip_rngs[index], warm_pixels),
                               nominal_hdrs[k][c], c + 1, saturate, p)
            names.append(f"{name}[SCI,{c + 1}]")
        hdus += _lookup_hdus(tables, shape) if lookup else []
        fits.HDUList(hdus).writeto(outdir / name, overwrite=True)
        paths.append(outdir / name)
    scene = HstScene(paths, names, true_wcs, nominal_wcs, [shape] * len(true_wcs), stars,
                     applied, jsonable({k: v for k, v in p.items()}))
    doc = {"params": scene.params, "exposures": applied,
           "true_wcs": [{k: v for k, v in h.items() if k != "COMMENT"}
                        for hs in true_hdrs for h in hs]}
    (outdir / HST_TRUTH_FILE).write_text(json.dumps(jsonable(doc), indent=1))
    return scene


def _primary(name: str, epoch: Time, seed: int) -> fits.PrimaryHDU:
    primary = fits.PrimaryHDU()
    header = primary.header
    header["TELESCOP"] = "HST"
    header["INSTRUME"] = "WFC3"
    header["DETECTOR"] = "UVIS"
    header["FILENAME"] = name
    header["NEXTEND"] = 6
    header["DATE-OBS"] = (epoch.utc.isot, "observation epoch (UTC)")
    header["MJD-OBS"] = (float(epoch.utc.mjd), "observation epoch (UTC)")
    header["SIMSEED"] = (seed, "aligncore simulation seed")
    return primary


def _hst_dq(dq: np.ndarray, rng: np.random.Generator, warm: int) -> np.ndarray:
    """The simulator's JWST-style flags as HST bits, plus ``warm`` good warm pixels."""
    out = np.zeros(dq.shape, dtype=np.int16)
    out[(dq & sim_render.DQ_HOT) != 0] |= HST_DQ_HOT
    out[(dq & sim_render.DQ_SATURATED) != 0] |= HST_DQ_SATURATED
    out.flat[rng.choice(out.size, size=min(warm, out.size), replace=False)] |= HST_DQ_WARM
    return out


def _chip_hdus(data: np.ndarray, dq: np.ndarray, header: fits.Header, extver: int,
               saturate: float, p: dict[str, Any]) -> list[fits.ImageHDU]:
    sci = fits.ImageHDU(data.astype(np.float32), name="SCI", ver=extver)
    sci.header["BUNIT"] = "ELECTRONS"
    sci.header["CCDCHIP"] = (_CCDCHIP[extver - 1], "CCD chip (1 or 2)")
    sci.header["SATURATE"] = (saturate, "saturation level (electrons)")
    for card in header.cards:
        if card.keyword not in _LAYOUT_KEYS:
            sci.header[card.keyword] = (card.value, card.comment)
    sci.header["ORIENTAT"] = (float(np.degrees(np.arctan2(header["CD1_2"], header["CD2_2"]))),
                              "[deg] position angle of image y axis")
    if p["lookup"]:
        sci.header.update(_lookup_keywords(extver))
    err = np.sqrt(np.maximum(data, 0.0) + p["read_noise"] ** 2).astype(np.float32)
    return [sci, fits.ImageHDU(err, name="ERR", ver=extver),
            fits.ImageHDU(dq, name="DQ", ver=extver)]


def _lookup_keywords(extver: int) -> fits.Header:
    """``D2IMDIS1`` and ``CPDIS1/2`` keywords of chip ``extver``: its ``D2IMARR`` has EXTVER
    ``extver``, its ``WCSDVARR`` tables ``2 extver - 1`` (axis 1) and ``2 extver`` (axis 2)."""
    header = fits.Header()
    records = [("D2IMDIS1", "D2IM1", extver)] + [
        (f"CPDIS{axis}", f"DP{axis}", 2 * extver - 2 + axis) for axis in (1, 2)]
    for dis, record, ver in records:
        header[dis] = "LOOKUP"
        header[f"{record}.EXTVER"] = float(ver)
        header[f"{record}.NAXES"] = 2.0
        header[f"{record}.AXIS.1"] = 1.0
        header[f"{record}.AXIS.2"] = 2.0
    return header


def _lookup_hdus(tables: list[dict[str, DistortionLookupTable] | None],
                 shape: tuple[int, int]) -> list[fits.ImageHDU]:
    hdus = []
    for chip, chip_tables in enumerate(tables, start=1):
        assert chip_tables is not None
        entries = [("D2IMARR", chip, chip_tables["det2im1"])] + [
            ("WCSDVARR", 2 * chip - 2 + axis, chip_tables[f"cpdis{axis}"]) for axis in (1, 2)]
        for extname, ver, table in entries:
            hdu = fits.ImageHDU(np.asarray(table.data, dtype=np.float32), name=extname,
                                ver=ver)
            for axis in (1, 2):
                hdu.header[f"CRPIX{axis}"] = float(table.crpix[axis - 1])
                hdu.header[f"CRVAL{axis}"] = float(table.crval[axis - 1])
                hdu.header[f"CDELT{axis}"] = float(table.cdelt[axis - 1])
            hdus.append(hdu)
    return hdus
