"""Portrait scenes of the head model: a camera in front of a posed head, lit and rendered.

World frame = the model frame (metres, +Y up, face toward +Z) with the head rotated about the
origin by its pose; the camera sits on +Z looking at the origin (OpenCV axes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from headveil.geometry.camera import Camera, intrinsics_from_fov, look_at
from headveil.geometry.morphable.model import MorphableModel
from headveil.geometry.transforms import rotation_from_euler
from headveil.render.mesh_renderer import RenderResult, render_mesh
from headveil.render.shading import DirectionalLight


@dataclass
class HeadPose:
    """Head rotation in degrees (see :mod:`headveil.geometry.transforms`) and translation in metres."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def R(self) -> np.ndarray:
        return rotation_from_euler(self.yaw, self.pitch, self.roll)


@dataclass
class SubjectCodes:
    """Codes of one synthetic subject: ``alpha (K,)``, ``eta (E,)``, ``beta (A,)`` float32."""

    alpha: np.ndarray
    eta: np.ndarray
    beta: np.ndarray
    meta: dict = field(default_factory=dict)


def portrait_camera(size: int = 512, fov_y_deg: float = 20.0, framed_height_m: float = 0.30) -> Camera:
    """A square camera on +Z, looking at the origin, framing ``framed_height_m`` vertically."""
    distance = 0.5 * framed_height_m / np.tan(np.radians(fov_y_deg) / 2)
    return Camera(intrinsics_from_fov(size, size, fov_y_deg), look_at((0.0, 0.0, distance)), size, size)


def posed_vertices(model: MorphableModel, codes: SubjectCodes, pose: HeadPose) -> np.ndarray:
    """``(V, 3) float64`` world-frame vertices of a subject in a pose."""
    v = model.vertices(codes.alpha, codes.eta).astype(np.float64)
    return v @ pose.R.T + np.asarray(pose.translation)


def render_subject(model: MorphableModel, codes: SubjectCodes, pose: HeadPose, camera: Camera,
                   light: DirectionalLight | None = None, background=(0.55, 0.56, 0.6),
                   supersample: int = 2) -> tuple[RenderResult, np.ndarray]:
    """Render a subject; returns the render and its world-frame vertices ``(V, 3)``."""
    verts = posed_vertices(model, codes, pose)
    res = render_mesh(verts, model.faces, camera, model.albedo(codes.beta), light=light, background=background,
                      supersample=supersample)
    return res, verts


def expression_vector(model: MorphableModel, weights: dict[str, float]) -> np.ndarray:
    """``(E,) float32`` expression code from ``{blendshape name: weight}``."""
    eta = np.zeros(model.n_expr, np.float32)
    for k, v in weights.items():
        if k not in model.expr_names:
            raise ValueError(f"unknown expression {k!r}; the model has {len(model.expr_names)} named units")
        eta[model.expr_names.index(k)] = v
    return eta


#: Named lights (world frame: +Y up, camera on +Z).
LIGHTS = {
    "front": DirectionalLight((0.0, 0.2, 1.0), 0.40, 0.65),
    "left": DirectionalLight((-0.9, 0.3, 0.6), 0.35, 0.75),
    "right": DirectionalLight((0.9, 0.3, 0.6), 0.35, 0.75),
    "top": DirectionalLight((0.0, 1.0, 0.5), 0.35, 0.75),
    "dim": DirectionalLight((-0.3, 0.4, 1.0), 0.25, 0.45),
}

#: Named expressions as ARKit unit weights.
EXPRESSIONS = {
    "neutral": {},
    "smile": {"mouthSmileLeft": 0.7, "mouthSmileRight": 0.7},
    "open": {"jawOpen": 0.45},
    "surprise": {"browInnerUp": 0.6, "browOuterUpLeft": 0.5, "browOuterUpRight": 0.5, "jawOpen": 0.25,
                 "eyeWideLeft": 0.4, "eyeWideRight": 0.4},
    "frown": {"browDownLeft": 0.6, "browDownRight": 0.6, "mouthFrownLeft": 0.5, "mouthFrownRight": 0.5},
}


def subject_codes(model: MorphableModel, seed: int, n: int) -> list[SubjectCodes]:
    """The identities of an evaluation set: ``n`` neutral subjects from ``SeedSequence(seed)``."""
    out = []
    for ss in np.random.SeedSequence(seed).spawn(n):
        c = model.sample_codes(np.random.default_rng(ss))
        out.append(SubjectCodes(c["alpha"], np.zeros(model.n_expr, np.float32), c["beta"]))
    return out
