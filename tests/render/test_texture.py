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


def test_photo_colours_read_only_around_the_head_equal_the_whole_photo_read(model):
    """The head's pixels are cut out before sampling (a 24 MP photo is not converted whole): the
    colours are those of sampling the whole photo, for uint8 and float photos."""
    from headveil.render import texture
    from headveil.render.scene import HeadPose, portrait_camera
    from headveil.render.texture import sample_photo_colors

    cam = portrait_camera(160)
    v = model.vertices() @ HeadPose(yaw=20.0).R.T
    photo = np.random.default_rng(3).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    for img in (photo, photo / 255.0):
        colors, visible = sample_photo_colors(img, v, model.faces, cam)
        uv, _ = cam.project(v)
        ref = texture._bilinear(photo / 255.0, uv[visible])
        assert visible.sum() > 500
        np.testing.assert_allclose(colors[visible], ref, atol=1e-12)


def test_a_large_photos_visibility_raster_is_scaled_down_and_agrees(model):
    """A head 1800 px tall: the depth test on a raster of at most 512 px agrees with the full-size
    one on all but ≈ 4 % of the visible vertices (measured: eyeballs behind the lids and lashes
    within a few millimetres of them, and silhouette skin), and it reads the same colours."""
    from headveil.render.scene import HeadPose, portrait_camera
    from headveil.render.texture import sample_photo_colors

    cam = portrait_camera(2048)
    v = model.vertices() @ HeadPose(yaw=30.0).R.T
    photo = np.random.default_rng(5).integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    c_small, small = sample_photo_colors(photo, v, model.faces, cam)
    c_full, full = sample_photo_colors(photo, v, model.faces, cam, visibility_px=4096)
    assert full.sum() > 1000
    assert (small != full).sum() < 0.06 * full.sum()
    both = small & full
    np.testing.assert_allclose(c_small[both], c_full[both], atol=1e-12)
