"""Detection on executors (processes, Dask), user catalogs, --resume, fault tolerance."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.table import QTable

import aligncore
from aligncore import Status
from aligncore.cli import main
from aligncore.config import load_config


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """A 4x4 mosaic of 384^2 images with ~150 stars each and 25% overlaps."""
    return aligncore.simulate("dither", n_images=16, seed=31, shape=(384, 384), n_stars=150,
                              outdir=tmp_path_factory.mktemp("tiles"))


def _fits(result):
    return [(r.name, r.status.value, None if r.fit is None else r.fit.matrix.tolist(),
             None if r.fit is None else r.fit.shift.tolist()) for r in result]


def test_processes_give_the_serial_result(tiles):
    serial = aligncore.align(tiles.paths)
    pooled = aligncore.align(tiles.paths, load_config(
        None, ["execution.executor=processes", "execution.workers=2"]))
    assert _fits(pooled) == _fits(serial)
    assert serial.ok


def test_dask_local_cluster_gives_the_serial_result(tiles):
    pytest.importorskip("dask.distributed")
    serial = aligncore.align(tiles.paths)
    distributed = aligncore.align(tiles.paths, load_config(
        None, ["execution.executor=dask", "execution.workers=2"]))
    assert _fits(distributed) == _fits(serial)


KILLER = '''
import os
import aligncore
from aligncore_daofind import DaofindDetector


class KillerDetector(DaofindDetector):
    """daofind, except that it kills its worker on one image."""

    name = "killer"

    def detect(self, image):
        if image.name == "img_005.fits":
            os._exit(1)
        return super().detect(image)


@aligncore.hookimpl
def aligncore_add_detectors():
    return [KillerDetector]
'''


def test_a_dead_dask_worker_fails_only_its_image(tiles, tmp_path):
    pytest.importorskip("dask.distributed")
    (tmp_path / "killer.py").write_text(KILLER)
    config = load_config(None, [f"plugins=['{tmp_path / 'killer.py'}']", "detector.plugin=killer",
                                "execution.executor=dask", "execution.workers=2"])
    # dask retries the tasks of a dead worker elsewhere (allowed-failures, default 3);
    # the killer kills every worker it lands on until dask gives up on that one task
    result = aligncore.align(tiles.paths, config)
    failed = [r.name for r in result if r.status == Status.FAILED]
    reasons = {name: result[name].reason for name in failed}
    assert "img_005.fits" in failed, reasons
    # the killer takes down up to 4 workers (dask retries a lost task 3 times); another image
    # fails only if it was running on those same workers each time
    assert len(failed) <= 3, reasons
    for name in failed:
        assert "detection failed on a worker" in result[name].reason, reasons
    serial = aligncore.align(tiles.paths)
    errors = tiles.errors([r.wcs if r.ok else serial[r.name].wcs for r in result])
    ok = [i for i, r in enumerate(result) if r.ok]
    assert len(ok) >= 13 and max(errors["rms_pix"][ok]) < 0.1


def test_a_dead_process_worker_fails_only_its_image(tiles, tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    config = load_config(None, [f"plugins=['{tmp_path / 'killer.py'}']", "detector.plugin=killer",
                                "execution.executor=processes", "execution.workers=2"])
    result = aligncore.align(tiles.paths, config)
    # the pool is restarted; the tasks it held run again one at a time, which singles
    # out the image that kills its worker
    failed = [r.name for r in result if r.status == Status.FAILED]
    assert failed == ["img_005.fits"], {name: result[name].reason for name in failed}
    assert "worker process died" in result["img_005.fits"].reason
    serial = aligncore.align(tiles.paths)
    errors = tiles.errors([r.wcs if r.ok else serial[r.name].wcs for r in result])
    ok = [i for i, r in enumerate(result) if r.ok]
    assert len(ok) == 15 and max(errors["rms_pix"][ok]) < 0.1


def test_on_error_skip_marks_an_unreadable_image_failed(tiles, tmp_path):
    paths = [tmp_path / p.name for p in tiles.paths[:4]]
    for src, dst in zip(tiles.paths, paths, strict=False):
        shutil.copy(src, dst)
    from astropy.io import fits

    with fits.open(paths[2], mode="update") as hdul:
        hdul["SCI"].data[:] = np.nan
    with pytest.raises(aligncore.InputError, match=r"img_002\.fits: the science array"):
        aligncore.align(paths)
    result = aligncore.align(paths, load_config(None, ["execution.on_error=skip"]))
    assert result["img_002.fits"].status == Status.FAILED
    assert "no finite pixel" in result["img_002.fits"].reason
    assert sum(r.ok for r in result) == 3


def test_user_catalogs_skip_detection(small_scene, tmp_path):
    paths = [tmp_path / p.name for p in small_scene.paths]
    for index, (src, dst) in enumerate(zip(small_scene.paths, paths, strict=True)):
        shutil.copy(src, dst)
        stars = small_scene.true_sources(index)
        stars = stars[stars["snr"] > 20]
        QTable({"xcentroid": stars["x"], "ycentroid": stars["y"],
                "flux": stars["flux"]}).write(dst.with_name(dst.stem + "_cat.ecsv"))
    config = load_config(None, ["detector.use_custom_catalogs=true"])
    result = aligncore.align(paths, config)
    assert result.ok
    for index, image in enumerate(result):
        assert image.catalog.meta["source_file"].endswith("_cat.ecsv")
        assert len(image.catalog) == int(np.sum(small_scene.true_sources(index)["snr"] > 20))
    # true positions: the alignment is essentially exact
    assert max(small_scene.errors(result)["rms_mas"]) < 0.5


def test_resume_reuses_saved_catalogs(tiles, tmp_path, capsys):
    out = tmp_path / "out"
    paths = [str(p) for p in tiles.paths[:3]]
    assert main(["run", "--resume", "-o", str(out), "-q", _default(), *paths]) == 0
    saved = out / "img_000_cat.ecsv"
    assert saved.exists()
    assert main(["run", "--resume", "-o", str(out), "-q", _default(), *paths]) == 0
    import json

    report = json.loads((out / "report.json").read_text())
    assert report["images"][0]["timings"]["detect"] == 0.0
    assert report["images"][1]["timings"]["detect"] == 0.0


CRASHER = '''
import aligncore
from aligncore_daofind import DaofindDetector


class CrashingDetector(DaofindDetector):
    """daofind, except that it stops the run with an unexpected error on one image."""

    name = "crasher"

    def detect(self, image):
        if image.name == "img_002.fits":
            raise RuntimeError("simulated crash")
        return super().detect(image)


@aligncore.hookimpl
def aligncore_add_detectors():
    return [CrashingDetector]
'''


def test_resume_after_a_crash_keeps_the_catalogs_detected_before_it(tiles, tmp_path):
    out = tmp_path / "out"
    paths = [str(p) for p in tiles.paths[:4]]
    (tmp_path / "crasher.py").write_text(CRASHER)
    crash = ["--set", f"plugins=['{tmp_path / 'crasher.py'}']", "--set", "detector.plugin=crasher"]
    # the crash fails that image only; the others are detected and their catalogs saved
    assert main(["run", "--resume", "-o", str(out), "-q", *crash, _default(), *paths]) == 1
    # saved as they were detected, not at the end of the run
    assert (out / "img_000_cat.ecsv").exists() and (out / "img_001_cat.ecsv").exists()
    assert not (out / "img_002_cat.ecsv").exists()
    saved = QTable.read(out / "img_000_cat.ecsv")
    assert main(["run", "--resume", "-o", str(out), "-q", _default(), *paths]) == 0
    import json

    report = json.loads((out / "report.json").read_text())
    detect = {image["name"]: image["timings"]["detect"] for image in report["images"]}
    assert detect["img_000.fits"] == detect["img_001.fits"] == 0.0
    assert detect["img_002.fits"] > 0.0
    assert all(image["status"] in ("SUCCESS", "REFERENCE") for image in report["images"])
    reused = QTable.read(out / "img_000_cat.ecsv")
    assert len(reused) == len(saved)
    assert np.array_equal(np.asarray(reused["x"]), np.asarray(saved["x"]))


def _default() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
