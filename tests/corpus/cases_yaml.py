"""Corpus cases: hostile or broken YAML configs (all read with safe_load, plus limits)."""

from __future__ import annotations

from pathlib import Path

from corpus.harness import case, copy_images, write_config

CONFIG_ERROR = "config error with file:line, nothing written"


def _run_with(work: Path, text: str | bytes, *extra: str) -> list[str]:
    """``aligncore run`` of two good images with ``text`` as the config file."""
    images = copy_images(work, 2)
    config = work / "config.yaml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        write_config(work, text)
    return [*extra, "run", str(config), *map(str, images), "-o", str(work / "out"), "-q"]


def _laughs(levels: int) -> str:
    """A "billion laughs" document: each level repeats the previous one nine times."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{aliases}]")
    lines.append(f"plugins: *l{levels - 1}")
    return "\n".join(lines) + "\n"


@case("yaml", exit_code=2, message=r"config\.yaml:2: .*could not determine a constructor for the "
      r"tag .*python/object/apply:os\.system",
      outcome="config error; the tag is never constructed (no command runs)")
def python_object_tag(work: Path) -> list[str]:
    """A !!python/object/apply tag that would run a shell command under yaml.load."""
    return _run_with(work, 'matcher:\n  plugin: !!python/object/apply:os.system ["touch pwned"]\n')


@case("yaml", exit_code=2, message=r"could not determine a constructor for the tag "
      r".*python/name:builtins\.exec", outcome=CONFIG_ERROR)
def python_name_tag(work: Path) -> list[str]:
    """A !!python/name tag naming a Python callable."""
    return _run_with(work, "fitter: !!python/name:builtins.exec ''\n")


@case("yaml", exit_code=2, message=r"config\.yaml:1: .*expand this document to more than \d+ "
      r"values", outcome="config error in well under a second (no expansion)")
def billion_laughs(work: Path) -> list[str]:
    """Nine levels of anchors and aliases that expand to 387 million strings."""
    return _run_with(work, _laughs(9))


@case("yaml", exit_code=2, message=r"config\.yaml:1: .*alias refers to its own anchor",
      outcome=CONFIG_ERROR)
def recursive_alias(work: Path) -> list[str]:
    """An alias inside its own anchor (an endless list)."""
    return _run_with(work, "plugins: &me [a.py, *me]\n")


@case("yaml", exit_code=2, message=r"config\.yaml:2: .*invalid YAML: found character '\\t'",
      outcome=CONFIG_ERROR)
def tab_indentation(work: Path) -> list[str]:
    """A section indented with a tab."""
    return _run_with(work, "align:\n\tminobj: 5\n")


@case("yaml", exit_code=2, message=r"config\.yaml:4: matcher\.plugin: duplicate key \(first "
      r"given on line 2\)", outcome="config error naming both lines (YAML would keep the last)")
def duplicate_key(work: Path) -> list[str]:
    """The same key twice in one section."""
    return _run_with(work, "matcher:\n  plugin: hist2d\n  params: {}\n  plugin: triangles\n")


@case("yaml", exit_code=2, message=r"config\.yaml:1: the config must be a mapping",
      outcome=CONFIG_ERROR)
def top_level_list(work: Path) -> list[str]:
    """A YAML list instead of a mapping of sections."""
    return _run_with(work, "- detector\n- matcher\n")


@case("yaml", exit_code=2, message=r"config\.yaml: not a UTF-8 text file",
      outcome=CONFIG_ERROR)
def binary_garbage(work: Path) -> list[str]:
    """A PNG header instead of YAML text."""
    return _run_with(work, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")


@case("yaml", exit_code=2, message=r"config\.yaml:1: character U\+0000 is not allowed",
      outcome=CONFIG_ERROR)
def nul_byte(work: Path) -> list[str]:
    """UTF-8 text with a NUL byte in it."""
    return _run_with(work, "align:\x00\n  minobj: 5\n")


@case("yaml", exit_code=0, message=None, outcome="the recommended defaults are used",
      writes=True)
def empty_file(work: Path) -> list[str]:
    """An empty config file."""
    return _run_with(work, "")


@case("yaml", exit_code=2, message=r"config\.yaml:2: align\.max_rms_factor: Input should be a "
      r"finite number", outcome=CONFIG_ERROR)
def huge_number(work: Path) -> list[str]:
    """A float beyond double range (reads as infinity)."""
    return _run_with(work, "align:\n  max_rms_factor: 1.0e400\n")


@case("yaml", exit_code=2, message=r"config\.yaml:1: detectr: unknown key; did you mean "
      r"'detector'\?", outcome="config error with a suggestion")
def unknown_section(work: Path) -> list[str]:
    """A misspelled section name."""
    return _run_with(work, "detectr:\n  plugin: daofind\n")


@case("yaml", exit_code=2, message=r"config\.yaml:2: distortion\.plugin: distortion plugin "
      r"'polly' is not available.*did you mean 'poly'", outcome="config error with a suggestion")
def unknown_distortion_refiner(work: Path) -> list[str]:
    """A misspelled distortion refiner."""
    return _run_with(work, "distortion:\n  plugin: polly\n")


@case("yaml", exit_code=2, message=r"config\.yaml:4: distortion\.params\.max_degree: Input "
      r"should be less than or equal to 9", outcome=CONFIG_ERROR)
def distortion_degree_out_of_range(work: Path) -> list[str]:
    """A polynomial degree the poly refiner does not fit."""
    return _run_with(work, "distortion:\n  plugin: poly\n  params:\n    max_degree: 12\n")


@case("yaml", exit_code=2, message=r"config\.yaml:2: align\.minobj: Input should be a valid "
      r"integer", outcome=CONFIG_ERROR)
def wrong_type(work: Path) -> list[str]:
    """Text where a number is expected."""
    return _run_with(work, "align:\n  minobj: many\n")


@case("yaml", exit_code=2, message=r"config\.yaml:1: 7: section names must be text",
      outcome=CONFIG_ERROR)
def number_as_section_name(work: Path) -> list[str]:
    """A number used as a top-level key."""
    return _run_with(work, "7: seven\n")


@case("yaml", exit_code=2, message=r"config\.yaml: nested too deeply", outcome=CONFIG_ERROR)
def deep_nesting(work: Path) -> list[str]:
    """Lists nested 50,000 deep."""
    return _run_with(work, "plugins: " + "[" * 50_000 + "]" * 50_000 + "\n")


@case("yaml", exit_code=2, message=r"config\.yaml:3: .*invalid YAML: but found another document",
      outcome=CONFIG_ERROR)
def two_documents(work: Path) -> list[str]:
    """Two YAML documents in one file."""
    return _run_with(work, "align:\n  minobj: 5\n---\nalign:\n  minobj: 6\n")


@case("yaml", exit_code=2, message=r"config\.yaml:2: plugins\.0: plugin file not found: "
      r".*nowhere\.py", outcome=CONFIG_ERROR)
def missing_plugin_file(work: Path) -> list[str]:
    """plugins: names a .py file that does not exist."""
    return _run_with(work, "plugins:\n  - nowhere.py\n")


@case("yaml", exit_code=2, message=r"config\.yaml:2: plugins\.0: plugin file mine\.py .*not "
      r"loaded: local plugin files are refused .*to allow it",
      outcome="config error; the plugin file's code never runs")
def local_plugin_refused(work: Path) -> list[str]:
    """A config naming a local plugin file, run with --no-local-plugins."""
    (work / "mine.py").write_text("open('ran.txt', 'w').close()\n")
    return _run_with(work, "plugins:\n  - mine.py\n", "--no-local-plugins")


@case("yaml", exit_code=2, message=r"cannot read: .*Is a directory", outcome=CONFIG_ERROR)
def config_is_a_directory(work: Path) -> list[str]:
    """The config path is a directory."""
    argv = _run_with(work, "")
    (work / "config.yaml").unlink()
    (work / "config.yaml").mkdir()
    return argv


@case("yaml", exit_code=2, message=r"b\.yaml:1: extends: the configs extend each other in a "
      r"cycle: .*config\.yaml -> .*b\.yaml -> .*config\.yaml", outcome=CONFIG_ERROR)
def extends_cycle(work: Path) -> list[str]:
    """Two configs that extend each other."""
    write_config(work, "extends: config.yaml\n", name="b.yaml")
    return _run_with(work, "extends: b.yaml\n")


@case("yaml", exit_code=2, message=r"config\.yaml:1: extends: no built-in config 'jwst3' and "
      r"no file .*jwst3; valid: default, jwst, jwst-3\.0, none", outcome=CONFIG_ERROR)
def extends_unknown(work: Path) -> list[str]:
    """``extends:`` naming neither a built-in config nor a file."""
    return _run_with(work, "extends: jwst3\n")
