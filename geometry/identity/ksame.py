"""k-Same clustering of identity codes (k-Same-M in 3D).

k-Same (Newton, Sweeney, Malin) replaces every face of a set by an average of ``k`` faces, so that no
output can be linked to fewer than ``k`` inputs. Here the faces are clustered by their identity code
α (the head model's shape code, N(0, I) units) and each face is later replaced by its cluster's mean
shape and UV albedo (aligned by the model's texture layout), relit by its own photo's light.

:func:`k_same_clusters` is the classic greedy construction: take the first remaining face (input
order, so the result is deterministic), group it with its ``k − 1`` nearest remaining faces; when
fewer than ``2k`` remain they all form the last cluster. Every cluster therefore has between ``k``
and ``2k − 1`` members.
"""

from __future__ import annotations

import numpy as np

from headveil.common.errors import SettingsError


def k_same_clusters(codes: np.ndarray, k: int) -> np.ndarray:
    """Cluster labels ``(N,) int64`` (0, 1, …) of identity codes ``codes (N, K)``, every cluster of
    size in ``[k, 2k − 1]``.

    Raises:
        SettingsError: ``k < 2`` or ``k`` larger than the set.
    """
    X = np.asarray(codes, np.float64)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise SettingsError(f"codes must be a finite (N, K) array; got shape {X.shape}")
    n = len(X)
    if k < 2:
        raise SettingsError(f"k-same needs K ≥ 2 (K = 1 is no anonymity); got {k}")
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
