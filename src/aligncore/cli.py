"""The ``aligncore`` command line.

Exit codes: 0 success; 1 an input error or an image that failed to align (the
message names the file and the problem); 2 a configuration or usage error; 3
the images were aligned relative to each other and written, but the absolute
alignment (reference catalog) was not applied; 130 interrupted (Ctrl-C) and 143
terminated (SIGTERM), both after removing temporary files and the output
directory's lock; 141 stdout was closed early (``aligncore ... | head``), ended
quietly. Tracebacks, including those of a plugin that failed on one image, are
shown only with ``--debug``.

Every problem is one line on stderr (``error: ...`` or ``warning: ...``, Python
warnings included, each once); the results go to stdout. When stderr is not a
terminal, progress is one line per image (``detect 3/16 img_002.fits 0.4 s``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_ABSOLUTE_FAILED = 3
EXIT_BROKEN_PIPE = 141  # like a shell command killed by SIGPIPE (128 + 13)
EXIT_TERMINATED = 143  # 128 + SIGTERM


class _UsageError(Exception):
    pass


class _VersionAction(argparse.Action):
    """``--version``: the installed version, read only when asked (``--help`` stays fast)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help=help or "show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from aligncore import __version__

        print(f"aligncore {__version__}")  # stdout, like argparse's "version" action
        parser.exit()


def _progress(enabled: bool, images: Sequence[Any] = ()) -> Any:
    """A bar on a terminal, one line per image in a log (stderr not a terminal)."""
    from aligncore._cli_text import progress_for

    return progress_for(enabled, sys.stderr.isatty(), [image.name for image in images])


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from aligncore.config import load_config_and_registry

    return load_config_and_registry(args.config, args.set or ())


def _inputs_ok(paths: Sequence[str | Path], config: Any, registry: Any, *,
               outdir: str | Path | None = None, opened: dict[Path, Any] | None = None
               ) -> bool:
    """Check every input, and the output directory if given, before any work
    (`aligncore.preflight`, `aligncore.outputs.output_dir_problems`); print each
    problem once as ``error: PATH: problem``. ``opened`` collects the images the checks
    opened (by ``Path``), so that the run does not read their headers again."""
    from aligncore.preflight import check_inputs

    problems = [str(p) for p in check_inputs(paths, config, registry=registry,
                                              opened=opened)]
    if outdir is not None:
        from aligncore.outputs import output_dir_problems

        problems += output_dir_problems(Path(outdir), [Path(p) for p in paths],
                                        config.output.in_place, registry)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return not problems


def _cmd_run(args: argparse.Namespace) -> int:
    from aligncore.outputs import write_outputs
    from aligncore.pipeline import align
    from aligncore.report import format_table

    config, registry = _load(args)
    if args.output:
        config.output.dir = str(args.output)
    if args.in_place:
        config.output.in_place = True
    if args.resume:
        config.execution.resume_dir = config.output.dir
        config.output.save_catalogs = True
    from aligncore.filelock import output_dir_lock
    from aligncore.formats import open_images

    inputs = _resolve_inputs(args)
    opened: dict[Path, Any] = {}
    if not _inputs_ok(inputs.paths, config, registry, outdir=config.output.dir, opened=opened):
        return EXIT_FAILED
    args.cleanups.enter_context(output_dir_lock(config.output.dir))
    # the images the checks just opened (headers and WCS read once, not twice); every
    # chip of a multi-chip file
    images = [image for path in inputs.paths
              for image in opened.get(path) or open_images(path, registry=registry)]
    for image in images:
        inputs.annotate(image)  # an association member's group_id and meta.asn
    result = align(images, config, registry=registry,
                   progress=_progress(not args.quiet, images))
    write_outputs(result, images, config, registry=registry, inputs=inputs)
    if args.plots:
        from aligncore.plots import write_plots

        try:
            write_plots(result, config.output.dir, images)
        except ImportError as exc:
            print(f"warning: no plots written: {exc}", file=sys.stderr)
    if not args.quiet:
        print(format_table(result, notes=False))  # the problems go to stderr, once
        print(f"outputs written to {config.output.dir}" if not config.output.in_place
              else "inputs updated in place")
    _print_failures(result, args.debug)
    return _exit_code(result, config)


def _resolve_inputs(args: argparse.Namespace) -> Any:
    """The image files named by the arguments (`aligncore.inputs.resolve_inputs`)."""
    from aligncore.inputs import resolve_inputs

    return resolve_inputs(args.images, args.pattern)


def _print_failures(result: Any, debug: bool) -> None:
    """One ``error:`` line per failed image (and a plugin's traceback with ``--debug``)."""
    for image in result.failed:
        if debug and image.meta.get("traceback"):
            print(image.meta["traceback"], file=sys.stderr, end="")
        print(f"error: {image.path or image.name}: {image.reason}", file=sys.stderr)


def _exit_code(result: Any, config: Any) -> int:
    """1 when an image failed; 3 when only the absolute alignment was not applied (its
    warning was printed when the pipeline gave it up)."""
    if not result.ok:
        return EXIT_FAILED
    if config.absolute.enabled and result.absolute is None:
        return EXIT_ABSOLUTE_FAILED
    return EXIT_OK


def _cmd_detect(args: argparse.Namespace) -> int:
    from aligncore.execution import detect_images
    from aligncore.formats import open_images
    from aligncore.outputs import write_catalogs

    config, registry = _load(args)
    inputs = _resolve_inputs(args)
    opened: dict[Path, Any] = {}
    if not _inputs_ok(inputs.paths, None, registry, opened=opened):
        return EXIT_FAILED
    images = [image for path in inputs.paths
              for image in opened.get(path) or open_images(path, registry=registry)]
    detector = config.build_stage("detector", registry)
    outcomes = detect_images(images, detector, config, registry,
                             _progress(not args.quiet, images))
    failed = [(image, o) for image, o in zip(images, outcomes, strict=True) if o.catalog is None]
    done = [(image, o.catalog) for image, o in zip(images, outcomes, strict=True)
            if o.catalog is not None]
    outdir = Path(args.output)
    paths = write_catalogs([i.name for i, _ in done], [c for _, c in done], outdir,
                           config.output.catalog_format)
    for (image, catalog), path in zip(done, paths, strict=True):
        print(f"{image.name}: {len(catalog)} sources -> {path}")
    for image, outcome in failed:
        if args.debug and outcome.traceback:
            print(outcome.traceback, file=sys.stderr, end="")
        print(f"error: {image.path or image.name}: {outcome.error}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from aligncore.config import load_config_and_registry
    from aligncore.formats import open_image
    from aligncore.outputs import write_outputs
    from aligncore.pipeline import align
    from aligncore.report import format_table
    from aligncore.sim import simulate

    config, registry = load_config_and_registry(None, args.set or ())
    with tempfile.TemporaryDirectory(prefix="aligncore-demo-") as tmp:
        workdir = Path(args.output) if args.output else Path(tmp)
        print(f"simulating a dither of {args.n_images} images with 0.1-3\" pointing errors "
              f"(seed {args.seed}) ...")
        scene = simulate("dither", n_images=args.n_images, seed=args.seed,
                         outdir=workdir / "input")
        images = [open_image(path, registry=registry) for path in scene.paths]
        result = align(images, config, registry=registry, progress=_progress(True, images))
        write_outputs(result, images, config, workdir / "aligned", registry=registry)
        before = scene.errors([image.wcs for image in images], relative=True)
        after = scene.errors([r.wcs for r in result.images], relative=True)
        errors = [{"before_mas": float(b["rms_mas"]), "after_mas": float(a["rms_mas"])}
                  for b, a in zip(before, after, strict=True)]
        print(format_table(result, errors))
        pixel_mas = scene.params["pixel_scale"] * 1000.0
        worst = max(e["after_mas"] for e in errors)
        print(f"relative error after alignment: max {worst:.2f} mas = {worst / pixel_mas:.4f} "
              f"pixel (pixel scale {pixel_mas:.0f} mas); alignment took "
              f"{result.timings['total']:.2f} s")
        if args.output:
            print(f"inputs, truth and aligned outputs in {workdir}")
    return EXIT_OK if result.ok else EXIT_FAILED


def _cmd_validate(args: argparse.Namespace) -> int:
    from aligncore.stages import STAGE_TABLE

    config, registry = _load(args)
    print(f"{args.config}: OK")
    if args.show:
        from aligncore.config import describe_config

        print("\n".join(describe_config(config, registry)))
        return EXIT_OK
    for kind in STAGE_TABLE.values():
        for section in kind.sections:
            if section.startswith("absolute.") and not config.absolute.enabled:
                continue
            choice = config.stage_choice(kind.name, section)
            shown = (choice.plugin if kind.name == "corrector" and choice.plugin == "auto"
                     else repr(config.build_stage(kind.name, registry, section=section)))
            print(f"  {section:16s} {shown}")
    return EXIT_OK


def _cmd_plugins(args: argparse.Namespace) -> int:
    from aligncore.registry import build_registry

    registry = build_registry(args.plugin_file or ())
    rows = [("stage", "name", "distribution", "version", "description")]
    for info in registry.plugins():
        rows.append((info.kind, info.name, info.distribution, info.version, info.summary))
    for fmt in registry.formats.values():
        rows.append(("format", fmt.name, fmt.distribution, fmt.version, fmt.summary))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return EXIT_OK  # a plugin that failed to load was reported by its warning, once


def _cmd_params(args: argparse.Namespace) -> int:
    from aligncore.registry import build_registry

    registry = build_registry(args.plugin_file or ())
    found = registry.find(args.name)
    if not found:
        names = sorted({i.name for i in registry.plugins()})
        import difflib

        close = difflib.get_close_matches(args.name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _UsageError(f"no plugin named {args.name!r}{hint} Installed: {', '.join(names)}")
    from aligncore._cli_text import describe_params

    for info in found:
        print("\n".join(describe_params(info)))
    return EXIT_OK


_SIMULATE_HELP = """scenarios:
  dither   random dithers of 5-15 % of the field; 200 stars per 1024x1024 image
  mosaic   a ceil(sqrt(N)) wide grid of images with 10 % overlaps; 200 stars per image
  sparse   a dither with ~20 stars per image (hard for matchers)
  crowded  a dither with ~6000 stars per 1024x1024 image

Every scenario: 1024x1024 images at 0.1"/pixel, Moffat PSF of FWHM 2.5 pixels,
pointing errors of 0.1-3", roll errors up to 0.01 deg, sky 100 e-, read noise
5 e-, cosmic rays, hot and saturated pixels, observation epoch 2025.0 and a
Gaia-like reference catalog at 2016.0 (no proper motion). The options below
change these. Writes the images, truth.json, stars.ecsv and refcat.ecsv."""

# command-line option -> simulate() keyword, for the knobs passed through unchanged
_SIMULATE_KNOBS = ("n_images", "seed", "sip", "wcs", "pixel_scale", "n_stars", "fwhm", "psf",
                   "roll_error", "proper_motion", "epoch", "refcat_epoch", "ra", "dec")


def _add_simulate_parser(sub: Any) -> None:
    """The ``simulate`` subcommand: a scenario and the simulator's main knobs."""
    simulate = sub.add_parser("simulate", help="write a simulated scene with ground truth",
                              description=_SIMULATE_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    simulate.add_argument("scenario", choices=["dither", "mosaic", "sparse", "crowded"],
                          help="image layout and star density (see above)")
    simulate.add_argument("-o", "--output", required=True, help="output directory")
    simulate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    simulate.add_argument("--n-images", type=int, default=4, help="images (default 4)")
    simulate.add_argument("--size", type=int, help="image size in pixels, square (default 1024)")
    simulate.add_argument("--pixel-scale", type=float, default=0.1,
                          help="arcsec per pixel (default 0.1)")
    simulate.add_argument("--n-stars", type=int,
                          help="stars per image (default: by scenario, see above)")
    simulate.add_argument("--fwhm", type=float, default=2.5, help="PSF FWHM, pixels (default 2.5)")
    simulate.add_argument("--psf", choices=["moffat", "gaussian"], default="moffat",
                          help="PSF shape (default moffat)")
    simulate.add_argument("--pointing-error", type=float, nargs=2, metavar=("MIN", "MAX"),
                          default=(0.1, 3.0),
                          help="range of each image's pointing error, arcsec (default 0.1 3)")
    simulate.add_argument("--roll-error", type=float, default=0.01,
                          help="largest roll error, degrees (default 0.01)")
    simulate.add_argument("--proper-motion", type=float, default=0.0,
                          help="mean stellar proper motion, mas/yr (default 0)")
    simulate.add_argument("--epoch", type=float, default=2025.0,
                          help="observation epoch, Julian year (default 2025.0)")
    simulate.add_argument("--refcat-epoch", type=float, default=2016.0,
                          help="reference catalog epoch, Julian year (default 2016.0)")
    simulate.add_argument("--ra", type=float, default=150.0, help="scene centre RA, deg")
    simulate.add_argument("--dec", type=float, default=2.0, help="scene centre Dec, deg")
    simulate.add_argument("--sip", action="store_true", help="add SIP distortion")
    simulate.add_argument("--wcs", choices=["fits", "gwcs"], default="fits",
                          help="fits: FITS files with a FITS WCS; gwcs: ASDF files with a "
                               "NIRCam-like GWCS (detector -> v2v3 -> world)")
    simulate.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from aligncore.sim import simulate

    options: dict[str, Any] = {key: getattr(args, key) for key in _SIMULATE_KNOBS}
    options["outdir"] = args.output
    options["pointing_error"] = tuple(args.pointing_error)
    if args.size:
        options["shape"] = (args.size, args.size)
    try:
        scene = simulate(args.scenario, **options)
    except ValueError as exc:  # a knob out of range: the message names it
        raise _UsageError(str(exc)) from exc
    print(f"wrote {len(scene.paths)} images, truth.json, stars.ecsv and refcat.ecsv to "
          f"{args.output}")
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from aligncore.compare import run_compare

    if args.jobs < 1:
        raise _UsageError(f"--jobs must be >= 1, got {args.jobs}")
    result = run_compare(args.spec, args.output, jobs=args.jobs, force=args.force,
                         progress=_compare_progress(args.quiet), plots=not args.no_plots)
    if not args.quiet:
        print(result.markdown("variants"))
        print(f"{result.n_new} runs done, {result.n_reused} reused; tables and figures in "
              f"{args.output} (report.md)")
    return EXIT_OK


def _compare_progress(quiet: bool) -> bool | str:
    """A bar on a terminal, one line per run in a log, nothing with ``-q``."""
    if quiet:
        return False
    return True if sys.stderr.isatty() else "log"


def _cmd_config_reference(args: argparse.Namespace) -> int:
    from aligncore.config import render_config_reference

    print(render_config_reference())
    return EXIT_OK


def _cmd_hooks(args: argparse.Namespace) -> int:
    from aligncore.hookspecs import render_reference

    print(render_reference())
    return EXIT_OK


def _add_config_args(parser: argparse.ArgumentParser, config_required: bool = True) -> None:
    if config_required:
        parser.add_argument("config", help="YAML config file")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, e.g. matcher.params.tolerance=0.5")


_IMAGES_HELP = ("images (FITS, ASDF, JWST _cal files or any installed format), JWST "
                "associations (*_asn.json: their science members), @list files (one path per "
                "line) or directories (see --pattern)")


def _add_pattern_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pattern", help="glob of the files taken from a directory input "
                        "(default '*_cal.fits')")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``aligncore`` command."""
    parser = argparse.ArgumentParser(
        prog="aligncore", description="Align astronomical images (detect, match, fit, correct).")
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="align images and write corrected copies")
    _add_config_args(run)
    run.add_argument("images", nargs="+", help=_IMAGES_HELP)
    _add_pattern_arg(run)
    run.add_argument("-o", "--output", help="output directory (default: the config's output.dir)")
    run.add_argument("--in-place", action="store_true", help="update the input files themselves")
    run.add_argument("--resume", action="store_true",
                     help="reuse the catalogs a previous run saved in the output directory "
                     "(and save them)")
    run.add_argument("--plots", action="store_true",
                     help="also write residual and 2D-histogram figures per image, and the "
                     "distortion figures per detector of a distortion refinement (PNG, in the "
                     "output directory; needs matplotlib)")
    run.add_argument("-q", "--quiet", action="store_true")
    run.set_defaults(func=_cmd_run)

    detect = sub.add_parser("detect", help="detect sources and write catalogs only")
    _add_config_args(detect)
    detect.add_argument("images", nargs="+", help=_IMAGES_HELP)
    _add_pattern_arg(detect)
    detect.add_argument("-o", "--output", required=True, help="directory for the catalogs")
    detect.add_argument("-q", "--quiet", action="store_true")
    detect.set_defaults(func=_cmd_detect)

    demo = sub.add_parser("demo", help="simulate a small scene, align it, compare with the truth")
    _add_config_args(demo, config_required=False)
    demo.add_argument("-o", "--output", help="keep inputs and outputs in this directory")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--n-images", type=int, default=4)
    demo.set_defaults(func=_cmd_demo)

    validate = sub.add_parser("validate", help="check a config file")
    _add_config_args(validate)
    validate.add_argument("--show", action="store_true",
                          help="print the resolved config (the file over its base, "
                          "see `extends`), each value with where it came from")
    validate.set_defaults(func=_cmd_validate)

    plugins = sub.add_parser("plugins", help="list installed stage plugins")
    plugins.add_argument("--plugin-file", action="append", help="also load a local plugin file")
    plugins.set_defaults(func=_cmd_plugins)

    params = sub.add_parser("params", help="show a plugin's parameters")
    params.add_argument("name", help="plugin name, e.g. hist2d")
    params.add_argument("--plugin-file", action="append", help="also load a local plugin file")
    params.set_defaults(func=_cmd_params)

    reference = sub.add_parser("config-reference",
                               help="print every config section and key (Markdown)")
    reference.set_defaults(func=_cmd_config_reference)

    hooks = sub.add_parser("hooks", help="print the plugin hook reference (Markdown)")
    hooks.set_defaults(func=_cmd_hooks)

    _add_simulate_parser(sub)

    compare = sub.add_parser("compare", help="run several configs on the same scenes, tabulate "
                             "accuracy against the truth and time")
    compare.add_argument("spec", help="comparison spec (YAML)")
    compare.add_argument("-o", "--output", required=True, help="output directory")
    compare.add_argument("-j", "--jobs", type=int, default=1, help="worker processes")
    compare.add_argument("--force", action="store_true", help="redo runs already stored")
    compare.add_argument("--no-plots", action="store_true", help="do not write figures")
    compare.add_argument("-q", "--quiet", action="store_true")
    compare.set_defaults(func=_cmd_compare)
    _add_local_plugins_flag(parser, sub.choices.values())
    return parser


def _add_local_plugins_flag(parser: argparse.ArgumentParser,
                            commands: Iterable[argparse.ArgumentParser]) -> None:
    """``--no-local-plugins`` before the command or after it (``aligncore run --no-...``)."""
    text = ("refuse local plugin .py files named in configs, specs or --plugin-file (they are "
            "code); same as ALIGNCORE_NO_LOCAL_PLUGINS=1")
    parser.add_argument("--no-local-plugins", action="store_true", help=text)
    for command in commands:
        command.add_argument("--no-local-plugins", action="store_true", help=text,
                             default=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aligncore`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        _route_warnings(args.debug)
        try:
            code = _dispatch(args)
            sys.stdout.flush()
        except BrokenPipeError:  # stdout closed early (``| head``): stop quietly
            _silence_stdout()
            return EXIT_BROKEN_PIPE
    return code


def _dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand; turn the expected errors into one line and an exit code."""
    from aligncore.config import ConfigError
    from aligncore.errors import AlignError
    from aligncore.filelock import Terminated, sigterm_as_exit
    from aligncore.registry import PluginError, refuse_local_plugins

    try:
        with (sigterm_as_exit(), refuse_local_plugins(args.no_local_plugins),
              contextlib.ExitStack() as args.cleanups):
            return int(args.func(args))
    except (ConfigError, _UsageError, PluginError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AlignError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM); no partial or temporary file left", file=sys.stderr)
        return EXIT_TERMINATED
    except BrokenPipeError:
        raise
    except Exception as exc:  # a bug: one line, the traceback with --debug
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the "
              "traceback)", file=sys.stderr)
        return EXIT_FAILED


def _route_warnings(debug: bool) -> None:
    """Print each Python warning as one ``warning: ...`` line, once per message."""
    if not debug:
        warnings.simplefilter("ignore", category=DeprecationWarning)
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr)

    warnings.showwarning = show


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
