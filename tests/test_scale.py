"""Scale (issue 9), test-sized: a 32-image mosaic on Dask, bounded memory, local matching.

The full-size runs (16 to 1024 images, timings, memory) are in
``benchmarks/bench_scale.py``; docs/scaling.md has the numbers.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field

import numpy as np
import pytest
from astropy.table import QTable

import aligncore
from aligncore import COL_FLUX, COL_TP_X, COL_TP_Y, META_PIXEL_SCALE, Status
from aligncore.config import load_config
from aligncore.relative import RelativeSettings, _Reference, search_margin

# Mosaic overlaps are 10 % strips holding ~15 common sources: minobj 10; rscale's extra
# scale freedom is poorly constrained by such strips (see docs/scaling.md).
MOSAIC_SETS = ["align.minobj=10", "fitter.params.fitgeometry=rshift"]
SHAPE = (384, 384)


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """32 images of 384^2 in a 6-wide grid with 10 % overlaps, ~300 stars each."""
    return aligncore.simulate("mosaic", n_images=32, seed=1, shape=SHAPE, n_stars=300,
                              outdir=tmp_path_factory.mktemp("mosaic32"))


@pytest.fixture(scope="module")
def serial(mosaic):
    """The serial run, recording how many reference sources each hist2d match was given."""
    seen: list[int] = []
    matcher = aligncore.get_plugin("matcher", "hist2d")
    original = matcher.match

    def recording(self, image_cat, ref_cat):
        seen.append(len(ref_cat))
        return original(self, image_cat, ref_cat)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matcher, "match", recording)
        result = aligncore.align(mosaic.paths, load_config(None, MOSAIC_SETS))
    return result, seen


def _fits(result):
    return [(r.name, r.status.value, None if r.fit is None else r.fit.matrix.tolist(),
             None if r.fit is None else r.fit.shift.tolist(), r.n_matched) for r in result]


@dataclass(frozen=True)
class _PixelsOnWorkersOnly:
    """A pixel loader that refuses to run in the process that created it."""

    loader: object
    main_pid: int = field(default_factory=os.getpid)

    def __call__(self):
        if os.getpid() == self.main_pid:
            raise AssertionError("the main process read pixels")
        return self.loader()


def test_the_serial_run_aligns_the_whole_mosaic(mosaic, serial):
    result, _ = serial
    assert [r.status for r in result].count(Status.FAILED) == 0
    assert max(mosaic.errors(result)["rms_pix"]) < 0.15


def test_dask_gives_the_serial_result_and_reads_pixels_only_on_workers(mosaic, serial):
    pytest.importorskip("dask.distributed")
    images = [aligncore.open_image(path) for path in mosaic.paths]
    for image in images:
        image.loader = _PixelsOnWorkersOnly(image.loader)
    config = load_config(None, [*MOSAIC_SETS, "execution.executor=dask", "execution.workers=2"])
    distributed = aligncore.align(images, config)
    assert _fits(distributed) == _fits(serial[0])
    assert all(r.ok for r in distributed)


def test_results_hold_catalogs_and_wcs_not_pixels(serial):
    result, _ = serial
    pixel_bytes = SHAPE[0] * SHAPE[1] * 4
    for image in result:
        assert len(pickle.dumps(image)) < pixel_bytes / 4
        assert len(image.catalog) == image.n_sources > 100


def test_each_match_sees_only_the_reference_near_its_image(serial):
    result, seen = serial
    total = sum(r.n_sources for r in result)
    # the whole expanded reference ends up with most of the ~4500 sources; a match is
    # shown the blocks within search_margin (32") of its 38" image: at most ~30 % of them
    assert len(seen) >= 31
    assert max(seen) < 0.35 * total
    # every image's first match sees its whole neighbourhood (a retry's single reference,
    # one neighbour's sources, is smaller)
    assert len([n for n in seen if n > 50]) >= 31


def _catalog(xy, flux, pixel_scale=0.1):
    table = QTable({COL_TP_X: xy[:, 0], COL_TP_Y: xy[:, 1], COL_FLUX: flux})
    table.meta[META_PIXEL_SCALE] = pixel_scale
    return table


def _settings(*overrides: str) -> RelativeSettings:
    return RelativeSettings.from_section(load_config(None, list(overrides)).align)


def test_a_cropped_reference_gives_the_same_match():
    rng = np.random.default_rng(3)
    ref_xy = rng.uniform(-300.0, 300.0, size=(30000, 2))
    flux = rng.uniform(1.0, 100.0, size=30000)
    footprint = np.array([[0.0, 0.0], [40.0, 0.0], [40.0, 40.0], [0.0, 40.0]])
    inside = np.flatnonzero(np.all((ref_xy > 0.5) & (ref_xy < 39.5), axis=1))
    image = _catalog(ref_xy[inside] - [0.7, -0.4] + rng.normal(0, 0.01, (inside.size, 2)),
                     flux[inside])
    full = _catalog(ref_xy, flux)
    matcher = aligncore.get_plugin("matcher", "hist2d")(searchrad=1.5, tolerance=0.3,
                                                        separation=0.6)
    margin = search_margin(_settings(), matcher, footprint)
    assert margin == pytest.approx(2 * (1.5 * 1.5 + 1.0) + 0.9)
    cropped = _Reference(full).near(footprint, margin)
    assert 0 < len(cropped) < len(full) / 20
    a, b = matcher.match(image, full), matcher.match(image, cropped)
    assert a.n_matched == b.n_matched > 0.9 * inside.size
    np.testing.assert_array_equal(a.image_idx, b.image_idx)
    np.testing.assert_array_equal(np.asarray(full[COL_TP_X])[a.ref_idx],
                                  np.asarray(cropped[COL_TP_X])[b.ref_idx])
    assert a.offset == pytest.approx(b.offset, abs=1e-12)  # same pairs, summed in another order


def test_search_margin_follows_the_matcher_reach():
    square = np.array([[0.0, 0.0], [50.0, 0.0], [50.0, 30.0], [0.0, 30.0]])
    config = _settings()
    hist2d = aligncore.get_plugin("matcher", "hist2d")
    # searchrad auto up to max_searchrad 10": max_correction 1.5 x 10 + 1 = 16", doubled
    assert search_margin(config, hist2d(searchrad="auto", tolerance="auto",
                                        separation="auto"), square) == pytest.approx(32.0)
    # tweakreg's seed values: 2 x (1.5 x 1 + 1) + tolerance 1 + separation 0.5
    assert search_margin(config, hist2d(searchrad=1.0, tolerance=1.0, separation=0.5),
                         square) == pytest.approx(6.5)
    # no search radius and max_correction auto: one footprint size around the footprint
    triangles = aligncore.get_plugin("matcher", "triangles")()
    assert search_margin(config, triangles, square) == pytest.approx(50.0)
    bounded = _settings("align.max_correction=4")
    assert search_margin(bounded, triangles, square) == pytest.approx(8.0)
