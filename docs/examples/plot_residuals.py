"""
Residuals after alignment
=========================

Three simulated 512x512 images with 0.1-3" pointing errors are aligned with
the default config. The figure is the one ``aligncore run --plots`` writes
for the second image: its matched sources in the shared tangent plane with
their residual to the same star in the other images, magnified (left), and
the residuals themselves in mas with their RMS circle (right).
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import aligncore
from aligncore.plots import write_plots
from aligncore.report import format_table

scene = aligncore.simulate("dither", n_images=3, seed=5, shape=(512, 512), n_stars=120)
result = aligncore.align(scene.images)
before = scene.errors([image.wcs for image in scene.images])["rms_mas"]
after = scene.errors(result)["rms_mas"]
errors = [{"before_mas": b, "after_mas": a} for b, a in zip(before, after, strict=True)]
print(format_table(result, errors))

# %%
# The residual figure of the second image.
outdir = Path(tempfile.mkdtemp())
paths = write_plots(result, outdir, images=scene.images)
residuals = next(p for p in paths if p.name.endswith("_residuals.png") and "001" in p.name)
fig, ax = plt.subplots(figsize=(11, 5.2))
ax.imshow(plt.imread(residuals))
ax.set_axis_off()
fig.tight_layout()
