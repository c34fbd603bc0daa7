"""Rotations and rigid transforms (numpy; float64 unless stated).

Conventions: rotation matrices act on column vectors (``x' = R x``). Head pose angles, in
degrees, are yaw about +Y, pitch about +X, roll about +Z, composed ``R = Ry(yaw) Rx(pitch)
Rz(roll)``; in the model frame (+Y up, face toward +Z) a positive yaw turns the face toward +X
(the subject's left) and a positive pitch turns it down (the nose toward −Y).
"""

from __future__ import annotations

import numpy as np


def rotation_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rotation_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rotation_z(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``(3, 3)`` rotation from head-pose angles in degrees: ``Ry(yaw) Rx(pitch) Rz(roll)``."""
    return rotation_y(yaw) @ rotation_x(pitch) @ rotation_z(roll)


def euler_from_rotation(R: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_from_euler` (degrees; pitch in [−90, 90])."""
    R = np.asarray(R, float)
    pitch = np.degrees(np.arcsin(np.clip(-R[1, 2], -1, 1)))
    yaw = np.degrees(np.arctan2(R[0, 2], R[2, 2]))
    roll = np.degrees(np.arctan2(R[1, 0], R[1, 1]))
    return float(yaw), float(pitch), float(roll)


def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation matrix from a Rodrigues vector ``(3,)`` (axis × angle, radians)."""
    rvec = np.asarray(rvec, float).reshape(3)
    theta = np.linalg.norm(rvec)
    if theta < 1e-12:
        return np.eye(3)
    k = rvec / theta
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * Kx + (1 - np.cos(theta)) * Kx @ Kx


def rotation_to_rodrigues(R: np.ndarray) -> np.ndarray:
    """Rodrigues vector ``(3,)`` of a rotation matrix."""
    R = np.asarray(R, float)
    cos = np.clip((np.trace(R) - 1) / 2, -1, 1)
    theta = np.arccos(cos)
    if theta < 1e-9:
        return np.zeros(3)
    if np.pi - theta < 1e-6:
        # near π: axis from the diagonal
        k = np.sqrt(np.clip((np.diag(R) + 1) / 2, 0, None))
        i = int(np.argmax(k))
        k[(i + 1) % 3] = np.copysign(k[(i + 1) % 3], R[i, (i + 1) % 3])
        k[(i + 2) % 3] = np.copysign(k[(i + 2) % 3], R[i, (i + 2) % 3])
        return k / np.linalg.norm(k) * theta
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * np.sin(theta))
    return w * theta


def rigid_matrix(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(4, 4)`` homogeneous matrix from ``R (3, 3)`` and ``t (3,)``."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t).reshape(3)
    return T


def apply_rigid(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``T (4, 4)`` to ``points (N, 3)``."""
    return points @ T[:3, :3].T + T[:3, 3]


def similarity_procrustes(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                          scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``dst ≈ s R src + t`` (Umeyama). Returns ``(s, R (3, 3), t (3,))``."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    A, B = src - mu_s, dst - mu_d
    H = (A * w[:, None]).T @ B
    U, S, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    D = np.diag([1.0, 1.0, d])
    R = Vt.T @ D @ U.T
    s = float(np.trace(np.diag(S) @ D) / (w @ (A ** 2).sum(1))) if scale else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t
