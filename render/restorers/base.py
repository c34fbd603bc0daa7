"""The restorer registry and contract (see the package docstring)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.common.registry import Registry, UnknownNameError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "headveil.restorers"


class RestorerError(HeadVeilError):
    """A restorer cannot run (unknown name, bad model, missing dependency)."""


@dataclass
class RestoreContext:
    """What a restorer may use besides the image.

    Attributes:
        face_mask: ``(H, W) float32`` in [0, 1], where the re-rendered face shows.
        background: ``(H, W, 3) uint8`` the photo with the face region inpainted (no original face).
        face_box: ``(4,)`` ``x0, y0, x1, y1`` pixels around the face mask.
    """

    face_mask: np.ndarray
    background: np.ndarray
    face_box: np.ndarray

    @classmethod
    def from_mask(cls, face_mask: np.ndarray, background: np.ndarray, margin: float = 0.1) -> RestoreContext:
        ys, xs = np.nonzero(face_mask > 0)
        H, W = face_mask.shape
        if len(xs) == 0:
            box = np.array([0, 0, W, H], np.float64)
        else:
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            mx, my = margin * (x1 - x0), margin * (y1 - y0)
            box = np.array([max(0, x0 - mx), max(0, y0 - my), min(W, x1 + mx), min(H, y1 + my)], np.float64)
        return cls(np.asarray(face_mask, np.float32), background, box)


class Restorer:
    """Base class: subclasses set ``name`` and implement :meth:`__call__`."""

    name: str = "restorer"

    def __call__(self, image: np.ndarray, context: RestoreContext) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class UnknownRestorerError(RestorerError, UnknownNameError):
    """No restorer of that name is registered."""


RESTORERS: Registry[Callable[..., Restorer]] = Registry("restorer", entry_points=ENTRY_POINT_GROUP,
                                                          error=UnknownRestorerError)
"""Restorer factories by name; the built-ins register when :mod:`headveil.render.restorers` is imported,
plugins from the entry-point group on first lookup."""


def register_restorer(name: str, factory: Callable[..., Restorer], replace: bool = False) -> None:
    """Register ``factory(**options) -> Restorer`` under ``name``."""
    RESTORERS.register(name, factory, replace)


def available_restorers() -> list[str]:
    """Names of the registered restorers (built-ins and plugins)."""
    return RESTORERS.names()


def get_restorer(name: str, **options) -> Restorer:
    """Instantiate restorer ``name`` with its options (e.g. ``model=PATH`` for ``onnx``)."""
    return RESTORERS.get(name)(**options)


def restore(restorer: Restorer, image: np.ndarray, context: RestoreContext) -> np.ndarray:
    """Run a restorer and enforce the contract (uint8 RGB, same size)."""
    from headveil.common.images import check_rgb8

    check_rgb8(image, "restorer input")
    out = restorer(image.copy(), context)
    out = check_rgb8(np.asarray(out), f"restorer {getattr(restorer, 'name', restorer)!r} output")
    if out.shape != image.shape:
        raise RestorerError(f"restorer {restorer.name!r} returned {out.shape}, expected {image.shape}")
    return out
