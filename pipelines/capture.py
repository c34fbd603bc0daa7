"""Multi-view capture folders: read, validate, and write synthetic ones.

Layout::

    CAPTURE/transforms.json   {"camera_convention": "opencv", "frames": [...], "background": [r, g, b]?}
    CAPTURE/images/*.png      RGB views; CAPTURE/masks/*.png optional (white = head)
    CAPTURE/protected/*.png   gradient views (16-bit greyscale ‖g‖ codes, see render/protect.py)

    GROUND_TRUTH/gt_mesh.ply  evaluation ground truth, in its own folder (never sent with a capture):
    GROUND_TRUTH/codes.json   ``gt_mesh.ply`` (model vertex order when synthetic) and the subject's
                              model codes ``{"identity", "expression", "albedo"}``

Every path in ``transforms.json`` is relative to the capture and must stay inside it. A capture
written by :func:`write_synthetic_capture` and every output of ``headveil protect`` hold no
ground truth: :func:`load_capture` takes it from a separate folder (``ground_truth=``); older
captures with ``gt_mesh`` / ``model_codes`` keys inside are still read.

A frame is ``{"file_path", "K" (3×3 px), "c2w" (4×4, OpenCV axes, metres), "width", "height",
"privacy": "neutral" | "protected", "content": "rgb" | "gradient", "protect"?, "mask_path"?}``.
NeRF-style files (``camera_angle_x`` or ``fl_x``/``fl_y``/``cx``/``cy`` and OpenGL
``transform_matrix`` per frame) are read too and converted. ``privacy`` says whether a view may be
seen as RGB (``neutral``, e.g. the back of the head) or only through the protecting operator
(``protected``: views that show the face). ``content`` says what the file holds: ``rgb`` (default)
or ``gradient`` — the output of ``headveil protect``: a ``uint16`` PNG of quantised ‖g‖ or a
``float32`` ``.npy``, with the operator's settings in ``protect`` (``size``, ``blur``, ``operator``;
one setting for the whole capture). A protected capture holds no RGB of its protected views.
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
from headveil.render.protect import GradientFileError, read_gradient, write_gradient

PRIVACY = ("neutral", "protected")


class CaptureError(HeadVeilError, ValueError):
    """A capture folder is unusable (missing files, bad cameras, too few views)."""


CONTENTS = ("rgb", "gradient")


@dataclass
class Capture:
    """A loaded capture.

    Attributes:
        images: ``(C, H, W, 3) float32`` in [0, 1]; zeros for gradient views.
        masks: ``(C, H, W) float32`` in [0, 1], −1 for views without a mask; None when no view has one.
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
    contents: list[str] = field(default_factory=list)
    """C entries of :data:`CONTENTS` (``rgb`` when empty)."""
    gradients: np.ndarray | None = None
    """``(C, H, W) float32`` ‖g‖ in [0, 2√3] for gradient views (zeros for RGB views), or None."""
    protect: dict | None = None
    """The protecting operator's settings (``ProtectConfig`` fields) of the gradient views."""

    def __post_init__(self):
        if not self.contents:
            self.contents = ["rgb"] * len(self.cameras)

    def __len__(self) -> int:
        return len(self.cameras)

    def views(self, privacy: str = "all", content: str = "all") -> list[int]:
        """Indices of the views with this privacy label and content (``all`` matches any)."""
        return [i for i in range(len(self)) if privacy in ("all", self.privacy[i])
                and content in ("all", self.contents[i])]

    def summary(self) -> dict:
        """View counts by privacy label and content."""
        return {f"{p}_{c}": len(self.views(p, c)) for p in PRIVACY for c in CONTENTS if self.views(p, c)}


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


def capture_path(root: Path, rel, what: str) -> Path:
    """``root / rel`` for a path named in ``transforms.json``; refuses absolute paths and paths that
    leave the capture (``../x.png``, symlinks out of it)."""
    if not isinstance(rel, str) or not rel.strip():
        raise CaptureError(f"{root}: a frame's {what} must be a non-empty relative path; got {rel!r}")
    p = Path(rel)
    full = (root / p).resolve()
    if p.is_absolute() or not (full == root.resolve() or root.resolve() in full.parents):
        raise CaptureError(f"{root}: {what} {rel!r} leaves the capture folder; every path must stay inside it")
    return root / p


def _check_background(meta: dict, tf: Path) -> tuple[float, float, float]:
    bg = meta.get("background", (0.0, 0.0, 0.0))
    try:
        vals = tuple(float(c) for c in bg)
    except (TypeError, ValueError):
        raise CaptureError(f"{tf}: background must be three numbers in [0, 1]; got {bg!r}") from None
    if len(vals) != 3 or not all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in vals):
        raise CaptureError(f"{tf}: background must be three finite numbers in [0, 1] (RGB); got {bg!r}")
    return vals


def load_ground_truth(folder: str | os.PathLike) -> tuple[Path, dict]:
    """``(gt_mesh.ply path, model codes dict)`` of a ground-truth folder (codes may be empty)."""
    folder = Path(folder)
    mesh = folder / "gt_mesh.ply"
    if not mesh.is_file():
        raise CaptureError(f"{folder} is not a ground-truth folder: gt_mesh.ply is missing")
    codes = {}
    if (folder / "codes.json").is_file():
        try:
            codes = json.loads((folder / "codes.json").read_text())
        except json.JSONDecodeError as exc:
            raise CaptureError(f"{folder}/codes.json is not valid JSON: {exc}") from None
    return mesh, codes


def load_capture(root: str | os.PathLike, bound_radius: float | None = 0.25, min_views: int = 2,
                 ground_truth: str | os.PathLike | None = None) -> Capture:
    """Read and validate a capture folder.

    Args:
        root: the folder with ``transforms.json``.
        ground_truth: a folder with ``gt_mesh.ply`` (+ ``codes.json``) for evaluation, kept apart
            from the capture.
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
    if not isinstance(frames, list) or not all(isinstance(fr, dict) for fr in frames):
        raise CaptureError(f"{tf}: frames must be a list of objects")
    if len(frames) < min_views:
        raise CaptureError(f"{root} has {len(frames)} view(s); reconstruction needs at least {min_views}")
    convention = meta.get("camera_convention", "opengl" if "transform_matrix" in frames[0] else "opencv")
    images, masks, cams, privacy, names, contents, grads = [], [], [], [], [], [], []
    protect = None
    background = _check_background(meta, tf)
    for n, fr in enumerate(frames):
        if "file_path" not in fr:
            raise CaptureError(f"{tf}: frame {n} has no file_path")
        path = capture_path(root, fr["file_path"], "file_path")
        if not path.suffix and not path.exists():
            path = path.with_suffix(".png")
        content = fr.get("content", "rgb")
        if content not in CONTENTS:
            raise CaptureError(f"{path.name}: content must be one of {CONTENTS}; got {content!r}")
        if content == "gradient":
            try:
                g = read_gradient(path)
            except GradientFileError as exc:
                raise CaptureError(str(exc)) from None
            settings = dict(fr.get("protect") or meta.get("protect") or {})
            if protect is not None and settings != protect:
                raise CaptureError(f"{path.name}: gradient views were made with different operator settings "
                                   f"({settings} vs {protect}); protect every view with one setting")
            protect = settings
            img = np.zeros((*g.shape, 3), np.uint8)
        else:
            try:
                img = read_image(path)
            except ImageReadError as exc:
                raise CaptureError(f"{root}: {exc}") from None
            g = np.zeros(img.shape[:2], np.float32)
        h, w = img.shape[:2]
        if images and img.shape != images[0].shape:
            raise CaptureError(f"{path.name} is {w}×{h} but {names[0]} is {images[0].shape[1]}×{images[0].shape[0]}; "
                               "all views (RGB and gradient) must share one size — protect with --size equal to "
                               "the RGB views' size")
        if int(fr.get("width", w)) != w or int(fr.get("height", h)) != h:
            raise CaptureError(f"{path.name} is {w}×{h} but its frame says {fr.get('width')}×{fr.get('height')}")
        contents.append(content)
        grads.append(g)
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
            try:
                m = read_image(capture_path(root, fr["mask_path"], "mask_path"))
            except ImageReadError as exc:
                raise CaptureError(f"{root}: {exc}") from None
            if m.shape[:2] != img.shape[:2]:
                raise CaptureError(f"{fr['mask_path']}: the mask's size differs from its view's")
            masks.append(to_float01(m)[..., 0])
        else:
            masks.append(None)
        cams.append(cam)
        privacy.append(label)
        names.append(path.name)
    have = [m is not None for m in masks]
    if any(have) and not all(h or c == "gradient" for h, c in zip(have, contents)):
        raise CaptureError(f"{root}: masks are given for some RGB views but not all")
    mask_arr = None
    if any(have):
        mask_arr = np.stack([m if m is not None else np.full(images[0].shape[:2], -1.0, np.float32) for m in masks])
    gt = capture_path(root, meta["gt_mesh"], "gt_mesh") if meta.get("gt_mesh") else None
    gt = gt if gt is not None and gt.is_file() else None
    codes = meta.get("model_codes", {})
    if ground_truth is not None:
        gt, codes = load_ground_truth(ground_truth)
    return Capture(np.stack([to_float01(i) for i in images]), mask_arr, cams, privacy,
                   names, gt, codes, root, background, contents,
                   np.stack(grads) if "gradient" in contents else None, protect)


def orbit_c2w(yaw: float, pitch: float, radius: float) -> np.ndarray:
    """OpenCV c2w ``(4, 4)`` of a camera at ``radius`` metres looking at the origin; ``yaw`` (about +Y,
    0 = in front of the face at +Z) and ``pitch`` (up) in radians."""
    return look_at(radius * np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)]))


def views_on_sphere(n: int, radius: float, pitch_range=(-15.0, 35.0), seed: int = 0) -> list[np.ndarray]:
    """``n`` OpenCV c2w matrices looking at the origin, yaw spread evenly around 360° (golden-angle
    jitter), pitch in ``pitch_range`` degrees, at ``radius`` metres."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        yaw = np.radians((i * 360.0 / n + rng.uniform(-0.3, 0.3) * 360.0 / n) % 360.0)
        out.append(orbit_c2w(yaw, np.radians(rng.uniform(*pitch_range)), radius))
    return out


def privacy_label(c2w: np.ndarray, face_cone_deg: float = 75.0) -> str:
    """``protected`` when the camera sits within ``face_cone_deg`` of the face direction (+Z)."""
    d = c2w[:3, 3] / np.linalg.norm(c2w[:3, 3])
    return "protected" if np.degrees(np.arccos(np.clip(d[2], -1, 1))) < face_cone_deg else "neutral"


def views_split(n_neutral: int, n_protected: int, radius: float, face_cone_deg: float = 100.0,
                pitch_range=(-15.0, 35.0), seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """Cameras of a split capture (as the paper's FaceScape 10 + 20 and H3DS 16 + 20 splits):
    ``n_protected`` views with yaw spread over ``±face_cone_deg`` around the face (+Z), labelled
    ``protected``, and ``n_neutral`` views spread over the back of the head, labelled ``neutral``.
    Returns ``(c2w (4, 4) OpenCV, label)`` pairs, protected views first."""
    if n_neutral < 0 or n_protected < 0 or n_neutral + n_protected < 2:
        raise ValueError(f"need at least two views in all; got {n_neutral} neutral + {n_protected} protected")
    if not 0 < face_cone_deg < 180:
        raise ValueError(f"face_cone_deg must be in (0, 180); got {face_cone_deg}")
    rng = np.random.default_rng(seed)
    out = []
    for n, lo, hi, label in ((n_protected, -face_cone_deg, face_cone_deg, "protected"),
                             (n_neutral, face_cone_deg, 360.0 - face_cone_deg, "neutral")):
        step = (hi - lo) / max(n, 1)
        for i in range(n):
            yaw = np.radians(lo + (i + 0.5) * step + rng.uniform(-0.25, 0.25) * step)
            out.append((orbit_c2w(yaw, np.radians(rng.uniform(*pitch_range)), radius), label))
    return out


def write_synthetic_capture(out: str | os.PathLike, model, codes, n_views: int = 30, size: int = 64,
                            fov_deg: float = 30.0, distance: float = 0.6, seed: int = 0, light=None,
                            split: tuple[int, int] | None = None, protect=None, face_cone_deg: float = 150.0,
                            ground_truth: str | os.PathLike | None = None) -> Path:
    """Render a synthetic subject into a capture folder (atomically), its ground truth apart.

    Args:
        n_views: views spread around the head (labels by :func:`privacy_label`); ignored with ``split``.
        split: ``(n_neutral, n_protected)`` views placed by :func:`views_split`.
        face_cone_deg: with ``split``, the protected views cover yaw ``±face_cone_deg`` around the
            face and the neutral ones the rest of the orbit: the larger it is, the less of the face
            the neutral views see (at 100° their silhouettes still trace the face's profile; from
            about 120° on, no neutral view sees the face within ±30° of its front).
        protect: a :class:`~headveil.render.protect.ProtectConfig`: protected views are written only
            as gradient files (their RGB is rendered in memory, protected, and dropped; no mask);
            its ``size`` is overridden by ``size`` so every view shares one size.
        ground_truth: folder for ``gt_mesh.ply`` and ``codes.json`` (default: ``OUT_ground_truth``
            beside the capture); the capture itself holds neither.
    """
    from dataclasses import replace

    from headveil.geometry.mesh_io import export_mesh
    from headveil.render.mesh_renderer import render_mesh
    from headveil.render.protect import protect_image

    verts = model.vertices(codes.alpha, codes.eta).astype(np.float64)
    colors = model.albedo(codes.beta)
    K = intrinsics_from_fov(size, size, fov_deg)
    views = views_split(*split, distance, face_cone_deg, seed=seed) if split is not None else \
        [(c, privacy_label(c)) for c in views_on_sphere(n_views, distance, seed=seed)]
    op = replace(protect, size=size) if protect is not None else None
    frames = []
    with atomic_output_dir(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for i, (c2w, label) in enumerate(views):
            cam = Camera(K, c2w, size, size)
            res = render_mesh(verts, model.faces, cam, colors, light=light, background=(0.0, 0.0, 0.0), supersample=2)
            frame = {"K": K.tolist(), "c2w": c2w.tolist(), "width": size, "height": size, "privacy": label}
            if label == "protected" and op is not None:
                write_gradient(tmp / f"protected/{i:03d}.png", protect_image(res.image, op))
                frame.update({"file_path": f"protected/{i:03d}.png", "content": "gradient", "protect": op.to_json()})
            else:
                write_image(tmp / f"images/{i:03d}.png", res.image)
                write_image(tmp / f"masks/{i:03d}.png", np.repeat(res.mask[..., None], 3, -1))
                frame.update({"file_path": f"images/{i:03d}.png", "mask_path": f"masks/{i:03d}.png"})
            frames.append(frame)
        write_json(tmp / "transforms.json", {"camera_convention": "opencv", "frames": frames,
                                             "background": [0.0, 0.0, 0.0],
                                             **({"protect": op.to_json()} if op is not None else {})})
        write_json(tmp / "manifest.json", build_manifest(
            "headveil synth --capture", {"n_views": len(views), "size": size, "fov_deg": fov_deg, "distance": distance,
                                         "split": split, "face_cone_deg": face_cone_deg if split else None,
                                         "protect": op.to_json() if op else None},
            seed=seed, extra={"model": model.name}))
    gt_dir = Path(ground_truth) if ground_truth is not None else Path(out).with_name(Path(out).name + "_ground_truth")
    with atomic_output_dir(gt_dir) as tmp:
        export_mesh(tmp / "gt_mesh.ply", verts, model.faces, colors)
        write_json(tmp / "codes.json", {"identity": np.asarray(codes.alpha).tolist(),
                                        "expression": np.asarray(codes.eta).tolist(),
                                        "albedo": np.asarray(codes.beta).tolist(), "model": model.name,
                                        "note": "evaluation ground truth: never send this folder with the capture"})
    return Path(out)
