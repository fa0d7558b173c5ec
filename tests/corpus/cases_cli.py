"""Corpus cases: command-line misuse (subcommands, options, overrides, specs).

Each is one line on stderr naming what is wrong (exit 2 for usage and
configuration, 1 for an input) and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from corpus.harness import case, copy_images, default_config, write_config


@case("cli", exit_code=2, message=r"invalid choice: 'algin'", outcome="usage error")
def cli_unknown_subcommand(work: Path) -> list[str]:
    """A misspelled subcommand."""
    return ["algin", default_config(work)]


@case("cli", exit_code=2, message=r"--set: tolerance: expected KEY=VALUE",
      outcome="configuration error showing the expected form")
def cli_set_without_equals(work: Path) -> list[str]:
    """A --set override without '='."""
    return ["validate", default_config(work), "--set", "tolerance"]


@case("cli", exit_code=2, message=r"matcher\.params\.tolerence: unknown key; did you mean "
      r"'tolerance'", outcome="configuration error with a suggestion")
def cli_set_unknown_key(work: Path) -> list[str]:
    """A --set override of a misspelled parameter."""
    return ["validate", default_config(work), "--set", "matcher.params.tolerence=0.5"]


@case("cli", exit_code=2, message=r"align\.minobj: Input should be a valid integer",
      outcome="configuration error naming the key and the type")
def cli_set_bad_value(work: Path) -> list[str]:
    """A --set override with a value of the wrong type."""
    images = copy_images(work, 2)
    return ["run", default_config(work), *map(str, images), "-o", str(work / "out"),
            "--set", "align.minobj=many"]


@case("cli", exit_code=2, message=r"no plugin named 'hist2' ?; did you mean 'hist2d'",
      outcome="usage error with a suggestion and the installed plugins")
def cli_params_unknown_plugin(work: Path) -> list[str]:
    """`aligncore params` of a plugin that is not installed."""
    return ["params", "hist2"]


@case("cli", exit_code=2, message=r"plugin file .*mine\.py: no such file",
      outcome="one-line error naming the file")
def cli_params_missing_plugin_file(work: Path) -> list[str]:
    """`aligncore params --plugin-file` naming a file that does not exist."""
    return ["params", "nearest", "--plugin-file", str(work / "mine.py")]


@case("cli", exit_code=2, message=r"absent\.yaml: file not found", outcome="one-line error")
def cli_validate_missing_config(work: Path) -> list[str]:
    """`aligncore validate` of a config file that does not exist."""
    return ["validate", str(work / "absent.yaml")]


@case("cli", exit_code=2, message=r"config\.yaml:1: the config must be a mapping",
      outcome="one-line error naming the file (no '<top>')")
def cli_config_not_a_mapping(work: Path) -> list[str]:
    """A config file that is a YAML list rather than a mapping."""
    return ["validate", write_config(work, "- detector\n- matcher\n")]


@case("cli", exit_code=2, message=r"the following arguments are required: images",
      outcome="usage error")
def cli_run_without_images(work: Path) -> list[str]:
    """`aligncore run` with a config and no images."""
    return ["run", default_config(work)]


@case("cli", exit_code=2, message=r"invalid choice: 'mosiac'", outcome="usage error")
def cli_simulate_bad_scenario(work: Path) -> list[str]:
    """`aligncore simulate` with a misspelled scenario."""
    return ["simulate", "mosiac", "-o", str(work / "scene")]


@case("cli", exit_code=2, message=r"n_images", outcome="usage error naming the knob")
def cli_simulate_bad_knob(work: Path) -> list[str]:
    """`aligncore simulate` with zero images."""
    return ["simulate", "dither", "-o", str(work / "scene"), "--n-images", "0"]


@case("cli", exit_code=2, message=r"spec\.yaml:\d+: invalid YAML", outcome="spec error")
def cli_compare_bad_spec(work: Path) -> list[str]:
    """`aligncore compare` with a spec that is not valid YAML."""
    spec = write_config(work, "variants: [\n", name="spec.yaml")
    return ["compare", spec, "-o", str(work / "cmp")]


@case("cli", exit_code=2, message=r"datasets: Field required", outcome="spec error listing "
      "every problem")
def cli_compare_spec_without_datasets(work: Path) -> list[str]:
    """`aligncore compare` with a spec that names no dataset."""
    spec = write_config(work, "variants:\n  - name: default\n", name="spec.yaml")
    return ["compare", spec, "-o", str(work / "cmp")]


@case("cli", exit_code=2, message=r"--jobs must be >= 1, got 0", outcome="usage error")
def cli_compare_zero_jobs(work: Path) -> list[str]:
    """`aligncore compare -j 0`."""
    spec = write_config(work, "variants:\n  - name: default\n", name="spec.yaml")
    return ["compare", spec, "-o", str(work / "cmp"), "-j", "0"]


@case("cli", exit_code=2, message=r"argument -j/--jobs: invalid int value: 'two'",
      outcome="usage error")
def cli_compare_jobs_not_a_number(work: Path) -> list[str]:
    """`aligncore compare -j two`."""
    spec = write_config(work, "variants:\n  - name: default\n", name="spec.yaml")
    return ["compare", spec, "-o", str(work / "cmp"), "-j", "two"]
