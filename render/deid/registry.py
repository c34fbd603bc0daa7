"""The registry of de-identification methods and its typed contract.

A method is a pure function ``apply(input, params, rng) -> DeidOutput`` plus a parameter dataclass;
it is registered once under a name with :func:`register_method` and found by every consumer
(``headveil evalset``, ``headveil eval``, reports) through :func:`get_method`, so methods added
later appear everywhere without changes there.

Contract (checked by the contract tests over every registered method):

- same input, parameters and seed → the same output;
- the input is never modified;
- at ``identity_strength`` a method changes nothing it is meant to change: an image method returns
  its input unchanged; a 3D method keeps the identity code exactly and still re-renders the face
  (what the pipeline itself costs), so its output is closer to the input than at any real strength;
- ``output.image`` has the input's shape and dtype (``uint8 (H, W, 3)`` RGB).

Methods on photos need ``image`` (plus landmarks or a face box; a face is detected otherwise).
Methods in 3D also need the subject's model codes, pose and camera (``needs`` lists the fields).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.common.registry import Registry, UnknownNameError
from headveil.common.images import check_rgb8


class UnknownMethodError(UnknownNameError):
    """No de-identification method of that name is registered."""


@dataclass
class DeidInput:
    """What a de-identification method may use.

    Attributes:
        image: ``(H, W, 3) uint8`` RGB photo or render (required).
        landmarks68: ``(68, 2) float64`` iBUG-68 points in pixels, if known.
        face_box: ``(4,) float64`` face box ``x0, y0, x1, y1`` in pixels, if known.
        model: the morphable model the codes belong to (3D methods).
        codes: the subject's :class:`~headveil.render.scene.SubjectCodes` (α, η, β).
        pose: the subject's :class:`~headveil.render.scene.HeadPose`.
        camera: the :class:`~headveil.geometry.camera.Camera` the image was taken with.
        rigid: model → world ``(R (3, 3), t (3,) metres)``; when None it comes from ``pose``
            (fitted photos set it directly: their pose includes the camera's frontal flip).
        light: the scene light used to render the image, if it is a render.
        background: background colour (RGB in [0, 1]) of a render.
        extras: anything else a method documents (e.g. a key for reversible methods).
    """

    image: np.ndarray
    landmarks68: np.ndarray | None = None
    face_box: np.ndarray | None = None
    model: Any = None
    codes: Any = None
    pose: Any = None
    camera: Any = None
    rigid: tuple | None = None
    light: Any = None
    background: tuple[float, float, float] | None = None
    extras: dict = field(default_factory=dict)

    def copy(self) -> DeidInput:
        """A deep-enough copy: arrays are copied, the model is shared (read-only by contract)."""
        def cp(x):
            return x.copy() if isinstance(x, np.ndarray) else (dataclasses.replace(x) if dataclasses.is_dataclass(x) and not isinstance(x, type) else x)
        return DeidInput(self.image.copy(), cp(self.landmarks68), cp(self.face_box), self.model, cp(self.codes),
                         cp(self.pose), self.camera, self.rigid, self.light, self.background,
                         dict(self.extras))

    def model_to_world(self) -> tuple[np.ndarray, np.ndarray]:
        """``(R (3, 3), t (3,))`` taking model-frame points to the world frame."""
        if self.rigid is not None:
            return np.asarray(self.rigid[0], np.float64), np.asarray(self.rigid[1], np.float64)
        if self.pose is None:
            raise HeadVeilError("a 3D method needs the head's pose or rigid transform")
        return self.pose.R, np.asarray(self.pose.translation, np.float64)


@dataclass
class DeidOutput:
    """A method's result.

    Attributes:
        image: ``(H, W, 3) uint8`` RGB, same size as the input.
        mesh: optional ``(vertices (V, 3) metres world frame, faces (F, 3), colors (V, 3) in [0, 1] | None)``.
        codes: optional protected codes (e.g. the perturbed identity α').
        metrics: method-specific numbers (e.g. the perturbation norm).
        extras: in-memory by-products (never written).
    """

    image: np.ndarray
    mesh: tuple | None = None
    codes: Any = None
    metrics: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    """In-memory by-products for callers (e.g. the composite's face mask); never written."""


@dataclass(frozen=True)
class MethodSpec:
    """A registered method."""

    name: str
    params: type
    """Dataclass of the method's parameters (its defaults are the method's defaults)."""
    apply: Callable[[DeidInput, Any, np.random.Generator], DeidOutput]
    description: str
    needs: tuple[str, ...] = ("image",)
    """:class:`DeidInput` fields that must be set."""
    strength: str | None = None
    """Name of the parameter that sets the strength (for sweeps and the zero-strength contract)."""
    identity_strength: float | None = None
    """Strength value at which nothing changes (the input image, or for 3D methods the input's code
    re-rendered)."""


METHODS: Registry[MethodSpec] = Registry("de-identification method", error=UnknownMethodError)
"""Every registered method by name (the built-ins register when :mod:`headveil.render.deid` is imported)."""


def register_method(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Register a method (raises on a duplicate name unless ``replace``)."""
    if not dataclasses.is_dataclass(spec.params):
        raise TypeError(f"{spec.name}: params must be a dataclass type")
    if spec.strength is not None and spec.strength not in {f.name for f in dataclasses.fields(spec.params)}:
        raise ValueError(f"{spec.name}: strength {spec.strength!r} is not a parameter")
    return METHODS.register(spec.name, spec, replace)


def available_methods() -> list[str]:
    """Names of all registered methods."""
    return METHODS.names()


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``."""
    return METHODS.get(name)


def _coerce(value: str, typ: Any, key: str) -> Any:
    t = typ if isinstance(typ, type) else {"int": int, "float": float, "bool": bool, "str": str}.get(str(typ), None)
    try:
        if t is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if t in (int, float, str):
            return t(value)
        if "tuple" in str(typ):
            return tuple(int(float(v)) if "int" in str(typ) else float(v) for v in value.split(","))
    except ValueError:
        raise HeadVeilError(f"parameter {key}={value!r} is not a valid {typ}") from None
    return value


def parse_method(text: str) -> tuple[MethodSpec, Any]:
    """Parse ``"name"`` or ``"name:key=value,key=value"`` into the spec and its parameter object.

    Tuple values use ``+`` between items (``mask:color=255+0+0``).
    """
    name, _, rest = text.partition(":")
    spec = get_method(name.strip())
    fields = {f.name: f for f in dataclasses.fields(spec.params)}
    kwargs = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in fields:
            raise HeadVeilError(f"{text!r}: expected key=value with key in {sorted(fields)}; got {item!r}")
        kwargs[key] = _coerce(value.replace("+", ","), fields[key].type, key)
    return spec, spec.params(**kwargs)


def method_label(spec: MethodSpec, params: Any) -> str:
    """A short stable label, e.g. ``blur:sigma=4.0`` (only non-default parameters listed)."""
    default = spec.params()
    diff = [f"{f.name}={getattr(params, f.name)}" for f in dataclasses.fields(params)
            if getattr(params, f.name) != getattr(default, f.name)]
    return spec.name + (":" + ",".join(diff) if diff else "")


def apply_method(spec: MethodSpec | str, inp: DeidInput, params: Any = None, seed: int | None = 0,
                 rng: np.random.Generator | None = None) -> DeidOutput:
    """Validate the input, run a method on a copy of it.

    Randomness: ``rng`` when given; else ``numpy.random.default_rng(seed)`` (research renders of
    synthetic subjects, reproducible); ``seed=None`` draws fresh OS entropy (what privacy noise on a
    real person needs: ``headveil deid`` never passes a seed unless asked to be insecure).

    Raises:
        UnknownMethodError: unknown name.
        HeadVeilError: a field the method needs is missing.
        ValueError / TypeError: a malformed image.
    """
    spec = get_method(spec) if isinstance(spec, str) else spec
    check_rgb8(inp.image, "input image")
    missing = [n for n in spec.needs if getattr(inp, n) is None]
    if missing:
        raise HeadVeilError(f"method {spec.name!r} needs {', '.join(missing)} in its input "
                            "(3D methods run on rendered subjects or on fitted photos)")
    params = spec.params() if params is None else params
    if not isinstance(params, spec.params):
        raise TypeError(f"method {spec.name!r} takes {spec.params.__name__}, got {type(params).__name__}")
    if rng is None:
        rng = np.random.default_rng(np.random.SeedSequence() if seed is None else seed)
    out = spec.apply(inp.copy(), params, rng)
    img = check_rgb8(out.image, f"{spec.name} output")
    if img.shape != inp.image.shape:
        raise RuntimeError(f"method {spec.name!r} returned {img.shape}, expected {inp.image.shape}")
    return out
