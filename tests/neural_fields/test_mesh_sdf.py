import numpy as np
import pytest
import torch

from headveil.neural_fields.extraction import extract_mesh
from headveil.neural_fields.mesh_sdf import closest_point_on_triangles, mesh_sdf


def _t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_closest_point_regions_hand_values():
    a, b, c = _t([0, 0, 0], [1, 0, 0], [0, 1, 0])
    p = _t([0.2, 0.2, 0.5], [2.0, -1.0, 0.0], [0.5, -0.3, 0.1], [0.6, 0.6, 0.0])
    q, bary = closest_point_on_triangles(p, a.expand(4, 3), b.expand(4, 3), c.expand(4, 3))
    assert torch.allclose(q, _t([0.2, 0.2, 0], [1, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0]))  # face, vertex b, edge ab, edge bc
    assert torch.allclose(bary[0], _t(0.6, 0.2, 0.2)) and torch.allclose(bary[1], _t(0, 1, 0))
    assert torch.allclose((bary[:, :, None] * torch.stack([a, b, c])[None]).sum(1), q)


def _box():
    import trimesh

    m = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    return torch.tensor(m.vertices, dtype=torch.float64), torch.tensor(m.faces)


def _box_sdf(p, h=0.1):
    d = p.abs() - h
    return d.clamp_min(0).norm(dim=-1) + d.max(-1).values.clamp_max(0)


def test_box_sdf_matches_the_analytic_one():
    v, f = _box()
    p = (torch.rand(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5) * 0.5
    s, cp = mesh_sdf(p, v, f, k=12)
    # inside points whose nearest face is ambiguous (equidistant) still get the right value
    assert torch.allclose(s, _box_sdf(p), atol=1e-9)
    assert torch.allclose((p - cp.points).norm(dim=-1), s.abs(), atol=1e-12)


def test_gradients_in_points_and_vertices():
    v, f = _box()
    v = v.clone().requires_grad_()
    p = _t([0.01, 0.02, 0.15]).requires_grad_()  # 5 cm above the top face (z = 0.1)
    s, _ = mesh_sdf(p, v, f, k=12)
    assert torch.allclose(s, _t(0.05))
    s.sum().backward()
    assert torch.allclose(p.grad, _t([0, 0, 1.0]))               # ∇_x sdf = the face normal
    # lifting the top face (all its vertices) by t lowers the SDF by t: the z-gradients sum to −1
    assert torch.isclose(v.grad[:, 2].sum(), torch.tensor(-1.0, dtype=torch.float64))
    assert torch.allclose(v.grad[:, :2], torch.zeros_like(v.grad[:, :2]), atol=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        mesh_sdf(_t([np.nan, 0, 0]), v, f)


def test_extract_sphere():
    import trimesh

    sphere = lambda x: x.norm(dim=-1) - 0.1  # noqa: E731
    verts, faces = extract_mesh(sphere, (-0.15, -0.15, -0.15, 0.15, 0.15, 0.15), resolution=48, chunk=1000)
    r = np.linalg.norm(verts, axis=1)
    voxel = 0.3 / 47
    assert abs(r.mean() - 0.1) < 0.1 * voxel and r.max() - r.min() < voxel
    m = trimesh.Trimesh(verts, faces, process=False)
    assert m.is_watertight and m.volume > 0  # outward orientation
    assert abs(m.volume - 4 / 3 * np.pi * 0.1 ** 3) / (4 / 3 * np.pi * 0.1 ** 3) < 0.02
    with pytest.raises(ValueError, match="does not cross"):
        extract_mesh(lambda x: x.norm(dim=-1) + 1, (-1, -1, -1, 1, 1, 1), resolution=8)


def test_largest_component_is_kept():
    two = lambda x: torch.minimum((x - torch.tensor([0.06, 0, 0])).norm(dim=-1) - 0.04,  # noqa: E731
                                  (x + torch.tensor([0.08, 0, 0])).norm(dim=-1) - 0.02)
    verts, _ = extract_mesh(two, (-0.12, -0.06, -0.06, 0.12, 0.06, 0.06), resolution=40)
    assert verts[:, 0].min() > 0.0  # only the larger sphere (centre +6 cm) remains
