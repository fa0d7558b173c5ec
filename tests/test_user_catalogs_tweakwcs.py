"""User catalogs in tweakwcs' and jwst's forms: a per-source ``weight`` column and JWST source
catalogs with only a ``sky_centroid`` column (issue 16, item 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable

import aligncore
from aligncore.config import load_config
from aligncore.errors import InputError
from aligncore.formats.catalog_files import read_catalog
from aligncore.tangent import pixel_to_world


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return aligncore.simulate("dither", n_images=3, seed=8,
                              outdir=tmp_path_factory.mktemp("scene"))


def _noisy_truth(scene, index: int, seed: int) -> QTable:
    truth = scene.true_sources(index)
    rng = np.random.default_rng(seed)
    x = np.asarray(truth["x"], float) + rng.normal(0.0, 0.02, len(truth))
    y = np.asarray(truth["y"], float) + rng.normal(0.0, 0.02, len(truth))
    return QTable({"x": x, "y": y, "flux": np.asarray(truth["flux"], float)})


def _config(tmp_path: Path, scene, files: list[Path]) -> Path:
    lines = ["detector:", "  catalogs:"]
    lines += [f"    {name}: {path}" for name, path in zip(scene.names, files, strict=True)]
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jwst_sky_centroid_catalogs_align(scene, tmp_path):
    files = []
    for index, image in enumerate(scene.images):
        table = _noisy_truth(scene, index, index)
        ra, dec = pixel_to_world(image.wcs, table["x"], table["y"])  # the nominal WCS
        sky_only = QTable({"label": np.arange(1, len(table) + 1),
                           "sky_centroid": SkyCoord(ra * u.deg, dec * u.deg)})
        path = tmp_path / f"img{index}_cat.ecsv"
        sky_only.write(path)
        files.append(path)
    read = read_catalog(files[0], wcs=scene.images[0].wcs)
    np.testing.assert_allclose(read["x"], _noisy_truth(scene, 0, 0)["x"], atol=1e-6)
    with pytest.raises(InputError, match="has sky positions \\(sky_centroid\\) but no pixel "
                                         "columns, and no image WCS was given"):
        read_catalog(files[0])
    result = aligncore.align(scene.paths, load_config(_config(tmp_path, scene, files)))
    assert result.ok
    assert max(scene.errors(result)["rms_pix"]) < 0.05


def test_weight_column_sets_errors_and_zero_weight_rows_are_left_out(scene, tmp_path):
    """As tweakwcs' ``test_iter_linear_fit_clip_style``: rows of weight 0 carry wild
    positions and must not take part."""
    files = []
    for index in range(len(scene.images)):
        table = _noisy_truth(scene, index, 10 + index)
        rng = np.random.default_rng(20 + index)
        weight = rng.uniform(1.0, 4.0, len(table))  # sigma 0.5 .. 1 px
        bad = rng.choice(len(table), len(table) // 5, replace=False)
        weight[bad] = 0.0
        table["x"][bad] += rng.uniform(50.0, 100.0, len(bad))
        table["weight"] = weight
        path = tmp_path / f"w{index}.ecsv"
        table.write(path)
        files.append(path)
    read = read_catalog(files[0])
    weight = np.asarray(QTable.read(files[0])["weight"])
    assert len(read) == np.count_nonzero(weight > 0)
    assert read.meta["dropped_rows"] == np.count_nonzero(weight == 0)
    np.testing.assert_allclose(read["x_err"], 1.0 / np.sqrt(weight[weight > 0]), rtol=1e-12)
    result = aligncore.align(scene.paths, load_config(_config(tmp_path, scene, files)))
    assert result.ok
    assert max(scene.errors(result)["rms_pix"]) < 0.05


def test_negative_weights_are_refused(tmp_path):
    path = tmp_path / "neg.ecsv"
    QTable({"x": [1.0, 2.0], "y": [3.0, 4.0], "weight": [1.0, -1.0]}).write(path)
    with pytest.raises(InputError, match=r"neg.ecsv: column 'weight' must be finite and >= 0 "
                                         r"\(1 rows are not\)"):
        read_catalog(path)
