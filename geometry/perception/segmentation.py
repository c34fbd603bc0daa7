"""Person / background segmentation: MediaPipe's selfie segmenter (shipped in ``assets/segmentation``).

``selfie_segmentation.tflite`` (249,505 bytes, Apache-2.0) comes from the mediapipe 0.10.21 wheel
(see ``assets/MANIFEST.md``); MediaPipe 1.2.2's Tasks ``ImageSegmenter`` runs it (≈ 10 ms per
512² image on 2 cores). Its confidence is "this pixel is a person": hair and hats count as person,
so it separates a face's outline from the background behind it, not hair from skin.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from headveil.common.errors import MissingDependencyError
from headveil.common.images import check_rgb8
from headveil.geometry.perception.detectors import native_stderr_silenced

MODEL_PATH = Path(__file__).resolve().parents[2] / "assets" / "segmentation" / "selfie_segmentation.tflite"


class PersonSegmenter:
    """``mask(image)`` → ``(H, W) float32`` person confidence in [0, 1]."""

    def __init__(self, path: str | Path = MODEL_PATH):
        import os

        os.environ.setdefault("GLOG_minloglevel", "2")
        try:
            with native_stderr_silenced():
                from mediapipe.tasks import python as mp_python
                from mediapipe.tasks.python import vision
        except ImportError as exc:
            raise MissingDependencyError("the person segmenter", "faces", exc) from exc
        path = Path(path)
        if not path.is_file():
            raise MissingDependencyError("the person segmenter", "faces", ImportError(f"{path} is missing"))
        opts = vision.ImageSegmenterOptions(base_options=mp_python.BaseOptions(model_asset_buffer=path.read_bytes()),
                                            running_mode=vision.RunningMode.IMAGE, output_confidence_masks=True,
                                            output_category_mask=False)
        with native_stderr_silenced():
            self._seg = vision.ImageSegmenter.create_from_options(opts)
        self._warm = False
        threading._register_atexit(self.close)  # before MediaPipe's dispatcher pool shuts down

    def close(self) -> None:
        if self._seg is not None:
            seg, self._seg = self._seg, None
            try:
                seg.close()
            except (RuntimeError, TypeError):  # the process is ending; the handle goes with it
                pass

    def mask(self, image: np.ndarray) -> np.ndarray:
        """Person confidence ``(H, W) float32`` in [0, 1] of ``image (H, W, 3) uint8`` RGB."""
        import mediapipe as mp

        img = check_rgb8(image)
        frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img))
        if not self._warm:
            with native_stderr_silenced():
                res = self._seg.segment(frame)
            self._warm = True
        else:
            res = self._seg.segment(frame)
        m = np.asarray(res.confidence_masks[0].numpy_view(), np.float32)
        return np.clip(m.reshape(img.shape[:2]), 0, 1)


@functools.lru_cache(maxsize=1)
def get_segmenter() -> PersonSegmenter:
    """A process-wide :class:`PersonSegmenter`."""
    return PersonSegmenter()


def person_mask(image: np.ndarray) -> np.ndarray:
    """``(H, W) float32`` person confidence of ``image (H, W, 3) uint8`` RGB (see :class:`PersonSegmenter`)."""
    return get_segmenter().mask(image)
