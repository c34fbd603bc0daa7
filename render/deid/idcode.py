"""ID-code de-identification (IDEudemon Step I): ``id-noise``, ``id-dp``, ``id-keyed``.

Each perturbs only the identity code α of the subject (see :mod:`headveil.geometry.identity.codes`
for the normalised code and the three perturbations) and re-renders the face with the original
expression, pose, camera and colours (:mod:`headveil.render.deid.face3d`). A zero-strength
call (scale 0, ε = inf, θ = 0) leaves α unchanged; the face is still re-rendered (what the
pipeline itself costs), so the output is the input up to that re-render.

``id-keyed`` reads its key from ``DeidInput.extras["key"]`` (bytes); the key is never stored in
outputs or logs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headveil.common.errors import HeadVeilError, SettingsError
from headveil.geometry.identity import codes as idc
from headveil.render.deid import face3d
from headveil.render.deid.registry import DeidInput, DeidOutput, MethodSpec, register_method


def apply_identity(inp: DeidInput, alpha_new: np.ndarray, render: str, metrics: dict,
                   eta_new: np.ndarray | None = None) -> DeidOutput:
    """Re-render ``inp`` with identity ``alpha_new`` (the shared back end of the ID-code methods)
    and, when given, expression ``eta_new`` (default: the input's)."""
    model, c = inp.model, inp.codes
    alpha = np.asarray(c.alpha, np.float64)
    metrics = {**metrics, "delta_norm": float(np.linalg.norm(alpha_new - alpha)), "render": render}
    R, t = inp.model_to_world()
    v_old = model.vertices(alpha, c.eta)
    sub = face3d.region_submesh(model, face3d.to_world(v_old, R, t), inp.camera, inp.extras.get("face_region"))
    texture = None
    if render == "donor":  # another person's albedo (and part of their shape) under the photo's light
        app = face3d.new_appearance(inp)
        if app.alpha is not None and app.shape_weight > 0:
            alpha_new = (1 - app.shape_weight) * np.asarray(alpha_new, np.float64) + app.shape_weight * app.alpha
            metrics["donor_shape_weight"] = app.shape_weight
        from headveil.render.appearance import appearance_uv, uv_triangles

        tri_ok = uv_triangles(model)[sub.triangles]
        texture = (app.albedo, appearance_uv(model)[sub.vertex_index], tri_ok, app.light)
    v_new = model.vertices(alpha_new, c.eta if eta_new is None else eta_new)
    new_faces = sub.faces
    if render == "photo":  # the photo's colours where it saw the face
        colors, visible = face3d.photo_colors(inp.image, model, v_old, R, t, inp.camera, with_visibility=True,
                                              exclude=inp.extras.get("occluders"))
        new_faces = face3d.seen_faces(model, sub, visible)
    else:
        colors = face3d.subject_colors(inp, render, v_old, R, t)
    idx = sub.vertex_index
    comp = face3d.rerender_face(inp.image, inp.camera, R, t, v_old[idx], sub.faces, v_new[idx], new_faces,
                                colors[idx], light=face3d.scene_light(inp, render), unlit=render == "photo",
                                face_region=inp.extras.get("face_region"), texture=texture,
                                keep=inp.extras.get("occluders"))
    mesh = (face3d.to_world(v_new, R, t), model.faces, np.clip(colors, 0, 1))
    metrics["face_pixels"] = int((comp.face_mask > 0).sum())
    if comp.photo_match is not None:
        metrics.update({k: [round(x, 3) for x in v] for k, v in comp.photo_match.items()})
    return DeidOutput(comp.image, mesh=mesh, codes=np.asarray(alpha_new, np.float64), metrics=metrics,
                      extras={"composite": comp})


@dataclass
class NoiseParams:
    scale: float = 0.25
    """s: std of the Gaussian noise on the normalised code z ∈ [−1, 1] (IDEudemon: 0.05–0.4)."""
    render: str = "photo"
    """photo (the input's own colours carried by the mesh) or model (model albedo, scene light)."""

    def __post_init__(self):
        if not (np.isfinite(self.scale) and self.scale >= 0):
            raise SettingsError(f"--scale must be a finite number ≥ 0; got {self.scale}")
        face3d.check_render_mode(self.render)


def _noise(inp: DeidInput, p: NoiseParams, rng: np.random.Generator) -> DeidOutput:
    face3d.check_render_mode(p.render)
    a = idc.perturb_noise(inp.codes.alpha, p.scale, rng)
    return apply_identity(inp, a, p.render, {"scale": p.scale})


@dataclass
class LaplaceParams:
    epsilon: float = 800.0
    """ε of the Laplace mechanism on the normalised code; noise scale Δ/ε with Δ = 2K (K = 100 for
    the embedded model: ε = 800 gives the same per-component spread as id-noise at s = 0.25)."""
    render: str = "photo"

    def __post_init__(self):
        if not self.epsilon > 0:
            raise SettingsError(f"--epsilon must be > 0 (inf = no noise); got {self.epsilon}")
        face3d.check_render_mode(self.render)


def _laplace(inp: DeidInput, p: LaplaceParams, rng: np.random.Generator) -> DeidOutput:
    face3d.check_render_mode(p.render)
    a = idc.perturb_laplace(inp.codes.alpha, p.epsilon, rng)
    K = len(np.asarray(inp.codes.alpha).ravel())
    return apply_identity(inp, a, p.render, {"epsilon": p.epsilon, "sensitivity": idc.laplace_sensitivity(K),
                                             "laplace_scale": idc.laplace_sensitivity(K) / p.epsilon})


@dataclass
class KeyedParams:
    theta: float = 70.0
    """θ in degrees: rotation of a code at 90° from the key's reference (book: 70–95; < 90 here)."""
    render: str = "photo"

    def __post_init__(self):
        if not 0 <= self.theta < 90:
            raise SettingsError(f"--theta must be in [0, 90) degrees; got {self.theta}")
        face3d.check_render_mode(self.render)


def _keyed(inp: DeidInput, p: KeyedParams, rng: np.random.Generator) -> DeidOutput:
    face3d.check_render_mode(p.render)
    key = inp.extras.get("key")
    if not key:
        raise HeadVeilError("id-keyed needs a key (headveil deid --key-file FILE; Python: extras['key'] = bytes)")
    a = np.asarray(inp.codes.alpha, np.float64)
    a_new = a.copy() if p.theta == 0 else idc.rotate_keyed(a, key, p.theta)
    return apply_identity(inp, a_new, p.render, {"theta_deg": p.theta, "key_space_bits": idc.key_space_bits(key)})


@dataclass
class DirectedParams:
    render: str = "photo"
    """photo, model, or donor (the UV appearance in extras['appearance'], e.g. a k-same class mean,
    under its light; what headveil anonymize uses)."""

    def __post_init__(self):
        face3d.check_render_mode(self.render)


def _directed(inp: DeidInput, p: DirectedParams, rng: np.random.Generator) -> DeidOutput:
    """AnonymousNet Stage III in 3D: the codes a caller chose (``extras["directed"]``: ``alpha``
    ``(K,)``, optional ``eta`` ``(E,)``) rendered at the input's pose, camera and light."""
    face3d.check_render_mode(p.render)
    d = inp.extras.get("directed")
    if not d or "alpha" not in d:
        raise HeadVeilError("the directed method needs extras['directed'] = {'alpha': α, 'eta': η} "
                            "(headveil anonymize sets it)")
    a = np.asarray(d["alpha"], np.float64)
    eta = d.get("eta")
    return apply_identity(inp, a, p.render, {"directed": True}, None if eta is None else np.asarray(eta, np.float64))


_NEEDS = ("image", "model", "codes", "camera")
register_method(MethodSpec("id-noise", NoiseParams, _noise, "Gaussian noise on the 3D identity code, face re-rendered",
                           needs=_NEEDS, strength="scale", identity_strength=0.0))
register_method(MethodSpec("id-dp", LaplaceParams, _laplace, "ε-DP Laplace noise on the 3D identity code",
                           needs=_NEEDS, strength="epsilon", identity_strength=float("inf")))
register_method(MethodSpec("directed", DirectedParams, _directed,
                           "chosen identity and expression codes (attribute-directed synthesis), face re-rendered",
                           needs=_NEEDS))
register_method(MethodSpec("id-keyed", KeyedParams, _keyed, "keyed, reversible rotation of the 3D identity code",
                           needs=_NEEDS, strength="theta", identity_strength=0.0))
