"""The ``aligncore`` command line.

Exit codes: 0 success; 1 an input error or an image that failed to align (the
message names the file and the problem); 2 a configuration or usage error; 3
the images were aligned relative to each other and written, but the absolute
alignment (reference catalog) was not applied. Tracebacks are shown only with
``--debug``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aligncore import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_ABSOLUTE_FAILED = 3


class _UsageError(Exception):
    pass


def _progress(enabled: bool) -> Any:
    def wrap(items: Iterable[Any], desc: str, total: int) -> Iterable[Any]:
        if not enabled:
            return items
        from tqdm import tqdm

        return tqdm(items, desc=desc, total=total, unit="image", leave=False)

    return wrap


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from aligncore.config import load_config
    from aligncore.registry import build_registry

    config = load_config(args.config, args.set or ())
    return config, build_registry(config.plugin_files())


def _inputs_ok(paths: Sequence[str], config: Any, registry: Any) -> bool:
    """Check every input before any work (`aligncore.preflight`); print each problem once."""
    from aligncore.preflight import check_inputs

    problems = [str(p) for p in check_inputs(paths, config, registry=registry)]
    # OUTPUT-DIR-CHECK: the lead plugs outputs.output_dir_problems(outdir, paths, in_place)
    # in here (problems += ...), so that they are reported with the input problems.
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
    from aligncore.io import open_image

    if not _inputs_ok(args.images, config, registry):
        return EXIT_FAILED
    images = [open_image(path) for path in args.images]
    result = align(images, config, registry=registry,
                   progress=_progress(sys.stderr.isatty() and not args.quiet))
    write_outputs(result, images, config, registry=registry)
    if args.plots:
        from aligncore.plots import write_plots

        try:
            write_plots(result, config.output.dir, images)
        except ImportError as exc:
            print(f"warning: no plots written: {exc}", file=sys.stderr)
    if not args.quiet:
        print(format_table(result))
        print(f"outputs written to {config.output.dir}" if not config.output.in_place
              else "inputs updated in place")
    for image in result.failed:
        print(f"error: {image.path or image.name}: {image.reason}", file=sys.stderr)
    return _exit_code(result, config)


def _exit_code(result: Any, config: Any) -> int:
    if not result.ok:
        return EXIT_FAILED
    if config.absolute.enabled and result.absolute is None:
        reason = result.meta.get("absolute", {}).get("reason", "unknown reason")
        print(f"warning: absolute alignment not applied ({reason}); the relative alignment "
              "was written", file=sys.stderr)
        return EXIT_ABSOLUTE_FAILED
    return EXIT_OK


def _cmd_detect(args: argparse.Namespace) -> int:
    from aligncore.execution import detect_images
    from aligncore.io import open_image
    from aligncore.outputs import write_catalogs

    config, registry = _load(args)
    if not _inputs_ok(args.images, None, registry):
        return EXIT_FAILED
    images = [open_image(path) for path in args.images]
    detector = config.build_stage("detector", registry)
    outcomes = detect_images(images, detector, config, registry,
                             _progress(sys.stderr.isatty() and not args.quiet))
    catalogs = [o.catalog for o in outcomes]
    outdir = Path(args.output)
    paths = write_catalogs([i.name for i in images], catalogs, outdir, config.output.catalog_format)
    for image, catalog, path in zip(images, catalogs, paths, strict=True):
        print(f"{image.name}: {len(catalog)} sources -> {path}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from aligncore.config import load_config
    from aligncore.io import open_image
    from aligncore.outputs import write_outputs
    from aligncore.pipeline import align
    from aligncore.registry import build_registry
    from aligncore.report import format_table
    from aligncore.simulate import simulate

    config = load_config(None, args.set or ())
    registry = build_registry(config.plugin_files())
    with tempfile.TemporaryDirectory(prefix="aligncore-demo-") as tmp:
        workdir = Path(args.output) if args.output else Path(tmp)
        print(f"simulating a dither of {args.n_images} images with 0.1-3\" pointing errors "
              f"(seed {args.seed}) ...")
        scene = simulate("dither", n_images=args.n_images, seed=args.seed,
                         outdir=workdir / "input")
        images = [open_image(path) for path in scene.paths]
        result = align(images, config, registry=registry,
                       progress=_progress(sys.stderr.isatty()))
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
    config, registry = _load(args)
    print(f"{args.config}: OK")
    for kind in ("detector", "matcher", "fitter"):
        stage = config.build_stage(kind, registry)
        print(f"  {kind:9s} {stage!r}")
    print(f"  corrector {config.corrector.plugin}")
    if config.absolute.enabled:
        print(f"  refcat    {config.build_stage('refcatalog', registry)!r}")
    return EXIT_OK


def _cmd_plugins(args: argparse.Namespace) -> int:
    from aligncore.registry import build_registry

    registry = build_registry(args.plugin_file or ())
    rows = [("stage", "name", "distribution", "version", "description")]
    for info in registry.plugins():
        rows.append((info.kind, info.name, info.distribution, info.version, info.summary))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    for label, problem in registry.failures.items():
        print(f"failed to load: {label}: {problem}", file=sys.stderr)
    return EXIT_OK


def _type_name(annotation: Any) -> str:
    """Readable type of a parameter: ``float | 'auto'``, ``'shift' | 'rshift'``, ``int | None``."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *constraints = typing.get_args(annotation)
        metadata = [m for c in constraints for m in getattr(c, "metadata", [c])]
        bounds = ", ".join(str(m) for m in metadata)
        return f"{_type_name(base)} [{bounds}]" if bounds else _type_name(base)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _describe_params(info: Any) -> list[str]:
    lines = [f"{info.kind} plugin {info.name!r} ({info.distribution} {info.version})"]
    doc = (info.cls.__doc__ or "").strip()
    if doc:
        lines.append("  " + doc.splitlines()[0])
    fields = info.cls.Params.model_fields
    if not fields:
        lines.append("  (no parameters)")
    for name, field in fields.items():
        annotation = _type_name(field.annotation)
        default = "required" if field.is_required() else repr(field.get_default(
            call_default_factory=True))
        bounds = ", ".join(str(m) for m in field.metadata)
        line = f"  {name}: {annotation} = {default}"
        if bounds:
            line += f"  [{bounds}]"
        lines.append(line)
        if field.description:
            lines.append(f"      {field.description}")
    return lines


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
    for info in found:
        print("\n".join(_describe_params(info)))
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from aligncore.simulate import simulate

    options: dict[str, Any] = {"n_images": args.n_images, "seed": args.seed, "outdir": args.output,
                               "sip": args.sip, "wcs": args.wcs}
    if args.size:
        options["shape"] = (args.size, args.size)
    scene = simulate(args.scenario, **options)
    print(f"wrote {len(scene.paths)} images, truth.json, stars.ecsv and refcat.ecsv to "
          f"{args.output}")
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from aligncore.compare import run_compare

    if args.jobs < 1:
        raise _UsageError(f"--jobs must be >= 1, got {args.jobs}")
    result = run_compare(args.spec, args.output, jobs=args.jobs, force=args.force,
                         progress=sys.stderr.isatty() and not args.quiet, plots=not args.no_plots)
    if not args.quiet:
        print(result.markdown("variants"))
        print(f"{result.n_new} runs done, {result.n_reused} reused; tables and figures in "
              f"{args.output} (report.md)")
    return EXIT_OK


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``aligncore`` command."""
    parser = argparse.ArgumentParser(
        prog="aligncore", description="Align astronomical images (detect, match, fit, correct).")
    parser.add_argument("--version", action="version", version=f"aligncore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="align images and write corrected copies")
    _add_config_args(run)
    run.add_argument("images", nargs="+", help="FITS or ASDF images")
    run.add_argument("-o", "--output", help="output directory (default: the config's output.dir)")
    run.add_argument("--in-place", action="store_true", help="update the input files themselves")
    run.add_argument("--resume", action="store_true",
                     help="reuse the catalogs a previous run saved in the output directory "
                     "(and save them)")
    run.add_argument("--plots", action="store_true",
                     help="also write residual and 2D-histogram figures per image (PNG, in the "
                     "output directory; needs matplotlib)")
    run.add_argument("-q", "--quiet", action="store_true")
    run.set_defaults(func=_cmd_run)

    detect = sub.add_parser("detect", help="detect sources and write catalogs only")
    _add_config_args(detect)
    detect.add_argument("images", nargs="+")
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

    simulate = sub.add_parser("simulate", help="write a simulated scene with ground truth")
    simulate.add_argument("scenario", choices=["dither", "mosaic", "sparse", "crowded"])
    simulate.add_argument("-o", "--output", required=True)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--n-images", type=int, default=4)
    simulate.add_argument("--size", type=int, help="image size in pixels (square)")
    simulate.add_argument("--sip", action="store_true", help="add SIP distortion")
    simulate.add_argument("--wcs", choices=["fits", "gwcs"], default="fits",
                          help="fits: FITS files with a FITS WCS; gwcs: ASDF files with a "
                               "NIRCam-like GWCS (detector -> v2v3 -> world)")
    simulate.set_defaults(func=_cmd_simulate)

    compare = sub.add_parser("compare", help="run several configs on the same scenes, tabulate "
                             "accuracy against the truth and time")
    compare.add_argument("spec", help="comparison spec (YAML)")
    compare.add_argument("-o", "--output", required=True, help="output directory")
    compare.add_argument("-j", "--jobs", type=int, default=1, help="worker processes")
    compare.add_argument("--force", action="store_true", help="redo runs already stored")
    compare.add_argument("--no-plots", action="store_true", help="do not write figures")
    compare.add_argument("-q", "--quiet", action="store_true")
    compare.set_defaults(func=_cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aligncore`` command; returns the exit code."""
    from aligncore.config import ConfigError
    from aligncore.errors import AlignError
    from aligncore.registry import PluginError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        warnings.simplefilter("ignore", category=DeprecationWarning)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (_UsageError, PluginError) as exc:
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
