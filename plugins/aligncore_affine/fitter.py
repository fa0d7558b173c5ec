"""The ``affine`` fitter stage."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from aligncore import FitResult, Fitter, Params
from aligncore_affine.fitting import iter_fit, select_fit

__all__ = ["AffineFitter"]


class AffineFitter(Fitter):
    """Least-squares affine fit with iterative sigma clipping.

    Fits ``ref = matrix @ image + shift`` for one of four geometries (shift;
    rotation + shift; rotation, scale + shift; full affine), solved on
    coordinates centred on the weighted mean of the image points (the IRAF
    ``geomap``/``geofit`` formulation used by tweakwcs' ``iter_linear_fit``),
    then re-expressed for an origin at 0. Reports the 1-sigma uncertainties
    of shift, rotation and scale from the least-squares covariance scaled by
    the residual variance (``chi2 / dof``).

    Parameters
    ----------
    fitgeometry : {'shift', 'rshift', 'rscale', 'general', 'auto'}
        Fit geometry (default ``rshift``, as jwst tweakreg). Minimum points:
        1, 2, 2 and 3. ``auto`` fits the simplest of ``rscale``, ``rshift``
        and ``shift`` that the matches support (see
        :func:`aligncore_affine.select_fit`); the result's ``fitgeometry`` says
        which.
    nclip : int
        Maximum number of sigma-clipping passes (default 3).
    sigma : float
        Clipping threshold in units of ``clip_statistic`` (default 3.0).
    clip_statistic : {'rmse', 'mae', 'std', 'mad'}
        The residual statistic ``sigma`` is measured in (default ``rmse``; tweakwcs'
        ``sigma=(3, 'mad')`` is ``sigma: 3, clip_statistic: mad``).
    clip_accum : bool
        Rejected points stay rejected (tweakwcs' ``clip_accum``; default False:
        every point is re-examined after each pass).
    scale : float or None
        With ``rscale`` (or ``rshift``): a fixed scale; rotation and shift are
        fitted (tweakwcs' ``fit_rscale(scale=...)``).

    Examples
    --------
    >>> fit = AffineFitter(fitgeometry="rscale").fit(image_xy, ref_xy)   # doctest: +SKIP
    >>> fit.rotation, fit.rotation_err, fit.scale, fit.to_model()        # doctest: +SKIP
    """

    name: ClassVar[str] = "affine"

    class Params(Params):
        fitgeometry: Literal["shift", "rshift", "rscale", "general", "auto"] = Field(
            "rshift",
            description="Fit geometry: shift, rshift (rotation+shift), rscale "
            "(rotation+scale+shift), general (6-parameter affine), or auto: the simplest of "
            "rscale, rshift, shift that the matches support (Akaike's criterion).",
        )
        nclip: int = Field(3, ge=0, description="Maximum number of sigma-clipping passes.")
        sigma: float = Field(3.0, gt=0, description="Clipping threshold, in units of "
                             "clip_statistic.")
        clip_statistic: Literal["rmse", "mae", "std", "mad"] = Field(
            "rmse", description="Residual statistic the clipping threshold is measured in: "
            "rmse (RMS length), mae (mean length), std (per-axis standard deviation), mad "
            "(median length / sqrt(ln 2); robust to many mismatches). tweakwcs: sigma=(3, 'mad').")
        clip_accum: bool = Field(
            False, description="Accumulate rejections: a clipped point never returns "
            "(tweakwcs' clip_accum); false: every point is re-examined after each pass.")
        scale: float | None = Field(
            None, gt=0, description="A fixed scale for fitgeometry rscale (or rshift): rotation "
            "and shift are fitted with this scale (tweakwcs' fit_rscale(scale=...)); null: "
            "rscale fits the scale.")

        @model_validator(mode="after")
        def _scale_needs_rotation(self) -> AffineFitter.Params:
            if self.scale is not None and self.fitgeometry not in ("rscale", "rshift"):
                raise ValueError(f"scale (a fixed scale) applies to fitgeometry rscale or "
                                 f"rshift, not {self.fitgeometry}")
            return self

    params: Params

    def geometry(self) -> str:
        """The ``fitgeometry`` parameter (``rshift`` when a fixed scale is given)."""
        return "rshift" if self.params.scale is not None else self.params.fitgeometry

    def clipping(self) -> tuple[int, float]:
        """``(nclip, sigma)``."""
        return self.params.nclip, self.params.sigma

    def fit(
        self, image_xy: np.ndarray, ref_xy: np.ndarray, weights: np.ndarray | None = None
    ) -> FitResult:
        """Fit ``ref_xy ~ matrix @ image_xy + shift``.

        Parameters
        ----------
        image_xy, ref_xy : ndarray, shape (n, 2)
            Matched positions (for the pipeline: arcsec in the tangent plane).
        weights : ndarray, shape (n,), optional
            Relative weights (>= 0); zero-weight points are excluded.

        Returns
        -------
        aligncore.FitResult

        Raises
        ------
        aligncore.NotEnoughPointsError, aligncore.SingularMatrixError
        """
        p = self.params
        clipping = {"nclip": p.nclip, "sigma": p.sigma, "clip_statistic": p.clip_statistic,
                    "clip_accum": p.clip_accum}
        if p.fitgeometry == "auto":
            result = select_fit(image_xy, ref_xy, weights, **clipping)
        else:
            result = iter_fit(image_xy, ref_xy, p.fitgeometry, weights, scale=p.scale,
                              **clipping)
        return FitResult(
            **{
                **{f: getattr(result, f) for f in result.__dataclass_fields__},
                "meta": {**result.meta, "fitter": self.name},
            }
        )
