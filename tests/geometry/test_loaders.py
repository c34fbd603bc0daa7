"""The user-model loaders, on tiny files written here in each format."""

import pickle
import sys
import types

import numpy as np
import pytest

from headveil.common.errors import HeadVeilError
from headveil.geometry.morphable.loaders import load_bfm2009, load_bfm2017, load_flame, load_model

# a tetrahedron, outward-facing triangles, metres
V = np.array([[0, 0, 0.0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]])
F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def _pc(k, rng):
    q, _ = np.linalg.qr(rng.normal(size=(12, k)))
    return q


def test_bfm2009(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    pc = _pc(3, rng)
    savemat(tmp_path / "bfm.mat", {"shapeMU": (V * 1e6).reshape(-1, 1), "shapePC": pc,
                                   "shapeEV": np.array([[2000.0], [1000.0], [500.0]]),
                                   "texMU": np.full((12, 1), 127.5), "texPC": pc[:, :2], "texEV": np.array([[10.0], [5.0]]),
                                   "tl": F + 1})
    m = load_bfm2009(tmp_path / "bfm.mat")
    np.testing.assert_allclose(m.vertices_mean, V, atol=1e-7)  # µm → m
    np.testing.assert_array_equal(m.faces, F)  # 1-based → 0-based, already outward
    # basis = PC × std, in metres: α = e_0 moves by 2000 µm × pc[:, 0]
    np.testing.assert_allclose(m.vertices([1.0]) - V, (pc[:, 0] * 2000e-6).reshape(4, 3), atol=1e-7)
    assert m.n_expr == 0 and m.n_albedo == 2
    np.testing.assert_allclose(m.albedo_mean, 0.5)


def test_bfm2017(tmp_path):
    import h5py

    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "bfm.h5", "w") as f:
        for name, mean, k in (("shape", V.reshape(-1) * 1e3, 3), ("expression", np.zeros(12), 2),
                              ("color", np.full(12, 0.6), 2)):
            g = f.create_group(f"{name}/model")
            g["mean"] = mean
            g["pcaBasis"] = _pc(k, rng)
            g["pcaVariance"] = np.arange(1, k + 1, dtype=float)[::-1] ** 2
        f["shape/representer/cells"] = F[:, ::-1].T  # inward winding: the loader must flip it
    m = load_bfm2017(tmp_path / "bfm.h5")
    np.testing.assert_allclose(m.vertices_mean, V, atol=1e-7)
    np.testing.assert_array_equal(m.faces, F[:, ::-1][:, ::-1])
    assert (m.n_id, m.n_expr, m.n_albedo) == (3, 2, 2)
    assert np.linalg.norm(m.shape_basis[0]) == pytest.approx(3e-3)  # std 3 mm for unit-norm PC


def test_flame_with_chumpy_arrays(tmp_path):
    # write the pickle with a stand-in 'chumpy.ch.Ch' class, then remove it: the loader needs no chumpy
    mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    mod.Ch = Ch
    sys.modules["chumpy"] = types.ModuleType("chumpy")
    sys.modules["chumpy.ch"] = mod
    try:
        dirs = np.zeros((4, 3, 305))
        dirs[3, 2, 0] = 0.01  # shape component 0 moves vertex 3 along z
        dirs[1, 0, 300] = 0.02  # expression component 0 moves vertex 1 along x
        data = {"v_template": Ch(V), "f": F.astype(np.uint32), "shapedirs": Ch(dirs), "posedirs": np.zeros(3)}
        with open(tmp_path / "flame.pkl", "wb") as fh:
            pickle.dump(data, fh, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    m = load_model(tmp_path / "flame.pkl")
    assert (m.n_id, m.n_expr, m.n_albedo) == (300, 5, 0)
    np.testing.assert_allclose(m.vertices([1.0])[3], V[3] + [0, 0, 0.01], atol=1e-7)
    np.testing.assert_allclose(m.vertices(None, [1.0])[1], V[1] + [0.02, 0, 0], atol=1e-7)


@pytest.mark.parametrize("name,loader", [("x.mat", load_bfm2009), ("x.h5", load_bfm2017), ("x.pkl", load_flame)])
def test_bad_files_raise_clear_errors(tmp_path, name, loader):
    (tmp_path / name).write_bytes(b"garbage")
    with pytest.raises(HeadVeilError, match=name):
        loader(tmp_path / name)


def test_load_model_dispatch_errors(tmp_path):
    with pytest.raises(HeadVeilError, match="not found"):
        load_model(tmp_path / "none.npz")
    (tmp_path / "m.obj").write_text("")
    with pytest.raises(HeadVeilError, match="unknown model format"):
        load_model(tmp_path / "m.obj")
