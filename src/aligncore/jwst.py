"""aligncore as a jwst pipeline step: `AlignStep`, in place of jwst's TweakRegStep.

Needs the optional extra ``jwst-step`` (``pip install 'aligncore[jwst-step]'``,
which installs jwst and with it stpipe); this module is the only one of aligncore
that imports them, and ``import aligncore`` never imports it.

`AlignStep` takes TweakRegStep's parameters (jwst 3.0.0's spec, same names and
defaults) and maps them onto an aligncore config (`step_config`): the star finder
and its parameters onto ``detector``, ``searchrad`` ... ``yoffset`` onto the
``hist2d`` matcher, ``fitgeometry``/``nclip``/``sigma`` onto the ``affine``
fitter, ``enforce_user_order``/``expand_refcat``/``minobj`` onto ``align``, the
``abs_*`` parameters onto ``absolute`` (``abs_refcat``: one of jwst's Gaia
catalog names, or a catalog file), ``save_catalogs``/``catalog_format`` onto
``output`` and the ``sip_*`` parameters onto the FITS SIP approximation. Its one
extra parameter, ``aligncore_config``, says which config they apply to:

- ``default`` (the default): aligncore's recommended config, with the parameters
  given other values than TweakRegStep's defaults applied on top
  (`changed_settings`: ``searchrad = 5`` sets ``matcher.params.searchrad``);
- ``jwst``: every parameter mapped, i.e. ``configs/jwst-3.0.yaml`` for the
  defaults (tweakreg's detection, matching and unweighted fits);
- a path: that aligncore YAML config, with the changed parameters on top.

Each model is updated as TweakRegStep updates it (`aligncore.formats.jwst.apply_alignment`):
corrected GWCS, SIP approximation with inverse, ``S_REGION``,
``meta.cal_step.tweakreg``, ``meta.group_id``. With fewer than two exposure groups
and no absolute catalog the step is skipped, as jwst's is.

Use it alone (``strun aligncore.jwst.AlignStep x_asn.json``) or in an Image3
pipeline (`Image3Pipeline`: jwst's, with this step as its ``tweakreg``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

try:
    from jwst.datamodels import ModelLibrary
    from jwst.pipeline import Image3Pipeline as _JwstImage3Pipeline
    from jwst.stpipe import Step
except ImportError as exc:  # pragma: no cover - exercised only without jwst
    raise ImportError(f"aligncore.jwst needs the jwst package ({exc}); install it with "
                      "pip install 'aligncore[jwst-step]'") from exc

import yaml

from aligncore import __version__
from aligncore.config import Config, load_config_and_registry
from aligncore.formats.catalog_files import write_catalog
from aligncore.formats.jwst import apply_alignment, image_from_model, moved
from aligncore.pipeline import align

__all__ = ["GAIA_CATALOGS", "AlignStep", "Image3Pipeline", "changed_settings", "sip_options",
           "step_config"]

log = logging.getLogger(__name__)

GAIA_CATALOGS = ("GAIAREFCAT", "GAIADR3", "GAIADR2", "GAIADR1")
"""``abs_refcat`` values naming a Gaia catalog (jwst 3.0's list); other values are files."""
_STARFINDERS = {"dao": "daofind", "iraf": "iraf", "segmentation": "segmentation"}
_COMMON = ("snr_threshold", "kernel_fwhm", "bkg_boxsize", "brightest", "peakmax")
_DETECTOR = {
    "daofind": (*_COMMON, "minsep_fwhm", "sigma_radius", "sharplo", "sharphi", "roundlo",
                "roundhi"),
    "iraf": (*_COMMON, "minsep_fwhm", "sigma_radius", "sharplo", "sharphi", "roundlo",
             "roundhi"),
    "segmentation": (*_COMMON, "npixels", "nlevels", "contrast", "deblend"),
}
_MATCHER = ("searchrad", "use2dhist", "separation", "tolerance", "xoffset", "yoffset")
_FITTER = ("fitgeometry", "nclip", "sigma")
_ALIGN = ("enforce_user_order", "expand_refcat", "minobj")
_UNMAPPED = {"connectivity": "8", "multithresh_mode": "exponential", "localbkg_width": 0,
             "apermask_method": "correct", "kron_params": None}
"""Segmentation parameters of the step that aligncore's segmentation detector does not
have (jwst's defaults; another value is reported in the log and not used)."""


def step_config(pars: Mapping[str, Any], output_dir: str | Path | None = None) -> dict[str, Any]:
    """The aligncore config (as a mapping) equivalent to TweakRegStep parameters.

    Parameters
    ----------
    pars : mapping
        The step's parameters (names of jwst 3.0.0's TweakRegStep spec).
    output_dir : path, optional
        Where catalogs are written (``output.dir``; default: the working directory).

    Returns
    -------
    dict
        Sections ``detector``, ``matcher``, ``fitter``, ``align``, ``absolute`` and
        ``output``, as in ``configs/jwst-3.0.yaml`` for the default parameters.
    """
    detector = _STARFINDERS[str(pars["starfinder"])]
    absolute: dict[str, Any] = {
        "enabled": False,
        "min_gaia": int(pars["abs_minobj"]),
        "save_gaia_catalog": bool(pars["save_abs_catalog"]),
        "matcher": {"plugin": "hist2d", "params": {
            key: pars[f"abs_{key}"] for key in ("searchrad", "use2dhist", "separation",
                                                "tolerance")}},
        "fitter": {"plugin": "affine", "params": {
            key: pars[f"abs_{key}"] for key in _FITTER}},
    }
    refcat = str(pars.get("abs_refcat") or "").strip()
    if refcat and refcat.lower() != "none":
        absolute["enabled"] = True
        if refcat.upper() in GAIA_CATALOGS:
            absolute["refcat"] = {"plugin": "gaia", "params": {"catalog": refcat.upper()}}
        else:
            absolute["refcat"] = {"plugin": "file",
                                  "params": {"path": str(Path(refcat).resolve())}}
    return {
        "extends": "none",  # a complete config, not layered on aligncore's default
        "detector": {"plugin": detector,
                     "params": {key: pars[key] for key in _DETECTOR[detector]}},
        "matcher": {"plugin": "hist2d", "params": {key: pars[key] for key in _MATCHER}},
        "fitter": {"plugin": "affine", "params": {key: pars[key] for key in _FITTER}},
        "align": {**{key: pars[key] for key in _ALIGN}, "use_weights": False},
        "absolute": absolute,
        "corrector": {"plugin": "auto"},
        "output": {"dir": str(output_dir or "."), "save_catalogs": bool(pars["save_catalogs"]),
                   "catalog_format": str(pars["catalog_format"])},
    }


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_settings(pars: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The config keys (dotted) that step parameters set to other values than TweakRegStep's
    defaults: `step_config` of ``pars`` where it differs from `step_config` of ``defaults``
    (``starfinder = 'segmentation'`` gives ``detector.plugin`` and the segmentation-only
    parameters; ``abs_refcat`` gives ``absolute.enabled`` and ``absolute.refcat``)."""
    ours, theirs = _flatten(step_config(pars)), _flatten(step_config(defaults))
    return {key: value for key, value in ours.items()
            if key not in theirs or theirs[key] != value}


def sip_options(pars: Mapping[str, Any]) -> dict[str, Any] | None:
    """`aligncore.formats.jwst.sip_approximation` options from the step's ``sip_*``
    parameters; None when ``sip_approx`` is false (the FITS keywords are not updated)."""
    if not pars["sip_approx"]:
        return None
    return {"max_pix_error": float(pars["sip_max_pix_error"]), "degree": pars["sip_degree"],
            "max_inv_pix_error": float(pars["sip_max_inv_pix_error"]),
            "inv_degree": pars["sip_inv_degree"], "npoints": int(pars["sip_npoints"])}


def _read_catfile(path: str) -> dict[str, str]:
    """jwst's ``catfile``: lines ``<image file> <catalog file>`` (relative to the catfile;
    ``#`` comments); an image listed without a catalog keeps detection."""
    catfile = Path(path)
    catalogs = {}
    for line in catfile.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2:
            catalogs[Path(fields[0]).name] = str((catfile.parent / fields[1]).resolve())
    return catalogs


class AlignStep(Step):
    """Align the images of an association with aligncore (TweakRegStep's interface)."""

    class_alias = "tweakreg"

    spec = """
        save_catalogs = boolean(default=False) # Write out catalogs?
        use_custom_catalogs = boolean(default=False) # Use custom user-provided catalogs?
        catalog_format = string(default='ecsv') # Catalog output file format
        catfile = string(default='') # Name of the file with a list of custom user-provided catalogs
        starfinder = option('dao', 'iraf', 'segmentation', default='iraf') # Star finder to use.
        snr_threshold = float(default=10.0) # SNR threshold above the bkg for star finder
        kernel_fwhm = float(default=2.5) # Gaussian kernel FWHM in pixels
        bkg_boxsize = integer(default=400) # The background mesh box size in pixels.
        minsep_fwhm = float(default=0.0) # Minimum separation between detected objects in FWHM
        sigma_radius = float(default=1.5) # Truncation radius of the Gaussian kernel (sigma)
        sharplo = float(default=0.5) # The lower bound on sharpness for object detection.
        sharphi = float(default=2.0) # The upper bound on sharpness for object detection.
        roundlo = float(default=0.0) # The lower bound on roundness for object detection.
        roundhi = float(default=0.2) # The upper bound on roundness for object detection.
        brightest = integer(default=200) # Keep top ``brightest`` objects
        peakmax = float(default=None) # Filter out objects with pixel values >= ``peakmax``
        npixels = integer(default=10) # Minimum number of connected pixels (segmentation)
        connectivity = option(4, 8, default=8) # Not used by aligncore (jwst's segmentation)
        nlevels = integer(default=32) # Number of multi-thresholding levels for deblending
        contrast = float(default=0.001) # Flux fraction of a deblended object
        multithresh_mode = option('exponential', 'linear', 'sinh', default='exponential') # Not used by aligncore
        localbkg_width = integer(default=0) # Not used by aligncore
        apermask_method = option('correct', 'mask', 'none', default='correct') # Not used by aligncore
        kron_params = float_list(min=2, max=3, default=None) # Not used by aligncore
        deblend = boolean(default=True) # deblend sources?
        enforce_user_order = boolean(default=False) # Align images in user specified order?
        expand_refcat = boolean(default=False) # Expand reference catalog with new sources?
        minobj = integer(default=15) # Minimum number of objects acceptable for matching
        fitgeometry = option('shift', 'rshift', 'rscale', 'general', default='rshift') # Fitting geometry
        nclip = integer(min=0, default=3) # Number of clipping iterations in fit
        sigma = float(min=0.0, default=3.0) # Clipping limit in sigma units
        searchrad = float(default=2.0) # The search radius in arcsec for a match
        use2dhist = boolean(default=True) # Use 2d histogram to find initial offset?
        separation = float(default=1.0) # Minimum object separation in arcsec
        tolerance = float(default=0.7) # Matching tolerance in arcsec
        xoffset = float(default=0.0) # Initial guess for X offset in arcsec
        yoffset = float(default=0.0) # Initial guess for Y offset in arcsec
        abs_refcat = string(default='') # GAIAREFCAT, GAIADR3, GAIADR2, GAIADR1 or a catalog file
        save_abs_catalog = boolean(default=False) # Write out the absolute reference catalog
        abs_minobj = integer(default=15) # Minimum number of objects for absolute alignment
        abs_fitgeometry = option('shift', 'rshift', 'rscale', 'general', default='rshift')
        abs_nclip = integer(min=0, default=3) # Clipping iterations of the absolute fit
        abs_sigma = float(min=0.0, default=3.0) # Clipping limit of the absolute fit (sigma)
        abs_searchrad = float(default=6.0) # Search radius in arcsec, absolute alignment
        abs_use2dhist = boolean(default=True) # Use 2D histogram, absolute alignment
        abs_separation = float(default=1) # Minimum object separation in arcsec, absolute
        abs_tolerance = float(default=0.7) # Matching tolerance in arcsec, absolute
        sip_approx = boolean(default=True) # enables SIP approximation for imaging modes.
        sip_max_pix_error = float(default=0.01) # max err for SIP fit, forward.
        sip_degree = integer(max=6, default=None) # degree for forward SIP fit, None to use best fit.
        sip_max_inv_pix_error = float(default=0.01) # max err for SIP fit, inverse.
        sip_inv_degree = integer(max=6, default=None) # degree for inverse SIP fit, None to use best fit.
        sip_npoints = integer(default=12) #  number of points for SIP
        aligncore_config = string(default='default') # 'default' (aligncore's config), 'jwst' (tweakreg's) or an aligncore YAML config
        output_use_model = boolean(default=True) # When saving use `DataModel.meta.filename`
        in_memory = boolean(default=True) # If False, preserve memory using temporary files
    """  # noqa: E501

    reference_file_types: ClassVar[list[str]] = []

    def process(self, input_data: Any) -> Any:
        """Align the models of ``input_data`` (an association, a ModelLibrary, models).

        Returns
        -------
        ModelLibrary
            The models, updated as TweakRegStep updates them.
        """
        output = self.prepare_output(input_data, open_models=False)
        library = (output if isinstance(output, ModelLibrary)
                   else ModelLibrary(output, on_disk=not self.in_memory))
        if len(library) == 0:
            raise ValueError("Input must contain at least one image model.")
        config, registry = self._config(library)
        if len(library.group_names) < 2 and not config.absolute.enabled:
            log.warning("At least two exposures are required for image alignment.")
            log.warning("Nothing to do. Skipping 'AlignStep'...")
            self._mark_skipped(library)
            return library
        images = self._images(library)
        result = align(images, config, registry=registry)
        for image in result.failed:
            log.warning(f"{image.name}: not aligned: {image.reason}")
        self._save_catalogs(library, result)
        wcsname = "FIT-REL"
        if result.absolute is not None:  # jwst's name of the GWCS of an absolute fit
            wcsname = f"FIT-LVL3-{self.abs_refcat}"
            for image, aligned in zip(images, result.images, strict=True):
                if moved(image, aligned):
                    aligned.wcs.name = wcsname
        sip = sip_options(self.get_pars())
        with library:
            for index, model in enumerate(library):
                apply_alignment(model, images[index], result.images[index], wcsname=wcsname,
                                version=__version__, sip=sip)
                library.shelve(model, index)
        if config.absolute.save_gaia_catalog and result.reference_catalog is not None:
            # jwst's name, fit_<catalog>_ref.ecsv (a file catalog: its name without suffix)
            label = Path(str(self.abs_refcat)).stem.lower()
            write_catalog(result.reference_catalog,
                          Path(self.output_dir or ".") / f"fit_{label}_ref.ecsv", "ecsv")
        return library

    def _config(self, library: Any) -> tuple[Config, Any]:
        """The aligncore config of ``aligncore_config`` (see `AlignStep`)."""
        pars = self.get_pars()
        for key, default in _UNMAPPED.items():
            if pars[key] != default and self.starfinder == "segmentation":
                log.warning(f"{key} = {pars[key]!r} is not used by aligncore's segmentation "
                            "detector")
        catalogs = self._custom_catalogs(library) if self.use_custom_catalogs else {}
        if self.aligncore_config == "jwst":
            data = step_config(pars, self.output_dir)
            if catalogs:
                data["detector"]["catalogs"] = catalogs
            with tempfile.TemporaryDirectory(prefix="aligncore-step-") as tmp:
                path = Path(tmp) / "config.yaml"
                path.write_text(yaml.safe_dump(data))
                return load_config_and_registry(path)
        base = None if self.aligncore_config in ("", "default") else self.aligncore_config
        overrides = changed_settings(pars, type(self)().get_pars())
        if catalogs:
            overrides["detector.catalogs"] = catalogs
        log.info(f"aligncore config {base or 'default'} with {overrides or 'no changes'}")
        return load_config_and_registry(
            base, [f"{key}={json.dumps(value)}" for key, value in overrides.items()])

    def _custom_catalogs(self, library: Any) -> dict[str, str]:
        """User catalogs, by image name: the ``catfile``, else the association's
        ``tweakreg_catalog`` member entries (as TweakRegStep reads them)."""
        if self.catfile.strip():
            return _read_catfile(self.catfile)
        catalogs = {}
        if library.asn_dir is not None:
            for member in library.asn["products"][0]["members"]:
                name = str(member.get("tweakreg_catalog") or "").strip()
                if name:
                    catalogs[Path(member["expname"]).name] = str(
                        (Path(library.asn_dir) / name).resolve())
        return catalogs

    def _images(self, library: Any) -> list[Any]:
        """One aligncore image per model (its GWCS, group and pixels)."""
        images = []
        with library:
            for index, model in enumerate(library):
                name = Path(model.meta.filename or f"model_{index}.fits").name
                images.append(image_from_model(model, name, group_id=model.meta.group_id))
                library.shelve(model, index, modify=False)
        return images

    def _save_catalogs(self, library: Any, result: Any) -> None:
        """``save_catalogs``: each detected catalog as ``<file>_cat.<format>`` in the output
        directory, named in ``meta.tweakreg_catalog`` (as TweakRegStep does)."""
        if not self.save_catalogs:
            return
        suffix = {"ecsv": "ecsv", "fits": "fits"}[self.catalog_format]
        with library:
            for index, model in enumerate(library):
                catalog = result.images[index].catalog
                name = str(model.meta.filename).replace(".fits", f"_cat.{suffix}")
                write_catalog(catalog, Path(self.output_dir or ".") / name, self.catalog_format)
                model.meta.tweakreg_catalog = name
                library.shelve(model, index)

    def _mark_skipped(self, library: Any) -> None:
        with library:
            for index, model in enumerate(library):
                model.meta.cal_step.tweakreg = "SKIPPED"
                library.shelve(model, index)


class Image3Pipeline(_JwstImage3Pipeline):
    """jwst's Image3Pipeline with `AlignStep` as its ``tweakreg`` step.

    stpipe builds a pipeline's steps from the class's ``step_defs`` (a ``class:``
    key in a pipeline config file is not used for them), so swapping the
    alignment step is a subclass: ``strun aligncore.jwst.Image3Pipeline x_asn.json``
    or ``Image3Pipeline.call(asn, steps={"tweakreg": {...}})`` with the same
    parameter names as jwst's.
    """

    class_alias = "aligncore_image3"
    step_defs: ClassVar[dict[str, type]] = {**_JwstImage3Pipeline.step_defs,
                                             "tweakreg": AlignStep}
