"""The ``affine`` fitter stage."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

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
        Clipping threshold in units of the RMS residual (default 3.0).

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
        sigma: float = Field(3.0, gt=0, description="Clipping threshold in RMS residuals.")

    params: Params

    def geometry(self) -> str:
        """The ``fitgeometry`` parameter."""
        return self.params.fitgeometry

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
        if p.fitgeometry == "auto":
            result = select_fit(image_xy, ref_xy, weights, nclip=p.nclip, sigma=p.sigma)
        else:
            result = iter_fit(
                image_xy, ref_xy, p.fitgeometry, weights, nclip=p.nclip, sigma=p.sigma
            )
        return FitResult(
            **{
                **{f: getattr(result, f) for f in result.__dataclass_fields__},
                "meta": {**result.meta, "fitter": self.name},
            }
        )
