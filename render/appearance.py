"""Face appearance as a UV texture: baked from a photo, de-lit into albedo, filled, relit.

The head model's UV layout (``model.uv``, one coordinate per vertex; small parts enlarged by
:func:`appearance_uv`) is a dense correspondence
between every fitted face: a texel means the same point of the face on every subject. So an
appearance is one image in UV space and another person's albedo maps onto a target's mesh as it is.

- :func:`uv_raster`: which triangle and barycentrics each texel of an ``S × S`` atlas lies in
  (texel row ``(1 − v)·S``, column ``u·S``; cached per model and size).
- :func:`bake_texture`: the photo's colour at each texel's point of the fitted mesh, with a weight
  in [0, 1] (0 where the point is hidden, faces away, or leaves the photo).
- :func:`estimate_light`: second-order SH light (camera frame, ``(9, 3)``) fitted to the photo on
  visible skin against the model albedo of the fitted β (ridge-regularised least squares).
- :func:`delight` → albedo; :func:`fill_unseen`: texels never seen take the mirrored texel's value
  (the model's left–right vertex symmetry), then the model albedo times the seen skin's ratio to it,
  carried smoothly into the holes (:func:`pull_push_fill`); :mod:`headveil.render.photo_appearance`
  puts these together for one photo (``face_appearance``) and takes out of a donor's bake what
  another face must not get (occluders, thin cut-outs, highlights, de-lighting's broad residue).
- :func:`render_textured`: a mesh at a camera, albedo sampled per pixel from a texture (bilinear),
  shaded by an SH light — image-resolution detail instead of per-vertex colours.
- Moving a donor's albedo to a target's skin tone: :mod:`headveil.render.tone`.

Arrays: textures ``(S, S, 3) float32`` in [0, 1]; weights ``(S, S) float32`` in [0, 1]; vertices in
metres (world frame = the photo camera's frame for fitted photos, OpenCV axes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.geometry.camera import Camera
from headveil.geometry.normals import vertex_normals
from headveil.render.mipmap import mip_levels, texture_density
from headveil.render.rasterize import depth_at, interpolate, rasterize
from headveil.render.shading import sh_basis

DEFAULT_TEXTURE_SIZE = 2048
"""Atlas side: the face occupies ≈ 0.22 of the atlas width, ≈ 450 texels across at 2048 (a face
of a 512-px working window is ≈ 300 px wide)."""

#: Model regions whose texels count as skin for light and tone (features excluded).
SKIN_EXCLUDE = ("eyes", "brows", "lips", "mouth_interior", "iris")


@dataclass(frozen=True)
class UVRaster:
    """Texel → surface lookup of an atlas: ``face_index (S, S) int64`` (−1 = no triangle) and
    ``bary (S, S, 3) float32``; ``size`` = S."""

    face_index: np.ndarray
    bary: np.ndarray
    size: int

    @property
    def mask(self) -> np.ndarray:
        return self.face_index >= 0


#: Small parts whose UV islands are enlarged into free atlas space: ``part: (u0, v0, side)`` — the
#: island is scaled uniformly to fit a ``side × side`` square at ``(u0, v0)`` (eyes get ≈ 5× the
#: texels of the model's own layout, so an iris keeps its detail).
UV_REPACK = {"eye_left": (0.04, 0.04, 0.13), "eye_right": (0.19, 0.04, 0.13), "teeth": (0.04, 0.20, 0.22),
             "tongue": (0.34, 0.04, 0.12)}


def appearance_uv(model) -> np.ndarray:
    """``(V, 2) float64``: the model's UVs with the :data:`UV_REPACK` parts enlarged (cached).
    Checked against the rest of the layout: the new islands may not overlap any other."""
    cache = model.__dict__.setdefault("_appearance_uv", {})
    if "uv" not in cache:
        if model.uv is None:
            raise HeadVeilError(f"model {model.name!r} has no texture coordinates")
        uv = np.asarray(model.uv, np.float64).copy()
        moved = np.zeros(len(uv), bool)
        for part, (u0, v0, side) in UV_REPACK.items():
            if part not in model.part_names:
                continue
            sel = model.vertex_part == model.part_names.index(part)
            lo, hi = uv[sel].min(0), uv[sel].max(0)
            k = side / max(float((hi - lo).max()), 1e-9)
            uv[sel] = (uv[sel] - lo) * k + [u0, v0]
            moved |= sel
        rest = uv[~moved]
        for part, (u0, v0, side) in UV_REPACK.items():
            inside = ((rest[:, 0] > u0) & (rest[:, 0] < u0 + side) & (rest[:, 1] > v0) & (rest[:, 1] < v0 + side))
            if inside.any():
                raise HeadVeilError(f"the enlarged UV island of {part!r} overlaps the model's layout")
        cache["uv"] = uv
    return cache["uv"]


def uv_triangles(model, max_stretch: float = 3.0) -> np.ndarray:
    """``(F,) bool``: triangles whose UV image is a faithful copy of the surface. The model keeps
    one UV per vertex, so triangles along a UV seam stretch across the atlas (over other islands);
    a triangle is kept when its largest UV/3D edge-length ratio is within ``max_stretch`` × the
    median of its part (parts have their own texel density). Cached on the model."""
    cache = model.__dict__.setdefault("_uv_triangles", {})
    if max_stretch not in cache:
        V = model.vertices()
        uv = appearance_uv(model)
        F = model.faces
        e3 = np.linalg.norm(V[F] - V[np.roll(F, 1, 1)], axis=2)
        eu = np.linalg.norm(uv[F] - uv[np.roll(F, 1, 1)], axis=2)
        ratio = (eu / np.maximum(e3, 1e-12)).max(1)
        part = model.vertex_part[F[:, 0]]
        keep = np.zeros(len(F), bool)
        for p in np.unique(part):
            sel = part == p
            keep[sel] = ratio[sel] < max_stretch * np.median(ratio[sel])
        cache[max_stretch] = keep
    return cache[max_stretch]


def outer_skin(model) -> np.ndarray:
    """``(V,) bool``: the skin sub-mesh without the ears (all vertices for a model without parts)."""
    skin = model.part_mask("skin") if "skin" in model.part_names else np.ones(model.n_vertices, bool)
    if "ears" in model.regions:
        skin = skin & ~model.regions["ears"]
    return skin


def appearance_triangles(model) -> np.ndarray:
    """``(F,) bool``: the triangles an appearance covers — the face, its features, the mouth and
    eye parts, and the skin in front of the ears down to the neck (what a re-render can reach)."""
    cache = model.__dict__.setdefault("_appearance_triangles", {})
    if "t" not in cache:
        v = model.vertices()
        face = np.zeros(model.n_vertices, bool)
        for r in ("face", "lips", "brows", "eyes", "mouth_interior", "iris"):
            if r in model.regions:
                face |= model.regions[r]
        face |= model.part_mask("eye_left", "eye_right", "teeth", "tongue", "eyelashes")
        skin = outer_skin(model)
        # the skin a detector's face outline can reach: inside the frontal hull of the dense
        # landmarks (grown by 1.5 cm), in front of their deepest point
        from matplotlib.path import Path as MplPath

        lm = model.landmarks_3d(v, "mediapipe478") if "mediapipe478" in model.landmarks else v[face]
        from scipy.spatial import ConvexHull

        hull = lm[ConvexHull(lm[:, :2]).vertices, :2]
        c = hull.mean(0)
        grown = c + (hull - c) * (1 + 0.015 / np.maximum(np.linalg.norm(hull - c, axis=1, keepdims=True), 1e-6))
        inside = MplPath(grown).contains_points(v[:, :2])
        front = skin & inside & (v[:, 2] > lm[:, 2].min() - 0.01)
        cache["t"] = (face | front)[model.faces].all(1)
    return cache["t"]


def uv_raster(model, size: int = DEFAULT_TEXTURE_SIZE) -> UVRaster:
    """The model's UV atlas rasterised at ``size × size`` over the :func:`uv_triangles` of the
    :func:`appearance_triangles` (indices are the model's triangle indices; cached on the model)."""
    cache = model.__dict__.setdefault("_uv_raster", {})
    if size not in cache:
        uv = appearance_uv(model)
        # a flat sheet at z = 1 seen by a camera with K = I: pixel (x, y) ↔ texel (u·S, (1 − v)·S)
        pts = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size, np.ones(len(uv))], 1)
        cam = Camera(np.eye(3), np.eye(4), size, size)
        good = np.flatnonzero(uv_triangles(model) & appearance_triangles(model))
        fr = rasterize(pts, model.faces[good], cam)
        fi = np.where(fr.face_index >= 0, good[np.maximum(fr.face_index, 0)], -1)
        cache[size] = UVRaster(fi, fr.bary.astype(np.float32), size)
    return cache[size]


def texel_attribute(raster: UVRaster, attributes: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex ``attributes (V, C)`` interpolated at every covered texel: ``(N, C)`` and the
    texels' flat indices ``(N,)``."""
    idx = np.flatnonzero(raster.face_index.ravel() >= 0)
    fi = raster.face_index.ravel()[idx]
    b = raster.bary.reshape(-1, 3)[idx].astype(np.float64)
    return interpolate(np.asarray(attributes, np.float64), faces, fi, b), idx


def sample_bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``image (H, W, C)`` float at pixel positions ``xy (N, 2)`` (pixel centres at +0.5), edge-clamped."""
    import cv2

    img = np.asarray(image, np.float32)
    n = len(xy)
    cols = 1024  # remap's map must stay below 32767 on each side
    rows = max(-(-n // cols), 1)
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:n], my[:n] = xy[:, 0] - 0.5, xy[:, 1] - 0.5
    out = cv2.remap(img, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    out = out.reshape(rows * cols, -1)[:n]
    return out


def visibility(vertices_world: np.ndarray, faces: np.ndarray, camera: Camera, points: np.ndarray,
               normals: np.ndarray, depth_tol_m: float = 2e-3) -> tuple[np.ndarray, np.ndarray]:
    """Visibility weight ``(N,)`` in [0, 1] of surface ``points (N, 3)`` with unit ``normals (N, 3)``
    (world frame) on the mesh seen by ``camera``, and their pixel positions ``(N, 2)``: 0 when hidden
    (depth test against the rendered mesh), outside the image or facing away; rising with the cosine
    to the camera (grazing texels are smeared in a photo)."""
    uv, z = camera.project(points)
    W, H = camera.width, camera.height
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H) & (z > 0)
    dz = np.full(len(points), np.inf)
    win = camera.window(vertices_world)
    if win is not None:
        x0, y0, w, h = win
        cam = camera.cropped(x0, y0, w, h)
        px = np.clip(np.floor(uv).astype(np.int64) - [x0, y0], 0, [w - 1, h - 1])
        if len(points) < w * h // 2:  # rays through the points' pixels alone: the same depths
            dz = np.abs(depth_at(vertices_world, faces, cam, px) - z)
        else:
            fr = rasterize(vertices_world, faces, cam)
            dz = np.abs(fr.depth[px[:, 1], px[:, 0]] - z)
    to_cam = camera.center[None] - points
    to_cam /= np.linalg.norm(to_cam, axis=1, keepdims=True)
    cos = (normals * to_cam).sum(1)
    wgt = np.clip((cos - 0.15) / 0.35, 0, 1) * (inside & (dz < depth_tol_m))
    return wgt.astype(np.float32), uv


def bake_texture(photo: np.ndarray, vertices_world: np.ndarray, faces: np.ndarray, camera: Camera,
                 raster: UVRaster, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo in UV space.

    Args:
        photo: ``(H, W, 3) uint8`` RGB (the camera's size).
        vertices_world: ``(V, 3)`` fitted mesh at the photo's pose, metres.
        faces: ``(F, 3)`` the model's triangles.
        camera: the photo's camera.
        raster: :func:`uv_raster` of the model.
        exclude: ``(H, W) bool`` photo pixels that are not the face (occluders): texels landing
            there get weight 0.

    Returns:
        ``texture (S, S, 3) float32`` in [0, 1], ``weight (S, S) float32`` in [0, 1] and
        ``normals (S, S, 3) float32`` (unit, world frame; 0 where no triangle).
    """
    S = raster.size
    img = np.asarray(photo)
    if img.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"photo must be {camera.height}×{camera.width}; got {img.shape[:2]}")
    v = np.asarray(vertices_world, np.float64)
    pos, idx = texel_attribute(raster, v, faces)
    nrm, _ = texel_attribute(raster, vertex_normals(v, faces), faces)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    wgt, xy = visibility(v, faces, camera, pos, nrm)
    if exclude is not None:
        H, W = exclude.shape
        px = np.clip(np.floor(xy).astype(np.int64), 0, [W - 1, H - 1])
        wgt = np.where(exclude[px[:, 1], px[:, 0]], 0.0, wgt).astype(np.float32)
    tex = np.zeros((S * S, 3), np.float32)
    weight = np.zeros(S * S, np.float32)
    normals = np.zeros((S * S, 3), np.float32)
    seen = wgt > 0
    tex[idx[seen]] = sample_bilinear(img.astype(np.float32) / 255.0, xy[seen])
    weight[idx] = wgt
    normals[idx] = nrm
    return tex.reshape(S, S, 3), weight.reshape(S, S), normals.reshape(S, S, 3)


def skin_vertices(model) -> np.ndarray:
    """``(V,) bool``: face skin without eyes, brows, lips and the mouth (for light and tone)."""
    keep = model.regions.get("face", np.ones(model.n_vertices, bool)).copy()
    for r in SKIN_EXCLUDE:
        if r in model.regions:
            keep &= ~model.regions[r]
    return keep


def estimate_light(colors: np.ndarray, albedo: np.ndarray, normals_cam: np.ndarray, weight: np.ndarray,
                   ridge: float = 0.05) -> np.ndarray:
    """SH light ``(9, 3)`` (camera frame) with ``colors ≈ albedo ⊙ (Y(n) @ gamma)``.

    Args:
        colors / albedo: ``(N, 3)`` observed colours and reference albedo in [0, 1].
        normals_cam: ``(N, 3)`` unit normals in the camera frame; ``weight (N,)`` ≥ 0.
        ridge: Tikhonov weight on the non-constant bands (relative to the data's scale): keeps the
            light smooth where the face covers few normal directions.
    """
    w = np.asarray(weight, np.float64)
    if (w > 0).sum() < 30:
        raise HeadVeilError("too few visible skin points to estimate the light")
    Y = sh_basis(np.asarray(normals_cam, np.float64))
    gamma = np.zeros((9, 3))
    reg = np.diag([0.0] + [1.0] * 8) * ridge * w.sum()
    for c in range(3):
        A = Y * albedo[:, c:c + 1]
        AtA = A.T @ (A * w[:, None]) + reg
        gamma[:, c] = np.linalg.solve(AtA + 1e-9 * np.eye(9), A.T @ (w * colors[:, c]))
    return gamma


def shading(normals: np.ndarray, gamma: np.ndarray, floor: float = 0.08) -> np.ndarray:
    """Irradiance ``(…, 3)`` of unit ``normals (…, 3)`` (camera frame) under SH ``gamma``, ≥ ``floor``."""
    n = np.asarray(normals, np.float64)
    return np.maximum(sh_basis(n.reshape(-1, 3)) @ gamma, floor).reshape(*n.shape[:-1], 3)


def shadow_weight(normals_world: np.ndarray, weight: np.ndarray, gamma: np.ndarray, w2c: np.ndarray, model,
                  raster: UVRaster, low: float = 0.25, high: float = 0.6) -> np.ndarray:
    """``(S, S) float32`` in [0, 1]: how far a texel's de-lit colour can be trusted given its light.
    De-lighting divides by the irradiance, so a texel in deep shadow returns the photo's noise,
    compression and colour cast multiplied. The irradiance's luminance (SH ``gamma``, camera frame
    through ``w2c``, of ``normals_world (S, S, 3)``) relative to its median over the well-seen skin
    (``weight > 0.5``) maps to 0 at ``low`` and below, 1 at ``high`` and above. All ones when fewer
    than 100 skin texels were seen."""
    skin = skin_texels(model, raster) & (weight > 0.5)
    out = np.ones(weight.shape, np.float32)
    seen = weight > 0
    if skin.sum() < 100:
        return out
    lum = np.array([0.299, 0.587, 0.114])
    s = np.zeros(weight.shape, np.float64)
    s[seen] = shading(normals_world[seen].astype(np.float64) @ np.asarray(w2c)[:3, :3].T, gamma) @ lum
    ref = float(np.median(s[skin]))
    if ref <= 0:
        return out
    out[seen] = np.clip((s[seen] / ref - low) / (high - low), 0, 1)
    return out


def delight(texture: np.ndarray, normals_world: np.ndarray, weight: np.ndarray, gamma: np.ndarray,
            w2c: np.ndarray) -> np.ndarray:
    """Albedo ``(S, S, 3)`` = texture / shading, where ``weight > 0`` (0 elsewhere), in [0, 1]."""
    seen = weight > 0
    n_cam = normals_world[seen].astype(np.float64) @ np.asarray(w2c)[:3, :3].T
    alb = np.zeros(texture.shape, np.float32)
    alb[seen] = np.clip(texture[seen] / shading(n_cam, gamma), 0, 1)
    return alb


def mirror_vertices(model) -> np.ndarray:
    """``(V,) int64``: each vertex's left–right mirror (nearest vertex to ``(−x, y, z)`` of the mean
    shape; cached)."""
    cache = model.__dict__.setdefault("_mirror", {})
    if "v" not in cache:
        from scipy.spatial import cKDTree

        v = model.vertices()
        _, j = cKDTree(v).query(v * [-1.0, 1.0, 1.0])
        cache["v"] = j.astype(np.int64)
    return cache["v"]


def pull_push_fill(values: np.ndarray, weight: np.ndarray, min_side: int = 4) -> np.ndarray:
    """Fill ``values (S, S, C)`` where ``weight (S, S)`` in [0, 1] is low from where it is high:
    pull-push (a weighted mean pyramid down, then each level blended with the next coarser one where
    its weight is short of 1). Seen values are kept (weight 1), holes take a smooth, seamless
    interpolation of their surroundings. Returns ``(S, S, C) float32``."""
    import cv2

    w = np.clip(np.asarray(weight, np.float32), 0, 1)
    v = np.asarray(values, np.float32).reshape(w.shape + (-1,))
    levels = [(v, w)]
    while min(levels[-1][1].shape) > min_side:
        cv, cw = levels[-1]
        h, ww = max(cv.shape[0] // 2, 1), max(cv.shape[1] // 2, 1)
        sw = cv2.resize(cw, (ww, h), interpolation=cv2.INTER_AREA)
        sv = cv2.resize(cv * cw[..., None], (ww, h), interpolation=cv2.INTER_AREA).reshape(h, ww, -1)
        nv = sv / np.maximum(sw, 1e-8)[..., None]
        levels.append((nv, np.clip(sw * 4, 0, 1)))  # a texel seen at any of its four children counts
    filled, top_w = levels[-1]
    if (top_w <= 0).any() and (top_w > 0).any():  # a hole wider than the coarsest cells: the seen mean
        mean = (filled * top_w[..., None]).sum((0, 1)) / top_w.sum()
        filled = np.where(top_w[..., None] > 0, filled, mean).astype(np.float32)
    for cv, cw in reversed(levels[:-1]):
        up = cv2.resize(filled, (cv.shape[1], cv.shape[0]), interpolation=cv2.INTER_LINEAR).reshape(cv.shape)
        filled = cw[..., None] * cv + (1 - cw[..., None]) * up
    return filled.reshape(np.shape(values)).astype(np.float32)


def _smooth_fill(values: np.ndarray, weight: np.ndarray, factor: int = 4) -> np.ndarray:
    """:func:`pull_push_fill` of a field that is smooth by construction (a ratio carried into
    holes), computed on a grid ``factor`` times coarser (a weighted mean per block) and brought
    back bilinearly: the fill's own pyramid starts there anyway, and its finest levels, the costly
    ones, only matter where texels are seen — where this field's callers keep their own values."""
    import cv2

    S = weight.shape[0]
    if S % factor or S // factor < 32:
        return pull_push_fill(values, weight)
    s = S // factor
    w_s = cv2.resize(weight, (s, s), interpolation=cv2.INTER_AREA)
    v_s = cv2.resize(values * weight[..., None], (s, s), interpolation=cv2.INTER_AREA) / np.maximum(w_s, 1e-8)[..., None]
    filled = pull_push_fill(v_s, np.clip(w_s * factor * factor, 0, 1))
    return cv2.resize(filled, (S, S), interpolation=cv2.INTER_LINEAR).reshape(values.shape)


#: Visibility weight from which a baked texel counts as seen (:func:`fill_unseen`; below it, its
#: colour is blended toward its mirror's and the model's).
MIN_SEEN_WEIGHT = 0.3


def fill_unseen(albedo: np.ndarray, weight: np.ndarray, model, raster: UVRaster, reference: np.ndarray,
                min_weight: float = MIN_SEEN_WEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """Complete an albedo atlas: texels with ``weight < min_weight`` blend toward their mirror
    texel's albedo when that one was seen, and what remains toward ``reference (V, 3)`` (the model
    albedo of the fitted β) times the seen skin's ratio to it, that ratio carried smoothly from the
    seen skin into the holes (:func:`pull_push_fill`, log space, clipped to 0.3–3). Returns the filled atlas
    and the per-texel confidence ``(S, S)`` after filling (seen ∪ mirrored)."""
    S = raster.size
    F = model.faces
    mask = raster.mask.ravel()
    idx = np.flatnonzero(mask)
    fi = raster.face_index.ravel()[idx]
    b = raster.bary.reshape(-1, 3)[idx].astype(np.float64)
    uv = appearance_uv(model)
    mir = mirror_vertices(model)
    muv = interpolate(uv[mir], F, fi, b)  # texel's mirror in UV
    mxy = np.stack([muv[:, 0] * S, (1 - muv[:, 1]) * S], 1)
    ai = albedo.reshape(-1, 3)[idx].astype(np.float64)
    wi = np.clip(weight.ravel()[idx].astype(np.float64) / min_weight, 0, 1)
    m_alb = sample_bilinear(albedo, mxy).astype(np.float64)
    m_w = np.clip(sample_bilinear(weight[..., None], mxy)[:, 0].astype(np.float64) / min_weight, 0, 1)
    conf = wi + (1 - wi) * m_w
    ref, _ = texel_attribute(raster, reference, F)
    good = skin_texels(model, raster).ravel()[idx] & (wi > 0.99)
    if good.sum() > 50:
        # the model's albedo times the seen skin's ratio to it, that ratio carried smoothly from the
        # seen skin into the holes (pull-push in log space): the fill continues the colour around
        # it, with the model's structure (lips, brows), instead of a flat plateau with an edge
        log_ratio = np.zeros((S * S, 3), np.float32)
        log_ratio[idx[good]] = np.log(np.maximum(ai[good], 1e-3) / np.maximum(ref[good], 1e-3))
        gw = np.zeros(S * S, np.float32)
        gw[idx[good]] = 1.0
        lr = _smooth_fill(log_ratio.reshape(S, S, 3), gw.reshape(S, S)).reshape(-1, 3)[idx]
        # the skin's colour ratio is a skin's: eyes and the mouth's inside take its lightness alone
        # (a yellower skin than the model's would turn white teeth and sclera green)
        own = (eye_texels(model, raster) | mouth_inside_texels(model, raster)).ravel()[idx]
        lr[own] = lr[own].mean(1, keepdims=True)
        ref = np.clip(ref * np.exp(np.clip(lr, np.log(0.3), np.log(3.0))), 0, 1)
    out = np.array(albedo, np.float32, copy=True).reshape(-1, 3)
    out[idx] = np.clip(wi[:, None] * ai + ((1 - wi) * m_w)[:, None] * m_alb + (1 - conf)[:, None] * ref, 0, 1)
    full_conf = np.zeros(S * S, np.float32)
    full_conf[idx] = conf
    return out.reshape(S, S, 3), full_conf.reshape(S, S)


def texture_at(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Texture ``(S, S, C)`` sampled at UV coordinates ``uv (N, 2)`` (bilinear) → ``(N, C)``."""
    S = texture.shape[0]
    return sample_bilinear(texture, np.stack([uv[:, 0] * S, (1 - uv[:, 1]) * S], 1))


def render_textured(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, texture: np.ndarray,
                    camera: Camera, gamma: np.ndarray, supersample: int = 2, uv_ok: np.ndarray | None = None):
    """Render a mesh with a UV albedo ``texture`` under SH ``gamma`` (camera frame).

    Args:
        vertices: ``(V, 3)`` metres, world frame; ``faces (F, 3)``; ``uv (V, 2)`` in [0, 1].
        texture: ``(S, S, 3)`` float albedo in [0, 1]; ``gamma (9, 3)``.
        uv_ok: ``(F,) bool`` triangles whose UVs may be interpolated (:func:`uv_triangles`); the
            others take the texture at their vertices, interpolated (seam triangles).

    A texture denser than the render samples it is filtered (:func:`~headveil.render.mipmap.mip_levels`,
    trilinear).

    Returns:
        ``(image (H, W, 3) float32 premultiplied by coverage, coverage (H, W) float32)``.
    """
    (img,), cov = render_textured_many(vertices, faces, uv, [texture], camera, gamma, uv_ok, supersample)
    return img, cov


def render_textured_many(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, textures: list[np.ndarray],
                         camera: Camera, gamma: np.ndarray, uv_ok: np.ndarray | None = None,
                         supersample: int = 1):
    """:func:`render_textured` of one mesh with several albedo ``textures``: one rasterisation and
    one shading, a texture lookup each (comparing appearances). Returns ``([image (H, W, 3) float32
    premultiplied by coverage], coverage (H, W) float32)``."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    cam = camera.scaled(supersample)
    fr = rasterize(v, f, cam)
    m = fr.face_index >= 0
    H, W = cam.height, cam.width
    s = supersample
    cov = m.astype(np.float64).reshape(H // s, s, W // s, s).mean(axis=(1, 3)).astype(np.float32)
    if not m.any():
        return [np.zeros((H // s, W // s, 3), np.float32) for _ in textures], cov
    fi, b = fr.face_index[m], fr.bary[m].astype(np.float64)
    density = texture_density(v, f, uv, cam, fi, uv_ok)
    uv = np.asarray(uv, np.float64)
    uvp = interpolate(uv, f, fi, b)
    seam = None if uv_ok is None else ~np.asarray(uv_ok, bool)[fi]
    seam = None if seam is None or not seam.any() else seam
    # seam fragments take the texture at their triangles' vertices: those vertices alone are looked up
    at = np.unique(f[fi[seam]]) if seam is not None else np.zeros(0, np.int64)
    look = np.vstack([uvp, uv[at]])
    box = (float(look[:, 0].min()), float(look[:, 0].max()), float(look[:, 1].min()), float(look[:, 1].max()))
    textures = [mip_levels(t, density, box) for t in textures]
    n = interpolate(vertex_normals(v, f), f, fi, b)
    n /= np.clip(np.linalg.norm(n, axis=1, keepdims=True), 1e-12, None)
    hit = interpolate(v, f, fi, b)
    n = np.where(((n * (cam.center - hit)).sum(1) < 0)[:, None], -n, n)
    sh = shading(n @ cam.w2c[:3, :3].T, gamma, floor=0.0)
    out = []
    for tex in textures:
        a = sum(w * texture_at(lv, uvp).astype(np.float64) for lv, w in tex)
        if seam is not None:
            at_v = np.zeros((len(uv), a.shape[1]))
            at_v[at] = sum(w * texture_at(lv, uv[at]).astype(np.float64) for lv, w in tex)
            a[seam] = interpolate(at_v, f, fi[seam], b[seam])
        img = np.zeros((H, W, 3))
        img[m] = a * sh
        out.append(np.clip(img.reshape(H // s, s, W // s, s, 3).mean(axis=(1, 3)), 0, None).astype(np.float32))
    return out, cov


def texel_mask(model, raster: UVRaster, vertices: np.ndarray) -> np.ndarray:
    """``(S, S) bool``: texels whose surface point lies (mostly) among ``vertices (V,) bool``."""
    v, idx = texel_attribute(raster, np.asarray(vertices, np.float64)[:, None], model.faces)
    out = np.zeros(raster.size * raster.size, bool)
    out[idx] = v[:, 0] > 0.5
    return out.reshape(raster.size, raster.size)


def mouth_inside_texels(model, raster: UVRaster) -> np.ndarray:
    """``(S, S) bool``: atlas texels of the teeth, the tongue and the mouth's inside (cached per
    atlas size)."""
    cache = model.__dict__.setdefault("_mouth_inside_texels", {})
    if raster.size not in cache:
        cache[raster.size] = texel_mask(model, raster, model.part_mask("teeth", "tongue") |
                                        model.regions.get("mouth_interior", np.zeros(model.n_vertices, bool)))
    return cache[raster.size]


def skin_texels(model, raster: UVRaster) -> np.ndarray:
    """``(S, S) bool``: atlas texels on face skin (features excluded; cached per atlas size)."""
    cache = model.__dict__.setdefault("_skin_texels", {})
    if raster.size not in cache:
        cache[raster.size] = texel_mask(model, raster, skin_vertices(model))
    return cache[raster.size]


#: Inner-lip contour of each landmark scheme (the mouth opening as the detector sees it).
INNER_LIPS = {"ibug68": list(range(60, 68)),
              "mediapipe478": [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]}


def mouth_opening(points: np.ndarray, scheme: str, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W) bool``: inside the inner-lip contour of detector landmarks ``points (L, 2)`` (pixels)
    — teeth and tongue as the photo shows them, wherever the fitted model puts its lips."""
    import cv2

    out = np.zeros(shape, np.uint8)
    idx = INNER_LIPS.get(scheme)
    if idx is None or len(points) <= max(idx):
        return out.astype(bool)
    cv2.fillPoly(out, [np.round(np.asarray(points)[idx]).astype(np.int32)], 1)
    return out.astype(bool)


@dataclass
class NewAppearance:
    """The appearance a de-identified face is given (``DeidInput.extras["appearance"]``).

    Attributes:
        albedo: ``(S, S, 3) float32`` in [0, 1], the donor(s)' albedo already in the target's tone.
        light: ``(9, 3)`` SH light (camera frame) to render it under (the target photo's).
        alpha: ``(K,)`` the donor(s)' identity code, or None (the method's code alone sets the shape).
        shape_weight: how far the new shape moves from the method's code toward ``alpha`` (0–1).
        label: what it is made of, for reports (``"donor 3"``, ``"mix of 2"``): never a person's name.
    """

    albedo: np.ndarray
    light: np.ndarray
    alpha: np.ndarray | None = None
    shape_weight: float = 0.5
    label: str = "donor"


def eye_texels(model, raster: UVRaster) -> np.ndarray:
    """``(S, S) bool``: texels of the eyeball parts (cached per atlas size)."""
    cache = model.__dict__.setdefault("_eye_texels", {})
    if raster.size not in cache:
        cache[raster.size] = texel_mask(model, raster, model.part_mask("eye_left", "eye_right"))
    return cache[raster.size]


def photo_light(photo: np.ndarray, model, vertices_world: np.ndarray, camera: Camera, beta=None) -> np.ndarray:
    """SH light ``(9, 3)`` (camera frame) of a photo, from its visible face-skin vertices
    (``vertices_world (V, 3)``, the fitted mesh posed) against the model albedo of ``beta``."""
    vw = np.asarray(vertices_world, np.float64)
    vn = vertex_normals(vw, model.faces)
    vis_w, xy = visibility(vw, model.faces, camera, vw, vn)
    sel = skin_vertices(model) & (vis_w > 0.5)
    if sel.sum() < 30:
        raise HeadVeilError("too little of the face is visible to read its appearance")
    colors = sample_bilinear(np.asarray(photo, np.float32) / 255.0, xy[sel]).astype(np.float64)
    ref = np.asarray(model.albedo(beta), np.float64)
    return estimate_light(colors, ref[sel], vn[sel] @ camera.w2c[:3, :3].T, vis_w[sel])
