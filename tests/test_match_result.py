"""``MatchResult`` refuses an index used twice, whatever the range of the indices."""

from __future__ import annotations

import numpy as np
import pytest

from aligncore import MatchResult


@pytest.mark.parametrize(
    "indices",
    [
        [],
        [7],
        [3, 1, 2, 0],
        [5, -2, 9],  # negative values are still compared
        [0, 10**12, 3],  # a range far wider than the array: sorted, not counted
        list(range(100_000)),
    ],
)
def test_distinct_indices_are_accepted(indices: list[int]) -> None:
    idx = np.asarray(indices, dtype=np.intp)
    m = MatchResult(idx, idx[::-1].copy())
    assert m.n_matched == len(indices)
    np.testing.assert_array_equal(m.image_idx, idx)


@pytest.mark.parametrize(
    "indices",
    [
        [4, 4],
        [3, 1, 2, 1],
        [-2, 5, -2],
        [0, 10**12, 3, 10**12],
        [*range(100_000), 99_999],
    ],
)
@pytest.mark.parametrize("side", ["image", "reference"])
def test_an_index_used_twice_is_refused(indices: list[int], side: str) -> None:
    repeated = np.asarray(indices, dtype=np.intp)
    distinct = np.arange(repeated.size)
    img, ref = (repeated, distinct) if side == "image" else (distinct, repeated)
    with pytest.raises(ValueError, match="one-to-one"):
        MatchResult(img, ref)
