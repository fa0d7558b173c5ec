"""Confusion pruning and strictly one-to-one nearest-neighbour matching.

Neighbours are found on a grid of cells (`aligncore_hist2d.grid`); KD-trees
only count and refuse absurd radii, where the grid would build too many pairs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from aligncore import MatchError
from aligncore_hist2d.grid import candidate_pairs

__all__ = ["MAX_PAIRS", "check_pair_count", "greedy_pairs", "make_tree", "match_one_to_one",
           "median_nn_distance", "prune_close"]

MAX_PAIRS = 20_000_000
"""Most pairs a neighbour query may return (a few hundred MB); more is refused."""

_MAX_ROUNDS = 50
_NN_DOUBLINGS = 20  # radii tried by median_nn_distance before the KD-tree
_PARALLEL_QUERIES = 20_000  # below this many points, threads cost more than they save


def _workers(n: int) -> int:
    return -1 if n >= _PARALLEL_QUERIES else 1


def make_tree(xy: np.ndarray) -> cKDTree:
    """A KD-tree built for speed (sliding-midpoint splits: fast to build, fast enough to query)."""
    return cKDTree(xy, balanced_tree=False, compact_nodes=False)


def check_pair_count(tree_a: cKDTree, tree_b: cKDTree, radius: float, what: str, *,
                     p: float = 2.0) -> int:
    """Number of pairs within ``radius``, counted without building them.

    Raises
    ------
    MatchError
        More than `MAX_PAIRS` pairs: the radius is absurd for these catalogs (a
        search radius far larger than the field, or a wrong pixel scale).
    """
    count = int(tree_a.count_neighbors(tree_b, radius, p=p))
    if count > MAX_PAIRS:
        raise MatchError(f"{what}: {count} source pairs lie within {radius:.4g} (more than "
                         f"{MAX_PAIRS}); the radius is too large for these catalogs")
    return count


def prune_close(xy: np.ndarray, separation: float, *, tree: cKDTree | None = None) -> np.ndarray:
    """Keep-mask dropping every source closer than ``separation`` to an earlier one.

    Catalogs are usually sorted by decreasing brightness, so the brighter
    source of a close pair is the one kept.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
    separation : float
        Minimum distance (same unit as ``xy``); ``<= 0`` keeps everything.
    tree : cKDTree, optional
        A tree already built on ``xy`` (used only when the cell grid would give
        more than `MAX_PAIRS` candidates).

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    keep = np.ones(len(xy), dtype=bool)
    if separation <= 0 or len(xy) < 2:
        return keep
    cand = candidate_pairs(xy, xy, separation, MAX_PAIRS) if np.isfinite(separation) else None
    if cand is None:  # too many candidates for the grid: count (and refuse) with the tree
        tree = tree if tree is not None else make_tree(xy)
        check_pair_count(tree, tree, separation, "separation")
        pairs = tree.query_pairs(separation, output_type="ndarray")
        first, second = pairs[:, 0], pairs[:, 1]
    else:
        first, second = cand
        earlier = first < second
        first, second = first[earlier], second[earlier]
    if first.size:
        # "closer than" means strictly less.
        d = np.hypot(*(xy[first] - xy[second]).T)
        keep[second[d < separation]] = False
    return keep


def median_nn_distance(
    xy: np.ndarray, *, tree: cKDTree | None = None, max_points: int = 20_000
) -> float:
    """Median distance from a source to its nearest neighbour (NaN if < 2 sources).

    At most ``max_points`` evenly spaced sources are queried (the median of a
    large sample is as good as the full one).

    Neighbours are searched on the cell grid within a radius that starts at
    0.6 x the mean spacing of the sources and doubles until more than half of the
    queried sources have their nearest neighbour within it: the median is
    then exact. ``tree`` is used when the grid gives up (see `MAX_PAIRS`).
    """
    if len(xy) < 2:
        return float("nan")
    step = max(1, len(xy) // max_points)
    query = xy[::step]
    rows = np.arange(0, len(xy), step)
    x, y = xy[:, 0], xy[:, 1]
    area = float(np.ptp(x)) * float(np.ptp(y))
    # 0.6 x the mean spacing: the median for uniformly spread sources is 0.47 x
    reach = 0.6 * math.sqrt(area / len(xy)) if area > 0 else float(max(np.ptp(x), np.ptp(y)))
    for _ in range(_NN_DOUBLINGS if np.isfinite(reach) and reach > 0 else 0):
        cand = candidate_pairs(query, xy, reach, MAX_PAIRS)
        if cand is None:
            break
        qi, j = cand
        other = rows[qi] != j
        qi, j = qi[other], j[other]
        dx = query[qi, 0] - x[j]
        dy = query[qi, 1] - y[j]
        d = np.sqrt(dx * dx + dy * dy)
        nn = np.full(len(query), np.inf)
        np.minimum.at(nn, qi, d)
        nn[nn > reach] = np.inf  # a source further than `reach` may be closer than these
        median = float(np.median(nn))
        if math.isfinite(median):
            return median
        reach *= 2.0
    tree = tree if tree is not None else make_tree(xy)
    d, _ = tree.query(query, k=2, workers=_workers(len(query)))
    return float(np.median(d[:, 1]))


def match_one_to_one(
    image_xy: np.ndarray,
    ref_xy: np.ndarray,
    tolerance: float,
    *,
    shift: np.ndarray | tuple[float, float] = (0.0, 0.0),
    image_tree: cKDTree | None = None,
    ref_tree: cKDTree | None = None,
    max_rounds: int = _MAX_ROUNDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Strictly one-to-one matching of ``image_xy + shift`` to ``ref_xy`` within ``tolerance``.

    Pairs of mutual nearest neighbours (each is the other's nearest within
    ``tolerance``) are matched; the matched sources are removed and the rule
    is applied again to the remaining ones until nothing changes. This is
    the greedy matching by increasing distance (for distinct distances): no
    source can appear in two pairs.

    The candidate pairs come from a grid of cells (`aligncore_hist2d.grid`):
    one sort and a few vectorised look-ups, then the rounds are played on
    that list (`greedy_pairs`). KD-tree queries are used instead only when
    the tolerance is so large that the candidates would exceed `MAX_PAIRS`.

    Parameters
    ----------
    image_xy, ref_xy : ndarray, shape (n, 2) and (m, 2)
        Positions.
    tolerance : float
        A pair must be closer than this (as a KD-tree's ``distance_upper_bound``).
    shift : array-like, shape (2,)
        Added to the image positions before matching.
    image_tree, ref_tree : cKDTree, optional
        Trees already built on ``image_xy`` and ``ref_xy`` (unshifted), for the
        KD-tree path.
    max_rounds : int, optional
        Rounds of mutual-nearest-neighbour matching (1: mutual pairs only).

    Returns
    -------
    image_idx, ref_idx : ndarray of int
        Indices of the matched pairs, sorted by ``ref_idx``.
    """
    shift = np.asarray(shift, dtype=float)
    empty = np.zeros(0, dtype=np.intp)
    if len(image_xy) == 0 or len(ref_xy) == 0 or not tolerance > 0:
        return empty, empty
    moved = image_xy + shift
    cand = (candidate_pairs(moved, ref_xy, tolerance, MAX_PAIRS)
            if np.isfinite(tolerance) else None)
    if cand is None:
        return _match_with_trees(image_xy, ref_xy, tolerance, shift, image_tree, ref_tree,
                                 max_rounds)
    ii, jj = cand
    dx = moved[ii, 0] - ref_xy[jj, 0]
    dy = moved[ii, 1] - ref_xy[jj, 1]
    d2 = dx * dx + dy * dy
    within = d2 < tolerance * tolerance  # as a KD-tree's distance_upper_bound
    return greedy_pairs(ii[within], jj[within], d2[within], len(image_xy), len(ref_xy),
                        max_rounds=max_rounds)


def greedy_pairs(
    img: np.ndarray,
    ref: np.ndarray,
    dist: np.ndarray,
    n_img: int,
    n_ref: int,
    *,
    max_rounds: int = _MAX_ROUNDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Rounds of mutual nearest neighbours over a list of candidate pairs.

    In each round, every image source with a free partner points at its
    nearest free reference source, and every reference source at its nearest
    free image source; the mutual pairs are matched and their sources leave
    the game. This is :func:`match_one_to_one` on pairs already found.

    Parameters
    ----------
    img, ref : ndarray of int, shape (k,)
        Image and reference index of each candidate pair (each pair once).
    dist : ndarray, shape (k,)
        Their distances (or any increasing function of them).
    n_img, n_ref : int
        Number of image and reference sources.
    max_rounds : int, optional
        Rounds of matching (1: mutual pairs only).

    Returns
    -------
    image_idx, ref_idx : ndarray of int
        Matched pairs, sorted by ``ref_idx``.
    """
    out_img: list[np.ndarray] = []
    out_ref: list[np.ndarray] = []
    if max_rounds >= 1 and img.size:
        # A pair whose two sources have no other candidate is mutual in the first
        # round and touches no other pair: match those at once, play the rest.
        lone = (np.bincount(img, minlength=n_img)[img] == 1) & (
            np.bincount(ref, minlength=n_ref)[ref] == 1)
        out_img.append(img[lone])
        out_ref.append(ref[lone])
        img, ref, dist = img[~lone], ref[~lone], dist[~lone]
    by_img = np.lexsort((dist, img))  # each image source's pairs, nearest first
    by_ref = np.lexsort((dist, ref))
    alive = np.ones(img.size, dtype=bool)
    free_img = np.ones(n_img, dtype=bool)
    free_ref = np.ones(n_ref, dtype=bool)
    nearest_img = np.full(n_ref, -1, dtype=np.intp)
    for _ in range(max_rounds):
        order = by_img[alive[by_img]]
        if order.size == 0:
            break
        src = img[order]
        head = np.ones(order.size, dtype=bool)
        head[1:] = src[1:] != src[:-1]
        best = order[head]  # the nearest free reference source of each image source
        order = by_ref[alive[by_ref]]
        dst = ref[order]
        head = np.ones(order.size, dtype=bool)
        head[1:] = dst[1:] != dst[:-1]
        nearest_img[dst[head]] = img[order[head]]
        mutual = best[nearest_img[ref[best]] == img[best]]
        if mutual.size == 0:
            break
        out_img.append(img[mutual])
        out_ref.append(ref[mutual])
        free_img[img[mutual]] = False
        free_ref[ref[mutual]] = False
        alive &= free_img[img] & free_ref[ref]
    return _by_reference(out_img, out_ref)


def _by_reference(out_img: list[np.ndarray],
                  out_ref: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The matched pairs of all rounds, ordered by reference index."""
    if not out_img:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    img = np.concatenate(out_img)
    ref = np.concatenate(out_ref)
    order = np.argsort(ref, kind="stable")
    return img[order], ref[order]


def _match_with_trees(
    image_xy: np.ndarray,
    ref_xy: np.ndarray,
    tolerance: float,
    shift: np.ndarray,
    image_tree: cKDTree | None,
    ref_tree: cKDTree | None,
    max_rounds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """`match_one_to_one` with KD-tree queries (huge tolerances, where the grid gives up)."""
    shift = np.asarray(shift, dtype=float)
    out_img: list[np.ndarray] = []
    out_ref: list[np.ndarray] = []
    free_img = np.arange(len(image_xy))
    free_ref = np.arange(len(ref_xy))
    for round_ in range(max_rounds):
        if free_img.size == 0 or free_ref.size == 0:
            break
        a = image_xy[free_img]
        b = ref_xy[free_ref]
        first = round_ == 0
        tree_b = ref_tree if first and ref_tree is not None else make_tree(b)
        _, j_of_i = tree_b.query(
            a + shift, k=1, distance_upper_bound=tolerance, workers=_workers(len(a))
        )
        has_i = j_of_i < b.shape[0]
        if not np.any(has_i):
            break
        # Only reference sources that some image source points at can be matched.
        cand = np.zeros(b.shape[0], dtype=bool)
        cand[j_of_i[has_i]] = True
        cand_ref = np.flatnonzero(cand)
        tree_a = image_tree if first and image_tree is not None else make_tree(a)
        _, i_of_j = tree_a.query(
            b[cand_ref] - shift,
            k=1,
            distance_upper_bound=tolerance,
            workers=_workers(cand_ref.size),
        )
        back = np.full(b.shape[0], -1, dtype=np.intp)
        back[cand_ref] = np.where(i_of_j < a.shape[0], i_of_j, -1)
        img_local = np.flatnonzero(has_i)
        ref_local = j_of_i[has_i]
        mutual = back[ref_local] == img_local
        if not np.any(mutual):
            break
        out_img.append(free_img[img_local[mutual]])
        out_ref.append(free_ref[ref_local[mutual]])
        keep_img = has_i.copy()  # sources with no partner in range never match: drop them
        keep_img[img_local[mutual]] = False
        keep_ref = np.ones(free_ref.size, dtype=bool)
        keep_ref[ref_local[mutual]] = False
        free_img = free_img[keep_img]
        free_ref = free_ref[keep_ref]
    return _by_reference(out_img, out_ref)
