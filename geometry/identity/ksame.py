"""k-Same clustering of identity codes (k-Same-M in 3D).

k-Same (Newton, Sweeney, Malin) replaces every face of a set by an average of ``k`` faces, so that no
output can be linked to fewer than ``k`` inputs. Here the faces are clustered by their identity code
α (the head model's shape code, N(0, I) units) and each face is later replaced by its cluster's mean
shape and UV albedo (aligned by the model's texture layout), relit by its own photo's light.

:func:`k_same_clusters` is the classic greedy construction: take the first remaining face (input
order, so the result is deterministic), group it with its ``k − 1`` nearest remaining faces; when
fewer than ``2k`` remain they all form the last cluster. Every cluster therefore has between ``k``
and ``2k − 1`` members.

k-Same's guarantee assumes one face per person. A set with several photos of one person (a capture
study, a dataset) breaks it: a cluster of three photos of one person averages to that person. With
``people`` (which faces are one person, e.g. :func:`same_person_groups` of an attacker's distances)
the clusters are built over people instead — each person's mean code, every cluster of ``k`` to
``2k − 1`` people, each face in its person's cluster.
"""

from __future__ import annotations

import numpy as np

from headveil.common.errors import SettingsError


def same_person_groups(distances: np.ndarray, threshold: float) -> np.ndarray:
    """Person labels ``(N,) int64`` (0, 1, … in order of first appearance) of ``N`` faces from their
    attacker distances ``distances (N, N)``: in input order, a face joins the first person all of
    whose faces it is closer than ``threshold`` to, else it is a new person (complete linkage: a
    chain of matches — A like B, B like C, A unlike C — is not one person, so one false match does
    not merge two people's photos)."""
    D = np.asarray(distances, np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"distances must be (N, N); got {D.shape}")
    labels = np.empty(len(D), np.int64)
    groups: list[list[int]] = []
    for i in range(len(D)):
        for c, members in enumerate(groups):
            if all(D[i, j] < threshold for j in members):
                members.append(i)
                labels[i] = c
                break
        else:
            labels[i] = len(groups)
            groups.append([i])
    return labels


def k_same_clusters(codes: np.ndarray, k: int, people: np.ndarray | None = None) -> np.ndarray:
    """Cluster labels ``(N,) int64`` (0, 1, …) of identity codes ``codes (N, K)``, every cluster of
    ``k`` to ``2k − 1`` faces — or, with ``people (N,) int`` (faces of one person share a label),
    of ``k`` to ``2k − 1`` people, the faces of a person all in one cluster.

    Raises:
        SettingsError: ``k < 2`` or ``k`` larger than the set (of faces, or of people).
    """
    X = np.asarray(codes, np.float64)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise SettingsError(f"codes must be a finite (N, K) array; got shape {X.shape}")
    n = len(X)
    if k < 2:
        raise SettingsError(f"k-same needs K ≥ 2 (K = 1 is no anonymity); got {k}")
    if people is not None:
        who = np.asarray(people)
        if who.shape != (n,):
            raise ValueError(f"people must be ({n},); got {who.shape}")
        ids, inv = np.unique(who, return_inverse=True)
        if k > len(ids):
            raise SettingsError(f"k-same with K = {k} needs at least {k} different people; the {n} faces are "
                                f"{len(ids)} people to the attacker")
        order = np.argsort([np.flatnonzero(inv == j)[0] for j in range(len(ids))], kind="stable")  # first seen first
        means = np.stack([X[inv == j].mean(0) for j in order])
        per_person = k_same_clusters(means, k)
        labels = np.empty(n, np.int64)
        for rank, j in enumerate(order):
            labels[inv == j] = per_person[rank]
        return labels
    if k > n:
        raise SettingsError(f"k-same with K = {k} needs at least {k} faces; the set has {n}")
    labels = -np.ones(n, np.int64)
    remaining = list(range(n))
    c = 0
    while remaining:
        if len(remaining) < 2 * k:
            labels[remaining] = c
            break
        i = remaining[0]
        d = np.linalg.norm(X[remaining] - X[i], axis=1)
        members = [remaining[j] for j in np.argsort(d, kind="stable")[:k]]
        labels[members] = c
        remaining = [r for r in remaining if labels[r] < 0]
        c += 1
    return labels
