"""Roman WFI level-2 files for the tests and the corpus, made with roman_datamodels' maker.

`make_l2` turns one of aligncore's simulated GWCS exposures into a Roman L2
``ImageModel`` file (``ImageModel.create_fake_data``: every required node, with
placeholders, then the pixels, GWCS, wcsinfo, exposure times, observation id and a
``cal_step`` of the exposure), so that the truth of the scene still applies.
Needs roman_datamodels (callers skip without it).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import asdf
import astropy.units as u
import numpy as np
from astropy.time import Time

__all__ = ["EXPOSURE_S", "START", "make_l1", "make_l2", "roman_name"]

START = Time("2027-03-01T10:00:00", scale="utc")
"""Start of the first exposure; exposure k starts k x 300 s later."""
EXPOSURE_S = 140.0
_CAL_STEP = "asdf://stsci.edu/datamodels/roman/schemas/meta/l2_cal_step-2.0.0"


def roman_name(k: int, suffix: str = "cal") -> str:
    """A Roman-style exposure file name (``r<visit id>_<exposure>_wfi01_<suffix>.asdf``)."""
    return f"r0000101001001001001_{k + 1:04d}_wfi01_{suffix}.asdf"


def make_l2(source: Path, target: Path, k: int, *, group: str | None = None) -> Path:
    """Write the simulated ASDF exposure ``source`` as a Roman L2 ImageModel file ``target``.

    The observation id (romancal's group) is ``group`` or ``obs<k+1>``.
    """
    from roman_datamodels import datamodels as rdm

    with asdf.open(source, lazy_load=False) as af:
        data = np.array(af.tree["data"], np.float32)
        dq = np.array(af.tree["dq"], np.uint32)
        wcs = af.tree["wcs"]
        wcsinfo = dict(af.tree["meta"]["wcsinfo"])
    model = rdm.ImageModel.create_fake_data(shape=data.shape)
    model.data = data
    model.dq = dq
    model.meta.wcs = wcs
    for key, value in wcsinfo.items():
        model.meta.wcsinfo[key] = value
    model.meta.exposure.start_time = START + k * 300.0 * u.s
    model.meta.exposure.end_time = model.meta.exposure.start_time + EXPOSURE_S * u.s
    model.meta.observation.observation_id = group or f"obs{k + 1}"
    steps = asdf.schema.load_schema(_CAL_STEP)["required"]
    model.meta["cal_step"] = {step: "COMPLETE" for step in steps}
    model.meta.cal_step.tweakreg = "INCOMPLETE"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the maker's placeholder values
        model.save(target)
    return target


def make_l1(target: Path) -> Path:
    """Write a Roman level-1 (``ScienceRawModel``, a ramp cube) file made by the maker."""
    from roman_datamodels import datamodels as rdm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rdm.ScienceRawModel.create_fake_data(shape=(2, 32, 32)).save(target)
    return target
