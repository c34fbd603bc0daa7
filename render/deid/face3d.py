"""Re-rendering a face with a new identity inside its photo (shared by the 3D methods).

Everything but the face geometry is kept: the pose (model → world ``R, t``), camera, expression η,
and either the model albedo under the scene light (``render="model"``) or the photo's own colours
carried by the mesh (``render="photo"``: sampled from the input with visibility on the original
mesh, then shown unlit on the deformed mesh, so skin, light and detail stay the person's own and
only the shape changes identity). Only the face region of the model is replaced (hair, ears,
background and clothing stay), composited by :func:`headveil.render.composite.composite_face`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headveil.common.errors import HeadVeilError, SettingsError
from headveil.geometry.morphable.model import MorphableModel
from headveil.render.composite import Composite, composite_face
from headveil.render.mesh_renderer import render_mesh
from headveil.render.shading import DirectionalLight

RENDER_MODES = ("photo", "model", "donor")
"""Appearances of the new face: the photo's own colours, the model albedo, or another person's
(``donor``: a :class:`~headveil.render.appearance.NewAppearance` in ``DeidInput.extras["appearance"]``)."""

#: Model regions replaced by a re-render (the face, its features and the mouth).
FACE_REGIONS = ("face", "lips", "brows", "eyes", "mouth_interior")
#: Model parts inside the head (never a source of bin colours).
INTERIOR_PARTS = ("teeth", "tongue")

CAMERA_LIGHT_DIRECTION = (-0.4, -0.5, -1.0)
"""Toward the light in the camera's own (OpenCV) axes: from near the camera, a little above and to
its left, as the default scene light sits for a camera on +Z."""


def camera_light(camera) -> DirectionalLight:
    """The default light for a face seen by ``camera`` when no light was fitted: a
    :class:`DirectionalLight` whose world-frame direction is :data:`CAMERA_LIGHT_DIRECTION` rotated
    by the camera's ``c2w`` (for a fitted photo the world is the camera frame itself)."""
    d = np.asarray(camera.c2w, np.float64)[:3, :3] @ np.asarray(CAMERA_LIGHT_DIRECTION)
    default = DirectionalLight()
    return DirectionalLight(tuple(float(x) for x in d), default.ambient, default.diffuse, default.color)


UNLIT = DirectionalLight((0.0, 0.0, 1.0), 1.0, 0.0)
"""A light that returns the albedo unchanged (ambient 1, diffuse 0): used for photo colours."""


@dataclass(frozen=True)
class FaceSubmesh:
    """The face region of a model: ``vertex_index (Vf,)`` into the model, ``faces (Ff, 3)`` re-indexed,
    ``triangles (Ff,)`` the model triangles they are."""

    vertex_index: np.ndarray
    faces: np.ndarray
    triangles: np.ndarray


def face_submesh(model: MorphableModel) -> FaceSubmesh:
    """Triangles whose three vertices lie in :data:`FACE_REGIONS` (cached on the model)."""
    cache = model.__dict__.setdefault("_face_submesh", {})
    if "face" not in cache:
        keep = np.zeros(model.n_vertices, bool)
        for r in FACE_REGIONS:
            if r in model.regions:
                keep |= model.regions[r]
        if not keep.any():
            raise HeadVeilError(f"model {model.name!r} has no face region; cannot re-render a face")
        cache["face"] = _submesh(model, keep)
    return cache["face"]


def _submesh(model: MorphableModel, keep: np.ndarray) -> FaceSubmesh:
    tri = keep[model.faces].all(1)
    idx = np.unique(model.faces[tri])
    remap = -np.ones(model.n_vertices, np.int64)
    remap[idx] = np.arange(len(idx))
    return FaceSubmesh(idx, remap[model.faces[tri]], np.flatnonzero(tri))


def region_submesh(model: MorphableModel, vertices_world: np.ndarray, camera, region: np.ndarray | None) -> FaceSubmesh:
    """The face submesh grown to a detector's face outline: :func:`face_submesh` plus the skin
    vertices (not the ears) of the posed mesh ``vertices_world (V, 3)`` that project inside
    ``region (H, W) bool``, so the re-render covers the whole outlined face (forehead, cheek and jaw
    rims included) instead of leaving those pixels to inpainting. ``region=None`` → the face submesh."""
    base = face_submesh(model)
    if region is None:
        return base
    keep = np.zeros(model.n_vertices, bool)
    keep[base.vertex_index] = True
    uv, z = camera.project(np.asarray(vertices_world, np.float64))
    H, W = region.shape
    x, y = np.round(uv[:, 0]).astype(np.int64), np.round(uv[:, 1]).astype(np.int64)
    ok = (z > 0) & (x >= 0) & (x < W) & (y >= 0) & (y < H)
    inside = np.zeros(model.n_vertices, bool)
    inside[ok] = region[y[ok], x[ok]]
    from headveil.render.appearance import outer_skin

    keep |= inside & outer_skin(model)
    return _submesh(model, keep)


def exterior_vertices(model: MorphableModel) -> np.ndarray:
    """``(V,) bool``: vertices not on interior parts (teeth, tongue)."""
    bad = [model.part_names.index(p) for p in INTERIOR_PARTS if p in model.part_names]
    return ~np.isin(model.vertex_part, bad)


def check_render_mode(mode: str) -> None:
    """One error for an unknown ``render`` parameter."""
    if mode not in RENDER_MODES:
        raise SettingsError(f"render must be one of {RENDER_MODES}; got {mode!r}")


def to_world(vertices_model: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(V, 3) float64`` world-frame points from model-frame ``vertices_model (V, 3)`` (metres) and the
    model → world rotation ``R (3, 3)`` and translation ``t (3,)``."""
    return np.asarray(vertices_model, np.float64) @ np.asarray(R, np.float64).T + np.asarray(t, np.float64)


def photo_colors(photo: np.ndarray, model: MorphableModel, vertices_model: np.ndarray, R, t, camera,
                 with_visibility: bool = False, exclude: np.ndarray | None = None):
    """Colours ``(V, 3) float64`` in [0, 1] of ``photo (H, W, 3) uint8`` on the fitted model mesh
    ``vertices_model (V, 3)`` (model frame, metres; posed by ``R, t`` into the camera's world),
    with visibility on the whole head; ``with_visibility``: ``(colours, visible (V,) bool)``, the
    vertices the photo saw (the others' colours are diffused from them). ``exclude (H, W) bool``:
    pixels that are not the face (occluders; :func:`~headveil.render.texture.sample_photo_colors`):
    a fringe is not painted onto the forehead that a changed shape moves."""
    from headveil.render.texture import sample_photo_colors

    colors, visible = sample_photo_colors(photo, to_world(vertices_model, R, t), model.faces, camera,
                                          exclude=exclude)
    if not visible.any():
        raise HeadVeilError("the fitted face is not visible in the photo; cannot carry its colours")
    return (colors, visible) if with_visibility else colors


#: Mesh rings around the features whose unseen skin a photo-coloured re-render still draws.
FEATURE_RINGS = 3


def seen_faces(model: MorphableModel, sub: FaceSubmesh, visible: np.ndarray) -> np.ndarray:
    """``(Ff', 3)``: the triangles of ``sub`` a face re-rendered in the photo's own colours draws —
    all but the plain skin (not eyes, brows, lips, mouth) that the photo did not see (fewer than
    two vertices ``visible (V,) bool``): under the chin, behind the jaw, their colours are diffused
    from far away, flat patches where a changed shape brings them into view. The features are kept
    whatever their visibility (an eyelid's fold, the lips' inner rim)."""
    from headveil.render.appearance import outer_skin
    from headveil.render.texture import vertex_adjacency

    feature = np.zeros(model.n_vertices, bool)
    for name in ("eyes", "brows", "lips", "mouth_interior", "iris"):
        if name in model.regions:
            feature |= model.regions[name]
    A = vertex_adjacency(model.n_vertices, model.faces)
    for _ in range(FEATURE_RINGS):  # and the folds around them (an eye's corner)
        feature |= (A @ feature.astype(np.float64)) > 0
    plain = outer_skin(model) & ~feature
    f = sub.vertex_index[sub.faces]
    unseen = (np.asarray(visible, bool)[f].sum(1) < 2) & plain[f].all(1)
    return sub.faces[~unseen]


def new_appearance(inp):
    """The donor appearance of ``inp`` (``extras["appearance"]``), or one clear error."""
    app = inp.extras.get("appearance")
    if app is None:
        raise HeadVeilError("the donor appearance needs a donor bank (headveil deid --appearance donor --donors BANK; "
                            "Python: extras['appearance'] = NewAppearance)")
    return app


def subject_colors(inp, render: str, vertices_model: np.ndarray, R, t) -> np.ndarray:
    """The colours T a 3D method carries: the photo's on the fitted mesh (``render="photo"``), the
    model albedo of the subject's β (``"model"``) or the donor's albedo at each vertex (``"donor"``);
    ``(V, 3)`` in [0, 1]."""
    check_render_mode(render)
    if render == "photo":  # not the hair, frames, hands that cover the face
        return photo_colors(inp.image, inp.model, vertices_model, R, t, inp.camera,
                            exclude=inp.extras.get("occluders"))
    if render == "donor":
        from headveil.render.appearance import appearance_uv, texture_at

        return texture_at(new_appearance(inp).albedo, appearance_uv(inp.model)).astype(np.float64)
    return inp.model.albedo(inp.codes.beta)


def scene_light(inp, render: str):
    """The light a re-render uses: the donor appearance's light (the target photo's, estimated)
    for ``donor``, else the input's (None → :func:`camera_light`)."""
    if render == "donor":
        from headveil.render.shading import SHLight

        return SHLight(np.asarray(new_appearance(inp).light, np.float64))
    return inp.light


def rerender_face(photo: np.ndarray, camera, R, t, old_vertices: np.ndarray, old_faces: np.ndarray,
                  new_vertices: np.ndarray, new_faces: np.ndarray, new_colors: np.ndarray, light=None,
                  unlit: bool = False, feather_px: float = 1.5, face_region: np.ndarray | None = None,
                  texture: tuple | None = None, detail: bool = True, keep: np.ndarray | None = None) -> Composite:
    """Render a new face mesh into ``photo`` in place of the old one.

    Args:
        photo: ``(H, W, 3) uint8`` RGB, size of ``camera``.
        camera: the photo's camera; ``R (3, 3)``, ``t (3,)``: model → world.
        old_vertices / old_faces: the original face mesh (model frame, metres), for the region to remove.
        new_vertices / new_faces / new_colors: the new face mesh and its colours ``(V', 3)`` in [0, 1].
        light: scene light for ``unlit=False`` (default :func:`camera_light`, lit from near the camera).
        unlit: show ``new_colors`` as they are (photo colours already hold the light).
        face_region: ``(H, W) bool`` face outline of the detector (replaced as well), or None.
        texture: ``(albedo (S, S, 3), uv (V', 2), uv_ok (F',) bool, gamma (9, 3))``: render the new
            mesh with a UV albedo under SH light ``gamma`` (camera frame) instead of ``new_colors``.
        detail: with ``texture``, bring the new face's local contrast and median colour to the
            photo's own face (:func:`match_photo`; an albedo from another photo is often sharper,
            softer or more contrasted than this photo shows a face).
        keep: ``(H, W) bool`` pixels the photo will keep on top (occluders: hair, frames, hands),
            left out of that comparison.
    """
    from headveil.render.rasterize import rasterize

    H, W = photo.shape[:2]
    old_w, new_w = to_world(old_vertices, R, t), to_world(new_vertices, R, t)
    cov_old, cov, render, matched = np.zeros((H, W)), np.zeros((H, W)), np.zeros((H, W, 3)), None
    win = camera.window(np.vstack([old_w, new_w]))
    if win is not None:  # render only the window around the face (a small part of a photo)
        x0, y0, w, h = win
        cam = camera.cropped(x0, y0, w, h)
        old = rasterize(old_w, np.asarray(old_faces), cam.scaled(2))
        cov_old[y0:y0 + h, x0:x0 + w] = old.mask.reshape(h, 2, w, 2).mean(axis=(1, 3))
        if texture is not None:
            from headveil.render.appearance import render_textured

            albedo, uv, uv_ok, gamma = texture
            img, mask = render_textured(new_w, new_faces, uv, albedo, cam, gamma, supersample=2, uv_ok=uv_ok)
            if detail:  # the new face's contrast brought to the photo's own face
                sl = (slice(y0, y0 + h), slice(x0, x0 + w))
                img, matched = match_photo(img, mask, photo[sl], cov_old[sl],
                                           None if face_region is None else face_region[sl],
                                           None if keep is None else keep[sl])
        else:
            res = render_mesh(new_w, new_faces, cam, np.clip(new_colors, 0, 1),
                              light=UNLIT if unlit else (light if light is not None else camera_light(camera)),
                              background=(0.0, 0.0, 0.0), supersample=2)
            img, mask = res.image, res.mask
        cov[y0:y0 + h, x0:x0 + w] = mask
        render[y0:y0 + h, x0:x0 + w] = np.where(mask[..., None] > 0, img / np.maximum(mask[..., None], 1e-6), 0.0)
    comp = composite_face(photo, render, cov, cov_old, feather_px, face_region)
    comp.photo_match = matched
    return comp


#: How far a textured re-render's contrast may be scaled per band to meet the photo's: down for a
#: donor sharper than the photo, up for one softer at most to the naturalness target's 1.3×.
#: Scaling up cannot add the wrinkles an old face's photo has; it multiplies what the donor's albedo
#: holds (de-lighting's mottle, a mix's seams): at 2× an old woman's new face was a blotched bronze mask.
CONTRAST_LIMITS = (0.35, 1.3)


def match_photo(img: np.ndarray, mask: np.ndarray, photo: np.ndarray, cov_old: np.ndarray,
                face_region: np.ndarray | None, keep: np.ndarray | None) -> tuple[np.ndarray, dict]:
    """A textured render ``img (h, w, 3)`` (premultiplied by its coverage ``mask (h, w)``) with its
    local contrast (:func:`~headveil.render.composite.match_detail`, bands of 0.6, 1.5 and 5 % of
    the face's side px) and then its median colour (:func:`~headveil.render.composite.match_face_tone`)
    brought to the photo's face, compared over both faces' interiors (full coverage, 2 px in,
    inside ``face_region``, outside ``keep``); the contrast scaling fades out over the render's
    rim. Returns the render and ``{"contrast_ratios": per band, "tone_shift_lab": (3,)}``."""
    import cv2

    from headveil.render.composite import match_detail, match_face_tone

    fr = np.ones(mask.shape, bool) if face_region is None else np.asarray(face_region, bool)
    if keep is not None:
        fr = fr & ~np.asarray(keep, bool)
    k = np.ones((5, 5), np.uint8)
    full = cv2.erode((mask > 0.999).astype(np.uint8), k).astype(bool)  # fully covered, 2 px in
    inner = full & fr
    inner_old = cv2.erode((cov_old > 0.999).astype(np.uint8), k).astype(bool) & fr
    side = np.sqrt(max(inner_old.sum(), 1))
    plain = img / np.maximum(mask[..., None], 1e-6)
    shaded, ratios = match_detail(plain, inner, photo, inner_old, (0.6, 1.5, max(3.0, 0.05 * side)),
                                  limits=CONTRAST_LIMITS, support=mask > 0)
    # the scaling fades out over the render's rim (partly covered pixels, the submesh's border):
    # what the rim holds is the edge, not the face's detail
    fade = np.clip(cv2.GaussianBlur(full.astype(np.float64), (0, 0), 1.5) * 2.0 - 0.5, 0, 1)[..., None]
    shaded = plain + fade * (shaded - plain)
    shaded, shift = match_face_tone(shaded, inner, photo, inner_old)
    return shaded * mask[..., None], {"contrast_ratios": ratios, "tone_shift_lab": shift}
