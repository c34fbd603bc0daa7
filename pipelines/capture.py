"""Multi-view capture folders: read, validate, and write synthetic ones.

Layout::

    CAPTURE/transforms.json   {"camera_convention": "opencv", "frames": [...], "gt_mesh": "gt_mesh.ply"?,
                               "model_codes": {"identity": [...], "expression": [...]}?}
    CAPTURE/images/*.png      views; CAPTURE/masks/*.png optional (white = head)
    CAPTURE/gt_mesh.ply       optional ground truth (model vertex order when synthetic)

A frame is ``{"file_path", "K" (3×3 px), "c2w" (4×4, OpenCV axes, metres), "width", "height",
"privacy": "neutral" | "protected", "mask_path"?}``. NeRF-style files (``camera_angle_x`` or
``fl_x``/``fl_y``/``cx``/``cy`` and OpenGL ``transform_matrix`` per frame) are read too and
converted. ``privacy`` says whether a view may be seen as RGB (``neutral``, e.g. the back of the
head) or only through a protecting operator (``protected``: views that show the face).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headveil.common.errors import HeadVeilError, ImageReadError
from headveil.common.images import read_image, to_float01, write_image
from headveil.common.outputs import atomic_output_dir, build_manifest, write_json
from headveil.geometry.camera import Camera, intrinsics_from_fov, look_at, opencv_to_opengl

PRIVACY = ("neutral", "protected")


class CaptureError(HeadVeilError, ValueError):
    """A capture folder is unusable (missing files, bad cameras, too few views)."""


@dataclass
class Capture:
    """A loaded capture.

    Attributes:
        images: ``(C, H, W, 3) float32`` in [0, 1].
        masks: ``(C, H, W) float32`` in [0, 1] or None.
        cameras: C cameras (OpenCV axes, metres).
        privacy: C labels from :data:`PRIVACY`.
        names: C file names.
        gt_mesh: path of the ground-truth mesh, if any.
        codes: model codes of a synthetic subject (``identity``, ``expression``), if any.
        root: the folder.
    """

    images: np.ndarray
    masks: np.ndarray | None
    cameras: list[Camera]
    privacy: list[str]
    names: list[str]
    gt_mesh: Path | None = None
    codes: dict = field(default_factory=dict)
    root: Path | None = None
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Background colour of the images (RGB in [0, 1]) outside the head."""

    def __len__(self) -> int:
        return len(self.cameras)


def _frame_camera(fr: dict, meta: dict, w: int, h: int, convention: str) -> Camera:
    if "K" in fr:
        K = np.asarray(fr["K"], float)
    else:
        src = {**meta, **fr}
        if "fl_x" in src:
            K = np.array([[src["fl_x"], 0, src.get("cx", w / 2)], [0, src.get("fl_y", src["fl_x"]), src.get("cy", h / 2)], [0, 0, 1]], float)
        elif "camera_angle_x" in src:
            f = 0.5 * w / np.tan(0.5 * src["camera_angle_x"])
            K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], float)
        else:
            raise CaptureError(f"frame {fr.get('file_path')}: no intrinsics (K, fl_x or camera_angle_x)")
    c2w = np.asarray(fr.get("c2w", fr.get("transform_matrix")), float)
    if c2w.shape != (4, 4) or K.shape != (3, 3):
        raise CaptureError(f"frame {fr.get('file_path')}: c2w must be 4×4 and K 3×3")
    if not (np.isfinite(c2w).all() and np.isfinite(K).all()):
        raise CaptureError(f"frame {fr.get('file_path')}: camera contains NaN or infinite values")
    if convention == "opengl":
        c2w = opencv_to_opengl(c2w)
    return Camera(K, c2w, w, h)


def load_capture(root: str | os.PathLike, bound_radius: float | None = 0.25, min_views: int = 2) -> Capture:
    """Read and validate a capture folder.

    Args:
        root: the folder with ``transforms.json``.
        bound_radius: when given, every camera must see the sphere of this radius (metres) around
            the origin (the head's bounding sphere); ``None`` skips the check.
        min_views: fewer views raise :class:`CaptureError`.
    """
    root = Path(root)
    tf = root / "transforms.json"
    if not tf.is_file():
        raise CaptureError(f"{root} is not a capture: transforms.json is missing")
    try:
        meta = json.loads(tf.read_text())
    except json.JSONDecodeError as exc:
        raise CaptureError(f"{tf} is not valid JSON: {exc}") from None
    frames = meta.get("frames", [])
    if len(frames) < min_views:
        raise CaptureError(f"{root} has {len(frames)} view(s); reconstruction needs at least {min_views}")
    convention = meta.get("camera_convention", "opengl" if "transform_matrix" in frames[0] else "opencv")
    images, masks, cams, privacy, names = [], [], [], [], []
    for fr in frames:
        path = root / fr["file_path"]
        if not path.suffix and not path.exists():
            path = path.with_suffix(".png")
        try:
            img = read_image(path)
        except ImageReadError as exc:
            raise CaptureError(f"{root}: {exc}") from None
        h, w = img.shape[:2]
        if images and img.shape != images[0].shape:
            raise CaptureError(f"{path.name} is {w}×{h}; all views must share one size")
        cam = _frame_camera(fr, meta, int(fr.get("width", w)), int(fr.get("height", h)), convention)
        label = fr.get("privacy", "neutral")
        if label not in PRIVACY:
            raise CaptureError(f"{path.name}: privacy must be one of {PRIVACY}; got {label!r}")
        if bound_radius is not None:
            uv, z = cam.project(np.zeros((1, 3)))
            if z[0] <= bound_radius or not (0 <= uv[0, 0] < w and 0 <= uv[0, 1] < h):
                raise CaptureError(f"{path.name}: the camera does not see the head's bounding sphere at the origin")
        images.append(img)
        if fr.get("mask_path"):
            m = read_image(root / fr["mask_path"])
            masks.append(to_float01(m)[..., 0])
        cams.append(cam)
        privacy.append(label)
        names.append(path.name)
    if masks and len(masks) != len(images):
        raise CaptureError(f"{root}: masks are given for some views but not all")
    gt = root / meta["gt_mesh"] if meta.get("gt_mesh") else None
    return Capture(np.stack([to_float01(i) for i in images]), np.stack(masks) if masks else None, cams, privacy,
                   names, gt if gt is not None and gt.is_file() else None, meta.get("model_codes", {}), root,
                   tuple(float(c) for c in meta.get("background", (0.0, 0.0, 0.0))))


def views_on_sphere(n: int, radius: float, pitch_range=(-15.0, 35.0), seed: int = 0) -> list[np.ndarray]:
    """``n`` OpenCV c2w matrices looking at the origin, yaw spread evenly around 360° (golden-angle
    jitter), pitch in ``pitch_range`` degrees, at ``radius`` metres."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        yaw = np.radians((i * 360.0 / n + rng.uniform(-0.3, 0.3) * 360.0 / n) % 360.0)
        pitch = np.radians(rng.uniform(*pitch_range))
        eye = radius * np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
        out.append(look_at(eye))
    return out


def privacy_label(c2w: np.ndarray, face_cone_deg: float = 75.0) -> str:
    """``protected`` when the camera sits within ``face_cone_deg`` of the face direction (+Z)."""
    d = c2w[:3, 3] / np.linalg.norm(c2w[:3, 3])
    return "protected" if np.degrees(np.arccos(np.clip(d[2], -1, 1))) < face_cone_deg else "neutral"


def write_synthetic_capture(out: str | os.PathLike, model, codes, n_views: int = 30, size: int = 64,
                            fov_deg: float = 30.0, distance: float = 0.6, seed: int = 0, light=None) -> Path:
    """Render a synthetic subject from ``n_views`` views into a capture folder (atomically)."""
    from headveil.geometry.mesh_io import export_mesh
    from headveil.render.mesh_renderer import render_mesh

    verts = model.vertices(codes.alpha, codes.eta).astype(np.float64)
    colors = model.albedo(codes.beta)
    K = intrinsics_from_fov(size, size, fov_deg)
    frames = []
    with atomic_output_dir(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for i, c2w in enumerate(views_on_sphere(n_views, distance, seed=seed)):
            cam = Camera(K, c2w, size, size)
            res = render_mesh(verts, model.faces, cam, colors, light=light, background=(0.0, 0.0, 0.0), supersample=2)
            write_image(tmp / f"images/{i:03d}.png", res.image)
            write_image(tmp / f"masks/{i:03d}.png", np.repeat(res.mask[..., None], 3, -1))
            frames.append({"file_path": f"images/{i:03d}.png", "mask_path": f"masks/{i:03d}.png", "K": K.tolist(),
                           "c2w": c2w.tolist(), "width": size, "height": size, "privacy": privacy_label(c2w)})
        export_mesh(tmp / "gt_mesh.ply", verts, model.faces, colors)
        write_json(tmp / "transforms.json", {"camera_convention": "opencv", "frames": frames, "gt_mesh": "gt_mesh.ply",
                                             "background": [0.0, 0.0, 0.0],
                                             "model_codes": {"identity": np.asarray(codes.alpha).tolist(),
                                                             "expression": np.asarray(codes.eta).tolist(),
                                                             "albedo": np.asarray(codes.beta).tolist()}})
        write_json(tmp / "manifest.json", build_manifest("headveil synth --capture", {"n_views": n_views, "size": size,
                                                                                       "fov_deg": fov_deg, "distance": distance},
                                                         seed=seed, extra={"model": model.name}))
    return Path(out)
