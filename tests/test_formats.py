"""Image formats are plugins: the registry orders them, open_image asks them, and a local
plugin file can add a mission format that ``aligncore run`` reads and writes."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest

import aligncore
from aligncore.cli import main
from aligncore.errors import InputError
from aligncore.formats import format_of, open_image
from aligncore.registry import DuplicatePluginError, PluginError, build_registry

TOY_PLUGIN = '''
"""A toy mission format: a FITS file named *.toy; outputs are JSON records."""
import json
from functools import partial
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

import aligncore
from aligncore.formats import atomic_path, checked_pixels


def _pixels(path):
    with fits.open(path) as hdul:
        data = np.asarray(hdul["SCI"].data, dtype=float)
    return checked_pixels(Path(path), data, None)


class ToyFormat(aligncore.ImageFormat):
    name = "toy"

    @classmethod
    def identify(cls, path):
        return Path(path).suffix == ".toy"

    def open(self, path, *, group_id=None):
        with fits.open(path) as hdul:
            header = hdul["SCI"].header
            shape = (header["NAXIS2"], header["NAXIS1"])
            wcs = WCS(header)
        return aligncore.AlignImage(name=Path(path).name, wcs=wcs, shape=shape,
                                    path=Path(path), group_id=group_id,
                                    loader=partial(_pixels, path), meta={"format": "toy"})

    def write(self, image, result, target, *, wcsname, version):
        record = {"status": result.status.value, "wcsname": wcsname,
                  "crval": list(result.wcs.wcs.crval) if result.ok else None}
        with atomic_path(target) as tmp:
            tmp.write_text(json.dumps(record))
        return target

    def output_name(self, path):
        return Path(path).stem + "_aligned.toy"


@aligncore.hookimpl
def aligncore_add_formats():
    return [ToyFormat]
'''


def test_default_formats_in_order() -> None:
    registry = build_registry()
    assert list(registry.formats)[:4] == ["roman", "asdf", "jwst", "fits"][: len(registry.formats)]
    assert list(registry.formats)[-1] == "fits"  # the fallback is asked last
    assert registry.formats["fits"].distribution == "aligncore"


def test_no_format_claims_a_path(tmp_path: Path) -> None:
    registry = build_registry(autoload=False)
    with pytest.raises(InputError, match=r"a\.fits: no image format claims this file; "
                                         r"installed formats: none"):
        open_image(tmp_path / "a.fits", registry=registry)


def test_a_registered_format_must_be_an_image_format() -> None:
    class NotAFormat:
        name = "nope"

    class Plugin:
        @aligncore.hookimpl
        def aligncore_add_formats(self) -> list[type]:
            return [NotAFormat]

    with pytest.raises(PluginError, match=r"expected a subclass of aligncore\.ImageFormat"):
        build_registry(plugins=[Plugin()], autoload=False)


def test_a_format_name_registered_twice_is_an_error() -> None:
    class Fits(aligncore.ImageFormat):
        name: ClassVar[str] = "fits"

        @classmethod
        def identify(cls, path: Path) -> bool:
            return False

        def open(self, path, *, group_id=None):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def write(self, image, result, target, *, wcsname, version):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    class Plugin:
        @aligncore.hookimpl
        def aligncore_add_formats(self) -> list[type]:
            return [Fits]

    with pytest.raises(DuplicatePluginError, match="format name 'fits' is registered twice"):
        build_registry(plugins=[Plugin()])


def test_a_local_plugin_adds_a_mission_format(small_scene, tmp_path: Path, capsys) -> None:
    scene = small_scene
    toys = []
    for path in scene.paths[:2]:
        toy = tmp_path / (Path(path).stem + ".toy")
        shutil.copy(path, toy)
        toys.append(toy)
    (tmp_path / "myformat.py").write_text(textwrap.dedent(TOY_PLUGIN))
    config = tmp_path / "run.yaml"
    defaults = (Path(__file__).resolve().parents[1] / "configs" / "default.yaml").read_text()
    config.write_text(defaults + "\nplugins: [myformat.py]\n")
    registry = build_registry([tmp_path / "myformat.py"])
    assert type(format_of(toys[0], registry)).__name__ == "ToyFormat"
    assert open_image(toys[0], registry=registry).meta["format"] == "toy"
    assert type(format_of(scene.paths[0], registry)).__name__ == "FitsFormat"

    out = tmp_path / "aligned"
    code = main(["run", str(config), *map(str, toys), "--output", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    for toy in toys:
        record = json.loads((out / f"{toy.stem}_aligned.toy").read_text())
        assert record["status"] in ("SUCCESS", "REFERENCE")
        assert record["wcsname"]


def test_plugins_command_lists_the_formats(capsys) -> None:
    assert main(["plugins"]) == 0
    lines = [line.split()[:2] for line in capsys.readouterr().out.splitlines()]
    assert [name for kind, name in lines if kind == "format"] == ["roman", "asdf", "jwst", "fits"]
