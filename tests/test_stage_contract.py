"""The explicit contract between core and its stage plugins: methods and typed fields."""

from __future__ import annotations

import math

import numpy as np
import pytest

import aligncore
from aligncore.config import Config
from aligncore.relative import RelativeSettings, max_correction, search_margin
from aligncore_affine import AffineFitter
from aligncore_hist2d.matcher import Hist2dMatcher
from aligncore_hist2d.triangle_matcher import TriangleMatcher

FOOTPRINT = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 50.0], [0.0, 50.0]])


class Plain(aligncore.Matcher):
    """A third-party matcher that declares nothing beyond ``match``."""

    name = "plain"

    def match(self, image_cat, ref_cat):
        return aligncore.MatchResult([], [])


class Reaching(Plain):
    """A third-party matcher with its own names for its radii."""

    name = "reaching"

    class Params(aligncore.Params):
        look: float = 4.0
        radius: float = 0.25

    def search_reach(self):
        return self.params.look

    def tolerance(self):
        return self.params.radius


DEFAULTS = RelativeSettings.from_section(Config().align)


def test_match_result_has_typed_weak_and_significance():
    result = aligncore.MatchResult([0], [1])
    assert result.weak is False
    assert math.isnan(result.significance)
    weak = aligncore.MatchResult([], [], weak=1, significance=2)
    assert weak.weak is True and weak.significance == 2.0


def test_match_result_alternatives_are_float_pairs():
    assert aligncore.MatchResult([0], [1]).alternatives == ()
    result = aligncore.MatchResult([0], [1], alternatives=[np.array([1, 2]), (0.5, -0.25)])
    assert result.alternatives == ((1.0, 2.0), (0.5, -0.25))
    assert all(type(v) is float for pair in result.alternatives for v in pair)


def test_matcher_defaults_are_unbounded():
    matcher = Plain()
    assert matcher.match_at(None, None, (0.0, 0.0)) is None  # the ladder skips those rungs
    assert matcher.search_reach() is None
    assert matcher.tolerance() is None
    assert matcher.match_slack() == 0.0
    assert max_correction(DEFAULTS, matcher) == math.inf
    assert search_margin(DEFAULTS, matcher, FOOTPRINT) == 100.0


def test_third_party_matcher_takes_part_in_the_guard():
    matcher = Reaching()
    assert max_correction(DEFAULTS, matcher) == pytest.approx(7.0)
    assert search_margin(DEFAULTS, matcher, FOOTPRINT) == pytest.approx(2 * 7.0 + 0.25)


@pytest.mark.parametrize(
    ("params", "reach", "tolerance", "slack"),
    [
        ({"searchrad": 2.0, "separation": 1.0, "tolerance": 0.7}, 2.0, 0.7, 1.7),
        ({"searchrad": "auto", "max_searchrad": 8.0, "separation": "auto",
          "tolerance": "auto"}, 8.0, None, 0.0),
        ({"searchrad": 3.0, "separation": 1.5, "tolerance": "auto"}, 3.0, None, 1.5),
    ],
)
def test_hist2d_contract(params, reach, tolerance, slack):
    matcher = Hist2dMatcher(params)
    assert matcher.search_reach() == reach
    assert matcher.tolerance() == tolerance
    assert matcher.match_slack() == pytest.approx(slack)


def test_triangles_contract():
    assert TriangleMatcher().search_reach() is None
    assert TriangleMatcher().tolerance() is None
    assert TriangleMatcher(tolerance=0.3).match_slack() == 0.3


def test_hist2d_fills_weak_and_significance():
    from astropy.table import QTable

    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 60, (80, 2))
    image = QTable({aligncore.COL_TP_X: xy[:, 0], aligncore.COL_TP_Y: xy[:, 1]})
    ref = QTable({aligncore.COL_TP_X: xy[:, 0] + 0.4, aligncore.COL_TP_Y: xy[:, 1] - 0.2})
    for table in (image, ref):
        table.meta[aligncore.META_PIXEL_SCALE] = 0.1
    good = Hist2dMatcher(searchrad=2.0).match(image, ref)
    assert not good.weak and good.significance > 5
    assert good.significance == good.meta["peak_significance"]
    noise = QTable({aligncore.COL_TP_X: rng.uniform(0, 60, 80),
                    aligncore.COL_TP_Y: rng.uniform(0, 60, 80)})
    noise.meta[aligncore.META_PIXEL_SCALE] = 0.1
    bad = Hist2dMatcher(searchrad=2.0, min_significance=50).match(image, noise)
    assert bad.weak and bad.n_matched == 0


def test_fitter_contract():
    class Bare(aligncore.Fitter):
        name = "bare"

        def fit(self, image_xy, ref_xy, weights=None):
            return aligncore.FitResult.identity()

    assert Bare().geometry() == "rshift"
    assert Bare().clipping() == (3, 3.0)
    fitter = AffineFitter(fitgeometry="general", nclip=1, sigma=2.5)
    assert fitter.geometry() == "general"
    assert fitter.clipping() == (1, 2.5)


def test_plugins_use_the_public_refcat_module():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "plugins"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "aligncore.catalogs":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
    import aligncore.refcat

    for name in aligncore.refcat.__all__:
        assert getattr(aligncore.refcat, name) is not None
    assert aligncore.refcat.META_DROPPED_ROWS == aligncore.META_DROPPED_ROWS == "dropped_rows"


def test_detector_writes_its_fwhm():
    from aligncore_daofind import DaofindDetector

    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (64, 64))
    image = aligncore.AlignImage.from_arrays(data, None)
    assert DaofindDetector(kernel_fwhm=3.0).detect(image).meta[aligncore.META_FWHM] == 3.0


def test_one_table_of_stage_kinds():
    import inspect

    from aligncore import hookspecs
    from aligncore.stages import STAGE_KINDS, STAGE_TABLE

    add_hooks = {name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
                 if name.startswith("aligncore_add_")}
    # image formats are chosen per file by their claim, not by a config section: they are
    # `Registry.formats`, not a stage kind
    assert {kind.hook for kind in STAGE_TABLE.values()} | {"aligncore_add_formats"} == add_hooks
    config = Config()
    for name, kind in STAGE_TABLE.items():
        assert kind.base.kind == name and STAGE_KINDS[name] is kind.base
        assert callable(getattr(kind.base, kind.method))
        for section in kind.sections:
            assert config.stage_choice(name, section).plugin
    assert config.stage_choice("refcatalog") is config.absolute.refcat
    assert config.stage_choice("matcher", "absolute.matcher") is config.absolute.matcher


# --- core reads only the documented contract ------------------------------------------------
CORE_MODULES = ("relative", "absolute", "global_solver", "pipeline", "execution", "units",
                "combined", "outputs", "preflight", "config", "registry", "stages", "tangent",
                "overlap", "report", "catalogs", "refcat", "geometry")
CORE_OWNED_META = {"matched_image_idx", "absolute", "format", "cache_key", "rejected_fit",
                   "rejected_fit_result", "guard_limit"}
"""meta keys core writes and reads itself (unit, run and image meta; its cache files)."""
PARAMS_METHODS = {"model_dump", "setdefault"}
"""``params`` is read only whole (a model's dump; a config section's dict)."""


def _core_reads():
    import ast
    from pathlib import Path

    root = Path(aligncore.__file__).parent
    params, meta = [], {}
    for name in CORE_MODULES:
        path = root / f"{name}.py"
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{name}.py:{getattr(node, 'lineno', 0)}"
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "params" and node.attr not in PARAMS_METHODS):
                params.append(f"{where}: .params.{node.attr}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr") and node.args
                    and isinstance(node.args[0], ast.Attribute)
                    and node.args[0].attr == "params"):
                params.append(f"{where}: {node.func.id}(....params, ...)")
            key = None
            if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "meta"):
                key = node.slice
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in ("get", "pop") and node.args
                  and isinstance(node.func.value, ast.Attribute)
                  and node.func.value.attr == "meta"):
                key = node.args[0]
            elif (isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In)
                  and isinstance(node.comparators[0], ast.Attribute)
                  and node.comparators[0].attr == "meta"):
                key = node.left
            if isinstance(key, ast.Constant):
                meta.setdefault(key.value, where)
            elif isinstance(key, ast.Name) and key.id.startswith("META_"):
                meta.setdefault(getattr(aligncore, key.id), where)
    return params, meta


def test_core_reads_no_plugin_params_by_name():
    params, _ = _core_reads()
    assert params == []


def test_core_reads_only_documented_meta_keys():
    from pathlib import Path

    _, meta = _core_reads()
    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    contract = doc.split("## What core reads from a plugin")[1].split("\n## ")[0]
    plugin_keys = {key: where for key, where in meta.items() if key not in CORE_OWNED_META}
    undocumented = [f"{where}: meta[{key!r}]" for key, where in plugin_keys.items()
                    if f"`{key}`" not in contract]
    assert undocumented == []
    constants = {name: getattr(aligncore, name) for name in aligncore.__all__
                 if name.startswith("META_") and isinstance(getattr(aligncore, name), str)}
    for name, value in constants.items():
        assert f"`{name}`" in contract and f"`{value}`" in contract, name


def test_contract_methods_are_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    contract = doc.split("## What core reads from a plugin")[1].split("\n## ")[0]
    for name in ("search_reach()", "match_slack()", "tolerance()", "geometry()", "clipping()",
                 "check(min_rows)", "accepts(wcs)", "`weak`", "`significance`",
                 "identify(path)", "output_name(path)", "`ImageFormat`",
                 "match_at(image_cat, ref_cat, offset, tolerance)", "`alternatives`"):
        assert name in contract, name
    for method in ("search_reach", "tolerance", "match_slack", "match_at"):
        assert getattr(aligncore.Matcher, method).__doc__
    for method in ("geometry", "clipping"):
        assert getattr(aligncore.Fitter, method).__doc__


class _CountingSolver(aligncore.Solver):
    """A third-party solver: keeps the sequential fits, counts the aligned units."""

    name = "counting"
    grows_reference = True

    def refine(self, units, settings):
        return aligncore.SolverResult(diagnostics={
            "aligned": sum(u.fit is not None for u in units), "geometry": settings.geometry})


class _SolverPlugin:
    @aligncore.hookimpl
    def aligncore_add_solvers(self):
        return [_CountingSolver]


def test_solver_is_a_stage_chosen_by_name(small_scene):
    from aligncore.config import ConfigError, load_config

    registry = aligncore.build_registry(plugins=[_SolverPlugin()])
    assert {"sequential", "global", "counting"} <= set(registry.names("solver"))
    config = load_config(None, ["align.solver=counting"], registry=registry)
    result = aligncore.align(small_scene.paths, config, registry=registry)
    assert result.ok
    relative = result.meta["relative"]
    assert relative["solver"] == "counting"
    assert relative["counting"] == {"aligned": 3, "geometry": "auto"}
    with pytest.raises(ConfigError, match=r"align.solver: .*'globle'.*did you mean 'global'"):
        load_config(None, ["align.solver=globle"], registry=registry)


def test_one_stage_factory():
    registry = aligncore.build_registry()
    fitter = registry.build("fitter", "affine", {"nclip": 1})
    assert isinstance(fitter, AffineFitter) and fitter.clipping() == (1, 3.0)
    built = Config().build_stage("matcher", registry, section="absolute.matcher")
    assert built.search_reach() == 6.0 and built.match_slack() == pytest.approx(1.7)


def test_a_user_max_correction_is_the_guard_limit_and_sizes_the_reference():
    """issue 16 item 4: ``align.max_correction`` set by the user is the guard's limit (not
    the matcher's reach) and the reference shown to the matcher reaches that far."""
    import dataclasses

    settings = dataclasses.replace(DEFAULTS, max_correction=12.0)
    matcher = Reaching()  # reach 4", tolerance 0.25"
    assert max_correction(settings, matcher) == 12.0
    assert search_margin(settings, matcher, FOOTPRINT) == pytest.approx(2 * 12.0 + 0.25)
    small = dataclasses.replace(DEFAULTS, max_correction=1.0)
    assert search_margin(small, matcher, FOOTPRINT) == pytest.approx(2 * 4.0 + 0.25)
