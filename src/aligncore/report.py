"""Run reports: the JSON record of a run and the human-readable table."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Mapping, Sequence
from typing import Any

from aligncore.config import Config
from aligncore.registry import Registry
from aligncore.types import AlignResult

__all__ = ["format_table", "ladder_summary", "run_report", "versions"]

_PACKAGES = ("aligncore", "numpy", "scipy", "astropy", "photutils", "gwcs", "pluggy", "pydantic")


def versions(registry: Registry | None = None) -> dict[str, str]:
    """Versions of Python, the key packages and the installed plugin distributions."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    if registry is not None:
        for info in registry.plugins():
            found.setdefault(f"plugin:{info.distribution}", info.version)
    return found


def run_report(result: AlignResult, config: Config, registry: Registry | None = None,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-ready run report: config, versions, per-image results and timings (and,
    after a distortion refinement, its entries per detector under ``distortion``)."""
    report = {
        "aligncore_report": 1,
        "config": config.model_dump(mode="json"),
        "config_file": config.source,
        "versions": versions(registry),
        **result.summary(),
    }
    if "distortion" in report["meta"]:
        report["distortion"] = report["meta"].pop("distortion")
    if extra:
        report.update(extra)
    return report


def ladder_summary(meta: Mapping[str, Any]) -> str:
    """The retry ladder of one image (``meta["attempts"]``) in a few characters:
    each rung tried, ``+`` for the accepted fit, ``-`` otherwise (``""`` if none)."""
    return ", ".join(f"{a.get('rung', '?')}{'+' if a.get('outcome') == 'accepted' else '-'}"
                     for a in meta.get("attempts", ()))


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    return format(value, spec)


def format_table(result: AlignResult, errors: Sequence[Mapping[str, float]] | None = None,
                 *, notes: bool = True) -> str:
    """A fixed-width per-image table: status, matches, shift, rotation (and truth errors).

    ``pairs`` is the number of source pairs the matcher found (FITS
    ``ALNNMAT``, report ``n_matched``; with the global solver a star seen in
    three other images makes three pairs, so pairs may exceed sources),
    ``kept`` the pairs the fit kept after clipping (``ALNNUSE``,
    ``fit.n_used``), ``rms`` the fit's RMS residual over the kept pairs
    (``ALNRMSE``, ``fit.rmse``).

    Parameters
    ----------
    result : AlignResult
    errors : sequence of mapping, optional
        Per image ``{"before_mas": ..., "after_mas": ...}`` (e.g. from a simulated truth).
    notes : bool
        Add one line per image with a reason, and why the absolute alignment
        was not applied (off when these are printed elsewhere, e.g. on stderr).
    """
    header = ["image", "status", "sources", "pairs", "kept", "dx[\"]", "dy[\"]", "rot[deg]",
              "rms[mas]"]
    if errors is not None:
        header += ["err before[mas]", "err after[mas]"]
    rows = []
    for index, image in enumerate(result.images):
        fit = image.fit
        row = [
            image.name,
            image.status.value,
            str(image.n_sources),
            str(image.n_matched),
            str(fit.n_used) if fit else "-",
            _fmt(float(fit.shift[0]) if fit else None, ".4f"),
            _fmt(float(fit.shift[1]) if fit else None, ".4f"),
            _fmt(fit.rotation if fit else None, ".5f"),
            _fmt(fit.rmse * 1000.0 if fit else None, ".2f"),
        ]
        if errors is not None:
            row += [_fmt(errors[index].get("before_mas"), ".2f"),
                    _fmt(errors[index].get("after_mas"), ".2f")]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if not notes:
        return "\n".join(lines)
    for image in result.images:
        if image.reason:
            lines.append(f"{image.name}: {image.status.value}: {image.reason}")
        elif len(image.meta.get("attempts", ())) > 1:
            lines.append(f"{image.name}: aligned on a retry: {ladder_summary(image.meta)}")
    absolute = result.meta.get("absolute", {})
    if absolute.get("enabled") and result.absolute is None:
        lines.append(f"absolute alignment not applied: {absolute.get('reason')}")
    return "\n".join(lines)
