"""Typed errors raised by aligncore and its stages."""

from __future__ import annotations

__all__ = [
    "AlignError",
    "FitError",
    "InputError",
    "MatchError",
    "NotEnoughPointsError",
    "SingularMatrixError",
]


class AlignError(Exception):
    """Base class of aligncore's run-time errors."""


class InputError(AlignError):
    """An input file or array cannot be used; the message names the file and why."""


class FitError(AlignError):
    """A fit could not be computed."""


class NotEnoughPointsError(FitError):
    """Fewer points than the fit geometry needs."""


class SingularMatrixError(FitError):
    """The normal equations are singular (e.g. all points on one line)."""


class MatchError(AlignError, ValueError):
    """Matching parameters are inconsistent or matching cannot proceed.

    Also a `ValueError`, so that a parameter model raising it reports a normal
    validation error.
    """
