"""Comparison harness: several configs on the same data -> tables and figures.

``aligncore compare SPEC -o DIR`` runs every variant (a config plus overrides) on
every dataset (simulated scenes or image directories) and scores each run against
the truth; see `run_compare` and docs/compare.md.

Modules
-------
harness   `run_compare`, `CompareResult`: planning, running, writing the outputs
spec      the YAML spec: variants, datasets, sweeps (`load_spec`)
runner    one run of one variant on one scene, recorded as JSON
metrics   errors against the truth, agreement between variants
tables    result, summary and variant tables (markdown and ECSV)
maps      residual-map figures
html      the self-contained ``report.html`` of a comparison
"""

from aligncore.compare.harness import (
    CompareResult,
    CompareSpecError,
    Comparison,
    load_spec,
    markdown_table,
    residual_vectors,
    run_compare,
)

__all__ = [
    "CompareResult",
    "CompareSpecError",
    "Comparison",
    "load_spec",
    "markdown_table",
    "residual_vectors",
    "run_compare",
]
