"""Sphinx configuration: the Markdown pages through MyST, the API from the docstrings
(numpydoc) and a gallery whose figures are made at build time by running the
simulator and aligncore (sphinx-gallery), so they never drift from the code.

Build offline with ``sphinx-build -W --keep-going -b html docs docs/_build/html``
(``.ci/docs`` does it in a fresh virtual environment).
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

os.environ.setdefault("MPLBACKEND", "Agg")

project = "aligncore"
author = "aligncore developers"
copyright = "aligncore developers"
try:
    release = version("aligncore")
except PackageNotFoundError:  # building from a source tree that is not installed
    release = "unknown"
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
suppress_warnings = ["myst.header"]  # generated references number their headings freely

# --- MyST: the existing Markdown pages, unchanged ----------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# --- API reference ------------------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_typehints = "none"  # the numpydoc sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- gallery: run at build time -------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "capture_repr": ("_repr_html_",),
    "abort_on_example_error": True,
    "show_memory": False,
    "plot_gallery": "True",
}

# --- HTML -----------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"aligncore {release}"
html_static_path: list[str] = []
