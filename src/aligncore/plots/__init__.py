"""Figures of a run (matplotlib, the ``plots`` extra): residuals, offset histograms and
the distortion refinement per detector (`aligncore.plots.distortion`).

``aligncore run --plots`` calls `write_plots`; `residual_sets` and `offset_histogram`
compute what the figures show without matplotlib (the HTML report draws the same
data as SVG, `aligncore.htmlreport`).
"""

from aligncore.plots.distortion import write_distortion_plots
from aligncore.plots.figures import ResidualSet, offset_histogram, residual_sets, write_plots

__all__ = ["ResidualSet", "offset_histogram", "residual_sets", "write_distortion_plots",
           "write_plots"]
