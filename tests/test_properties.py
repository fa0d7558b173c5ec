"""Property-based tests: arbitrary WCS keywords and config values give documented errors only.

Whatever the header of an image or the value of a config key, `check_inputs` returns
problems (it never raises), `open_image` raises nothing but `InputError`, `load_config`
nothing but `ConfigError`, and the command line returns an exit code without a traceback.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aligncore.cli import main
from aligncore.config import Config, ConfigError, load_config
from aligncore.errors import InputError
from aligncore.formats import open_image
from aligncore.preflight import FITS_BLOCK, check_inputs

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, 2.7e-5, -2.7e-5, 90.0, 91.0, -90.0, 360.0]),
    st.integers(-10**6, 10**6),
)
CTYPES = st.one_of(
    st.sampled_from(["RA---TAN", "DEC--TAN", "RA---TAN-SIP", "DEC--TAN-SIP", "RA---XYZ",
                     "DEC--XYZ", "GLON-TAN", "GLAT-TAN", "LINEAR", "", "RA---SIN", "DEC--SIN"]),
    st.text(alphabet="ABCDEFGRLNST-XYZ ", max_size=12),
)


def _number_text(value: float | int) -> str:
    """A FITS value as written by a careless tool: repr, so NaN and inf appear as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return {True: "NaN"}.get(math.isnan(value), "inf" if value > 0 else "-inf")
    return repr(value).upper()


def _card(key: str, value: str) -> str:
    return f"{key:<8}= {value:>20}".ljust(80)[:80]


@st.composite
def headers(draw: st.DrawFn) -> tuple[list[str], tuple[int, ...]]:
    """Header cards (raw text) and the data shape they announce."""
    naxis = draw(st.integers(0, 3))
    shape = tuple(draw(st.integers(1, 12)) for _ in range(naxis))
    cards = [_card("SIMPLE", "T"), _card("BITPIX", "-32"), _card("NAXIS", str(naxis))]
    cards += [_card(f"NAXIS{i + 1}", str(n)) for i, n in enumerate(shape)]
    for axis in (1, 2):
        if draw(st.booleans()):
            cards.append(_card(f"CTYPE{axis}", f"'{draw(CTYPES):<8}'"))
    keys = ["CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
            "CDELT1", "CDELT2", "PC1_1", "PC1_2", "PC2_1", "PC2_2"]
    for key in draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys))):
        cards.append(_card(key, _number_text(draw(NUMBERS))))
    for key in ("A_ORDER", "B_ORDER"):
        if draw(st.booleans()):
            cards.append(_card(key, str(draw(st.integers(-3, 60)))))
    return cards, shape[::-1]


def _write(path: Path, cards: list[str], shape: tuple[int, ...], cut: int) -> Path:
    header = "".join(cards) + "END".ljust(80)
    header += " " * (-len(header) % FITS_BLOCK)
    data = np.ones(shape, ">f4").tobytes() if shape else b""
    data += b"\0" * (-len(data) % FITS_BLOCK)
    raw = header.encode() + data
    path.write_bytes(raw[: max(len(raw) - cut, 0)])
    return path


@SETTINGS
@given(headers(), st.sampled_from([0, 0, 0, 1, 100, FITS_BLOCK]))
def test_any_header_gives_problems_or_an_image_never_a_crash(header, cut):
    cards, shape = header
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "img.fits", cards, shape, cut)
        problems = check_inputs([path])
        assert all(str(p).startswith(f"{path}: ") and "\n" not in str(p) for p in problems)
        try:
            image = open_image(path)
        except InputError as exc:
            assert str(exc).startswith(str(path))
        else:
            assert len(image.shape) == 2
        if cut:
            assert problems, "a truncated file must be reported"


def _known_keys(model: type = Config, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            keys += _known_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


KNOWN_KEYS = _known_keys() + ["matcher.params.searchrad", "matcher.params.tolerance",
                              "fitter.params.fitgeometry", "detector.params.kernel_fwhm",
                              "detector.params.snr_threshold", "fitter.params.nclip"]
YAML_VALUES = st.one_of(
    st.sampled_from(["null", "true", "-1", "0", "1e400", ".nan", "-.inf", "[]", "{}", "[1, 2]",
                     "{plugin: nope}", "''", "auto", "'1'", "~", "1e-300", "99999999999999999"]),
    st.floats(allow_nan=False).map(repr),
    st.integers().map(str),
    st.text(alphabet="abc:{}[],-' 0.", max_size=10),
)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(KNOWN_KEYS), YAML_VALUES), min_size=1, max_size=3))
def test_any_config_value_is_accepted_or_a_config_error(overrides):
    try:
        load_config(None, [f"{key}={value}" for key, value in overrides])
    except ConfigError as exc:
        assert str(exc)


@pytest.fixture(scope="module")
def good_image(tmp_path_factory):
    import aligncore

    scene = aligncore.simulate("dither", n_images=2, seed=3, shape=(128, 128), n_stars=30,
                               outdir=tmp_path_factory.mktemp("prop"))
    return scene.paths[0]


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(header=headers(), cut=st.sampled_from([0, 1, 100]),
       overrides=st.lists(st.tuples(st.sampled_from(KNOWN_KEYS), YAML_VALUES), max_size=2))
def test_the_command_line_returns_an_exit_code_never_a_traceback(good_image, header, cut,
                                                                  overrides, capsys):
    cards, shape = header
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "img.fits", cards, shape, cut)
        argv = ["run", str(Path(__file__).parents[1] / "configs" / "default.yaml"),
                str(good_image), str(path), "-o", str(Path(tmp) / "out"), "-q"]
        argv += [arg for key, value in overrides for arg in ("--set", f"{key}={value}")]
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        assert code in (0, 1, 2, 3)
        assert "Traceback" not in out + err


COLUMN_NAMES = st.sampled_from(["ra", "RA", "dec", "DEC", "RAJ2000", "DEJ2000", "x", "mag",
                                "pmra", "ra_error", "epoch", "source_id", "name"])
COLUMN_VALUES = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=8),
    st.lists(st.text(alphabet="0123456789:+-. ", max_size=6), min_size=0, max_size=8),
)


@SETTINGS
@given(st.dictionaries(COLUMN_NAMES, COLUMN_VALUES, max_size=5), st.integers(1, 10))
def test_any_reference_file_gives_problems_never_a_crash(columns, min_gaia):
    from astropy.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ref.ecsv"
        n = min((len(v) for v in columns.values()), default=0)
        Table({name: values[:n] for name, values in columns.items()}).write(path)
        config = load_config(None, [
            "absolute.enabled=true", f"absolute.min_gaia={min_gaia}",
            f"absolute.refcat={{plugin: file, params: {{path: '{path}'}}}}"])
        problems = check_inputs([], config)
        assert all(str(p).startswith(f"{path}: ") for p in problems)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["x", "y", "X", "xcentroid", "y_centroid", "flux", "id"]),
                       COLUMN_VALUES, max_size=4))
def test_any_user_catalog_is_read_or_refused_with_an_input_error(columns):
    from astropy.table import Table

    from aligncore.formats.catalog_files import read_catalog

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cat.ecsv"
        n = min((len(v) for v in columns.values()), default=0)
        Table({name: values[:n] for name, values in columns.items()}).write(path)
        try:
            table = read_catalog(path)
        except InputError as exc:
            assert str(exc).startswith(f"{path}: ")
        else:
            x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
            assert np.isfinite(x).all() and np.isfinite(y).all()
            assert len(table) + table.meta.get("dropped_rows", 0) == n
