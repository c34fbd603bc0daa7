"""k-Same clustering: sizes in [k, 2k − 1], determinism, hand-checkable groups, clear errors."""

import numpy as np
import pytest

from headveil.common.errors import SettingsError
from headveil.geometry.identity.ksame import k_same_clusters


def test_two_tight_groups_are_found():
    X = np.array([[0, 0], [0.1, 0], [0, 0.1], [10, 10], [10.1, 10], [10, 10.1]], float)
    labels = k_same_clusters(X, 3)
    assert list(labels) == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("n,k", [(7, 3), (10, 2), (5, 5), (23, 4)])
def test_every_cluster_has_k_to_2k_minus_1_members(n, k):
    X = np.random.default_rng(n).normal(size=(n, 6))
    labels = k_same_clusters(X, k)
    sizes = np.bincount(labels)
    assert sizes.min() >= k and sizes.max() <= 2 * k - 1 and sizes.sum() == n
    np.testing.assert_array_equal(labels, k_same_clusters(X, k))  # deterministic


def test_bad_k_is_one_clear_error():
    X = np.zeros((3, 4))
    with pytest.raises(SettingsError, match="at least 5 faces; the set has 3"):
        k_same_clusters(X, 5)
    with pytest.raises(SettingsError, match="K ≥ 2"):
        k_same_clusters(X, 1)
    with pytest.raises(SettingsError, match="finite"):
        k_same_clusters(np.full((3, 2), np.nan), 2)
