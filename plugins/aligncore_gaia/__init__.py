"""aligncore's Gaia reference catalogs (work in progress)."""

import aligncore

__version__ = aligncore.__version__
