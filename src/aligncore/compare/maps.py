"""Residual maps of a comparison: each run's error vector field over its images.

Every run with a truth stores the sky positions of a ``grid x grid`` pixel grid
over each image through the solved and the true WCS. The difference, after
removing the one affine transform common to all images (what relative
alignment cannot observe), is the run's *relative error field*: its lengths are
the distances summarised by ``rel_rms_mas`` and ``rel_max_mas``.

``fig_residuals_<dataset>.png`` shows these fields for one seed of each
dataset (the first): one row per variant, one column per case (at most
``max_cases``, spread evenly over the sweep). In a panel every image of the
scene is drawn on the sky (North up, East left) — where it truly lies for a
mosaic, side by side when the images overlap (dithers) — coloured by the length
of the error (mas, one colour scale for the whole figure, set by the successful
runs: failed ones saturate it) with arrows for its direction (arrow lengths
scaled per panel).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aligncore.compare.metrics import residual_vectors
from aligncore.tangent import TangentPlane

__all__ = ["ResidualPanel", "plot_residuals", "residual_panels"]

_ARROWS = 160  # about this many arrows per panel
_PANEL_INCHES = 2.3


@dataclass
class ResidualPanel:
    """The relative error field of one run, laid out for drawing.

    Attributes
    ----------
    variant, case, status : str
    seed : int or None
    xy : list of ndarray
        Per image, ``(n, n, 2)`` positions (arcsec, East and North) of its grid
        pixels in the panel.
    vectors : list of ndarray
        Per image, ``(n, n, 2)`` error vectors (mas, East and North).
    """

    variant: str
    case: str
    status: str
    seed: int | None
    xy: list[np.ndarray]
    vectors: list[np.ndarray]

    @property
    def lengths(self) -> np.ndarray:
        """Every grid pixel's error (mas), all images."""
        return np.concatenate([np.hypot(v[..., 0], v[..., 1]).ravel() for v in self.vectors])

    @property
    def rms_mas(self) -> float:
        lengths = self.lengths
        lengths = lengths[np.isfinite(lengths)]
        return float(np.sqrt(np.mean(lengths**2))) if lengths.size else math.nan


def _square(values: np.ndarray) -> np.ndarray:
    """``(n * n, 2)`` -> ``(n, n, 2)`` (grid rows along y, as `grid_positions` orders them)."""
    n = math.isqrt(len(values))
    return values.reshape(n, n, 2)


def _layout(true_tp: list[np.ndarray]) -> list[np.ndarray]:
    """Image grids at their sky positions, or in a row-major array of tiles (each image
    keeping its orientation) when the images overlap too much to be seen."""
    centres = np.array([t.reshape(-1, 2).mean(axis=0) for t in true_tp])
    size = max(float(np.ptp(t.reshape(-1, 2), axis=0).max()) for t in true_tp)
    if len(true_tp) > 1:
        gaps = np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
        closest = float(np.min(gaps[~np.eye(len(true_tp), dtype=bool)]))
        if closest >= 0.5 * size:
            return true_tp
    columns = math.ceil(math.sqrt(len(true_tp)))
    step = 1.15 * size
    # East is drawn to the left: the first column has the largest East coordinate
    return [t - centres[k] + np.array([-(k % columns) * step, -(k // columns) * step])
            for k, t in enumerate(true_tp)]


def _panel(record: Mapping[str, Any]) -> ResidualPanel | None:
    truth = record.get("truth")
    grid = record.get("grid")
    if not truth or not grid or len(grid) != len(truth["grid"]):
        return None
    vectors = residual_vectors(grid, truth["grid"], truth["center"], relative=True)
    plane = TangentPlane(*truth["center"])
    true_tp = [_square(np.column_stack(plane.world_to_tp(*np.asarray(g, float))))
               for g in truth["grid"]]
    return ResidualPanel(
        variant=record["variant"], case=record["case"], status=record["metrics"]["status"],
        seed=record["seed"], xy=_layout(true_tp), vectors=[_square(v) for v in vectors])


def _pick(items: Sequence[str], k: int) -> list[str]:
    """At most ``k`` items, evenly spread and always the first and the last."""
    if len(items) <= k:
        return list(items)
    index = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in index]


def residual_panels(records: Sequence[Mapping[str, Any]], max_cases: int = 4
                    ) -> dict[str, dict[tuple[str, str], ResidualPanel]]:
    """Per dataset, the panels of its first seed: ``(variant, case) -> ResidualPanel``.

    Runs without a truth (or without stored grids) have no panel; a dataset
    without any such run is left out.
    """
    out: dict[str, dict[tuple[str, str], ResidualPanel]] = {}
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    for dataset in datasets:
        runs = [r for r in records if r["dataset"] == dataset and r.get("truth")]
        if not runs:
            continue
        seed = runs[0]["seed"]
        runs = [r for r in runs if r["seed"] == seed]
        cases = _pick(list(dict.fromkeys(r["case"] for r in runs)), max_cases)
        panels = {}
        for record in runs:
            if record["case"] in cases:
                panel = _panel(record)
                if panel is not None:
                    panels[(record["variant"], record["case"])] = panel
        if panels:
            out[dataset] = panels
    return out


def _norm(lengths: np.ndarray) -> Any:
    """One colour scale for a figure (of the successful runs' errors, so that failures,
    often 1000 times larger, do not wash them out): logarithmic for a wide range."""
    from matplotlib.colors import LogNorm, Normalize

    values = lengths[np.isfinite(lengths) & (lengths > 0)]
    if values.size == 0:
        return Normalize(0.0, 1.0)
    low, high = np.percentile(values, [1.0, 99.5])
    high = max(float(high), 1e-6)
    if high / max(float(low), 1e-12) > 50.0:
        return LogNorm(max(float(low), high / 1e4), high)
    return Normalize(0.0, high)


def _draw(ax: Any, panel: ResidualPanel, norm: Any, cmap: Any) -> Any:
    mesh = None
    for xy, vec in zip(panel.xy, panel.vectors, strict=True):
        length = np.ma.masked_invalid(np.hypot(vec[..., 0], vec[..., 1]))
        mesh = ax.pcolormesh(xy[..., 0], xy[..., 1], length, shading="gouraud", norm=norm,
                             cmap=cmap, rasterized=True)
        edge = np.concatenate([xy[0, :], xy[:, -1], xy[-1, ::-1], xy[::-1, 0]])
        ax.plot(edge[:, 0], edge[:, 1], color="0.35", lw=0.5)
    n = panel.xy[0].shape[0]
    k = min(n, max(2, int(math.sqrt(_ARROWS / len(panel.xy)))))
    pick = ((np.arange(k) + 0.5) * n / k).astype(int)
    xy = np.concatenate([p[np.ix_(pick, pick)].reshape(-1, 2) for p in panel.xy])
    vec = np.concatenate([v[np.ix_(pick, pick)].reshape(-1, 2) for v in panel.vectors])
    ok = np.all(np.isfinite(vec), axis=1)
    lengths = np.hypot(vec[ok, 0], vec[ok, 1])
    if lengths.size and np.max(lengths) > 0:
        extent = float(np.ptp(panel.xy[0].reshape(-1, 2), axis=0).max())
        reference = float(np.percentile(lengths, 95)) or float(np.max(lengths))
        # the 95th-percentile arrow spans 0.8 of the distance between arrows
        ax.quiver(xy[ok, 0], xy[ok, 1], vec[ok, 0], vec[ok, 1], angles="xy",
                  scale_units="xy", scale=reference / (0.8 * extent / k), width=0.007,
                  headwidth=3.5, color="k")
    ax.set_aspect("equal")
    ax.margins(0.04)
    ax.invert_xaxis()  # East to the left
    ax.set_xticks([])
    ax.set_yticks([])
    rms = panel.rms_mas
    label = f"rms {rms:.0f} mas" if rms >= 100 else f"rms {rms:.3g} mas"
    if panel.status != "success":
        label += f" ({panel.status})"
    ax.set_xlabel(label, fontsize=8, labelpad=2,
                  color="k" if panel.status == "success" else "C3")
    return mesh


def plot_residuals(records: Sequence[Mapping[str, Any]], outdir: Path, *, max_cases: int = 4,
                   dpi: float = 100.0) -> list[Path]:
    """``fig_residuals_<dataset>.png`` per dataset with a truth: rows variants, columns
    cases (at most ``max_cases``), the first seed; see the module docstring."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    written = []
    cmap = colormaps["YlOrRd"].with_extremes(bad="0.85")
    for dataset, panels in residual_panels(records, max_cases).items():
        variants = list(dict.fromkeys(v for v, _ in panels))
        cases = list(dict.fromkeys(c for _, c in panels))
        first = next(iter(panels.values()))
        n = first.xy[0].shape[0]
        fig = Figure(figsize=(max(4.6, 1.2 + _PANEL_INCHES * len(cases)),
                              0.9 + _PANEL_INCHES * len(variants)), layout="constrained")
        axes = fig.subplots(len(variants), len(cases), squeeze=False)
        good = [p.lengths for p in panels.values() if p.status == "success"]
        norm = _norm(np.concatenate(good or [p.lengths for p in panels.values()]))
        top = max(float(np.nanmax(p.lengths)) for p in panels.values())
        mesh = None
        for i, variant in enumerate(variants):
            for j, case in enumerate(cases):
                ax = axes[i, j]
                panel = panels.get((variant, case))
                if panel is None:
                    ax.set_axis_off()
                    continue
                mesh = _draw(ax, panel, norm, cmap) or mesh
                if i == 0:
                    ax.set_title(case if case != "-" else dataset, fontsize=9)
                if j == 0:
                    ax.set_ylabel(variant)
        if mesh is not None:
            from matplotlib.colors import LogNorm
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            bar = fig.colorbar(mesh, ax=axes, shrink=0.85, label="relative error [mas]",
                               extend="max" if top > norm.vmax else "neither")
            if isinstance(norm, LogNorm):
                bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                bar.ax.yaxis.set_minor_formatter(NullFormatter())
        seed = "" if first.seed is None else f", seed {first.seed}"
        fig.suptitle(f"{dataset}{seed}: relative error on each image's {n}x{n} pixel grid\n"
                     "colour: length; arrows: direction (per-panel scale)\n"
                     "North up, East left", fontsize=8)
        path = outdir / f"fig_residuals_{dataset}.png"
        fig.savefig(path, dpi=dpi)
        written.append(path)
    return written
