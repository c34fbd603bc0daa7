import numpy as np
import pytest

from headveil.render.texture import diffuse_colors, vertex_adjacency


def test_unknown_vertex_takes_its_neighbours_mean():
    # a square of two triangles: vertex 3 touches 0 and 2 only
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    c = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [9.0, 9, 9]])
    out = diffuse_colors(c, np.array([True, True, True, False]), faces)
    np.testing.assert_allclose(out[3], [0.5, 0, 0.5])
    np.testing.assert_array_equal(out[:3], c[:3])


def test_diffusion_equals_full_jacobi_iterations():
    # a strip of 12 vertices in two rows: colours flow from the left end over a fixed number of steps
    top, bot = np.arange(6), np.arange(6, 12)
    faces = np.array([f for k in range(5) for f in ([top[k], bot[k], top[k + 1]], [top[k + 1], bot[k], bot[k + 1]])])
    rng = np.random.default_rng(3)
    c = rng.uniform(size=(12, 3))
    known = np.zeros(12, bool)
    known[[0, 6]] = True
    A = vertex_adjacency(12, faces).toarray()
    ref = c.copy()
    ref[~known] = c[known].mean(0)
    for _ in range(7):
        ref[~known] = (A @ ref)[~known]
    np.testing.assert_allclose(diffuse_colors(c, known, faces, iterations=7), ref, atol=1e-12)
    # converged with one known colour at both ends of the left edge, every vertex reaches that colour
    c[6] = c[0]
    far = diffuse_colors(c, known, faces, iterations=3000)
    np.testing.assert_allclose(far[~known], np.broadcast_to(c[0], (10, 3)), atol=1e-6)


def test_no_known_colour_is_an_error():
    with pytest.raises(ValueError, match="no vertex"):
        diffuse_colors(np.zeros((3, 3)), np.zeros(3, bool), np.array([[0, 1, 2]]))
