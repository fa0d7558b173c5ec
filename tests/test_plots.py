"""Residual and offset-histogram figures (``aligncore run --plots``) and their numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import aligncore
from aligncore.cli import main
from aligncore.plots import offset_histogram, residual_sets, write_plots
from aligncore.plots.figures import _nominal_tp

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def aligned(small_scene):
    return aligncore.align(small_scene.images)


def test_offset_histogram_peaks_at_the_known_offset():
    rng = np.random.default_rng(3)
    image = rng.uniform(0.0, 60.0, (300, 2))
    offset = np.array([0.73, -0.41])
    ref = image + offset + rng.normal(0.0, 0.01, image.shape)
    hist, centers = offset_histogram(image, ref, searchrad=0.95, bin_size=0.1)
    assert hist.shape == (21, 21)  # R = ceil(9.5) = 10 bins each side of 0
    np.testing.assert_allclose(centers[[0, 10, 20]], [-1.0, 0.0, 1.0], atol=1e-12)
    iy, ix = np.unravel_index(np.argmax(hist), hist.shape)
    assert (centers[ix], centers[iy]) == pytest.approx((0.7, -0.4), abs=1e-9)
    assert hist[iy, ix] >= 290  # nearly every true pair in one bin
    assert hist.sum() < 2 * len(image)  # only pairs within the box are counted


def test_offset_histogram_empty_and_invalid():
    hist, centers = offset_histogram(np.zeros((0, 2)), np.ones((5, 2)), 1.0, 0.5)
    assert hist.sum() == 0 and hist.shape == (5, 5) and centers.size == 5
    with pytest.raises(ValueError, match="must be > 0"):
        offset_histogram(np.zeros((1, 2)), np.ones((1, 2)), 0.0, 0.1)


def test_residual_sets_measure_the_aligned_overlaps(aligned):
    sets = residual_sets(aligned)
    assert [s.name for s in sets] == [r.name for r in aligned.images]
    overlaps = aligned.meta["relative"]["overlaps"]
    for index, s in enumerate(sets):
        key = f"image:{index}"
        mine = [o for o in overlaps if key in (o["a"], o["b"])]
        n_expected = sum(o["n"] for o in mine)
        rms_expected = np.sqrt(sum(o["n"] * o["rms_mas"] ** 2 for o in mine) / n_expected)
        assert len(s.xy) == pytest.approx(n_expected, rel=0.1)
        assert 1000.0 * s.rms == pytest.approx(rms_expected, rel=0.15)
        assert 1000.0 * s.rms < 25.0  # a quarter of a pixel: aligned
        assert s.footprint.shape == (4, 2)
        assert set(s.partner.tolist()) == {j for j in range(len(sets)) if j != index}


def test_nominal_positions_without_inputs_invert_the_fit(aligned, small_scene):
    plane = aligned.tangent_plane
    for index, image in enumerate(aligned.images):
        with_inputs = _nominal_tp(index, image, plane, small_scene.images)
        from_fit = _nominal_tp(index, image, plane, None)
        np.testing.assert_allclose(from_fit, with_inputs, atol=2e-4)  # 0.2 mas


def test_histogram_peak_is_the_correction(aligned, small_scene):
    plane = aligned.tangent_plane
    others = [r for r in aligned.images if r.ok]
    image = next(r for r in aligned.images if r.status == aligncore.Status.SUCCESS)
    index = list(aligned.images).index(image)
    from aligncore.plots.figures import _tp

    reference = np.concatenate([_tp(r.wcs, r.catalog, plane) for r in others if r is not image])
    hist, centers = offset_histogram(_nominal_tp(index, image, plane, small_scene.images),
                                     reference, image.meta["match"]["searchrad"], 0.1)
    iy, ix = np.unravel_index(np.argmax(hist), hist.shape)
    offset = image.meta["offset_arcsec"]
    assert abs(centers[ix] - offset[0]) <= 0.1 and abs(centers[iy] - offset[1]) <= 0.1


def test_run_plots_writes_two_pngs_per_image(small_scene, tmp_path):
    out = tmp_path / "out"
    paths = small_scene.paths[:2]
    code = main(["run", DEFAULT, *map(str, paths), "-o", str(out), "--plots", "-q"])
    assert code == 0
    assert len(list(out.glob("*.png"))) == 4
    for path in paths:
        for suffix in ("_residuals.png", "_hist2d.png"):
            figure = out / f"{path.stem}{suffix}"
            assert figure.read_bytes()[:8] == PNG_MAGIC
            assert figure.stat().st_size > 20_000  # a drawn figure, not an empty canvas


def test_without_matplotlib_run_warns_and_writes_the_rest(small_scene, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'aligncore\[plots\]'"):
        write_plots(aligncore.AlignResult(images=()), tmp_path)
    out = tmp_path / "out"
    code = main(["run", DEFAULT, *map(str, small_scene.paths), "-o", str(out), "--plots", "-q"])
    assert code == 0
    assert "no plots written" in capsys.readouterr().err
    assert (out / small_scene.paths[0].name).is_file()
    assert not list(out.glob("*.png"))


def test_figure_titles_use_the_table_names_for_counts_and_rms():
    from aligncore.plots.figures import _status_line

    fit = aligncore.FitResult(matrix=np.eye(2), shift=np.zeros(2),
                              fitmask=np.array([True] * 7 + [False] * 2), rmse=0.01234)
    image = aligncore.ImageResult(name="a.fits", status=aligncore.Status.SUCCESS, fit=fit,
                                  n_matched=9)
    assert _status_line(image) == "a.fits: SUCCESS, 9 matched, 7 used, fit rms 12.34 mas"
    failed = aligncore.ImageResult(name="b.fits", status=aligncore.Status.FAILED,
                                   reason="only 3 matched sources (minobj=5)", n_matched=3)
    assert _status_line(failed) == ("b.fits: FAILED, 3 matched\n"
                                    "only 3 matched sources (minobj=5)")
