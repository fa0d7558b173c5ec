"""Corpus cases: too few sources, and images that do not overlap as expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from corpus.harness import case, copy_images, default_config
from corpus.inputs import edit_sci, run_args, set_sci_data, star_image

FAILED_IMAGE = "that image FAILED with the reason, outputs and report written"


def _shift_crval(arcsec: float):
    def change(header) -> None:
        header["CRVAL1"] = header["CRVAL1"] + arcsec / 3600.0 / np.cos(np.radians(
            header["CRVAL2"]))

    return change


def _few_stars(work: Path, n_stars: int) -> list[str]:
    images = copy_images(work, 2)
    star_image(images[1], n_stars)
    return run_args(work, images)


@case("sources", exit_code=1, message=r"img_001\.fits: .*(no sources|only 0 matched)",
      outcome=FAILED_IMAGE, writes=True)
def no_sources(work: Path) -> list[str]:
    """An image of pure noise (0 sources)."""
    images = copy_images(work, 2)
    rng = np.random.default_rng(5)
    set_sci_data(images[1], rng.normal(100.0, 5.0, (256, 256)).astype(np.float32))
    return run_args(work, images)


@case("sources", exit_code=1, message=r"img_001\.fits: only [01] matched sources",
      outcome=FAILED_IMAGE, writes=True)
def one_source(work: Path) -> list[str]:
    """An image with a single star."""
    return _few_stars(work, 1)


@case("sources", exit_code=1, message=r"img_001\.fits: only [0-2] matched sources",
      outcome=FAILED_IMAGE, writes=True)
def two_sources(work: Path) -> list[str]:
    """An image with two stars."""
    return _few_stars(work, 2)


@case("geometry", exit_code=1, message=r"img_00[01]\.fits: .*(overlap|matched)",
      outcome="the image FAILED (no overlap), outputs and report written", writes=True)
def no_overlap(work: Path) -> list[str]:
    """Two images one degree apart on the sky."""
    images = copy_images(work, 2)
    edit_sci(images[1], _shift_crval(3600.0))
    return run_args(work, images)


@case("geometry", exit_code=1,
      message=r"img_00[01]\.fits: only 0 matched sources .*retried: fallback; no fit accepted",
      outcome="FAILED with the rungs of the retry ladder tried (60\" is beyond max_searchrad "
      "and beyond these 25\" images), WCS unchanged, report written", writes=True)
def offset_60_arcsec(work: Path) -> list[str]:
    """A pointing error of 60 arcsec (far beyond the default search radius)."""
    images = copy_images(work, 2)
    edit_sci(images[1], _shift_crval(60.0))
    return run_args(work, images)


@case("geometry", exit_code=0, message=None, outcome="aligned with a zero shift", writes=True)
def identical_images(work: Path) -> list[str]:
    """The same image twice under two names."""
    images = copy_images(work, 1)
    twin = Path(shutil.copy2(images[0], work / "in" / "twin.fits"))
    return run_args(work, [images[0], twin])


@case("geometry", exit_code=1, message=r"img_000\.fits: given more than once",
      outcome="input error, nothing written")
def duplicated_path(work: Path) -> list[str]:
    """The same input path given twice."""
    images = copy_images(work, 2)
    return run_args(work, [images[0], images[1], images[0]])


@case("geometry", exit_code=1, message=r"img_000\.fits: a single image cannot be aligned",
      outcome="input error suggesting more images or absolute alignment, nothing written")
def one_image(work: Path) -> list[str]:
    """A single image without absolute alignment."""
    images = copy_images(work, 1)
    return ["run", default_config(work), str(images[0]), "-o", str(work / "out"), "-q"]


@case("sources", exit_code=1, message=r"kernel_fwhm 100000 px is too large for a 256 x 256",
      outcome="every image FAILED with the reason (no MemoryError), inputs unchanged",
      writes=True)
def absurd_kernel_fwhm(work: Path) -> list[str]:
    """A detection kernel FWHM of 10^5 pixels (--set detector.params.kernel_fwhm=1e5)."""
    return [*run_args(work, copy_images(work, 2)), "--set", "detector.params.kernel_fwhm=1e5"]


@case("sources", exit_code=1, message=r"w\.ecsv: column 'weight' must be finite and >= 0 \(1 "
      r"rows are not\)", outcome="input error naming the catalog, nothing written")
def negative_catalog_weight(work: Path) -> list[str]:
    """A user catalog whose ``weight`` column (tweakwcs's) holds a negative weight."""
    from astropy.table import QTable

    images = copy_images(work, 2)
    QTable({"x": [10.0, 20.0], "y": [30.0, 40.0], "weight": [1.0, -1.0]}).write(work / "w.ecsv")
    config = work / "config.yaml"
    config.write_text(f"detector:\n  catalogs:\n    {images[1].name}: w.ecsv\n")
    return run_args(work, images, str(config))
