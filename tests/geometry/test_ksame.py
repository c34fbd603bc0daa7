"""k-Same clustering: sizes in [k, 2k − 1], determinism, hand-checkable groups, clear errors."""

import numpy as np
import pytest

from headveil.common.errors import SettingsError
from headveil.geometry.identity.ksame import k_same_clusters, same_person_groups


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


def test_photos_of_one_person_count_once():
    """Three photos of person A (codes alike), one each of B, C, D: by faces, A's three photos would
    form a cluster of their own (K = 3 met, nobody hidden); by people, every cluster holds 3 to 5
    different people and A's photos stay together."""
    X = np.array([[0, 0], [0.1, 0], [0, 0.1], [5, 0], [0, 5], [5, 5]], float)
    assert list(k_same_clusters(X, 3)) == [0, 0, 0, 1, 1, 1]  # A alone: the flaw
    people = np.array([7, 7, 7, 1, 2, 3])  # any label values
    labels = k_same_clusters(X, 3, people)
    assert len(set(labels[:3])) == 1
    for c in np.unique(labels):
        assert len(set(people[labels == c])) >= 3
    X8 = np.array([[0, 0], [0.1, 0], [9, 9], [9.1, 9], [0, 0.2], [9, 9.2], [20, 0], [20, 0.1]], float)
    who = np.array([0, 0, 1, 1, 2, 3, 4, 5])  # six people, two of them photographed twice
    lab = k_same_clusters(X8, 2, who)
    for c in np.unique(lab):
        assert 2 <= len(set(who[lab == c])) <= 3
    assert lab[0] == lab[1] and lab[2] == lab[3]
    with pytest.raises(SettingsError, match="at least 5 different people; the 6 faces are 4 people"):
        k_same_clusters(X, 5, people)


def test_same_person_groups_need_every_pair_to_match():
    D = np.array([[0.0, 0.5, 1.5, 1.6, 0.4],
                  [0.5, 0.0, 0.9, 1.7, 0.3],
                  [1.5, 0.9, 0.0, 1.8, 1.9],
                  [1.6, 1.7, 1.8, 0.0, 1.9],
                  [0.4, 0.3, 1.9, 1.9, 0.0]])
    # 0–1 match; 2 matches 1 but not 0 (a chain): a person of its own; 4 matches both 0 and 1
    assert list(same_person_groups(D, 1.0)) == [0, 0, 1, 2, 0]
    assert list(same_person_groups(D, 0.45)) == [0, 1, 2, 3, 0]  # 4 joins the first person it matches
    assert list(same_person_groups(D, 0.1)) == [0, 1, 2, 3, 4]
    assert list(same_person_groups(np.zeros((0, 0)), 1.0)) == []
