"""The plugin registry: entry points, local files, duplicates, broken and misspelled plugins."""

from __future__ import annotations

import importlib.metadata
import textwrap
import types
import warnings

import numpy as np
import pytest
from astropy.table import QTable

import aligncore
from aligncore import registry as registry_module

NEAREST_MATCHER = '''
"""A third-party matcher in 25 lines: nearest neighbour within a radius."""
import numpy as np
from pydantic import Field
from scipy.spatial import cKDTree

import aligncore


class NearestMatcher(aligncore.Matcher):
    """Match each image source to its nearest reference source."""

    name = "nearest"

    class Params(aligncore.Params):
        radius: float = Field(0.5, gt=0, description="arcsec")

    def match(self, image_cat, ref_cat):
        img = np.column_stack([image_cat[aligncore.COL_TP_X], image_cat[aligncore.COL_TP_Y]])
        ref = np.column_stack([ref_cat[aligncore.COL_TP_X], ref_cat[aligncore.COL_TP_Y]])
        dist, idx = cKDTree(ref).query(img, distance_upper_bound=self.params.radius)
        keep = np.isfinite(dist)
        first = {}
        for i, j in zip(np.flatnonzero(keep), idx[keep]):
            first.setdefault(int(j), int(i))
        return aligncore.MatchResult(list(first.values()), list(first.keys()))


@aligncore.hookimpl
def aligncore_add_matchers():
    return [NearestMatcher]
'''


@pytest.fixture
def nearest_file(tmp_path):
    path = tmp_path / "nearest_matcher.py"
    path.write_text(NEAREST_MATCHER)
    return path


def test_default_plugins_one_per_stage():
    registry = aligncore.build_registry()
    for kind in ("detector", "matcher", "fitter", "refcatalog", "corrector"):
        assert registry.names(kind), f"no {kind} plugin installed"
    assert "daofind" in registry.names("detector")
    assert "hist2d" in registry.names("matcher")
    assert "affine" in registry.names("fitter")
    assert "file" in registry.names("refcatalog")
    assert "fitswcs" in registry.names("corrector")
    info = registry.info("fitter", "affine")
    assert info.distribution == "aligncore"
    assert info.version == aligncore.__version__


def test_local_plugin_file_is_found_and_usable(nearest_file):
    registry = aligncore.build_registry([nearest_file])
    cls = registry.get("matcher", "nearest")
    assert registry.info("matcher", "nearest").distribution == "file:nearest_matcher.py"
    ref = QTable({"tp_x": [0.0, 10.0, 20.0], "tp_y": [0.0, 5.0, -5.0]})
    img = QTable({"tp_x": [10.1, 0.2, 50.0], "tp_y": [5.0, -0.1, 50.0]})
    result = registry.run_stage(cls(radius=1.0), img, ref)
    pairs = zip(result.image_idx.tolist(), result.ref_idx.tolist(), strict=True)
    assert sorted(pairs) == [(0, 1), (1, 0)]


def test_autoload_can_be_disabled(monkeypatch, nearest_file):
    monkeypatch.setenv(registry_module.DISABLE_AUTOLOAD_ENV, "1")
    registry = aligncore.build_registry([nearest_file])
    assert registry.names("matcher") == ["nearest"]
    assert registry.names("detector") == []
    with pytest.raises(aligncore.PluginNotFoundError, match="Installed: nearest"):
        registry.get("matcher", "hist2d")


def test_not_found_suggests_the_closest_name():
    registry = aligncore.build_registry()
    with pytest.raises(aligncore.PluginNotFoundError, match=r"did you mean 'hist2d'\?"):
        registry.get("matcher", "hist2")


def _module_with(name, source):
    module = types.ModuleType(name)
    exec(textwrap.dedent(source), module.__dict__)
    return module


DUPLICATE = '''
import aligncore
from aligncore_affine import AffineFitter

class OtherAffine(AffineFitter):
    name = "affine"

@aligncore.hookimpl
def aligncore_add_fitters():
    return [OtherAffine]
'''


def test_duplicate_names_are_rejected_naming_both():
    plugin = _module_with("other_affine_plugin", DUPLICATE)
    with pytest.raises(aligncore.DuplicatePluginError) as err:
        aligncore.build_registry(plugins=[plugin])
    message = str(err.value)
    assert "'affine' is registered twice" in message
    assert "aligncore (aligncore_affine" in message
    assert "local:other_affine_plugin" in message


def test_misspelled_hook_fails_loudly():
    plugin = _module_with("typo_plugin", '''
import aligncore

@aligncore.hookimpl
def aligncore_add_matcher():
    return []
''')
    with pytest.raises(aligncore.PluginError,
                       match="'aligncore_add_matcher' is not an aligncore hook; did you mean "
                       "'aligncore_add_matchers'"):
        aligncore.build_registry(plugins=[plugin])


def test_wrong_class_kind_is_rejected():
    plugin = _module_with("wrong_kind_plugin", '''
import aligncore
from aligncore_affine import AffineFitter

@aligncore.hookimpl
def aligncore_add_matchers():
    return [AffineFitter]
''')
    with pytest.raises(aligncore.PluginError, match=r"expected a subclass of aligncore\.Matcher"):
        aligncore.build_registry(plugins=[plugin])


def test_broken_entry_point_warns_and_run_goes_on(monkeypatch):
    real = importlib.metadata.entry_points

    def fake_entry_points(**kwargs):
        found = list(real(**kwargs))
        if kwargs.get("group") == registry_module.ENTRY_POINT_GROUP:
            found.append(importlib.metadata.EntryPoint(
                name="broken", value="aligncore_no_such_module_xyz", group="aligncore"))
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    with pytest.warns(UserWarning, match="plugin broken .* failed to import"):
        registry = aligncore.build_registry()
    assert "hist2d" in registry.names("matcher")
    assert any("broken" in label for label in registry.failures)
    with pytest.raises(aligncore.PluginNotFoundError, match="failed to load: broken"):
        registry.get("matcher", "brokenmatcher")


def test_broken_local_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("this is not python(\n")
    with pytest.raises(aligncore.PluginError, match=r"bad_plugin.py: syntax error on line 1"):
        aligncore.build_registry([bad])


def test_run_stage_wrapper_sees_every_call():
    calls = []

    class Timer:
        @aligncore.hookimpl(wrapper=True)
        def aligncore_run_stage(self, kind, stage, args):
            result = yield
            calls.append((kind, stage.name, type(result).__name__))
            return result

    registry = aligncore.build_registry(plugins=[Timer()])
    fitter = registry.get("fitter", "affine")(fitgeometry="shift")
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    fit = registry.run_stage(fitter, xy, xy + [0.25, -0.5])
    np.testing.assert_allclose(fit.shift, [0.25, -0.5], atol=1e-12)
    assert calls == [("fitter", "affine", "FitResult")]


def test_get_plugin_and_list_plugins_public_api():
    fitter = aligncore.get_plugin("fitter", "affine")(fitgeometry="rshift")
    xy = np.random.default_rng(1).uniform(-100, 100, (20, 2))
    angle = np.radians(0.3)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    fit = fitter.fit(xy, xy @ rot.T + [1.0, 2.0])
    assert abs(fit.rotation - 0.3) < 1e-10
    kinds = {info.kind for info in aligncore.list_plugins()}
    assert kinds == {"detector", "matcher", "fitter", "refcatalog", "corrector", "solver",
                     "distortion"}


def test_unknown_stage_kind():
    with pytest.raises(ValueError, match="unknown stage kind 'matchr'"):
        aligncore.build_registry().names("matchr")


def test_no_import_time_manager():
    # building twice gives independent managers
    first, second = aligncore.build_registry(), aligncore.build_registry()
    assert first.manager is not second.manager
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert first.names("fitter") == second.names("fitter")


def test_registration_errors_of_a_local_file_are_one_line(tmp_path):
    def problem(name: str, source: str) -> str:
        path = tmp_path / name
        path.write_text(source)
        with pytest.raises(aligncore.PluginError) as error:
            aligncore.build_registry([path])
        assert "\n" not in str(error.value)
        return str(error.value)

    assert problem("args.py", "import aligncore\n@aligncore.hookimpl\n"
                   "def aligncore_add_matchers(extra):\n    return []\n").startswith(
        f"plugin file {tmp_path / 'args.py'}: hookimpl definition: aligncore_add_matchers(extra)")
    assert problem("imports.py", "import no_such_module_here\n") == (
        f"plugin file {tmp_path / 'imports.py'}: cannot be imported: ModuleNotFoundError: "
        "No module named 'no_such_module_here'")
    assert problem("raises.py", "import aligncore\n@aligncore.hookimpl\n"
                   "def aligncore_add_fitters():\n    raise KeyError('k')\n") == (
        "file:raises.py: aligncore_add_fitters() raised KeyError: 'k'")


def test_missing_local_file_is_an_error(tmp_path):
    with pytest.raises(aligncore.PluginError, match=r"nope\.py: no such file"):
        aligncore.build_registry([tmp_path / "nope.py"])


def test_hook_classes_of_a_local_file_are_registered_once_each(tmp_path):
    path = tmp_path / "observer.py"
    path.write_text('''
import aligncore

SEEN = []


class Observer:
    @aligncore.hookimpl
    def aligncore_run_finished(self, result):
        SEEN.append(result)


class Helper:
    """No hooks: not instantiated."""

    def __init__(self, required):
        raise AssertionError("must not be created")
''')
    registry = aligncore.build_registry([path])
    observers = registry.hook.aligncore_run_finished.get_hookimpls()
    assert [impl.plugin_name for impl in observers] == [f"file:{path.resolve()}:Observer"]
    registry.hook.aligncore_run_finished(result="r", config=None)
    module = registry.manager.get_plugin(f"file:{path.resolve()}")
    assert module.SEEN == ["r"]


def test_a_local_file_registering_nothing_warns(tmp_path):
    path = tmp_path / "nothing.py"
    path.write_text("VALUE = 1\n")
    with pytest.warns(UserWarning, match=r"nothing\.py registers nothing"):
        aligncore.build_registry([path])


def test_a_local_file_named_twice_is_loaded_once(tmp_path):
    path = tmp_path / "twice.py"
    path.write_text("import aligncore\n\n@aligncore.hookimpl\ndef aligncore_add_matchers():\n"
                    "    return []\n")
    registry = aligncore.build_registry([path, tmp_path / "." / "twice.py"])
    assert [name for name, _ in registry.manager.list_name_plugin()].count(
        f"file:{path.resolve()}") == 1


def test_building_a_registry_imports_no_stage_module():
    """Entry points register where their classes are: a stage's module (and its
    dependencies) is imported when a stage of it is built, never by building the
    registry; every name is listed all the same."""
    import subprocess
    import sys

    code = textwrap.dedent('''
        import sys
        from aligncore.registry import build_registry
        reg = build_registry()
        heavy = ["aligncore_daofind.daofind", "aligncore_daofind.iraf", "aligncore_hist2d.matcher",
                 "aligncore_affine.fitter", "aligncore_gaia.refcat", "aligncore_refcats.file",
                 "aligncore_wcs.fitswcs", "astropy.table", "astropy.coordinates", "scipy.spatial"]
        print(sorted(m for m in heavy if m in sys.modules))
        print(reg.names("detector"), reg.names("matcher"), reg.names("refcatalog"))
        reg.build("detector", "daofind")
        print("aligncore_daofind.daofind" in sys.modules, "aligncore_gaia.refcat" in sys.modules)
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == "['daofind', 'iraf', 'segmentation'] ['hist2d', 'triangles'] ['file', 'gaia']"
    assert out[2] == "True False"


def test_lazy_registrations_are_checked_when_resolved(tmp_path):
    """``"name = module:Class"`` entries: a malformed one fails the registry build; a
    wrong target fails with one line when the stage is asked for."""
    def plugin(source_line: str) -> types.ModuleType:
        return _module_with("lazy_plugin", f'''
import aligncore

@aligncore.hookimpl
def aligncore_add_fitters():
    return [{source_line!r}]
''')

    with pytest.raises(aligncore.PluginError, match="expected a class or 'name = package"):
        aligncore.build_registry(plugins=[plugin("affine2 aligncore_affine.fitter")],
                                 autoload=False)
    cases = {
        "notastage = json:JSONDecoder": "is not a subclass of aligncore.Fitter",
        "renamed = aligncore_affine.fitter:AffineFitter": "is named 'affine'",
        "missing = no_such_module_here:Fitter": "cannot import no_such_module_here:Fitter",
    }
    for line, message in cases.items():
        reg = aligncore.build_registry(plugins=[plugin(line)], autoload=False)
        name = line.split(" = ")[0]
        assert reg.names("fitter") == [name]
        with pytest.raises(aligncore.PluginError, match=message) as error:
            reg.build("fitter", name)
        assert "\n" not in str(error.value)
    # the same target registered twice is one plugin; another target is a duplicate
    same = aligncore.build_registry(
        plugins=[plugin("affine = aligncore_affine.fitter:AffineFitter")])
    assert same.get("fitter", "affine").__name__ == "AffineFitter"
    with pytest.raises(aligncore.DuplicatePluginError, match="'affine' is registered twice"):
        aligncore.build_registry(plugins=[plugin("affine = aligncore_hist2d.matcher:X")])
