"""The combined (mosaic) catalog: the aligned images' sources merged into one list.

Sources of different images closer than a small radius after correction are
linked (friends of friends); each linked group becomes one source with its
mean position and flux, the number of images it was seen in and the scatter
of its positions, which measures the alignment where images overlap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from astropy.table import QTable
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from aligncore.errors import AlignError
from aligncore.global_solver import match_radius
from aligncore.tangent import TangentPlane
from aligncore.types import COL_DEC, COL_FLUX, COL_ID, COL_RA, COL_TP_X, COL_TP_Y, Status
from aligncore.units import Unit

__all__ = ["MAX_LINK_PAIRS", "merge_catalogs"]

MAX_LINK_PAIRS = 20_000_000
"""Most source pairs linked into the combined catalog (a bound on the memory used)."""


def merge_catalogs(units: Sequence[Unit], plane: TangentPlane,
                   radius: float | None = None) -> QTable:
    """Merge the corrected catalogs of all aligned units.

    Parameters
    ----------
    units : sequence of Unit
        Units after alignment; only SUCCESS and REFERENCE units contribute.
    plane : TangentPlane
        The tangent plane the unit positions are in.
    radius : float, optional
        Linking radius in arcsec; default: a few times the fit residuals.

    Returns
    -------
    QTable
        ``id, ra, dec, tp_x, tp_y, flux, n_images, scatter_mas`` (scatter: RMS
        distance of the individual positions from their mean, NaN when seen once).

    Raises
    ------
    AlignError
        More than `MAX_LINK_PAIRS` pairs within the linking radius.
    """
    aligned = [u for u in units if u.status in (Status.SUCCESS, Status.REFERENCE)]
    columns = ("id", COL_RA, COL_DEC, COL_TP_X, COL_TP_Y, COL_FLUX, "n_images", "scatter_mas")
    if not aligned:
        return QTable({name: np.zeros(0) for name in columns})
    if radius is None:
        radius = match_radius(units)
    xy = np.concatenate([u.corrected_xy() for u in aligned])
    image = np.concatenate([np.asarray(u.catalog["image"], int) for u in aligned])
    flux = np.concatenate([
        np.asarray(u.catalog[COL_FLUX], float) if COL_FLUX in u.catalog.colnames
        else np.full(len(u.catalog), np.nan) for u in aligned])
    tree = cKDTree(xy)
    n_pairs = (int(tree.count_neighbors(tree, radius)) - len(xy)) // 2
    if n_pairs > MAX_LINK_PAIRS:
        raise AlignError(f"combined catalog: {n_pairs} source pairs lie within the linking "
                         f"radius {radius:.3g}\" (more than {MAX_LINK_PAIRS}); the radius is too "
                         "large for these catalogs")
    pairs = tree.query_pairs(radius, output_type="ndarray")
    pairs = pairs[image[pairs[:, 0]] != image[pairs[:, 1]]]
    n = len(xy)
    graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_groups, labels = connected_components(graph, directed=False)
    counts = np.bincount(labels, minlength=n_groups)
    mean_x = np.bincount(labels, xy[:, 0], n_groups) / counts
    mean_y = np.bincount(labels, xy[:, 1], n_groups) / counts
    d2 = (xy[:, 0] - mean_x[labels]) ** 2 + (xy[:, 1] - mean_y[labels]) ** 2
    scatter = np.sqrt(np.bincount(labels, d2, n_groups) / counts) * 1000.0
    scatter[counts < 2] = np.nan
    n_all = int(image.max()) + 1
    seen = np.unique(labels.astype(np.int64) * n_all + image)
    n_images = np.bincount(seen // n_all, minlength=n_groups)
    finite = np.isfinite(flux)
    mean_flux = (np.bincount(labels[finite], flux[finite], n_groups)
                 / np.maximum(np.bincount(labels[finite], minlength=n_groups), 1))
    ra, dec = plane.tp_to_world(mean_x, mean_y)
    table = QTable()
    table[COL_ID] = np.arange(1, n_groups + 1)
    table[COL_RA], table[COL_DEC] = ra, dec
    table[COL_TP_X], table[COL_TP_Y] = mean_x, mean_y
    table[COL_FLUX] = mean_flux
    table["n_images"] = n_images
    table["scatter_mas"] = scatter
    table.meta.update({"linking_radius_arcsec": float(radius), "tangent_plane": plane.summary(),
                       "n_sources": int(n)})
    return table
