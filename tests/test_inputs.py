"""Input arguments: JWST associations, @lists and directories (`aligncore.inputs`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import aligncore
from aligncore import InputError
from aligncore.cli import main
from aligncore.inputs import (
    OUTPUT_ASSOCIATION,
    load_association,
    output_association,
    resolve_inputs,
)

DEFAULT = str(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")


def _asn(path: Path, members: list[dict], **top) -> Path:
    content = {"asn_type": "image3", "asn_pool": "jw01234_pool.csv", **top,
               "products": [{"name": "jw01234-o001_t001_nircam_clear-f200w",
                             "members": members}]}
    path.write_text(json.dumps(content))
    return path


@pytest.fixture()
def staged(small_scene, tmp_path):
    """The small scene's three images in ``tmp_path/data``."""
    data = tmp_path / "data"
    data.mkdir()
    return [Path(shutil.copy2(p, data / p.name)) for p in small_scene.paths]


def test_association_science_members_relative_to_its_directory(staged, tmp_path, monkeypatch):
    asn = _asn(staged[0].parent / "x_asn.json", [
        {"expname": staged[2].name, "exptype": "SCIENCE", "group_id": "g-a"},
        {"expname": "background_cal.fits", "exptype": "background"},  # not aligned
        {"expname": staged[0].name, "exptype": "science"},
    ])
    monkeypatch.chdir(tmp_path)  # the members are found from the association's directory
    inputs = resolve_inputs([Path("data") / "x_asn.json"])
    assert inputs.paths == (Path("data") / staged[2].name, Path("data") / staged[0].name)
    assert inputs.groups == {Path("data") / staged[2].name: "g-a"}
    assert load_association(asn).member_meta == {
        "exptype": "science", "table_name": "x_asn.json", "pool_name": "jw01234_pool.csv"}


@pytest.mark.parametrize(("text", "message"), [
    ('{"products": [{"members": [', r"invalid JSON at line 1 column 28"),
    ('[1, 2]', r"not a JWST association: no 'products' list"),
    ('{"products": [{"name": "p"}]}', r"products\[0\] has no 'members' list"),
    ('{"products": [{"members": [{"expname": 3, "exptype": "science"}]}]}',
     r"member 0 needs the strings 'expname' and 'exptype'"),
    ('{"products": [{"members": [{"expname": "a.fits", "exptype": "background"}]}]}',
     r"no science member"),
    ('{"products": [{"members": [{"expname": "gone_cal.fits", "exptype": "science"}]}]}',
     r"x_asn\.json: member 'gone_cal\.fits' not found \(looked in "),
])
def test_bad_associations_are_one_line_errors(tmp_path, text, message):
    (tmp_path / "x_asn.json").write_text(text)
    with pytest.raises(InputError, match=message) as info:
        resolve_inputs([tmp_path / "x_asn.json"])
    assert "\n" not in str(info.value)


def test_several_missing_members_are_named_in_one_line(staged):
    asn = _asn(staged[0].parent / "x_asn.json", [
        {"expname": "a_cal.fits", "exptype": "science"},
        {"expname": staged[0].name, "exptype": "science"},
        {"expname": "b_cal.fits", "exptype": "science"}])
    with pytest.raises(InputError, match=r"2 members not found: 'a_cal\.fits', 'b_cal\.fits'"):
        load_association(asn)


def test_at_list_drizzlepac_convention(staged, tmp_path, monkeypatch):
    listing = staged[0].parent / "images.txt"
    listing.write_text(f"# the exposures\n\n{staged[1].name}  {staged[1].stem}_ivm.fits\n"
                       f"   {staged[0].name}\n{staged[2]}\n")
    monkeypatch.chdir(tmp_path)
    inputs = resolve_inputs(["@data/images.txt"])
    assert inputs.paths == (Path("data") / staged[1].name, Path("data") / staged[0].name,
                            staged[2])
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(InputError, match=r"empty\.txt: the list names no image"):
        resolve_inputs([f"@{empty}"])
    with pytest.raises(InputError, match=r"absent\.txt: list file not found"):
        resolve_inputs([f"@{tmp_path / 'absent.txt'}"])


def test_directory_with_pattern(staged, tmp_path):
    directory = staged[0].parent
    assert resolve_inputs([directory], "img_00[12].fits").paths == tuple(staged[1:])
    assert resolve_inputs([directory], "*.fits").paths == tuple(staged)
    with pytest.raises(InputError, match=r"no file matches '\*_cal\.fits' in this directory"):
        resolve_inputs([directory])  # the default pattern: JWST calibrated images
    with pytest.raises(InputError, match=r"--pattern '\*\.fits' selects files of directory"):
        resolve_inputs(staged, "*.fits")


def test_run_on_an_association_and_a_list(staged, tmp_path, capsys):
    asn = _asn(staged[0].parent / "x_asn.json",
               [{"expname": p.name, "exptype": "science"} for p in staged])
    out = tmp_path / "out"
    assert main(["run", DEFAULT, str(asn), "-o", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [i["name"] for i in report["images"]] == [p.name for p in staged]
    assert {i["status"] for i in report["images"]} <= {"SUCCESS", "REFERENCE"}
    assert not list(out.glob("*_asn.json"))  # FITS images: no association for jwst steps
    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(str(p) for p in staged[:2]))
    assert main(["detect", DEFAULT, f"@{listing}", "-o", str(tmp_path / "cats"), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "cats").iterdir()) == [
        p.stem + "_cat.ecsv" for p in staged[:2]]


def test_run_with_a_missing_member_writes_nothing(staged, tmp_path, capsys):
    asn = _asn(staged[0].parent / "x_asn.json",
               [{"expname": p.name, "exptype": "science"} for p in staged]
               + [{"expname": "jw_gone_cal.fits", "exptype": "science"}])
    out = tmp_path / "out"
    assert main(["run", DEFAULT, str(asn), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {asn}: member 'jw_gone_cal.fits' not found (looked in "
                   f"{asn.parent})"]
    assert not out.exists()


def test_align_accepts_an_association_and_groups(staged, tmp_path):
    asn = _asn(staged[0].parent / "x_asn.json",
               [{"expname": p.name, "exptype": "science", "group_id": f"exp{k}"}
                for k, p in enumerate(staged)])
    result = aligncore.align([str(asn)], DEFAULT)
    assert result.ok
    assert [r.group_id for r in result.images] == ["exp0", "exp1", "exp2"]
    config = aligncore.load_config(DEFAULT)
    config.align.grouping = "image"  # the association's groups are not used
    config.align.groups = {staged[1].name: "mine"}  # ... the config's still are
    result = aligncore.align([str(asn)], config)
    assert [r.group_id for r in result.images] == [None, "mine", None]


def test_output_association(staged, tmp_path):
    asn = _asn(staged[0].parent / "x_asn.json",
               [{"expname": staged[0].name, "exptype": "science"},
                {"expname": "bkg_cal.fits", "exptype": "background"}], program="01234")
    inputs = resolve_inputs([asn])
    out = tmp_path / "out"
    name, content = output_association([(out / "a_tweakreg.fits", "g1")], out, inputs)
    assert name == "x_asn.json" and content["program"] == "01234"
    assert content["products"][0]["name"] == "jw01234-o001_t001_nircam_clear-f200w"
    assert content["products"][0]["members"] == [
        {"expname": "a_tweakreg.fits", "exptype": "science", "group_id": "g1"},
        {"expname": "../data/bkg_cal.fits", "exptype": "background"}]
    # written where the input association is: another name, the input is kept
    name, _ = output_association([(staged[0], None)], asn.parent, inputs)
    assert name == OUTPUT_ASSOCIATION
    name, content = output_association([(out / "b.fits", None)], out)
    assert name == OUTPUT_ASSOCIATION
    assert content["products"][0]["members"] == [{"expname": "b.fits", "exptype": "science"}]
