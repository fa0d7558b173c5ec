"""Writing the results of a run: corrected images, catalogs and the report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from astropy.table import QTable

from aligncore import __version__
from aligncore.config import Config
from aligncore.errors import InputError
from aligncore.io import (
    CATALOG_FORMATS,
    catalog_path,
    write_catalog,
    write_fits_image,
    write_json,
)
from aligncore.io_asdf import is_asdf, write_asdf_image
from aligncore.io_jwst import output_name, write_jwst_image
from aligncore.registry import Registry
from aligncore.report import run_report
from aligncore.report_html import write_html_report
from aligncore.types import AlignImage, AlignResult

__all__ = ["write_catalogs", "write_outputs"]


def write_catalogs(names: Sequence[str], catalogs: Sequence[QTable], outdir: Path,
                   fmt: str) -> list[Path]:
    """Write one catalog per image (atomically)."""
    return [write_catalog(cat, catalog_path(outdir, name, fmt), fmt)
            for name, cat in zip(names, catalogs, strict=True)]


def _wcsname(result: AlignResult, config: Config) -> str:
    if result.absolute is None:
        return "FIT-REL"
    label = result.meta.get("absolute", {}).get("refcat_name")
    if not label:
        label = config.absolute.refcat.params.get("catalog") or config.absolute.refcat.plugin
    return f"FIT-REL-{str(label).upper()}"


def write_outputs(result: AlignResult, images: Sequence[AlignImage], config: Config,
                  outdir: str | Path | None = None,
                  registry: Registry | None = None) -> list[Path]:
    """Write the corrected image copies, optional catalogs and the JSON report.

    Every image gets an output (failed ones with their WCS exactly as it was
    and ``ALNSTAT = 'FAILED'``), named like its input except JWST ``*_cal.fits``
    files, written as ``*_tweakreg.fits``. With ``output.in_place`` the inputs
    themselves are updated instead (still atomically).

    Returns
    -------
    list of Path
        Files written.
    """
    outdir = Path(outdir if outdir is not None else config.output.dir)
    outdir.mkdir(parents=True, exist_ok=True)
    wcsname = _wcsname(result, config)
    written: list[Path] = []
    for image, image_result in zip(images, result.images, strict=True):
        if image.path is None:
            raise InputError(f"{image.name}: in-memory images cannot be written; use align()")
        jwst = image.meta.get("format") == "jwst"
        if config.output.in_place:
            target = image.path
        else:
            target = outdir / (output_name(image.path.name) if jwst else image.path.name)
            if target.resolve() == image.path.resolve():
                raise InputError(
                    f"{image.path}: output would overwrite the input; choose another output "
                    "directory or set output.in_place: true"
                )
        if jwst:
            written.append(write_jwst_image(image, image_result, target, wcsname=wcsname,
                                            version=__version__))
            continue
        if is_asdf(image.path):
            written.append(write_asdf_image(image, image_result, target, wcsname=wcsname,
                                            version=__version__))
            continue
        written.append(write_fits_image(image, image_result, target, wcsname=wcsname,
                                        version=__version__))
    if config.output.save_catalogs:
        detected = [(i.name, r.catalog) for i, r in zip(images, result.images, strict=True)
                    if "detection_error" not in r.catalog.meta]  # failed: detect again
        written += write_catalogs([name for name, _ in detected], [c for _, c in detected],
                                  outdir, config.output.catalog_format)
    if config.output.save_combined and result.combined_catalog is not None:
        fmt = config.output.catalog_format
        written.append(write_catalog(result.combined_catalog,
                                     outdir / f"combined_cat{CATALOG_FORMATS[fmt][1]}", fmt))
    if config.absolute.save_gaia_catalog and result.reference_catalog is not None:
        label = str(result.meta.get("absolute", {}).get("refcat_name") or "refcat").lower()
        written.append(write_catalog(result.reference_catalog, outdir / f"refcat_{label}.ecsv",
                                     "ecsv"))
    report = run_report(result, config, registry, extra={"outputs": [str(p) for p in written]})
    written.append(write_json(report, outdir / config.output.report))
    written.append(write_html_report(result, report, written[-1].with_suffix(".html"),
                                     images=images))
    return written
