import numpy as np
import pytest

from headveil.geometry.camera import Camera, intrinsics_from_fov, look_at
from headveil.render.rasterize import (available_backends, barycentrics_torch, depth_at, interpolate, rasterize,
                                      resolve_backend)
from headveil.render.rays import directions_camera


def _cam(size=64, dist=2.0):
    return Camera(intrinsics_from_fov(size, size, 40), look_at((0, 0, dist)), size, size)


def test_single_triangle_barycentrics_and_depth():
    # a triangle in the plane z = 0 covering the image centre; camera at z = 2 looking at −Z
    v = np.array([[-1, -1, 0.0], [1, -1, 0], [0, 1, 0]])
    f = np.array([[0, 1, 2]])
    cam = Camera(np.array([[32, 0, 32], [0, 32, 32], [0, 0, 1.0]]), look_at((0, 0, 2.0)), 64, 64)
    for backend in available_backends():
        fr = rasterize(v, f, cam, backend=backend)
        # pixel (32, 32) has centre (32.5, 32.5): ray hits x = 0.5/32·2, y = −0.5/32·2 (image y down)
        x, y = 0.5 / 32 * 2, -0.5 / 32 * 2
        expected = np.linalg.solve(np.vstack([v[:, :2].T, np.ones(3)]), [x, y, 1])
        np.testing.assert_allclose(fr.bary[32, 32], expected, atol=1e-5)
        assert fr.depth[32, 32] == pytest.approx(2.0)
        assert fr.face_index[0, 0] == -1 and np.isinf(fr.depth[0, 0])


def test_embree_matches_numpy_reference():
    import trimesh

    assert "embree" in available_backends(), "embree is a core dependency (trimesh + embreex)"
    s = trimesh.creation.icosphere(3, radius=0.5)
    cam = _cam(48)
    a = rasterize(s.vertices, s.faces, cam, backend="embree")
    b = rasterize(s.vertices, s.faces, cam, backend="numpy")
    both = a.mask & b.mask
    # the silhouettes agree except where a ray grazes an edge (pixel-centre ties)
    assert (a.mask != b.mask).sum() <= 0.01 * a.mask.sum()
    assert (a.face_index[both] == b.face_index[both]).mean() > 0.98
    np.testing.assert_allclose(a.depth[both], b.depth[both], atol=1e-4)


def test_depth_at_some_pixels_equals_the_raster_there():
    import trimesh

    s = trimesh.creation.icosphere(3, radius=0.5)
    cam = _cam(48)
    px = np.array([[24, 24], [0, 0], [24, 24], [30, 10], [47, 47], [12, 33]])  # a repeat, misses
    for backend in available_backends():
        full = rasterize(s.vertices, s.faces, cam, backend=backend).depth
        d = depth_at(s.vertices, s.faces, cam, px, backend=backend)
        assert d.dtype == np.float32 and d.shape == (6,)
        np.testing.assert_array_equal(d, full[px[:, 1], px[:, 0]])  # the same rays: the same bits
        assert np.isinf(d[1]) and d[0] == pytest.approx(1.5, abs=5e-3)  # the corner misses; the front at 2 − 0.5 (facets)
    with pytest.raises(ValueError, match="inside"):
        depth_at(s.vertices, s.faces, cam, [[48, 0]])


def test_a_meshs_scene_is_built_once_and_a_changed_mesh_gets_its_own():
    import trimesh

    import headveil.render.rasterize as R

    if "embree" not in available_backends():
        pytest.skip("embree is not installed")
    s = trimesh.creation.icosphere(3, radius=0.5)
    v, f = np.array(s.vertices), np.array(s.faces)
    cam = _cam(48)
    R._SCENES.clear()
    a = rasterize(v, f, cam, backend="embree")
    scene = next(iter(R._SCENES.values()))
    b = rasterize(v.copy(), f.copy(), cam, backend="embree")  # the same content: the same scene
    assert len(R._SCENES) == 1 and next(iter(R._SCENES.values())) is scene
    np.testing.assert_array_equal(a.face_index, b.face_index)
    np.testing.assert_array_equal(a.depth, b.depth)
    v += [0.0, 0.0, 0.25]  # moved in place, nearer the camera: a new scene, not the cached one
    c = rasterize(v, f, cam, backend="embree")
    assert len(R._SCENES) == 2
    np.testing.assert_allclose(c.depth[24, 24], a.depth[24, 24] - 0.25, atol=2e-3)  # another facet may be hit
    for k in range(R.SCENE_CACHE + 2):  # at most SCENE_CACHE are kept, the newest
        rasterize(v + [0.0, 0.0, 0.01 * k], f, cam, backend="embree")
    assert len(R._SCENES) == R.SCENE_CACHE


def test_occlusion_nearest_wins():
    near = np.array([[-1, -1, 0.5], [1, -1, 0.5], [0, 1, 0.5]])
    far = near - [0, 0, 1.0]
    v = np.vstack([far, near])
    f = np.array([[0, 1, 2], [3, 4, 5]])
    for backend in available_backends():
        fr = rasterize(v, f, _cam(), backend=backend)
        assert fr.face_index[32, 32] == 1 and fr.depth[32, 32] == pytest.approx(1.5)


def test_barycentrics_torch_matches_and_has_gradients():
    import torch

    v = np.array([[-1, -1, 0.0], [1, -1, 0.2], [0, 1, -0.1]])
    f = np.array([[0, 1, 2]])
    cam = _cam()
    fr = rasterize(v, f, cam)
    m = fr.mask
    vc = torch.tensor(v @ cam.w2c[:3, :3].T + cam.w2c[:3, 3], requires_grad=True)
    dirs = torch.tensor(directions_camera(cam)[m])
    fi = torch.tensor(fr.face_index[m])
    bary, depth = barycentrics_torch(vc, torch.tensor(f), fi, dirs)
    np.testing.assert_allclose(bary.detach().numpy(), fr.bary[m], atol=1e-5)
    np.testing.assert_allclose(depth.detach().numpy(), fr.depth[m], atol=1e-5)
    assert torch.autograd.gradcheck(lambda x: barycentrics_torch(x, torch.tensor(f), fi[:5], dirs[:5])[0], (vc,))


def test_interpolate_numpy_and_torch_agree():
    import torch

    attr = np.arange(9, dtype=np.float64).reshape(3, 3)
    f = np.array([[0, 1, 2]])
    b = np.array([[0.2, 0.3, 0.5]])
    out = interpolate(attr, f, np.array([0]), b)
    np.testing.assert_allclose(out, [[0.3 * 3 + 0.5 * 6, 1 + 0.3 * 3 + 0.5 * 6, 2 + 0.3 * 3 + 0.5 * 6]])
    out_t = interpolate(torch.tensor(attr), torch.tensor(f), torch.tensor([0]), torch.tensor(b))
    np.testing.assert_allclose(out_t.numpy(), out)


def test_bad_inputs():
    cam = _cam()
    with pytest.raises(ValueError, match="NaN"):
        rasterize(np.full((3, 3), np.nan), np.array([[0, 1, 2]]), cam)
    with pytest.raises(ValueError, match="faces"):
        rasterize(np.zeros((3, 3)), np.array([[0, 1, 5]]), cam)
    with pytest.raises(ValueError, match="unknown raster backend"):
        resolve_backend("opengl")
