"""aligncore's default solvers: ``sequential`` (tweakreg) and ``global`` (all overlaps at once).

A solver refines the relative alignment after the sequential pass; the config
picks one by name with ``align.solver``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import aligncore

__version__ = aligncore.__version__

__all__ = ["GlobalSolver", "SequentialSolver", "aligncore_add_solvers"]


class SequentialSolver(aligncore.Solver):
    """tweakreg's alignment: the sequential pass's corrections are kept as they are.

    Each image is matched and fitted, in turn, to the reference catalog (the
    reference image, grown by the aligned images with ``align.expand_refcat``).
    """

    name: ClassVar[str] = "sequential"

    def refine(self, units: Sequence[Any],
               settings: aligncore.SolverSettings) -> aligncore.SolverResult:
        """Keep the sequential corrections; nothing to report."""
        return aligncore.SolverResult()


class GlobalSolver(aligncore.Solver):
    """All corrections refined simultaneously over every overlap.

    After the sequential pass (which grows the reference, as
    ``expand_refcat``), the sources of every pair of overlapping units are
    matched and one sparse weighted least-squares problem is solved for all
    corrections, with the reference unit fixed; match, solve and clip are
    iterated (`aligncore.global_solver.solve_global`). Errors do not accumulate
    along a chain of images. The fitter's geometry and clipping are used.
    """

    name: ClassVar[str] = "global"
    grows_reference: ClassVar[bool] = True

    def refine(self, units: Sequence[Any],
               settings: aligncore.SolverSettings) -> aligncore.SolverResult:
        """Solve all units at once: the outcomes and diagnostics of `solve_global`."""
        from aligncore.global_solver import solve_global  # scipy.sparse: loaded when used

        return solve_global(units, settings.geometry, nclip=settings.nclip,
                            sigma=settings.sigma, weighted=settings.weighted)


@aligncore.hookimpl
def aligncore_add_solvers() -> list[type[aligncore.Solver]]:
    """Register the ``sequential`` and ``global`` solvers."""
    return [SequentialSolver, GlobalSolver]
