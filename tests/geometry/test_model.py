"""Invariants of the embedded head model and the MorphableModel interface."""

import numpy as np
import pytest

from headveil.geometry.morphable.model import MorphableModel


def test_sizes_and_names(model):
    assert model.n_id >= 80
    assert model.n_expr == 52
    assert {"jawOpen", "mouthSmileLeft", "eyeBlinkRight", "browInnerUp"} <= set(model.expr_names)
    assert set(model.part_names) == {"skin", "eye_left", "eye_right", "eyelashes", "teeth", "tongue"}
    assert len(model.landmarks["mediapipe478"]) == 478 and len(model.landmarks["ibug68"]) == 68


def test_frame_metres_up_and_forward(model):
    v = model.vertices_mean
    skin = model.part_mask("skin")
    height = v[skin, 1].max() - v[skin, 1].min()
    assert 0.20 < height < 0.35  # head and neck, in metres
    np.testing.assert_allclose(0.5 * (v[skin].min(0) + v[skin].max(0)), 0, atol=1e-5)  # centred
    nose = model.landmarks_3d(v, "ibug68")[30]  # iBUG 31: nose tip
    assert nose[2] > 0.05  # the face looks toward +Z
    eye_l, eye_r = v[model.part_mask("eye_left")].mean(0), v[model.part_mask("eye_right")].mean(0)
    assert eye_l[0] > 0 > eye_r[0]  # +X is the subject's left
    assert 0.055 < np.linalg.norm(eye_l - eye_r) < 0.075  # inter-pupil distance


def test_normals_point_outward(model):
    import trimesh

    skin_faces = model.face_part_mask("skin")
    m = trimesh.Trimesh(model.vertices_mean, model.faces[skin_faces], process=False)
    # consistent winding and a positive signed volume (litres for a head and neck) mean outward
    assert m.is_winding_consistent
    assert 0.002 < m.volume < 0.008
    nose = model.landmarks_3d(model.vertices_mean, "ibug68")[30]
    near = np.linalg.norm(m.triangles_center - nose, axis=1) < 0.01
    assert m.face_normals[near, 2].mean() > 0.5


def test_linear_synthesis(model):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(model.n_id)
    e = np.zeros(model.n_expr)
    e[model.expr_names.index("jawOpen")] = 0.5
    np.testing.assert_allclose(model.vertices(), model.vertices_mean)
    v1 = model.vertices(a, e)
    np.testing.assert_allclose(model.vertices(2 * a, 2 * e) - model.vertices_mean, 2 * (v1 - model.vertices_mean),
                               atol=1e-5)
    jaw = model.vertices(None, e) - model.vertices_mean
    assert np.abs(jaw).max() > 0.01  # jawOpen 0.5 moves the chin by centimetres


def test_identity_std_matches_prior(model):
    # α ~ N(0, I) reproduces the builder's statistics: a unit code moves vertices by millimetres
    # (RMS over the head), the first component the most
    rms = np.sqrt((model.shape_basis ** 2).sum(-1).mean(-1)) * 1e3
    assert rms[0] == rms.max() and 1.0 < rms[0] < 20.0 and rms[-1] < 0.5
    ev = np.asarray(model.metadata["explained_variance_ratio"])
    assert ev.sum() > 0.99 and np.all(np.diff(ev) <= 1e-12)


def test_torch_matches_numpy(model):
    import torch

    rng = np.random.default_rng(1)
    a, e, b = rng.standard_normal(model.n_id), rng.uniform(0, 1, model.n_expr), rng.standard_normal(model.n_albedo)
    vt = model.vertices_torch(torch.tensor(a[None], dtype=torch.float32), torch.tensor(e[None], dtype=torch.float32))
    np.testing.assert_allclose(vt[0].numpy(), model.vertices(a, e), atol=2e-6)
    at = model.albedo_torch(torch.tensor(b[None], dtype=torch.float32))[0].clamp(0, 1)
    np.testing.assert_allclose(at.numpy(), model.albedo(b), atol=1e-6)


def test_short_codes_are_padded_and_bad_codes_rejected(model):
    v = model.vertices(np.ones(3))
    np.testing.assert_allclose(v, model.vertices(np.r_[np.ones(3), np.zeros(model.n_id - 3)]))
    with pytest.raises(ValueError, match="components"):
        model.vertices(np.ones(model.n_id + 1))
    with pytest.raises(ValueError, match="NaN"):
        model.vertices(np.full(3, np.nan))


def test_albedo_in_range_and_regions(model):
    rng = np.random.default_rng(2)
    alb = model.albedo(3 * rng.standard_normal(model.n_albedo))
    assert alb.min() >= 0 and alb.max() <= 1
    lips, skin = model.regions["lips"], model.regions["skin"]
    mean = model.albedo()
    assert mean[lips, 0].mean() / mean[lips, 1].mean() > mean[skin & ~lips, 0].mean() / mean[skin & ~lips, 1].mean()
    assert 1000 < model.regions["face"].sum() < model.regions["skin"].sum()


def test_save_load_roundtrip(tmp_path, model):
    small = MorphableModel(model.name, model.vertices_mean, model.faces, model.shape_basis[:5], model.expr_basis[:2],
                           model.expr_names[:2], model.albedo_mean, model.albedo_basis[:1], model.albedo_names[:1],
                           model.vertex_part, model.part_names, model.regions, model.landmarks, model.uv,
                           model.expr_range, {"k": 1})
    small.save(tmp_path / "m.npz", half=False)
    back = MorphableModel.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.shape_basis, small.shape_basis)
    np.testing.assert_array_equal(back.faces, small.faces)
    assert back.expr_names == small.expr_names and back.metadata == {"k": 1}
    for k in small.regions:
        np.testing.assert_array_equal(back.regions[k], small.regions[k])
    np.testing.assert_array_equal(back.landmarks["ibug68"].face_index, small.landmarks["ibug68"].face_index)


def test_half_precision_error_below_tenth_mm(model):
    from headveil.pipelines.build_model import half_precision_error_mm

    assert half_precision_error_mm(model, n=10) < 0.1


def test_asset_is_small_and_has_manifest(model):
    from headveil.common.outputs import sha256_file
    from headveil.geometry.morphable.model import EMBEDDED_PATH

    assert EMBEDDED_PATH.stat().st_size <= 15e6
    manifest = (EMBEDDED_PATH.parents[1] / "MANIFEST.md").read_text()
    assert sha256_file(EMBEDDED_PATH) in manifest and "CC0" in manifest
