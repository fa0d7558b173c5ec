"""Writing the results of a run: corrected images, catalogs and the report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from astropy.table import QTable

from aligncore import __version__
from aligncore.config import Config
from aligncore.errors import InputError
from aligncore.formats import format_of, image_format_of, write_images
from aligncore.formats.catalog_files import CATALOG_FORMATS, catalog_path, write_catalog
from aligncore.formats.common import write_json
from aligncore.inputs import Inputs, output_association
from aligncore.registry import Registry
from aligncore.report import run_report
from aligncore.types import AlignImage, AlignResult, ImageResult

__all__ = ["output_dir_problems", "write_catalogs", "write_outputs"]


def _existing_ancestor(path: Path) -> tuple[Path, Path | None]:
    """The nearest existing ancestor of ``path`` (or ``path``), and its child on the way."""
    child = None
    current = path
    while not current.exists() and current != current.parent:
        child = current
        current = current.parent
    return current, child


def _writable_dir(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


def _location_problems(outdir: Path) -> list[str]:
    """The output directory can be created (or exists) and is writable."""
    existing, _ = _existing_ancestor(outdir)
    if existing == outdir:
        if not outdir.is_dir():
            return [f"{outdir}: output directory exists and is not a directory"]
        if not _writable_dir(outdir):
            return [f"{outdir}: output directory is not writable"]
        return []
    if not existing.is_dir():
        return [f"{outdir}: output directory cannot be created: {existing} is a file, "
                "not a directory"]
    if not _writable_dir(existing):
        return [f"{outdir}: output directory cannot be created: {existing} is not writable"]
    return []


def _output_file_name(path: Path, registry: Registry | None) -> str:
    """The name of the output written for input ``path``: its format's `output_name` (JWST
    ``*_cal`` -> ``*_tweakreg``); its own name when no format claims it (preflight says so)."""
    try:
        return format_of(path, registry).output_name(path)
    except InputError:
        return path.name


def _input_problems(outdir: Path, input_paths: Sequence[Path], in_place: bool,
                    registry: Registry | None) -> list[str]:
    """Without in-place, outputs must not land on the inputs; with it, inputs are replaceable."""
    problems = []
    for path in input_paths:
        directory = path.parent
        if in_place:
            if path.exists() and not _writable_dir(directory):
                problems.append(f"{path}: cannot update in place: its directory {directory} "
                                "is not writable")
        elif (outdir / _output_file_name(path, registry)).resolve() == path.resolve():
            problems.append(f"{path}: output directory {outdir} is this input's directory; "
                            "its output would replace it. Choose another output directory "
                            "(-o) or pass --in-place to update the inputs")
    return problems


def output_dir_problems(outdir: Path, input_paths: Sequence[Path], in_place: bool,
                        registry: Registry | None = None) -> list[str]:
    """Why a run could not write its outputs into ``outdir``, before any work starts.

    Parameters
    ----------
    outdir : Path
        Output directory (created by the run if missing).
    input_paths : sequence of Path
        The input images.
    in_place : bool
        Whether the inputs themselves are updated (``--in-place``).
    registry : Registry, optional
        Plugin registry whose image formats name the outputs; default: the installed ones.

    Returns
    -------
    list of str
        One message per problem, each starting with the path concerned; empty
        when the outputs can be written.
    """
    outdir = Path(outdir)
    problems = _location_problems(outdir)
    if problems:
        return problems
    paths = [Path(p) for p in input_paths]
    return (_input_problems(outdir, paths, in_place, registry)
            + ([] if in_place else _name_clashes(paths, registry)))


def _name_clashes(input_paths: Sequence[Path], registry: Registry | None) -> list[str]:
    """Different inputs with one file name would write the same output file."""
    first: dict[str, Path] = {}
    problems = []
    for path in input_paths:
        name = _output_file_name(path, registry)
        other = first.setdefault(name, path)
        if other is not path and other.resolve() != path.resolve():
            problems.append(f"{path}: has the same output file name as {other}; both would be "
                            f"written to one file {name}. Rename one of them")
    return problems


def write_catalogs(names: Sequence[str], catalogs: Sequence[QTable], outdir: Path,
                   fmt: str) -> list[Path]:
    """Write one catalog per image (atomically)."""
    return [write_catalog(cat, catalog_path(outdir, name, fmt), fmt)
            for name, cat in zip(names, catalogs, strict=True)]


def _wcsname(result: AlignResult, config: Config) -> str:
    if result.absolute is None:
        return "FIT-REL"
    label = result.meta.get("absolute", {}).get("refcat_name") or config.absolute.refcat.plugin
    return f"FIT-REL-{str(label).upper()}"


def _by_file(images: Sequence[AlignImage], result: AlignResult
             ) -> dict[Path, list[tuple[AlignImage, ImageResult]]]:
    """The images and their results by input file (the chips of a multi-chip file
    together), in the order of the first image of each file."""
    files: dict[Path, list[tuple[AlignImage, ImageResult]]] = {}
    for image, image_result in zip(images, result.images, strict=True):
        if image.path is None:
            raise InputError(f"{image.name}: in-memory images cannot be written; use align()")
        files.setdefault(image.path, []).append((image, image_result))
    return files


def write_outputs(result: AlignResult, images: Sequence[AlignImage], config: Config,
                  outdir: str | Path | None = None,
                  registry: Registry | None = None, *,
                  inputs: Inputs | None = None) -> list[Path]:
    """Write the corrected image copies, optional catalogs and the JSON report.

    Every input file gets one output (failed images with their WCS exactly as it was
    and ``ALNSTAT = 'FAILED'``; the chips of a multi-chip file in one file), named like
    its input except JWST ``*_cal.fits`` files, written as ``*_tweakreg.fits``. With
    ``output.in_place`` the inputs themselves are updated instead (still atomically).
    When JWST images were written, an association listing them is written too, for the
    next jwst step (`aligncore.inputs.output_association`; ``inputs``: what the run was
    given).

    Returns
    -------
    list of Path
        Files written.
    """
    outdir = Path(outdir if outdir is not None else config.output.dir)
    outdir.mkdir(parents=True, exist_ok=True)
    wcsname = _wcsname(result, config)
    written: list[Path] = []
    jwst: list[tuple[Path, str | None]] = []  # JWST outputs and their groups
    for path, members in _by_file(images, result).items():
        first = members[0][0]
        if config.output.in_place:
            target = path
        else:
            target = outdir / image_format_of(first, registry).output_name(path)
            if target.resolve() == path.resolve():
                raise InputError(
                    f"{path}: output would overwrite the input; choose another output "
                    "directory or set output.in_place: true"
                )
        written.append(write_images([image for image, _ in members],
                                    [image_result for _, image_result in members], target,
                                    wcsname=wcsname, version=__version__, registry=registry))
        if first.meta.get("format") == "jwst":
            jwst.append((written[-1], members[0][1].group_id))
    if jwst:
        name, association = output_association(jwst, outdir, inputs)
        written.append(write_json(association, outdir / name))
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
    # the HTML page is presentation (aligncore.htmlreport), imported only when written
    from aligncore.htmlreport import write_html_report

    written.append(write_html_report(result, report, written[-1].with_suffix(".html"),
                                     images=images))
    return written
