"""JWST ``*_cal.fits`` ImageModel files made from the simulator's GWCS exposures (tests only;
needs stdatamodels)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import asdf
import numpy as np
from stdatamodels.jwst import datamodels

from aligncore.formats.jwst import s_region, sip_approximation

SHAPE = (320, 320)


def cal_name(k: int) -> str:
    return f"jw01234001001_02101_{k + 1:05d}_nrca1_cal.fits"


def cal_file(source: Path, target: Path, k: int) -> Path:
    """The ASDF exposure ``source`` as a JWST ImageModel ``*_cal.fits`` (with a SIP header
    and ``S_REGION``, as the JWST pipeline's assign_wcs leaves it)."""
    with asdf.open(source, lazy_load=False) as af:
        tree = af.tree
        model = datamodels.ImageModel(data=np.array(tree["data"], np.float32),
                                      dq=np.array(tree["dq"], np.uint32))
        wcs = tree["wcs"]
        wcsinfo = dict(tree["meta"]["wcsinfo"])
    with model:
        model.meta.wcs = wcs
        for key, value in wcsinfo.items():
            setattr(model.meta.wcsinfo, key, value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = sip_approximation(wcs, SHAPE)
        model.meta.wcsinfo.instance.update(
            {key.lower(): value for key, value in header.items() if not key.startswith("NAXIS")})
        model.meta.wcsinfo.s_region = s_region(wcs, SHAPE)
        # the simulator's detector x runs along -V2 and y along +V3
        model.meta.wcsinfo.v3yangle, model.meta.wcsinfo.vparity = 0.0, -1
        # a SIP card outside the JWST schema (kept as an extra FITS card), e.g. another
        # tool's inverse SIP: stale once the WCS is corrected
        model.instance["extra_fits"] = {"SCI": {"header": [["AP_0_1", 1e-6, "inverse SIP"]]}}
        obs = model.meta.observation
        obs.date, obs.time = "2024-05-01", "12:00:00.000"
        obs.program_number, obs.observation_number, obs.visit_number = "01234", "001", "001"
        obs.visit_group, obs.sequence_id, obs.activity_id = "02", "1", "01"
        obs.exposure_number = f"{k + 1:05d}"
        model.meta.instrument.name, model.meta.instrument.detector = "NIRCAM", "NRCA1"
        model.meta.exposure.type = "NRC_IMAGE"
        exposure = model.meta.exposure  # what jwst's resample step reads
        exposure.exposure_time = exposure.effective_exposure_time = 100.0
        exposure.measurement_time = exposure.duration = 100.0
        exposure.start_time, exposure.mid_time, exposure.end_time = (
            60431.5 - 50 / 86400, 60431.5, 60431.5 + 50 / 86400)  # 2024-05-01T12:00 mid
        model.save(str(target))
    return target


POOL = "jw01234_20240501t000000_pool.csv"
PRODUCT = "jw01234-o001_t001_nircam_clear-f200w"


def write_association(files: list[Path], path: Path) -> Path:
    """An image3 association of ``files`` (science members, relative names) at ``path``."""
    content = {"asn_type": "image3", "asn_rule": "candidate_Asn_Lv3Image", "program": "01234",
               "asn_pool": POOL, "products": [{
                   "name": PRODUCT,
                   "members": [{"expname": f.name, "exptype": "science"} for f in files]}]}
    path.write_text(json.dumps(content))
    return path
