"""Triangle (asterism) invariants: match star patterns under any shift, rotation and scale.

Method (after Beroiz, Cabral & Sanchez 2020, "Astroalign", Astronomy and
Computing 32, 100384, and the older Groth 1986 / Valdes et al. 1995 triangle
matching):

1. For the brightest ``max_sources`` sources of a catalog, each source and two
   of its ``neighbors`` nearest neighbours form a triangle.
2. A triangle's invariant is ``(L1 / L0, L2 / L1)`` with ``L0 >= L1 >= L2`` its
   side lengths: unchanged by translation, rotation, scale and reflection.
   Vertices are put in a canonical order (by the length of the opposite side).
3. Triangles of the two catalogs with close invariants (KD-tree) propose a
   similarity transform each (from their three vertex pairs). Each proposal is
   scored by the number of sources it brings within ``tolerance`` of a
   reference source; the best one wins (a RANSAC without random sampling).
4. Its significance: the false-alarm probability that any of the scored
   proposals collects that many inliers by chance (Poisson, with the mean
   number of chance coincidences from the reference source density).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.spatial import cKDTree

from aligncore import MatchError
from aligncore_hist2d.histogram import false_alarm
from aligncore_hist2d.pairing import check_pair_count

__all__ = ["MAX_TRIANGLES", "SimilarityTransform", "find_transform", "fit_similarity",
           "triangles"]

MAX_TRIANGLES = 5_000_000
"""Most triangles built from one catalog (max_sources x neighbours^2 / 2); more is refused."""

_MIN_SIDE_RATIO = 0.1  # drop needle-like triangles (L2 / L0 below this)


@dataclass(frozen=True)
class SimilarityTransform:
    """``ref = matrix @ image + shift`` with ``matrix = scale x rotation`` (optionally flipped)."""

    matrix: np.ndarray
    shift: np.ndarray

    @property
    def scale(self) -> float:
        return math.sqrt(abs(float(np.linalg.det(self.matrix))))

    @property
    def rotation(self) -> float:
        """Rotation of the x axis in degrees (counter-clockwise)."""
        return math.degrees(math.atan2(self.matrix[1, 0], self.matrix[0, 0]))

    @property
    def flipped(self) -> bool:
        return bool(np.linalg.det(self.matrix) < 0)

    def apply(self, xy: np.ndarray) -> np.ndarray:
        return xy @ self.matrix.T + self.shift


def fit_similarity(src: np.ndarray, dst: np.ndarray, allow_flip: bool) -> SimilarityTransform:
    """Least-squares similarity transform (rotation, scale, shift) mapping ``src`` to ``dst``."""
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    x, y = (src - cs).T
    u, v = (dst - cd).T
    norm = float(x @ x + y @ y)
    if norm == 0:
        return SimilarityTransform(np.eye(2), cd - cs)
    a, b = float(x @ u + y @ v) / norm, float(x @ v - y @ u) / norm
    m = np.array([[a, -b], [b, a]])
    if allow_flip:
        af, bf = float(x @ u - y @ v) / norm, float(y @ u + x @ v) / norm
        if math.hypot(af, bf) > math.hypot(a, b):
            m = np.array([[af, bf], [bf, -af]])
    return SimilarityTransform(m, cd - m @ cs)


def triangles(xy: np.ndarray, neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of each source with pairs of its nearest neighbours.

    Returns
    -------
    vertices : ndarray of int, shape (t, 3)
        Vertex indices in canonical order (opposite the longest, middle and
        shortest side).
    invariants : ndarray, shape (t, 2)
        ``(L1 / L0, L2 / L1)``.
    """
    n = len(xy)
    if n < 3:
        return np.zeros((0, 3), dtype=np.intp), np.zeros((0, 2))
    k = min(neighbors, n - 1)
    count = n * k * (k - 1) // 2
    if count > MAX_TRIANGLES:
        raise MatchError(f"triangles: {n} sources with {k} neighbours each make {count} "
                         f"triangles (more than {MAX_TRIANGLES}); lower max_sources or neighbors")
    _, nn = cKDTree(xy).query(xy, k=k + 1)
    combos = np.array(list(combinations(range(1, k + 1), 2)), dtype=np.intp)
    tri = np.concatenate(
        [np.column_stack([nn[:, 0], nn[:, a], nn[:, b]]) for a, b in combos], axis=0
    )
    tri = np.unique(np.sort(tri, axis=1), axis=0)
    p = xy[tri]  # (t, 3, 2)
    # side opposite vertex i joins the other two vertices
    opp = np.stack(
        [
            np.linalg.norm(p[:, 1] - p[:, 2], axis=1),
            np.linalg.norm(p[:, 0] - p[:, 2], axis=1),
            np.linalg.norm(p[:, 0] - p[:, 1], axis=1),
        ],
        axis=1,
    )
    order = np.argsort(-opp, axis=1, kind="stable")
    sides = np.take_along_axis(opp, order, axis=1)
    verts = np.take_along_axis(tri, order, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.column_stack([sides[:, 1] / sides[:, 0], sides[:, 2] / sides[:, 1]])
        good = sides[:, 2] / sides[:, 0] > _MIN_SIDE_RATIO
    good &= np.all(np.isfinite(inv), axis=1)
    return verts[good], inv[good]


@dataclass(frozen=True)
class TriangleSolution:
    """Best transform found and its support."""

    transform: SimilarityTransform | None
    n_inliers: int
    n_candidates: int
    n_triangles: tuple[int, int]
    expected_random: float = math.nan
    false_alarm: float = 1.0
    significance: float = 0.0


def find_transform(
    image_xy: np.ndarray,
    ref_xy: np.ndarray,
    tolerance: float,
    *,
    neighbors: int = 6,
    invariant_tol: float = 0.01,
    allow_flip: bool = False,
    max_scale_error: float = 0.1,
    max_candidates: int = 5000,
) -> TriangleSolution:
    """Best similarity transform ``ref ~ T(image)`` from matching triangle invariants.

    Parameters
    ----------
    image_xy, ref_xy : ndarray, shape (n, 2) and (m, 2)
        Positions of the (brightest) sources used to build triangles.
    tolerance : float
        A transformed image source within this of a reference source is an inlier.
    neighbors : int
        Nearest neighbours each source forms triangles with.
    invariant_tol : float
        Maximum distance between two triangles' invariants.
    allow_flip : bool
        Accept mirror-image solutions.
    max_scale_error : float
        Reject solutions whose scale differs from 1 by more than this.
    max_candidates : int
        At most this many triangle pairs (closest invariants first) are scored.
    """
    vi, ii = triangles(image_xy, neighbors)
    vr, ir = triangles(ref_xy, neighbors)
    counts = (len(vi), len(vr))
    if len(vi) == 0 or len(vr) == 0:
        return TriangleSolution(None, 0, 0, counts)
    tree_i, tree_r = cKDTree(ii), cKDTree(ir)
    check_pair_count(tree_i, tree_r, invariant_tol, "triangle invariants")
    sdm = tree_i.sparse_distance_matrix(tree_r, invariant_tol, output_type="ndarray")
    if sdm.size == 0:
        return TriangleSolution(None, 0, 0, counts)
    order = np.argsort(sdm["v"], kind="stable")[:max_candidates]
    cand_i, cand_r = sdm["i"][order], sdm["j"][order]
    src = image_xy[vi[cand_i]]  # (c, 3, 2)
    dst = ref_xy[vr[cand_r]]
    transforms = _similarities(src, dst, allow_flip)
    mats, shifts = transforms
    scale = np.sqrt(np.abs(np.linalg.det(mats)))
    ok = np.abs(scale - 1.0) <= max_scale_error
    if not allow_flip:
        ok &= np.linalg.det(mats) > 0
    if not np.any(ok):
        return TriangleSolution(None, 0, int(ok.size), counts)
    mats, shifts = mats[ok], shifts[ok]
    tree = cKDTree(ref_xy)
    moved = np.einsum("cij,nj->cni", mats, image_xy) + shifts[:, None, :]
    d, _ = tree.query(moved.reshape(-1, 2), k=1, distance_upper_bound=tolerance)
    inliers = np.isfinite(d).reshape(len(mats), -1).sum(axis=1)
    best = int(np.argmax(inliers))
    transform = SimilarityTransform(mats[best], shifts[best])
    # Inliers a wrong transform collects by chance: image sources x chance that a
    # random position lies within tolerance of one of the reference sources.
    span = np.ptp(ref_xy, axis=0)
    area = max(float(span[0] * span[1]), math.pi * tolerance**2 * len(ref_xy))
    expected = len(image_xy) * min(len(ref_xy) * math.pi * tolerance**2 / area, 1.0)
    fap, sigma = false_alarm(int(inliers[best]), expected, len(mats))
    return TriangleSolution(
        transform, int(inliers[best]), int(ok.size), counts, expected, fap, sigma
    )


def _similarities(
    src: np.ndarray, dst: np.ndarray, allow_flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`fit_similarity` for many 3-point correspondences."""
    cs, cd = src.mean(axis=1), dst.mean(axis=1)
    s, t = src - cs[:, None], dst - cd[:, None]
    x, y, u, v = s[..., 0], s[..., 1], t[..., 0], t[..., 1]
    norm = np.sum(x * x + y * y, axis=1)
    norm = np.where(norm > 0, norm, np.inf)
    a = np.sum(x * u + y * v, axis=1) / norm
    b = np.sum(x * v - y * u, axis=1) / norm
    mats = np.stack([np.stack([a, -b], axis=-1), np.stack([b, a], axis=-1)], axis=1)
    if allow_flip:
        af = np.sum(x * u - y * v, axis=1) / norm
        bf = np.sum(y * u + x * v, axis=1) / norm
        flip = np.hypot(af, bf) > np.hypot(a, b)
        fm = np.stack([np.stack([af, bf], axis=-1), np.stack([bf, -af], axis=-1)], axis=1)
        mats = np.where(flip[:, None, None], fm, mats)
    shifts = cd - np.einsum("cij,cj->ci", mats, cs)
    return mats, shifts
