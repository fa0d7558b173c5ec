"""The ``none`` and ``poly`` distortion refiners (registered by the package's hook)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

import aligncore

__all__ = ["NoDistortion", "PolyDistortion"]


class NoDistortion(aligncore.DistortionRefiner):
    """The nominal distortion is kept: the alignment is affine only (tweakreg's)."""

    name: ClassVar[str] = "none"

    def refine(self, units: Sequence[Any], images: Sequence[aligncore.AlignImage],
               settings: aligncore.DistortionSettings) -> aligncore.DistortionResult:
        """Nothing to refine, nothing to report."""
        return aligncore.DistortionResult()


class PolyDistortion(aligncore.DistortionRefiner):
    """A 2D polynomial correction per detector, fitted jointly with every image's
    affine correction from all overlaps (and the reference catalog).

    For each detector (``INSTRUME/DETECTOR``), the correction ``(dx, dy)`` of the
    nominal distortion is a polynomial of orders 2 to ``degree`` in the pixel
    coordinates (orders 0 and 1 are each image's affine correction), common to all
    its exposures. It is fitted by least squares with the affine corrections of all
    units, from the matched stars of every pair of overlapping units (the global
    solver's matches) and, after absolute alignment, the reference catalog.
    Directions of coefficient space that the stars do not constrain to ``max_error``
    pixels, or whose value is not significant (``significance`` standard errors), are
    held at zero. With ``degree: auto`` the degree (or none)
    is chosen by the Bayesian information criterion on the global chi-square. A
    ``holdout`` fraction of the matches is left out of the fit; the correction is
    applied only if their residuals improve and no image gets worse.
    """

    name: ClassVar[str] = "poly"

    class Params(aligncore.Params):
        geometry: Literal["shift", "rshift", "rscale", "general", "auto"] = Field(
            "rshift", description="Each image's affine correction fitted with the "
            "distortion. rshift (default): shift and rotation, the scale of every image "
            "that of the reference (a free scale per image is, for dithers, partly the "
            "same as a quadratic distortion); auto: the geometry of the alignment's fits.")
        degree: int | Literal["auto"] = Field(
            "auto", description="Highest order of the correction (>= 2), or auto: chosen "
            "by the information criterion (BIC) among 2..max_degree and no correction.")
        max_degree: int = Field(5, ge=2, le=9, description="Highest order tried by auto.")
        holdout: float = Field(0.2, gt=0.0, lt=0.9, description="Fraction of the matched "
                               "pairs left out of the fit for the held-back check.")
        seed: int = Field(0, ge=0, description="Seed of the held-back selection.")
        min_matches: int = Field(100, ge=10, description="Matched star positions a "
                                 "detector needs (else its distortion is not fitted).")
        min_cells: int = Field(8, ge=1, le=16, description="Cells of a 4 x 4 grid over the "
                               "detector that matched stars must cover.")
        max_error: float = Field(0.1, gt=0.0, description="A direction of coefficient "
                                 "space is fitted when measured to this (pixels at the "
                                 "corners) or better ...")
        significance: float = Field(3.0, ge=0.0, description="... and its value is at "
                                    "least this many standard errors; else held at zero.")
        @field_validator("degree")
        @classmethod
        def _degree_range(cls, value: int | str) -> int | str:
            if value != "auto" and not 2 <= int(value) <= 9:
                raise ValueError("must be an integer from 2 to 9, or 'auto'")
            return value

        guard_tolerance: float = Field(0.02, ge=0.0, description="An image whose residual "
                                       "RMS grows by more than this fraction (plus 2/sqrt(n) "
                                       "for n matches) refuses the refinement.")

    def refine(self, units: Sequence[Any], images: Sequence[aligncore.AlignImage],
               settings: aligncore.DistortionSettings) -> aligncore.DistortionResult:
        """Fit, check and report (`aligncore_distortion.refine.refine_poly`)."""
        from aligncore.stages import require_type
        from aligncore_distortion.refine import PolyOptions, refine_poly

        require_type(settings, aligncore.DistortionSettings,
                                      "poly.refine: settings")
        p = self.params
        options = PolyOptions(degree=p.degree, max_degree=p.max_degree, holdout=p.holdout,
                              seed=p.seed, min_matches=p.min_matches, min_cells=p.min_cells,
                              max_error=p.max_error, significance=p.significance,
                              guard_tolerance=p.guard_tolerance,
                              geometry=p.geometry)
        return refine_poly(units, images, settings, options)
