"""Photometric refinement of a landmark fit through the differentiable mesh renderer.

Optimises albedo β, 27 SH lighting coefficients γ (camera frame), identity α, expression η and a
small pose correction with Adam against the photo, on a square crop around the face resized to
``image_size``. Visibility is recomputed by ray casting every ``rasterize_every`` steps (it is not
differentiable); colours, normals and barycentrics are differentiable in all parameters.

Loss (per step):

.. math::
    \\frac{1}{|P|}\\sum_{p\\in P} \\rho(I_p - \\hat I_p) + w_{lm}\\,\\overline{\\|\\pi(L) - l\\|^2}/s^2
    + w_\\alpha\\|\\alpha\\|^2 + w_\\beta\\|\\beta\\|^2 + w_\\eta\\|\\eta-\\eta_0\\|^2

with P the pixels where the model's face region is visible, ρ a Huber penalty, s the face size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.geometry.camera import Camera
from headveil.geometry.perception.detectors import Detection
from headveil.geometry.morphable.fitting import LandmarkFit
from headveil.geometry.morphable.model import MorphableModel
from headveil.render.rasterize import rasterize


@dataclass
class PhotometricConfig:
    """Settings of refine_photometric."""

    image_size: int = 256
    """Side of the square face crop the loss is computed on, pixels."""
    crop_scale: float = 1.5
    """Crop side as a multiple of the landmark box size."""
    n_iterations: int = 80
    """Adam steps."""
    rasterize_every: int = 10
    """Steps between re-casts of the visibility (it is not differentiated)."""
    lr: float = 0.02
    """Adam learning rate of all refined codes."""
    refine_shape: bool = True
    """Also optimise α, η and the pose (else only albedo and light)."""
    w_landmark: float = 2.0
    """Weight of the landmark reprojection term (keeps the refined pose on the detections)."""
    w_identity: float = 2e-2
    """Weight of the identity prior mean(α²)."""
    w_albedo: float = 2e-3
    """Weight of the albedo prior mean(β²)."""
    w_expression: float = 1e-2
    """Weight of the expression prior mean(η²)."""
    huber_delta: float = 0.1
    """δ of the Huber colour loss (colours in [0, 1])."""


@dataclass
class PhotometricResult:
    """Refined codes. Shapes as in :class:`LandmarkFit`; ``beta (A,)``; ``gamma (9, 3)``, camera frame."""

    alpha: np.ndarray
    eta: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    R: np.ndarray
    t: np.ndarray
    photometric_rmse: float
    landmark_rmse_px: float
    seconds: float


def _crop_camera(K: np.ndarray, box: np.ndarray, scale: float, size: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Intrinsics of a square crop around ``box`` resized to ``size``; returns (K', (x0, y0, side))."""
    cxb, cyb = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    side = scale * max(box[2] - box[0], box[3] - box[1])
    x0, y0 = cxb - side / 2, cyb - side / 2
    s = size / side
    Kc = K.copy()
    Kc[0, 2] -= x0
    Kc[1, 2] -= y0
    Kc[:2] *= s
    return Kc, (x0, y0, side)


def _crop_image(image: np.ndarray, x0: float, y0: float, side: float, size: int) -> np.ndarray:
    import cv2

    s = size / side
    M = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float64)
    return cv2.warpAffine(image, M, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)


def refine_photometric(model: MorphableModel, image: np.ndarray, fit: LandmarkFit, detection: Detection,
                       cfg: PhotometricConfig | None = None, generator=None) -> PhotometricResult:
    """Refine a landmark fit on the photo.

    Args:
        model: the morphable model.
        image: ``(H, W, 3) uint8`` RGB photo the fit was made on.
        fit: the landmark fit (pose, α, η, camera).
        detection: the landmarks used for the fit (kept as a soft constraint).
        cfg: settings.
        generator: unused (the optimisation is deterministic); accepted for a uniform API.
    """
    import time

    import torch

    cfg = cfg or PhotometricConfig()
    t0 = time.perf_counter()
    Kc, (x0, y0, side) = _crop_camera(fit.K, detection.box, cfg.crop_scale, cfg.image_size)
    target = torch.as_tensor(_crop_image(image, x0, y0, side, cfg.image_size).astype(np.float32) / 255.0)
    cam = Camera(Kc, np.eye(4), cfg.image_size, cfg.image_size)
    lm_set = model.landmark_set(detection.scheme)
    lm_pts = (detection.points - [x0, y0]) * (cfg.image_size / side)
    lm_w = torch.as_tensor(lm_set.weight, dtype=torch.float32)
    lm_uv = torch.as_tensor(lm_pts, dtype=torch.float32)
    faces = torch.as_tensor(model.faces)
    # pixels of interest: face region plus eyes (hair, ears, neck are not modelled by the photo)
    use_vert = model.regions.get("face", np.ones(model.n_vertices, bool)) | model.part_mask("eye_left", "eye_right")
    use_face = np.all(use_vert[model.faces], axis=1)

    alpha = torch.tensor(fit.alpha, dtype=torch.float32, requires_grad=cfg.refine_shape)
    eta0 = torch.tensor(fit.eta, dtype=torch.float32)
    eta = eta0.clone().requires_grad_(cfg.refine_shape)
    beta = torch.zeros(model.n_albedo, requires_grad=True)
    gamma = torch.zeros(9, 3)
    gamma[0] = 0.9
    gamma.requires_grad_(True)
    rot = torch.zeros(3, requires_grad=cfg.refine_shape)
    trans = torch.zeros(3, requires_grad=cfg.refine_shape)
    R0 = torch.as_tensor(fit.R, dtype=torch.float32)
    t_0 = torch.as_tensor(fit.t, dtype=torch.float32)
    params = [beta, gamma] + ([alpha, eta, rot, trans] if cfg.refine_shape else [])
    opt = torch.optim.Adam(params, lr=cfg.lr)
    Kt = torch.as_tensor(Kc, dtype=torch.float32)
    lo_e, hi_e = model.expr_range
    lm_f = torch.as_tensor(model.faces[lm_set.face_index])
    lm_b = torch.as_tensor(lm_set.bary, dtype=torch.float32)

    def skew(v):
        z = torch.zeros((), dtype=v.dtype)
        return torch.stack([torch.stack([z, -v[2], v[1]]), torch.stack([v[2], z, -v[0]]), torch.stack([-v[1], v[0], z])])

    def camera_vertices():
        v = model.vertices_torch(alpha[None], eta.clamp(lo_e, hi_e)[None])[0]
        Rm = torch.matrix_exp(skew(rot)) @ R0
        return v @ Rm.T + t_0 + trans * 0.01

    from headveil.render.mesh_renderer import shade_fragments_torch

    frags, pix, tgt = None, None, None
    photo_rmse = float("nan")
    for it in range(cfg.n_iterations):
        vc = camera_vertices()
        if it % cfg.rasterize_every == 0:
            fr = rasterize(vc.detach().double().numpy(), model.faces, cam)
            keep = (fr.face_index >= 0) & use_face[np.maximum(fr.face_index, 0)]
            if keep.sum() < 50:
                raise HeadVeilError("photometric refinement: the fitted face is not visible in the crop")
            fr.face_index = np.where(keep, fr.face_index, -1)
            frags = fr
        colors = model.albedo_torch(beta[None])[0]
        pred, pix = shade_fragments_torch(vc, faces, colors, frags, Kc, gamma)
        tgt = target.reshape(-1, 3)[pix]
        photo = torch.nn.functional.huber_loss(pred, tgt, delta=cfg.huber_delta, reduction="mean")
        lm3 = (vc[lm_f] * lm_b[..., None]).sum(1)
        uvh = lm3 @ Kt.T
        uv = uvh[:, :2] / uvh[:, 2:]
        lm_loss = (lm_w * ((uv - lm_uv) ** 2).sum(1)).sum() / lm_w.sum() / cfg.image_size ** 2 * 100
        loss = photo + cfg.w_landmark * lm_loss + cfg.w_identity * (alpha ** 2).mean() + \
            cfg.w_albedo * (beta ** 2).mean() + cfg.w_expression * ((eta - eta0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        photo_rmse = float(((pred.detach() - tgt) ** 2).mean().sqrt())
    with torch.no_grad():
        vc = camera_vertices()
        lm3 = (vc[lm_f] * lm_b[..., None]).sum(1)
        uvh = lm3 @ Kt.T
        uv = (uvh[:, :2] / uvh[:, 2:]).numpy() * (side / cfg.image_size) + [x0, y0]
        w = lm_set.weight
        lm_rmse = float(np.sqrt((w * ((uv - detection.points) ** 2).sum(1)).sum() / w.sum()))
        Rm = (torch.matrix_exp(skew(rot)) @ R0).numpy().astype(np.float64)
        tv = (t_0 + trans * 0.01).numpy().astype(np.float64)
    return PhotometricResult(alpha.detach().numpy().copy(), eta.detach().clamp(lo_e, hi_e).numpy().copy(),
                             beta.detach().numpy().copy(), gamma.detach().numpy().astype(np.float64), Rm, tv,
                             photo_rmse, lm_rmse, time.perf_counter() - t0)
