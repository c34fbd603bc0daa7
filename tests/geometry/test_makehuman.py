import numpy as np
import pytest

from headveil.geometry.morphable.build import _midpoint_subdivide, rigid_align
from headveil.geometry.morphable.makehuman import age_weights, macro_target_weights
from headveil.geometry.transforms import rotation_from_euler


def test_age_weights_hand_values():
    assert age_weights(0.5) == {"young": 1.0, "old": 0.0}
    w = age_weights(0.65)
    assert w["young"] == pytest.approx(0.7) and w["old"] == pytest.approx(0.3)
    w = age_weights(0.1875 + 0.3125 / 2)
    assert w["child"] == pytest.approx(0.5) and w["young"] == pytest.approx(0.5)


def test_macro_weights_default_human():
    # all macros at 0.5 and equal race: 1/6 of each {race}-{gender}-young target (MakeHuman default)
    w = macro_target_weights(0.5, 0.5, 0.5, 0.5, (1, 1, 1))
    rga = {k: v for k, v in w.items() if "universal" not in k}
    assert len(rga) == 6 and all(v == pytest.approx(1 / 6) for v in rga.values())
    uni = {k: v for k, v in w.items() if "universal" in k}
    assert sum(uni.values()) == pytest.approx(1.0)
    assert all("averagemuscle-averageweight" in k for k in uni)


def test_midpoint_subdivision_matrix():
    tris = np.array([[0, 1, 2]])
    new, M = _midpoint_subdivide(tris, 3)
    assert new.shape == (4, 3) and M.shape == (6, 3)
    v = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0.0]])
    mids = (M @ v)[3:]
    assert {tuple(m) for m in mids} == {(1, 0, 0), (1, 1, 0), (0, 1, 0)}
    np.testing.assert_allclose(M.sum(1), 1)


def test_rigid_align_removes_pose():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(40, 3))
    X = np.stack([ref @ rotation_from_euler(30, 10, -5).T + [1, 2, 3], ref])
    out = rigid_align(X, ref, np.ones(40, bool))
    np.testing.assert_allclose(out, np.stack([ref, ref]), atol=1e-10)
