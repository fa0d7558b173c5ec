"""The HTML report of a run: ``report.html`` beside ``report.json``.

One self-contained file (inline CSS, JavaScript and SVG; no network) that
shows what the JSON report tells:

- the summary: images, aligned, failed, the absolute fit;
- a sky map of every footprint coloured by status, the reference image marked
  (one SVG polygon per image, each linked to its table row);
- a sortable table with one row per image: status, reason, sources, matches,
  shift, rotation, scale, residual RMS against its centroid-noise bound;
- per-image figures for the worst images first (failed ones, then the largest
  RMS relative to the noise bound): residual vectors against the other
  aligned images at their sky positions and the 2D histogram of the offsets
  the matcher searched, or the fit residuals when there is no catalog;
  the rest collapsed or left out for large runs;
- the absolute fit's residuals against the reference catalog;
- when the distortion was refined, per detector the fitted correction field and
  the residuals before and after (`aligncore.htmlreport.distortion`);
- the config as run, versions and timings.

Figures are computed from the `~aligncore.AlignResult` with numpy only.

Example
-------
>>> from aligncore.htmlreport.page import write_html_report           # doctest: +SKIP
>>> write_html_report(result, report_dict, "aligned/report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aligncore.formats.common import atomic_path
from aligncore.htmlreport import svg as _svg
from aligncore.htmlreport.distortion import distortion_section
from aligncore.htmlreport.figures import ImageFigures, image_figures, worst_first
from aligncore.htmlreport.markup import Column, details, esc, key_value_table, page, sortable_table
from aligncore.report import ladder_summary
from aligncore.tangent import TangentPlane, footprint_world
from aligncore.types import AlignImage, AlignResult, ImageResult, Status

__all__ = ["TABLE_COLUMNS", "footprints", "render_html_report", "sky_map", "write_html_report"]

TABLE_COLUMNS = (
    Column("#", ".0f"),
    Column("image"),
    Column("status"),
    Column("reason"),
    Column("group"),
    Column("sources", ".0f"),
    Column("pairs", ".0f", "source pairs found by the matcher (a star seen in three other "
           "images makes three pairs)"),
    Column("dx [\"]", ".4f", "shift towards East, arcsec"),
    Column("dy [\"]", ".4f", "shift towards North, arcsec"),
    Column("rot [deg]", ".5f", "rotation, degrees counter-clockwise"),
    Column("scale-1 [ppm]", ".2f", "mean scale minus one, parts per million"),
    Column("rms [mas]", ".2f", "RMS of the kept fit residuals"),
    Column("expected [mas]", ".2f", "residual RMS the centroid errors predict"),
    Column("rms/expected", ".2f", "about 1 when the residuals are as small as the centroids "
           "allow; well above 1: a poor fit or underestimated centroid errors"),
    Column("precision [mas]", ".2f", "centroid-noise limit of the fitted shift"),
    Column("detect [s]", ".2f"),
    Column("attempts", "", "the retry ladder: each rung tried, in order, with + for the fit "
           "accepted and - for one refused or not made (report.json: meta.attempts)"),
)
"""Columns of the per-image table, in order."""


def write_html_report(result: AlignResult, report: Mapping[str, Any], path: str | Path, *,
                      images: Sequence[AlignImage] | None = None, worst: int = 24,
                      collapsed: int = 96) -> Path:
    """Write the run's HTML report.

    Parameters
    ----------
    result : AlignResult
        The run.
    report : mapping
        Its JSON report (`aligncore.report.run_report`): config, versions.
    path : str or Path
        Output file (usually ``report.html`` beside ``report.json``).
    images : sequence of AlignImage, optional
        The inputs in the order of ``result.images``: their shapes give the
        footprints and their WCS the positions before alignment.
    worst : int
        Images whose figures are shown open, worst first.
    collapsed : int
        Further images whose figures are included, collapsed.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    text = render_html_report(result, report, images=images, worst=worst, collapsed=collapsed)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def render_html_report(result: AlignResult, report: Mapping[str, Any], *,
                       images: Sequence[AlignImage] | None = None, worst: int = 24,
                       collapsed: int = 96) -> str:
    """The HTML report as a string (see :func:`write_html_report`)."""
    if images is not None and len(images) != len(result.images):
        raise ValueError(f"{len(images)} images given for a result of {len(result.images)}")
    plane = result.tangent_plane if isinstance(result.tangent_plane, TangentPlane) else None
    parts = [f"<h1>aligncore run: {len(result.images)} images</h1>",
             f'<p class="muted">config: {esc(report.get("config_file") or "default")}</p>',
             _summary(result)]
    if plane is not None:
        parts += ["<h2>Sky map</h2>", _legend(), _sky_map(result, images)]
    parts += ["<h2>Images</h2>",
              '<p class="muted">Click a header to sort. Failed rows are red, the reference '
              "blue.</p>", _image_table(result)]
    if plane is not None:
        parts.append(_figures(result, plane, images, worst, collapsed))
    parts.append(_absolute(result))
    parts.append(distortion_section(_distortion_of(result, report)))
    parts.append(_provenance(result, report))
    return page(f"aligncore report ({len(result.images)} images)", "".join(parts))


# --- sections ------------------------------------------------------------------------
def _summary(result: AlignResult) -> str:
    counts = {s: sum(1 for r in result.images if r.status == s) for s in Status}
    aligned = counts[Status.SUCCESS] + counts[Status.REFERENCE]
    absolute = result.meta.get("absolute", {}) or {}
    if result.absolute is not None:
        abs_text, abs_class = f"{result.absolute.rmse * 1000:.1f} mas", "good"
    elif absolute.get("enabled"):
        abs_text, abs_class = "not applied", "bad"
    else:
        abs_text, abs_class = "off", ""
    cards = [("images", str(len(result.images)), ""),
             ("aligned", str(aligned), "good"),
             ("failed", str(counts[Status.FAILED]), "bad" if counts[Status.FAILED] else ""),
             ("skipped", str(counts[Status.SKIPPED]), ""),
             ("absolute fit", abs_text, abs_class),
             ("total time", f"{result.timings.get('total', math.nan):.1f} s", "")]
    html = "".join(f'<div class="card {c}" id="summary-{esc(label.replace(" ", "-"))}">'
                   f"{esc(label)}<b>{esc(value)}</b></div>" for label, value, c in cards)
    note = ""
    if absolute.get("enabled") and result.absolute is None:
        note = f"<p>Absolute alignment not applied: {esc(absolute.get('reason'))}</p>"
    return f'<div class="cards">{html}</div>{note}'


def _legend() -> str:
    items = "".join(f'<span><i class="swatch" style="background:{color}"></i>{esc(status)}'
                    "</span>" for status, color in _svg.STATUS_COLORS.items())
    return (f'<p class="legend">{items}<span>&#9733; reference</span>'
            '<span class="muted">outlines at the corrected WCS; click one for its row</span></p>')


def _shape(index: int, image: ImageResult, images: Sequence[AlignImage] | None
           ) -> tuple[int, int] | None:
    if images is not None:
        return tuple(images[index].shape)  # type: ignore[return-value]
    pixel_shape = getattr(image.wcs, "pixel_shape", None)
    if pixel_shape is not None:
        return int(pixel_shape[1]), int(pixel_shape[0])
    return None


def footprints(result: AlignResult, plane: TangentPlane,
               images: Sequence[AlignImage] | None = None) -> list[_svg.Footprint]:
    """Each image's outline at its final WCS in the run's tangent plane (arcsec)."""
    out = []
    for index, image in enumerate(result.images):
        shape = _shape(index, image, images)
        corners = np.zeros((0, 2))
        if shape is not None and image.wcs is not None:
            try:
                corners = np.column_stack(plane.world_to_tp(*footprint_world(image.wcs, shape)))
            except (ValueError, TypeError, AttributeError):
                corners = np.zeros((0, 2))
        out.append(_svg.Footprint(image.name, image.status.value, corners, f"img-{index}"))
    return out


def sky_map(result: AlignResult, images: Sequence[AlignImage] | None = None) -> str:
    """The report's sky map as an SVG string: every footprint coloured by status.

    Parameters
    ----------
    result : AlignResult
        A run of `aligncore.align` (with its tangent plane).
    images : sequence of AlignImage, optional
        The inputs (their shapes; default: each WCS's ``pixel_shape``).
    """
    if not isinstance(result.tangent_plane, TangentPlane):
        raise ValueError("the result has no tangent plane; was it produced by aligncore.align?")
    return _svg.sky_map_svg(footprints(result, result.tangent_plane, images))


def _sky_map(result: AlignResult, images: Sequence[AlignImage] | None) -> str:
    return f'<div id="sky-map">{sky_map(result, images)}</div>'


def _finite(value: Any) -> float | None:
    """A finite number from a meta value, else None."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _row(index: int, image: ImageResult) -> list[Any]:
    fit = image.fit
    bound = _finite(image.meta.get("noise_bound_mas"))
    expected = _finite(image.meta.get("expected_rms_mas"))
    rms = fit.rmse * 1000.0 if fit is not None and fit.n_used else None
    ratio = rms / expected if rms is not None and expected else None
    return [
        index, image.name, image.status.value, image.reason, image.group_id or "",
        image.n_sources, image.n_matched,
        float(fit.shift[0]) if fit else None, float(fit.shift[1]) if fit else None,
        fit.rotation if fit else None, (fit.scale - 1.0) * 1e6 if fit else None,
        rms, expected, ratio, bound, image.timings.get("detect"),
        ladder_summary(image.meta),
    ]


def _image_table(result: AlignResult) -> str:
    rows = [_row(i, r) for i, r in enumerate(result.images)]
    classes = [r.status.value.lower() for r in result.images]
    ids = [f"img-{i}" for i in range(len(result.images))]
    return sortable_table(TABLE_COLUMNS, rows, row_classes=classes, row_ids=ids,
                          table_id="images")


def _figure_block(fig: ImageFigures) -> str:
    image = fig.image
    caption = f"{image.name}: {image.status.value}"
    if image.reason:
        caption += f" ({image.reason})"
    body = "".join(fig.svgs)
    return (f'<div class="fig" id="fig-{fig.index}"><h3><a href="#img-{fig.index}">'
            f"{esc(caption)}</a></h3>{body}<p>{esc(fig.note)}</p></div>")


def _figures(result: AlignResult, plane: TangentPlane, images: Sequence[AlignImage] | None,
             worst: int, collapsed: int) -> str:
    order = worst_first(result.images)
    shown = order[:worst]
    more = order[worst:worst + collapsed]
    rest = len(order) - len(shown) - len(more)
    figures = image_figures(result, plane, shown + more, images)
    first = "".join(_figure_block(figures[i]) for i in shown)
    parts = ["<h2>Per-image figures</h2>",
             f'<p class="muted">Worst first: failed images, then the largest RMS relative to '
             f"the noise bound. Left: residuals against the other aligned images, magnified "
             f"(black dots: sources); right: offsets of all source pairs within the search "
             f"radius at the input WCS (circle: the matcher's offset).</p>"
             f'<div class="figs" id="worst">{first}</div>']
    if more:
        body = "".join(_figure_block(figures[i]) for i in more)
        parts.append(details(f"{len(more)} more images", f'<div class="figs">{body}</div>'))
    if rest > 0:
        parts.append(f'<p class="muted">{rest} further images have no figures here '
                     "(aligncore run --plots writes them all as PNG files).</p>")
    return "".join(parts)


def _absolute(result: AlignResult) -> str:
    info = result.meta.get("absolute", {}) or {}
    if not info.get("enabled"):
        return ""
    parts = ["<h2>Absolute fit</h2>"]
    fit = result.absolute
    facts = {"status": info.get("status", "applied" if fit is not None else "not applied"),
             "reference catalog": info.get("refcat_name", "-"),
             "sources found": info.get("n_found", "-"),
             "pairs": info.get("n_matched", "-")}
    if fit is None:
        facts["reason"] = info.get("reason", "-")
        return "".join(parts) + key_value_table(facts)
    facts.update({"kept": fit.n_used, "rms [mas]": f"{fit.rmse * 1000:.2f}",
                  "shift [\"]": f"{fit.shift[0]:.4f}, {fit.shift[1]:.4f}",
                  "rotation [deg]": f"{fit.rotation:.5f}", "scale": f"{fit.scale:.8f}"})
    kept = fit.residuals[fit.fitmask] if fit.fitmask.size == len(fit.residuals) \
        else fit.residuals
    svg = _svg.scatter_svg(kept, width=320, title="residuals against the reference catalog")
    return ("".join(parts) + f'<div class="figs"><div>{key_value_table(facts)}</div>'
            f'<div class="fig" id="absolute-residuals">{svg}</div></div>')


def _distortion_of(result: AlignResult, report: Mapping[str, Any]) -> Any:
    """The run's distortion refinement: the report's ``distortion``, else the run's meta."""
    meta = report.get("meta")
    return (report.get("distortion") or (meta.get("distortion") if isinstance(meta, Mapping)
                                         else None) or result.meta.get("distortion"))


def _provenance(result: AlignResult, report: Mapping[str, Any]) -> str:
    timings = {k: f"{v:.2f} s" for k, v in result.timings.items()}
    config = yaml.safe_dump(report.get("config", {}), sort_keys=False)
    versions = report.get("versions", {})
    return ("<h2>Run</h2>"
            f'<div class="figs"><div><h3>Timings</h3>{key_value_table(timings)}</div>'
            f"<div><h3>Versions</h3>{key_value_table(versions)}</div></div>"
            + details("Config as run", f'<pre id="config">{esc(config)}</pre>'))
