import numpy as np
import pytest

from headveil.geometry.camera import Camera, intrinsics_from_fov, look_at, opencv_to_opengl
from headveil.geometry.transforms import (euler_from_rotation, rodrigues, rotation_from_euler, rotation_to_rodrigues,
                                          similarity_procrustes)


def test_yaw_turns_face_toward_plus_x():
    # a positive yaw turns the face direction +Z toward +X (the subject's left)
    d = rotation_from_euler(90, 0, 0) @ np.array([0, 0, 1.0])
    np.testing.assert_allclose(d, [1, 0, 0], atol=1e-12)
    d = rotation_from_euler(0, 90, 0) @ np.array([0, 0, 1.0])  # positive pitch: nose down
    np.testing.assert_allclose(d, [0, -1, 0], atol=1e-12)


@pytest.mark.parametrize("angles", [(10, 20, 30), (-45, 5, -3), (170, -60, 90)])
def test_euler_roundtrip(angles):
    np.testing.assert_allclose(euler_from_rotation(rotation_from_euler(*angles)), angles, atol=1e-9)


def test_rodrigues_roundtrip_and_known_value():
    R = rodrigues([0, 0, np.pi / 2])  # 90° about z: x → y
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    for v in ([0.1, -0.2, 0.3], [0, 0, 0], [np.pi - 1e-3, 0, 0]):
        np.testing.assert_allclose(rotation_to_rodrigues(rodrigues(v)), v, atol=1e-6)


def test_similarity_procrustes_recovers_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    R = rotation_from_euler(20, -10, 5)
    dst = 1.7 * src @ R.T + [1, 2, 3]
    s, R2, t = similarity_procrustes(src, dst)
    assert s == pytest.approx(1.7)
    np.testing.assert_allclose(R2, R, atol=1e-10)
    np.testing.assert_allclose(t, [1, 2, 3], atol=1e-10)


def test_look_at_frontal_camera_axes():
    c2w = look_at((0, 0, 2.0))
    # OpenCV: x right = world +X, y down = world −Y, z forward = world −Z
    np.testing.assert_allclose(c2w[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)


def test_projection_of_origin_hits_principal_point():
    cam = Camera(intrinsics_from_fov(100, 80, 30), look_at((0, 0, 2.0)), 100, 80)
    uv, z = cam.project(np.array([[0, 0, 0.0], [0, 0.1, 0.0]]))
    np.testing.assert_allclose(uv[0], [50, 40])
    assert z[0] == pytest.approx(2.0)
    assert uv[1, 1] < 40  # world up is image up (smaller v)


def test_opencv_opengl_involution():
    c2w = look_at((0.3, 0.2, 1.5), (0, 0.1, 0))
    np.testing.assert_allclose(opencv_to_opengl(opencv_to_opengl(c2w)), c2w)
    gl = opencv_to_opengl(c2w)
    # OpenGL cameras look down their −Z axis: the same world direction as OpenCV's +Z
    np.testing.assert_allclose(-gl[:3, 2], c2w[:3, 2])


def test_camera_validates():
    with pytest.raises(ValueError, match="NaN"):
        Camera(np.full((3, 3), np.nan), np.eye(4), 10, 10)
    with pytest.raises(ValueError, match="shape|K"):
        Camera(np.eye(2), np.eye(4), 10, 10)
