"""
The HTML report's sky map
=========================

``report.html`` (see :doc:`/report`) opens with a map of every image's
footprint at its corrected WCS, coloured by status, the reference image
marked with a star. Here three simulated images align and a fourth, blank
exposure (noise only, no stars) fails and is drawn in red on top.
"""

import numpy as np

import aligncore
from aligncore.htmlreport.page import sky_map

scene = aligncore.simulate("dither", n_images=3, seed=5, shape=(512, 512), n_stars=120)
rng = np.random.default_rng(0)
blank = aligncore.AlignImage.from_arrays(rng.normal(100.0, 5.0, (512, 512)),
                                         scene.images[0].wcs, name="blank.fits")
result = aligncore.align([*scene.images, blank])
for image in result:
    print(f"{image.name:12s} {image.status.value:9s} {image.reason}")


class SVG:
    """Shows an SVG string in the gallery page (and in Jupyter)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_html_(self) -> str:
        return self.text


SVG(sky_map(result, [*scene.images, blank]))
