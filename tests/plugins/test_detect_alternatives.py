"""The ``iraf`` and ``segmentation`` detectors: same contract as ``daofind``."""

from __future__ import annotations

import numpy as np
import pytest
from detect_helpers import nearest, star_field
from pydantic import ValidationError

import aligncore
from aligncore import AlignImage, InputError
from aligncore_daofind import DaofindDetector, IrafDetector, SegmentationDetector

DETECTORS = [IrafDetector, SegmentationDetector]


def image_of(data, mask=None, **meta):
    return AlignImage.from_arrays(np.asarray(data), None, name="alt.fits", mask=mask, meta=meta)


@pytest.fixture(scope="module")
def field():
    return star_field(seed=21, n=25, flux_range=(5000.0, 40000.0))


def test_registered():
    assert aligncore.get_plugin("detector", "iraf") is IrafDetector
    assert aligncore.get_plugin("detector", "segmentation") is SegmentationDetector


@pytest.mark.parametrize("cls", DETECTORS)
def test_same_columns_and_stars(cls, field):
    cat = cls(brightest=None).detect(image_of(field.data))
    ref = DaofindDetector(brightest=None).detect(image_of(field.data))
    assert cat.colnames == ref.colnames
    assert cat.meta["plugin"] == cls.name
    idx, dist = nearest(field.x, field.y, cat["x"], cat["y"])
    assert len(cat) == len(field.x)
    assert np.unique(idx).size == len(field.x)
    assert np.sqrt(np.mean(dist**2)) < 0.1
    assert np.all(np.diff(cat["flux"]) <= 0)
    # the snr column has the same meaning as daofind's
    ref_idx, _ = nearest(field.x, field.y, ref["x"], ref["y"])
    order = np.argsort(idx)
    ref_order = np.argsort(ref_idx)
    np.testing.assert_allclose(
        np.asarray(cat["snr"])[order], np.asarray(ref["snr"])[ref_order], rtol=0.2
    )


@pytest.mark.parametrize("cls", DETECTORS)
def test_gauss_centroids(cls, field):
    cat = cls(brightest=None, centroid="gauss").detect(image_of(field.data))
    _, dist = nearest(field.x, field.y, cat["x"], cat["y"])
    assert np.sqrt(np.mean(dist**2)) < 0.02
    assert np.all(cat["x_err"] < 0.02)


@pytest.mark.parametrize("cls", DETECTORS)
def test_edge_cases(cls):
    blank = cls().detect(image_of(np.full((40, 40), 7.0)))
    assert len(blank) == 0 and blank.meta["warnings"]
    tiny = cls().detect(image_of(np.random.default_rng(0).normal(0, 1, (5, 5))))
    assert len(tiny) <= 1
    flagged = cls().detect(image_of(np.ones((20, 20)), np.ones((20, 20), dtype=np.uint8)))
    assert len(flagged) == 0
    with pytest.raises(InputError, match="no finite pixels"):
        cls().detect(image_of(np.full((20, 20), np.inf)))


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (IrafDetector, {"roundlo": 0.3}, r"roundlo \(0\.3\) must be <= roundhi \(0\.2\)"),
        (IrafDetector, {"centroid": "dao"}, r"Input should be 'native', 'win' or 'gauss'"),
        (SegmentationDetector, {"npixels": 0}, r"npixels\n  Input should be greater than"),
        (SegmentationDetector, {"contrast": 2}, r"contrast\n  Input should be less than"),
        (SegmentationDetector, {"sharplo": 0.1}, r"sharplo\n  Extra inputs are not permitted"),
    ],
)
def test_bad_parameters(cls, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        cls(**kwargs)


def test_defaults():
    p = IrafDetector().params
    assert (p.sharplo, p.sharphi, p.roundlo, p.roundhi, p.minsep_fwhm) == (0.5, 2.0, 0.0, 0.2, 2.5)
    s = SegmentationDetector().params
    assert (s.npixels, s.deblend, s.nlevels, s.contrast) == (10, True, 32, 0.001)
