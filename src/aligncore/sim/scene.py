"""Seeded synthetic scenes with ground truth, for tests, the demo and comparisons.

A scene is a set of overlapping images of one random star field. Each image
has a *true* WCS used to render its pixels, and a *nominal* WCS (the truth
plus a pointing error: shift, roll and scale) which is what the image file
carries and what an alignment must correct. The WCS is a FITS WCS (TAN,
optionally TAN-SIP; FITS files) or, with ``wcs="gwcs"``, a JWST-style GWCS
with a NIRCam-like distortion from detector to V2/V3 and the pointing from
V2/V3 to the sky (ASDF files). The scene knows the truth, so any WCS solution
can be scored with :meth:`Scene.errors`.

Example
-------
>>> scene = simulate("dither", n_images=4, seed=1)          # doctest: +SKIP
>>> result = aligncore.align(scene.images, config)         # doctest: +SKIP
>>> scene.errors(result)                                   # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import QTable, Table
from astropy.time import Time
from astropy.wcs import WCS

from aligncore.sim import distortion_error as sim_distortion
from aligncore.sim import files as sim_io
from aligncore.sim import gwcs_model as sim_gwcs
from aligncore.sim import render as sim_render
from aligncore.sim import sky as sim_sky
from aligncore.sim.truth import grid_errors, wcs_list
from aligncore.tangent import TangentPlane, footprint_world
from aligncore.types import (
    COL_DEC,
    COL_FLUX,
    COL_ID,
    COL_MAG,
    COL_RA,
    COL_SNR,
    COL_X,
    COL_Y,
    AlignImage,
)

__all__ = ["SCENARIOS", "Scene", "simulate"]

SCENARIOS = sim_sky.SCENARIOS
WCS_KINDS = ("fits", "gwcs")
_SATURATION_MARGIN = 1.25  # SATURATE / peak of the brightest unboosted star
_SATURATED_BOOST = (4.0, 20.0)  # boosted stars: this many times the brightest flux
_NOISE_FRACTION = 0.05  # PSF wings are cut below this fraction of the pixel noise


# --- the scene -----------------------------------------------------------------------
@dataclass(eq=False)
class Scene:
    """A simulated scene and its ground truth.

    Attributes
    ----------
    images : list of AlignImage
        The images with their *nominal* WCS, ready for :func:`aligncore.align`.
    paths : list of Path
        The written FITS files (empty when nothing was written).
    true_wcs, nominal_wcs : list of astropy.wcs.WCS or gwcs.WCS
        Truth and nominal WCS of each image.
    stars : QTable
        True star catalog: ``id, ra, dec`` at the observation epoch, ``ra_refepoch,
        dec_refepoch`` at the catalog epoch, ``pmra, pmdec`` (mas/yr), ``mag``,
        ``flux`` (electrons), ``snr`` (expected), ``saturated``.
    refcat : QTable
        Gaia-like reference catalog (``id, ra, dec, ra_err, dec_err, pmra, pmdec,
        mag, epoch``), errors in mas.
    params : dict
        Parameters of :func:`simulate` and derived values (star counts, SATURATE, ...).
    truth : list of dict
        Per image: file name, shape, true and nominal WCS (FITS keywords, or a
        ``{"gwcs": {...}}`` spec), applied errors.
    """

    images: list[AlignImage]
    true_wcs: list[Any]
    nominal_wcs: list[Any]
    stars: QTable
    refcat: QTable
    params: dict[str, Any]
    truth: list[dict[str, Any]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [image.name for image in self.images]

    @property
    def plane(self) -> TangentPlane:
        """Tangent plane at the scene centre (the ``ra, dec`` given to :func:`simulate`)."""
        return TangentPlane(*self.params["center"])

    def errors(self, wcs_list: Any, relative: bool = True, *, grid: int = 16) -> Table:
        """Error of WCS solutions against the truth, one row per image.

        Parameters
        ----------
        wcs_list : sequence of WCS, sequence of ImageResult, or AlignResult
            One solution per image, in the order of :attr:`images`.
        relative : bool
            Remove the best common affine transform first (what relative
            alignment cannot observe); False gives absolute errors.
        grid : int
            The error is evaluated on ``grid x grid`` pixels over each image.

        Returns
        -------
        Table
            Columns ``name, rms_mas, max_mas, rms_pix``.
        """
        dists, scales = self._distances(wcs_list, relative, grid)
        table = Table(meta={"relative": relative, "grid": grid})
        table["name"] = self.names
        table["rms_mas"] = [float(np.sqrt(np.mean(d**2))) for d in dists]
        table["max_mas"] = [float(np.max(d)) for d in dists]
        table["rms_pix"] = [r / s for r, s in zip(table["rms_mas"], scales, strict=True)]
        return table

    def errors_summary(
        self, wcs_list: Any, relative: bool = True, *, grid: int = 16
    ) -> dict[str, float]:
        """Overall ``rms_mas``, ``max_mas`` and ``rms_pix`` over all images' grid points."""
        dists, scales = self._distances(wcs_list, relative, grid)
        mas = np.concatenate(dists)
        pix = np.concatenate([d / s for d, s in zip(dists, scales, strict=True)])
        return {
            "rms_mas": float(np.sqrt(np.mean(mas**2))),
            "max_mas": float(np.max(mas)),
            "rms_pix": float(np.sqrt(np.mean(pix**2))),
        }

    def _distances(self, solutions: Any, relative: bool, grid: int) -> tuple[list, list]:
        if int(grid) < 2:
            raise ValueError(f"grid must be an integer >= 2, got {grid!r}")
        candidates = wcs_list(solutions, len(self.images))
        shapes = [image.shape for image in self.images]
        return grid_errors(
            self.true_wcs, candidates, shapes, self.plane, relative=relative, grid=int(grid)
        )

    def true_sources(self, index: int) -> QTable:
        """Stars whose true position falls on image ``index``: ``id, x, y`` (0-based,
        from the true WCS), ``flux, mag, snr, saturated``."""
        image = self.images[index]
        x, y = _star_pixels(self.true_wcs[index], self.stars, image.shape, margin=0.0)
        ny, nx = image.shape
        inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
        out = QTable()
        out[COL_ID] = np.asarray(self.stars[COL_ID])[inside]
        out[COL_X] = x[inside]
        out[COL_Y] = y[inside]
        for name in (COL_FLUX, COL_MAG, COL_SNR, "saturated"):
            out[name] = np.asarray(self.stars[name])[inside]
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Scene:
        """Read a scene written by :func:`simulate` (``truth.json``, catalogs, images)."""
        directory = Path(directory)
        doc = sim_io.read_truth(directory)
        params, truth = doc["params"], doc["images"]
        epoch = Time(params["epoch"], format="jyear")
        paths = [directory / item["name"] for item in truth]
        true_wcs, nominal_wcs = (
            [sim_io.wcs_from_truth(item[key], tuple(item["shape"])) for item in truth]
            for key in ("true_wcs", "nominal_wcs")
        )
        return cls(
            images=[
                sim_io.file_image(path, item, epoch)
                for path, item in zip(paths, truth, strict=True)
            ],
            true_wcs=true_wcs,
            nominal_wcs=nominal_wcs,
            stars=QTable.read(directory / sim_io.STARS_FILE, format="ascii.ecsv"),
            refcat=QTable.read(directory / sim_io.REFCAT_FILE, format="ascii.ecsv"),
            params=params,
            truth=truth,
            paths=paths,
        )


# --- validation --------------------------------------------------------------------
def _fail(name: str, allowed: str, value: Any) -> None:
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        _fail(name, f"an integer >= {minimum}", value)
    return int(value)


def _check_float(name: str, value: Any, low: float, high: float = math.inf) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (low <= number <= high):
        allowed = f"a number >= {low:g}" if high == math.inf else f"a number in [{low:g}, {high:g}]"
        _fail(name, allowed, value)
    return number


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        _fail(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return str(value)


def check_parameters(p: dict[str, Any]) -> dict[str, Any]:
    """Check every parameter eagerly; returns the normalised parameters."""
    out = dict(p)
    out["scenario"] = _check_choice("scenario", p["scenario"], SCENARIOS)
    out["psf"] = _check_choice("psf", p["psf"], sim_render.PSFS)
    out["wcs"] = _check_choice("wcs", p["wcs"], WCS_KINDS)
    out["n_images"] = _check_int("n_images", p["n_images"], 1)
    out["seed"] = _check_int("seed", p["seed"], 0)
    shape = p["shape"]
    if (
        not isinstance(shape, Sequence)
        or len(shape) != 2
        or any(isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 32 for s in shape)
    ):
        _fail("shape", "a pair of integers >= 32 (ny, nx)", shape)
    out["shape"] = (int(shape[0]), int(shape[1]))
    if p["n_stars"] is not None:
        out["n_stars"] = _check_int("n_stars", p["n_stars"], 0)
    pe = p["pointing_error"]
    if not isinstance(pe, Sequence) or len(pe) != 2:
        _fail("pointing_error", "a pair (min, max) of arcsec", pe)
    lo = _check_float("pointing_error[0]", pe[0], 0.0)
    out["pointing_error"] = (lo, _check_float("pointing_error[1]", pe[1], lo))
    for name, low, high in (
        ("pixel_scale", 1e-6, 3600.0),
        ("fwhm", 0.3, 100.0),
        ("mosaic_overlap", 0.0, 0.9),
        ("roll_error", 0.0, 180.0),
        ("scale_error", 0.0, 0.5),
        ("common_pointing_error", 0.0, math.inf),
        ("sky", 0.0, math.inf),
        ("read_noise", 0.0, math.inf),
        ("proper_motion", 0.0, math.inf),
        ("refcat_pm_error", 0.0, math.inf),
        ("epoch", -10000.0, 10000.0),
        ("refcat_epoch", -10000.0, 10000.0),
        ("ra", -360.0, 720.0),
        ("dec", -90.0, 90.0),
    ):
        out[name] = _check_float(name, p[name], low, high)
    out["ra"] %= 360.0
    for name in ("cosmic_rays", "hot_pixels", "saturated_stars"):
        out[name] = _check_int(name, p[name], 0)
    dr = p["dither_range"]
    if dr is not None:
        if not isinstance(dr, Sequence) or len(dr) != 2:
            _fail("dither_range", "a pair (min, max) of fractions of the image size", dr)
        low = _check_float("dither_range[0]", dr[0], 0.0, 1.0)
        out["dither_range"] = (low, _check_float("dither_range[1]", dr[1], low, 1.0))
    out["distortion_error"] = _check_float("distortion_error", p["distortion_error"], 0.0, 100.0)
    order = p["distortion_order"]
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or not (
            2 <= order <= 5):
        _fail("distortion_order", "an integer from 2 to 5", order)
    out["distortion_order"] = int(order)
    for name in ("sip", "noise"):
        if not isinstance(p[name], bool | np.bool_):
            _fail(name, "True or False", p[name])
        out[name] = bool(p[name])
    if out["sip"] and out["wcs"] == "gwcs":
        _fail("sip", "False with wcs='gwcs' (the GWCS always has its own distortion)", p["sip"])
    return out


# --- construction --------------------------------------------------------------------
def simulate(
    scenario: str = "dither",
    *,
    n_images: int = 4,
    seed: int = 0,
    outdir: str | Path | None = None,
    shape: tuple[int, int] = (1024, 1024),
    pixel_scale: float = 0.1,
    n_stars: int | None = None,
    fwhm: float = 2.5,
    psf: str = "moffat",
    pointing_error: tuple[float, float] = (0.1, 3.0),
    mosaic_overlap: float = 0.10,
    roll_error: float = 0.01,
    scale_error: float = 1e-5,
    common_pointing_error: float = 0.0,
    sip: bool = False,
    cosmic_rays: int = 30,
    hot_pixels: int = 20,
    saturated_stars: int = 3,
    sky: float = 100.0,
    read_noise: float = 5.0,
    epoch: float = 2025.0,
    refcat_epoch: float = 2016.0,
    proper_motion: float = 0.0,
    refcat_pm_error: float = 0.0,
    ra: float = 150.0,
    dec: float = 2.0,
    noise: bool = True,
    wcs: str = "fits",
    distortion_error: float = 0.0,
    distortion_order: int = 3,
    dither_range: tuple[float, float] | None = None,
) -> Scene:
    """Simulate a seeded scene of overlapping images with known pointing errors.

    Parameters
    ----------
    scenario : {"dither", "mosaic", "sparse", "crowded"}
        Layout: ``dither`` (random dithers of 5-15 % of the field), ``mosaic``
        (a ceil(sqrt(N)) wide grid with 10 % overlaps), ``sparse`` (a dither of
        ~20 stars per image), ``crowded`` (a dither of ~6000 stars per 1024^2).
    n_images : int
        Number of images.
    seed : int
        Seed of every random draw; the same arguments give the same scene.
    outdir : str or Path, optional
        Write ``img_000.fits`` (``.asdf`` for GWCS)..., ``truth.json``, ``stars.ecsv`` and
        ``refcat.ecsv`` there (created if needed); the images then read their
        pixels from these files.
    shape : (ny, nx)
        Image size in pixels.
    pixel_scale : float
        Arcsec per pixel.
    n_stars : int, optional
        Expected number of stars per image (density times image area). By
        default 200 per 1024^2 (dither, mosaic), 20 (sparse), 6000 per 1024^2
        (crowded).
    fwhm : float
        PSF full width at half maximum, pixels.
    psf : {"moffat", "gaussian"}
        Pixel-integrated PSF (Moffat beta = 2.5).
    pointing_error : (min, max)
        Range (arcsec) of the magnitude of each image's random pointing shift.
    mosaic_overlap : float
        ``mosaic`` only: the fraction of an image's width shared with each
        neighbour (default 0.10).
    roll_error : float
        Maximum absolute roll error, degrees (uniform in [-roll_error, roll_error]).
    scale_error : float
        Maximum absolute fractional scale error.
    common_pointing_error : float
        Magnitude (arcsec) of a shift shared by all images, in a random direction.
    sip : bool
        Add a SIP distortion (a few pixels at the corners), the same for all images.
    cosmic_rays : int
        Cosmic-ray tracks per image (not flagged in DQ).
    hot_pixels : int
        Hot pixels per image; half of them flagged in DQ (HOT + DO_NOT_USE).
    saturated_stars : int
        Stars per image made bright enough to saturate (clipped at SATURATE,
        flagged SATURATED + DO_NOT_USE).
    sky : float
        Sky level, electrons per pixel.
    read_noise : float
        Read noise, electrons.
    epoch, refcat_epoch : float
        Observation and reference-catalog epochs (Julian years).
    proper_motion : float
        Typical (mean) total proper motion, mas/yr.
    refcat_pm_error : float
        Proper-motion error (mas/yr per axis) of the brightest reference stars; it
        grows with magnitude as the position errors do (10 times at most), the
        catalog's ``pmra, pmdec`` carry it and ``pmra_err, pmdec_err`` state it.
        0 (default): exact proper motions, no error columns.
    ra, dec : float
        Scene centre, degrees.
    noise : bool
        Add Poisson and read noise.
    wcs : {"fits", "gwcs"}
        ``fits``: FITS WCS (TAN, TAN-SIP with ``sip``), FITS files. ``gwcs``:
        JWST-style GWCS (frames ``detector -> v2v3 -> world``) with a
        NIRCam-like polynomial distortion (~5 px at the corners) and the
        pointing given by ``meta.wcsinfo``-style reference angles, ASDF files
        (tree: ``data``, ``dq``, ``wcs``, ``meta``). Pointing errors move the
        reference point and the roll; the scale error scales the distortion.
    distortion_error : float
        The nominal WCS's distortion model is wrong by this many pixels at the farthest
        image corner (0: right): the nominal WCS maps pixel ``p`` where the true WCS maps
        ``p + e(p)``, ``e`` a random polynomial of orders 2 to ``distortion_order``, the
        same for every image (one detector); in the SIP polynomials (FITS) or the
        detector -> V2/V3 polynomial (GWCS). The correction that undoes it is
        ``params["distortion_truth"]`` (an `aligncore.DistortionCorrection` dict).
    distortion_order : int
        Highest order of the distortion error (2 to 5).
    dither_range : (min, max), optional
        Dither radius as a fraction of the image size (default 0.05-0.15); larger dithers
        constrain a distortion better (its difference between two positions is measured).

    Returns
    -------
    Scene
        Images (nominal WCS), truth and metrics.

    Raises
    ------
    ValueError
        When a parameter is out of range; the message names it and what is allowed.
    """
    p = check_parameters({k: v for k, v in locals().items() if k != "outdir"})
    if p["n_stars"] is None:
        p["n_stars"] = sim_sky.default_n_stars(p["scenario"], p["shape"])
    # Independent streams: changing e.g. the noise never moves a star.
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(p["seed"]).spawn(7)]
    r_layout, r_sip, r_errors, r_stars, r_refcat, r_pixels, r_distortion = rngs
    true_hdrs, nominal_hdrs, applied, pas = _plan_images(p, r_layout, r_sip, r_errors)
    if p["distortion_error"] > 0:
        error = sim_distortion.make_error(p["shape"], p["distortion_error"],
                                          p["distortion_order"], r_distortion)
        nominal_hdrs = [sim_distortion.add_to_gwcs_spec(h, error) if p["wcs"] == "gwcs"
                        else sim_distortion.add_to_sip_header(h, error, p["shape"])
                        for h in nominal_hdrs]
        p["distortion_truth"] = sim_distortion.negated(error, p["shape"]).to_dict()
    shape = p["shape"]
    true_wcs = [sim_io.wcs_from_truth(h, shape) for h in true_hdrs]
    nominal_wcs = [sim_io.wcs_from_truth(h, shape) for h in nominal_hdrs]

    peak, area = sim_render.psf_properties(p["psf"], p["fwhm"])
    fluxes = sim_sky.FluxScale(area=area, pixel_variance=p["sky"] + p["read_noise"] ** 2)
    stars, n_total = _make_star_field(p, true_wcs, fluxes, r_stars)
    positions = [_star_pixels(w, stars, shape, margin=128.0) for w in true_wcs]
    _boost_saturated(stars, positions, shape, p["saturated_stars"], fluxes, r_stars)
    refcat = sim_sky.make_refcat(stars, r_refcat, fluxes, p["refcat_epoch"],
                                 pm_error=p["refcat_pm_error"])
    stars.meta.update(epoch=p["epoch"], refcat_epoch=p["refcat_epoch"])
    refcat.meta.update(epoch=p["refcat_epoch"], catalog="aligncore simulation (Gaia-like)")
    saturate = float(np.ceil(_SATURATION_MARGIN * (p["sky"] + peak * fluxes.brightest)))

    pixels = [
        _render_image(p, xy, stars, saturate, rng)
        for xy, rng in zip(positions, r_pixels.spawn(p["n_images"]), strict=True)
    ]
    params = dict(
        p,
        n_stars_total=n_total,
        center=[p["ra"], p["dec"]],
        saturate=saturate,
        zeropoint=sim_sky.ZEROPOINT,
        moffat_beta=sim_render.MOFFAT_BETA,
        psf_peak_fraction=peak,
        psf_noise_area=area,
        refcat_mag_limit=fluxes.refcat_mag_limit,
        flux_range=[fluxes.faintest, fluxes.brightest],
    )
    truth = [
        {
            "name": f"img_{i:03d}.{'asdf' if p['wcs'] == 'gwcs' else 'fits'}",
            "shape": list(shape),
            "position_angle": float(pas[i]),
            "saturate": saturate,
            "n_saturated_pixels": pixels[i][2],
            "errors": applied[i],
            "true_wcs": true_hdrs[i],
            "nominal_wcs": nominal_hdrs[i],
        }
        for i in range(p["n_images"])
    ]
    scene = Scene(
        images=[],
        true_wcs=true_wcs,
        nominal_wcs=nominal_wcs,
        stars=stars,
        refcat=refcat,
        params=sim_io.jsonable(params),
        truth=truth,
    )
    if outdir is None:
        epoch_time = Time(p["epoch"], format="jyear")
        scene.images = [
            sim_io.memory_image(data, dq, item, epoch_time)
            for (data, dq, _), item in zip(pixels, truth, strict=True)
        ]
        return scene
    sim_io.write_scene(scene, [(d, q) for d, q, _ in pixels], Path(outdir))
    return Scene.load(outdir)


def _plan_images(
    p: dict[str, Any],
    r_layout: np.random.Generator,
    r_sip: np.random.Generator,
    r_errors: np.random.Generator,
) -> tuple[list[dict], list[dict], list[dict], np.ndarray]:
    """True and nominal WCS headers (or GWCS specs), applied errors and position angles."""
    n, shape = p["n_images"], p["shape"]
    offsets, pas, base_pa = sim_sky.layout(p["scenario"], n, shape, r_layout,
                                           p["dither_range"],
                                           p.get("mosaic_overlap", 0.10))
    base_cd = sim_sky.cd_matrix(p["pixel_scale"], base_pa)
    centres = offsets @ base_cd.T * 3600.0
    crval_ra, crval_dec = TangentPlane(p["ra"], p["dec"]).tp_to_world(centres[:, 0], centres[:, 1])
    sip = sim_sky.make_sip(shape, r_sip) if p["sip"] else None
    distortion = (sim_gwcs.make_distortion(shape, p["pixel_scale"], r_sip)
                  if p["wcs"] == "gwcs" else None)

    size = r_errors.uniform(*p["pointing_error"], size=n)
    angle = r_errors.uniform(0.0, 2.0 * np.pi, size=n)
    shifts = np.column_stack([size * np.cos(angle), size * np.sin(angle)])
    common_angle = r_errors.uniform(0.0, 2.0 * np.pi)
    common = p["common_pointing_error"] * np.array([np.cos(common_angle), np.sin(common_angle)])
    rolls = r_errors.uniform(-p["roll_error"], p["roll_error"], size=n)
    scales = r_errors.uniform(-p["scale_error"], p["scale_error"], size=n)

    true_hdrs, nominal_hdrs, applied = [], [], []
    for i in range(n):
        total = shifts[i] + common
        if distortion is None:
            cd = sim_sky.cd_matrix(p["pixel_scale"], pas[i])
            header = sim_sky.wcs_header((crval_ra[i], crval_dec[i]), cd, shape, sip)
            nominal = sim_sky.apply_pointing_error(header, total, rolls[i], scales[i])
        else:
            pointing = sim_gwcs.pointing_for(distortion, (crval_ra[i], crval_dec[i]), pas[i])
            header = sim_gwcs.make_spec(distortion, *pointing, shape)
            nominal = sim_gwcs.apply_pointing_error(header, total, rolls[i], scales[i])
        true_hdrs.append(header)
        nominal_hdrs.append(nominal)
        applied.append(
            {
                "shift_arcsec": total.tolist(),
                "image_shift_arcsec": shifts[i].tolist(),
                "common_shift_arcsec": common.tolist(),
                "roll_deg": float(rolls[i]),
                "scale": float(scales[i]),
            }
        )
    return true_hdrs, nominal_hdrs, applied, pas


def _make_star_field(
    p: dict[str, Any], true_wcs: list[Any], fluxes: sim_sky.FluxScale, rng: np.random.Generator
) -> tuple[QTable, int]:
    """Stars over the union of the footprints plus a margin for pointing errors."""
    plane = TangentPlane(p["ra"], p["dec"])
    corners = np.hstack(
        [np.vstack(plane.world_to_tp(*footprint_world(w, p["shape"]))) for w in true_wcs]
    )
    ny, nx = p["shape"]
    field_arcsec = max(nx, ny) * p["pixel_scale"]
    margin = 0.05 * field_arcsec + p["pointing_error"][1] + p["common_pointing_error"] + 2.0
    bbox = (
        corners[0].min() - margin,
        corners[0].max() + margin,
        corners[1].min() - margin,
        corners[1].max() + margin,
    )
    density = p["n_stars"] / (nx * ny * p["pixel_scale"] ** 2)
    n_total = round(density * (bbox[1] - bbox[0]) * (bbox[3] - bbox[2]))
    years = p["epoch"] - p["refcat_epoch"]
    stars = sim_sky.make_stars(rng, plane, bbox, n_total, fluxes, p["proper_motion"], years)
    return stars, n_total


def _star_pixels(
    wcs: Any, stars: QTable, shape: Sequence[int], margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """True 0-based pixel positions of the stars within ``margin`` px of the image.

    Stars farther away, or where a SIP polynomial extrapolated far beyond the
    image cannot be inverted, get NaN.
    """
    ra = np.asarray(stars[COL_RA], dtype=float)
    dec = np.asarray(stars[COL_DEC], dtype=float)
    if not isinstance(wcs, WCS):
        return sim_gwcs.star_pixels(wcs, ra, dec, shape, margin)
    x = np.full(ra.size, np.nan)
    y = np.full(ra.size, np.nan)
    if ra.size == 0:
        return x, y
    ny, nx = shape
    pad = margin + 32.0  # room for the SIP distortion ignored by the pre-selection
    x0, y0 = wcs.wcs_world2pix(ra, dec, 0)
    near = np.flatnonzero((x0 > -pad) & (x0 < nx + pad) & (y0 > -pad) & (y0 < ny + pad))
    if near.size == 0:
        return x, y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        xs, ys = wcs.all_world2pix(ra[near], dec[near], 0, tolerance=1e-10, maxiter=100, quiet=True)
        back_ra, back_dec = wcs.all_pix2world(xs, ys, 0)
    scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))))
    miss = np.hypot((back_ra - ra[near]) * np.cos(np.radians(dec[near])), back_dec - dec[near])
    ok = np.isfinite(miss) & (miss < 1e-6 * scale)
    x[near[ok]], y[near[ok]] = xs[ok], ys[ok]
    return x, y


def _boost_saturated(
    stars: QTable,
    positions: list[tuple[np.ndarray, np.ndarray]],
    shape: Sequence[int],
    count: int,
    fluxes: sim_sky.FluxScale,
    rng: np.random.Generator,
) -> None:
    """Make ``count`` random stars well inside each image bright enough to saturate."""
    if count == 0 or len(stars) == 0:
        return
    ny, nx = shape
    edge = 20.0
    flux = np.asarray(stars[COL_FLUX], dtype=float).copy()
    saturated = np.asarray(stars["saturated"], dtype=bool).copy()
    for x, y in positions:
        with np.errstate(invalid="ignore"):
            inside = (x > edge) & (x < nx - 1 - edge) & (y > edge) & (y < ny - 1 - edge)
        candidates = np.flatnonzero(inside & ~saturated)
        have = np.count_nonzero(inside & saturated)
        chosen = rng.permutation(candidates)[: max(0, count - have)]
        flux[chosen] = fluxes.brightest * rng.uniform(*_SATURATED_BOOST, size=chosen.size)
        saturated[chosen] = True
    stars[COL_FLUX] = flux
    stars[COL_MAG] = fluxes.mag(flux)
    stars[COL_SNR] = fluxes.snr(flux)
    stars["saturated"] = saturated


def _render_image(
    p: dict[str, Any],
    xy: tuple[np.ndarray, np.ndarray],
    stars: QTable,
    saturate: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Science (float32) and DQ (uint32) arrays of one image, and its saturated pixel count."""
    x, y = xy
    on = np.isfinite(x)
    noise_sigma = math.sqrt(p["sky"] + p["read_noise"] ** 2)
    signal = sim_render.render_stars(
        p["shape"],
        x[on],
        y[on],
        np.asarray(stars[COL_FLUX], dtype=float)[on],
        psf=p["psf"],
        fwhm=p["fwhm"],
        threshold=max(_NOISE_FRACTION * noise_sigma, 1e-3),
    )
    signal += p["sky"]
    data = sim_render.add_noise(signal, rng, p["read_noise"]) if p["noise"] else signal
    dq = np.zeros(p["shape"], dtype=np.uint32)
    sim_render.add_cosmic_rays(data, rng, p["cosmic_rays"], 0.5 * saturate)
    sim_render.add_hot_pixels(data, dq, rng, p["hot_pixels"], 0.3 * saturate)
    n_sat = sim_render.apply_saturation(data, dq, saturate)
    return data.astype(np.float32), dq, n_sat
