"""Corpus cases: local plugin files that raise, return the wrong type or do not register.

A plugin failing on an image fails that image only (exit 1, outputs and report
written); the absolute stage's plugin failing keeps the relative alignment
(exit 3); a plugin file that cannot be registered is one line naming the file
(exit 2, nothing written).
"""

from __future__ import annotations

from pathlib import Path

from corpus.harness import case, copy_images, write_config

_HEAD = "import aligncore\nfrom aligncore_daofind import DaofindDetector\n"
_DAOFIND_FAILS_ON_ONE = '''
class Flaky(DaofindDetector):
    """daofind, except on img_001."""

    name = "flaky"

    def detect(self, image):
        if image.name == "img_001.fits":
            {body}
        return super().detect(image)


@aligncore.hookimpl
def aligncore_add_detectors():
    return [Flaky]
'''
_STAGE = '''
class Odd(aligncore.{base}):
    """A {kind} that misbehaves."""

    name = "{name}"

    def {method}:
        {{body}}


@aligncore.hookimpl
def aligncore_add_{kind}s():
    return [Odd]
'''


def _stage(base: str, kind: str, name: str, method: str) -> str:
    """A plugin-file template registering one stage class whose method runs ``{body}``."""
    return _STAGE.format(base=base, kind=kind, name=name, method=method)


_MATCHER = _stage("Matcher", "matcher", "odd", "match(self, image_cat, ref_cat)")
_FITTER = _stage("Fitter", "fitter", "oddfit", "fit(self, image_xy, ref_xy, weights=None)")
_CORRECTOR = _stage("Corrector", "corrector", "oddwcs", "correct(self, wcs, fit, tangent_plane)")
_REFCAT = _stage("RefCatalog", "refcatalog", "oddref", "query(self, center, radius, epoch=None)")


def _run_with_plugin(work: Path, source: str, sections: str, n_images: int = 3,
                     command: str = "run") -> list[str]:
    """Write ``plugin.py`` and a config using it; the command line runs it on the images."""
    (work / "plugin.py").write_text(source)
    config = write_config(work, f"plugins: [plugin.py]\n{sections}")
    if command == "validate":
        return ["validate", config]
    images = copy_images(work, n_images)
    return ["run", config, *map(str, images), "-o", str(work / "out")]


_SECTIONS = {"matcher": (_MATCHER, "matcher: {plugin: odd}\n"),
             "fitter": (_FITTER, "fitter: {plugin: oddfit}\n"),
             "corrector": (_CORRECTOR, "corrector: {plugin: oddwcs}\n"),
             "refcatalog": (_REFCAT, "absolute: {enabled: true, refcat: {plugin: oddref}}\n")}


def _misbehaving(work: Path, kind: str, body: str) -> list[str]:
    """Run with a ``kind`` plugin whose stage method is ``body``."""
    template, section = _SECTIONS[kind]
    return _run_with_plugin(work, _HEAD + template.format(body=body), section)


def _hook(name: str) -> str:
    """A plugin file with one hook implementation called ``name``."""
    return f"import aligncore\n\n@aligncore.hookimpl\ndef {name}():\n    return []\n"


# --- a plugin failing while it runs: that image FAILED, the others go on --------------------
@case("plugin", exit_code=1, message=r"img_001\.fits: plugin 'flaky' \(detector\) raised "
      r"ZeroDivisionError: division by zero", outcome="that image FAILED naming the plugin; "
      "the others aligned; outputs and report written", writes=True)
def plugin_detector_raises(work: Path) -> list[str]:
    """A detector that divides by zero on one of three images."""
    source = _HEAD + _DAOFIND_FAILS_ON_ONE.format(body="1 / 0")
    return _run_with_plugin(work, source, "detector: {plugin: flaky}\n")


@case("plugin", exit_code=1, message=r"plugin 'flaky' \(detector\) returned list, expected an "
      r"astropy Table", outcome="that image FAILED naming the plugin and the type", writes=True)
def plugin_detector_returns_list(work: Path) -> list[str]:
    """A detector that returns a list instead of a table for one image."""
    source = _HEAD + _DAOFIND_FAILS_ON_ONE.format(body="return [1, 2, 3]")
    return _run_with_plugin(work, source, "detector: {plugin: flaky}\n")


@case("plugin", exit_code=1, message=r"plugin 'flaky' \(detector\) raised MemoryError",
      outcome="that image FAILED; the others aligned", writes=True)
def plugin_detector_raises_on_process_pool(work: Path) -> list[str]:
    """A detector raising on one image, detected on a process pool."""
    source = _HEAD + _DAOFIND_FAILS_ON_ONE.format(body="raise MemoryError('too big')")
    return _run_with_plugin(work, source, "detector: {plugin: flaky}\n"
                            "execution: {executor: processes, workers: 2}\n")


@case("plugin", exit_code=1, message=r"plugin 'odd' \(matcher\) raised KeyError: 'x'",
      outcome="the images FAILED naming the plugin; outputs and report written", writes=True)
def plugin_matcher_raises_keyerror(work: Path) -> list[str]:
    """A matcher that looks up a missing key."""
    return _misbehaving(work, "matcher", 'return {}["x"]')


@case("plugin", exit_code=1, message=r"plugin 'odd' \(matcher\) returned dict, expected "
      r"MatchResult", outcome="the images FAILED naming the plugin and the type", writes=True)
def plugin_matcher_returns_dict(work: Path) -> list[str]:
    """A matcher that returns a dict instead of a MatchResult."""
    return _misbehaving(work, "matcher", 'return {"image_idx": []}')


@case("plugin", exit_code=1, message=r"error: .*img_00\d\.fits: catalogs disagree",
      outcome="FAILED with the matcher's own message, as docs/plugins.md says", writes=True)
def plugin_matcher_raises_matcherror(work: Path) -> list[str]:
    """A matcher that raises aligncore.MatchError (an expected failure)."""
    return _misbehaving(work, "matcher", 'raise aligncore.MatchError("catalogs disagree")')


@case("plugin", exit_code=1, message=r"fit failed: too few stars here",
      outcome="FAILED with the fitter's own message", writes=True)
def plugin_fitter_raises_fiterror(work: Path) -> list[str]:
    """A fitter that raises aligncore.FitError."""
    return _misbehaving(work, "fitter", 'raise aligncore.FitError("too few stars here")')


@case("plugin", exit_code=1, message=r"plugin 'oddfit' \(fitter\) returned NoneType, expected "
      r"FitResult", outcome="the images FAILED naming the plugin and the type", writes=True)
def plugin_fitter_returns_none(work: Path) -> list[str]:
    """A fitter that forgets to return its result."""
    return _misbehaving(work, "fitter", "pass")


@case("plugin", exit_code=1, message=r"WCS correction failed: plugin 'oddwcs' \(corrector\) "
      r"raised AttributeError", outcome="the aligned images FAILED, WCS kept", writes=True)
def plugin_corrector_raises(work: Path) -> list[str]:
    """A WCS corrector that calls a method the WCS does not have."""
    return _misbehaving(work, "corrector", "return wcs.no_such_method()")


@case("plugin", exit_code=3, message=r"absolute alignment not applied: reference catalog query "
      r"failed: plugin 'oddref' \(refcatalog\) raised ConnectionError: service down",
      outcome="relative alignment written, exit 3 naming the plugin", writes=True)
def plugin_refcat_raises(work: Path) -> list[str]:
    """A reference catalog plugin whose query raises in the absolute stage."""
    return _misbehaving(work, "refcatalog", 'raise ConnectionError("service down")')


# --- a plugin file that cannot be registered: one line naming it, nothing written -----------
@case("plugin", exit_code=2, message=r"plugin\.py: 'aligncore_add_matcher' is not an aligncore "
      r"hook; did you mean 'aligncore_add_matchers'", outcome="one-line error, nothing written")
def plugin_hook_typo(work: Path) -> list[str]:
    """A plugin file whose hook name is misspelled."""
    return _run_with_plugin(work, _hook("aligncore_add_matcher"), "")


@case("plugin", exit_code=2, message=r"plugin\.py: 'aligncore_add_detector' is not an "
      r"aligncore hook", outcome="one-line error from validate")
def plugin_hook_typo_validate(work: Path) -> list[str]:
    """`aligncore validate` of a config whose plugin file has a misspelled hook."""
    return _run_with_plugin(work, _hook("aligncore_add_detector"), "", command="validate")


@case("plugin", exit_code=2, message=r"plugin\.py: syntax error on line 2",
      outcome="one-line error naming the file and line")
def plugin_syntax_error(work: Path) -> list[str]:
    """A plugin file that is not valid Python."""
    return _run_with_plugin(work, "import aligncore\ndef broken(:\n", "")


@case("plugin", exit_code=2, message=r"plugin\.py: cannot be imported: ModuleNotFoundError",
      outcome="one-line error naming the file and the missing module")
def plugin_import_error(work: Path) -> list[str]:
    """A plugin file importing a module that is not installed."""
    return _run_with_plugin(work, "import aligncore_no_such_dependency\n", "")


@case("plugin", exit_code=2, message=r"plugin file .*nowhere\.py: no such file",
      outcome="error, not a warning; nothing written")
def plugin_file_missing(work: Path) -> list[str]:
    """``aligncore params --plugin-file`` naming a file that does not exist."""
    return ["params", "hist2d", "--plugin-file", str(work / "nowhere.py")]


@case("plugin", exit_code=0, message=r"warning: plugin file .*plugin\.py registers nothing",
      outcome="one warning line; aligned with the installed plugins", writes=True)
def plugin_registers_nothing(work: Path) -> list[str]:
    """A plugin file without any hook implementation."""
    return _run_with_plugin(work, "import aligncore\n\nTHRESHOLD = 3\n", "")


@case("plugin", exit_code=2, message=r"Nameless from file:plugin\.py has no 'name'",
      outcome="one-line error naming the class and file")
def plugin_class_without_name(work: Path) -> list[str]:
    """A registered matcher class without a name."""
    source = _HEAD + _MATCHER.replace('name = "odd"', "").replace("Odd", "Nameless").format(
        body="return None")
    return _run_with_plugin(work, source, "")


@case("plugin", exit_code=2, message=r"returned 'hist2d' from aligncore_add_matchers; expected "
      r"a class or 'name = package\.module:Class'", outcome="one-line error naming the hook")
def plugin_hook_returns_names(work: Path) -> list[str]:
    """A registration hook that returns bare names instead of classes (or of
    ``"name = module:Class"`` references)."""
    source = "import aligncore\n\n@aligncore.hookimpl\ndef aligncore_add_matchers():\n" \
             "    return ['hist2d']\n"
    return _run_with_plugin(work, source, "")


@case("plugin", exit_code=2, message=r"matcher plugin 'odd' \(file:plugin\.py\): cannot import "
      r"no_such_module_here:Odd: ModuleNotFoundError", outcome="one-line error naming the plugin "
      "and its target, before any work")
def plugin_lazy_target_missing(work: Path) -> list[str]:
    """A lazy registration (``"odd = module:Class"``) whose module does not exist, the
    matcher chosen in the config."""
    source = "import aligncore\n\n@aligncore.hookimpl\ndef aligncore_add_matchers():\n" \
             "    return ['odd = no_such_module_here:Odd']\n"
    return _run_with_plugin(work, source, "matcher: {plugin: odd}\n")


@case("plugin", exit_code=2, message=r"aligncore_add_fitters\(\) returned the class Odd; "
      r"expected a list of classes: \[Odd\]",
      outcome="one-line error: a list is expected")
def plugin_hook_returns_one_class(work: Path) -> list[str]:
    """A registration hook that returns a class rather than a list of classes."""
    source = (_HEAD + _FITTER.format(body="return None")).replace("return [Odd]", "return Odd")
    return _run_with_plugin(work, source, "")


@case("plugin", exit_code=2, message=r"matcher plugin name 'hist2d' is registered twice",
      outcome="one-line error naming both registrations")
def plugin_duplicate_name(work: Path) -> list[str]:
    """A plugin file registering a matcher under a name already installed."""
    source = (_HEAD + _MATCHER.format(body="return None")).replace('"odd"', '"hist2d"')
    return _run_with_plugin(work, source, "")


@case("plugin", exit_code=2, message=r"plugin\.py: hookimpl definition: "
      r"aligncore_add_matchers\(extra\); Argument\(s\) \{'extra'\} are declared in the hookimpl "
      r"but can not be found in the hookspec$", outcome="one-line error naming the argument")
def plugin_hook_unknown_argument(work: Path) -> list[str]:
    """A hook implementation asking for an argument the hook does not have."""
    return _run_with_plugin(work, _hook("aligncore_add_matchers").replace("()", "(extra)"), "")


@case("plugin", exit_code=1, message=r"plugin 'odd' \(matcher\) returned reference indices "
      r"outside 0\.\.\d+", outcome="the images FAILED naming the plugin", writes=True)
def plugin_matcher_indices_out_of_range(work: Path) -> list[str]:
    """A matcher whose matches point past the end of the reference catalog."""
    body = "return aligncore.MatchResult([0, 1], [len(ref_cat), len(ref_cat) + 1])"
    return _misbehaving(work, "matcher", body)


@case("plugin", exit_code=1, message=r"plugin 'flaky' \(detector\) returned a table without "
      r"the column\(s\) x, y", outcome="that image FAILED naming the plugin", writes=True)
def plugin_detector_without_columns(work: Path) -> list[str]:
    """A detector returning a table without pixel positions for one image."""
    body = "from astropy.table import QTable; return QTable({'id': [1], 'flux': [1.0]})"
    return _run_with_plugin(work, _HEAD + _DAOFIND_FAILS_ON_ONE.format(body=body),
                            "detector: {plugin: flaky}\n")


@case("plugin", exit_code=1, message=r"plugin 'oddwcs' \(corrector\) returned str, expected a "
      r"WCS object", outcome="the aligned images FAILED, WCS kept", writes=True)
def plugin_corrector_returns_text(work: Path) -> list[str]:
    """A WCS corrector that returns a string instead of a WCS."""
    return _misbehaving(work, "corrector", "return 'RA---TAN'")
