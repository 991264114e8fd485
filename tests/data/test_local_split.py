"""Local validation splits: carved from each client's own partition, seeded per client, never empty-handed."""

import numpy as np
import pytest

from fedlora.data.local_split import carve_local_validation, held_out_count


def test_the_carve_splits_every_partition_into_disjoint_train_and_validation_parts():
    parts = [np.arange(0, 50), np.arange(50, 60), np.array([60, 61]), np.array([62])]
    train, val = carve_local_validation(parts, 0.2, seed=3)
    for part, t, v in zip(parts, train, val, strict=True):
        assert np.array_equal(np.sort(np.concatenate([t, v])), part)
        assert not set(t) & set(v) and len(t) >= 1
        assert np.all(np.diff(t) > 0) and np.all(np.diff(v) > 0)  # sorted
    assert [len(v) for v in val] == [10, 2, 1, 0]


def test_the_carve_is_seeded_per_client_and_independent_of_the_other_partitions():
    parts = [np.arange(0, 40), np.arange(40, 80)]
    _, a = carve_local_validation(parts, 0.25, seed=0)
    _, again = carve_local_validation(parts, 0.25, seed=0)
    _, fewer = carve_local_validation([np.arange(0, 10), parts[1]], 0.25, seed=0)  # client 0 changed
    _, other = carve_local_validation(parts, 0.25, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, again, strict=True))
    assert np.array_equal(a[1], fewer[1])
    assert not np.array_equal(a[0], other[0])


@pytest.mark.parametrize("size,share,expected", [(100, 0.1, 10), (3, 0.1, 1), (2, 0.9, 1), (1, 0.5, 0), (9, 0.0, 0)])
def test_a_client_holds_out_at_least_one_and_keeps_at_least_one(size, share, expected):
    assert held_out_count(size, share) == expected
