"""
The offset histogram the matcher searched
=========================================

The ``hist2d`` matcher bins the offsets ``reference - image`` of every source
pair within its search radius; the correction is the peak. This is the
figure ``aligncore run --plots`` writes for one image of a simulated
three-image scene: the whole search box (left) and a zoom on the peak with
the matcher's offset (right).
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import aligncore
from aligncore.plots import write_plots

scene = aligncore.simulate("dither", n_images=3, seed=7, shape=(512, 512), n_stars=120)
result = aligncore.align(scene.images)
image = result[1]
print(f"{image.name}: {image.status}, offset {image.meta.get('offset_arcsec')} arcsec")

paths = write_plots(result, Path(tempfile.mkdtemp()), images=scene.images)
histogram = next(p for p in paths if p.name.endswith("_hist2d.png") and "001" in p.name)
fig, ax = plt.subplots(figsize=(10, 5))
ax.imshow(plt.imread(histogram))
ax.set_axis_off()
fig.tight_layout()
