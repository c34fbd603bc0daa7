import numpy as np
import pytest

from headveil.geometry.camera import Camera, intrinsics_from_fov, look_at
from headveil.geometry.normals import vertex_normals
from headveil.render.mesh_renderer import render_mesh
from headveil.render.turntable import turntable_frames, write_video


def _sphere():
    import trimesh

    return trimesh.creation.icosphere(4, radius=0.1)


def test_sphere_coverage_matches_projected_disc():
    s = _sphere()
    cam = Camera(intrinsics_from_fov(96, 96, 30), look_at((0, 0, 1.0)), 96, 96)
    r = render_mesh(s.vertices, s.faces, cam, supersample=2)
    # apparent radius of a sphere of radius ρ at distance d: f·ρ/√(d² − ρ²)
    f = cam.K[0, 0]
    radius_px = f * 0.1 / np.sqrt(1.0 - 0.01)
    assert r.mask.sum() == pytest.approx(np.pi * radius_px ** 2, rel=0.02)
    assert r.image.dtype == np.float32 and r.image.min() >= 0 and r.image.max() <= 1
    centre = r.normal[48, 48]
    np.testing.assert_allclose(centre / np.linalg.norm(centre), [0, 0, 1], atol=0.05)  # faces the camera
    assert r.depth[48, 48] == pytest.approx(0.9, abs=2e-3)


def test_background_colour_and_image():
    s = _sphere()
    cam = Camera(intrinsics_from_fov(32, 32, 30), look_at((0, 0, 1.0)), 32, 32)
    r = render_mesh(s.vertices, s.faces, cam, background=(0.0, 1.0, 0.0))
    np.testing.assert_allclose(r.image[0, 0], [0, 1, 0])
    bg = np.full((32, 32, 3), 0.25, np.float32)
    r = render_mesh(s.vertices, s.faces, cam, background=bg)
    np.testing.assert_allclose(r.image[0, 0], 0.25)
    with pytest.raises(ValueError, match="background"):
        render_mesh(s.vertices, s.faces, cam, background=np.zeros((8, 8, 3)))


def test_vertex_normals_torch_matches_numpy():
    import torch

    s = _sphere()
    n_np = vertex_normals(np.asarray(s.vertices), np.asarray(s.faces))
    n_t = vertex_normals(torch.tensor(s.vertices), torch.tensor(s.faces))
    np.testing.assert_allclose(n_t.numpy(), n_np, atol=1e-10)
    np.testing.assert_allclose(np.einsum("ij,ij->i", n_np, s.vertices / 0.1), 1, atol=0.01)


def test_turntable_and_video(tmp_path):
    s = _sphere()
    frames = turntable_frames(s.vertices, s.faces, n_frames=3, size=32)
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    p = write_video(tmp_path / "t.mp4", frames, fps=6)
    assert p.stat().st_size > 0 and [x.name for x in tmp_path.iterdir()] == ["t.mp4"]
