"""The HTML report of a run (``report.html``): one self-contained page, SVG figures.

Presentation only: the run report itself (JSON, the text table) is `aligncore.report`;
`aligncore.outputs` imports this package only when it writes the page.

Modules
-------
page     `write_html_report`, `render_html_report`: summary, sky map, table, figures
figures  per-image residual and histogram figures (data from `aligncore.plots`)
distortion  the distortion section: correction field and residuals per detector
svg      small SVG drawing helpers (no matplotlib)
markup   HTML building blocks (escaping, sortable tables, pages), shared with
         the comparison report
"""

from aligncore.htmlreport.page import render_html_report, write_html_report

__all__ = ["render_html_report", "write_html_report"]
