"""The typed result of fitting the head model to one face of a photo (``fit.json``).

:class:`FitResult` is written by ``headveil fit`` and read back by every later stage through the
same type (``FitResult.load``): ``headveil deid --fit DIR``, ``headveil reconstruct --template
fit.json``, CHEP pivots from a folder of fits. Codes carry one set of names everywhere:
``identity`` (α), ``expression`` (η, by blendshape name), ``albedo`` (β).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.geometry.camera import Camera
from headveil.geometry.morphable.fitting import LandmarkFit
from headveil.geometry.morphable.model import MorphableModel
from headveil.geometry.perception.detectors import Detection


@dataclass
class FitResult:
    """The fitted head of one face.

    Attributes:
        identity: ``(K,) float32`` α (N(0, I) units).
        expression: ``(E,) float32`` η, named by ``expression_names``.
        expression_names: blendshape names.
        albedo: ``(A,) float32`` β (zeros without refinement).
        lighting: ``(9, 3)`` SH coefficients in the camera frame, or None without refinement.
        R, t: model → camera rotation ``(3, 3)`` and translation ``(3,)`` metres (OpenCV camera).
        camera: the camera (``c2w`` = identity: the camera frame is the world frame).
        landmark_rmse_px: weighted landmark reprojection RMSE, pixels.
        detector: detector used; scheme: its landmark scheme.
        detection: the landmarks the fit used.
        photometric_rmse: colour RMSE of the refinement in [0, 1] units, or None.
        seconds: wall time per stage.
    """

    identity: np.ndarray
    expression: np.ndarray
    expression_names: list[str]
    albedo: np.ndarray
    lighting: np.ndarray | None
    R: np.ndarray
    t: np.ndarray
    camera: Camera
    landmark_rmse_px: float
    detector: str
    scheme: str
    detection: Detection
    photometric_rmse: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def vertices(self, model: MorphableModel) -> np.ndarray:
        """``(V, 3)`` fitted head in the model frame (metres)."""
        return model.vertices(self.identity, self.expression)

    def vertices_camera(self, model: MorphableModel) -> np.ndarray:
        """``(V, 3)`` fitted head in the camera frame (OpenCV axes, metres)."""
        return self.vertices(model).astype(np.float64) @ self.R.T + self.t

    def pose_dict(self) -> dict:
        return LandmarkFit(self.identity, self.expression, self.R, self.t, self.camera.K, self.camera.width,
                           self.camera.height, self.landmark_rmse_px, self.scheme).pose_dict()

    SCHEMA = "headveil.fit"
    SCHEMA_VERSION = 2

    def to_json(self) -> dict:
        """The fit as JSON (``fit.json``): codes by name, pose, camera, the landmarks it used; loads
        back with :meth:`from_json` (schema :data:`SCHEMA` version :data:`SCHEMA_VERSION`)."""
        return {
            "schema": self.SCHEMA, "schema_version": self.SCHEMA_VERSION,
            "identity": self.identity.tolist(),
            "expression": dict(zip(self.expression_names, map(float, self.expression))),
            "albedo": self.albedo.tolist(),
            "lighting": None if self.lighting is None else {"sh_coefficients": self.lighting.tolist(),
                                                             "frame": "camera (OpenCV)", "layout": "(9, 3) RGB"},
            "pose": self.pose_dict(),
            "camera": self.camera.to_dict(),
            "landmark_rmse_px": self.landmark_rmse_px,
            "photometric_rmse": self.photometric_rmse,
            "detector": self.detector, "landmark_scheme": self.scheme,
            "blendshapes_detected": self.detection.blendshapes or None,
            "landmarks": {"points_px": self.detection.points.tolist(), "box_px": self.detection.box.tolist(),
                          "score": float(self.detection.score)},
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict, model: MorphableModel | None = None, source: str = "fit.json") -> FitResult:
        """A :class:`FitResult` from :meth:`to_json` output (the fit of one face of one photo).

        Raises:
            HeadVeilError: not a HeadVeil fit, an unsupported schema version, or codes of another model.
        """
        if data.get("schema") != cls.SCHEMA:
            raise HeadVeilError(f"{source} is not a headveil fit (schema {data.get('schema')!r})")
        if data.get("schema_version") != cls.SCHEMA_VERSION:
            raise HeadVeilError(f"{source} has fit schema version {data.get('schema_version')}; this headveil reads "
                                f"{cls.SCHEMA_VERSION} (refit with headveil fit)")
        try:
            names = list(data["expression"])
            expr = np.array([float(data["expression"][n]) for n in names], np.float32)
            identity = np.asarray(data["identity"], np.float32)
            if model is not None:
                if len(identity) != model.n_id or names != list(model.expr_names):
                    raise HeadVeilError(f"{source} holds codes of another model ({len(identity)} identity components)")
            light = data.get("lighting")
            pose, lm = data["pose"], data["landmarks"]
            det = Detection(np.asarray(lm["points_px"], np.float64), data["landmark_scheme"],
                            np.asarray(lm["box_px"], np.float64), float(lm["score"]), data["detector"],
                            dict(data.get("blendshapes_detected") or {}))
            return cls(identity, expr, names, np.asarray(data["albedo"], np.float32),
                       None if light is None else np.asarray(light["sh_coefficients"], np.float64),
                       np.asarray(pose["R"], np.float64), np.asarray(pose["t"], np.float64),
                       Camera.from_dict(data["camera"]), float(data["landmark_rmse_px"]), data["detector"],
                       data["landmark_scheme"], det, data.get("photometric_rmse"), dict(data.get("seconds") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise HeadVeilError(f"{source} is not a complete fit ({type(exc).__name__}: {exc})") from None

    @classmethod
    def load(cls, path, model: MorphableModel | None = None) -> FitResult:
        """Read a ``fit.json`` written by ``headveil fit``."""
        import json

        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HeadVeilError(f"cannot read the fit {path}: {exc}") from None
        return cls.from_json(data, model, str(path))
