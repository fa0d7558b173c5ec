"""Figures of a run (matplotlib, the ``plots`` extra): residuals and offset histograms.

``aligncore run --plots`` calls `write_plots`; `residual_sets` and `offset_histogram`
compute what the figures show without matplotlib (the HTML report draws the same
data as SVG, `aligncore.htmlreport`).
"""

from aligncore.plots.figures import ResidualSet, offset_histogram, residual_sets, write_plots

__all__ = ["ResidualSet", "offset_histogram", "residual_sets", "write_plots"]
