"""The simulator: seeded scenes of overlapping images with ground truth.

`simulate` makes a `Scene` (images in memory or written as FITS/ASDF files, the true
and nominal WCS of each, the star and reference catalogs); `Scene.errors` scores any
WCS solution against the truth. Used by the tests, ``aligncore demo``, ``aligncore
simulate`` and the comparison harness (`aligncore.compare`); the core never imports it.

Modules
-------
scene       `simulate` and `Scene`: parameters, planning, assembling a scene
sky         layouts, FITS WCS headers, pointing errors, star catalogs (no pixels)
gwcs_model  JWST-style GWCS exposures described by JSON-ready specs
render      pixel-integrated PSFs, detector effects and noise
files       a scene's files: images, ``truth.json``, catalogs; reading them back
truth       accuracy of WCS solutions against the truth
"""

from aligncore.sim.scene import SCENARIOS, WCS_KINDS, Scene, check_parameters, simulate

__all__ = ["SCENARIOS", "WCS_KINDS", "Scene", "check_parameters", "simulate"]
