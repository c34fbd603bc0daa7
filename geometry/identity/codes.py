"""Noise, ε-DP and keyed-rotation perturbations of the identity code (IDEudemon Step I; book ch. 5, 6, 8).

Normalised code. The identity code α of the head model is in N(0, I) units (its basis is scaled by
the per-component standard deviation), so one documented scaling maps it to [−1, 1] per component:

.. math::  z = \\mathrm{clip}(α / c, −1, 1), \\qquad α = c\\, z, \\qquad c = 3

(``CODE_SCALE``: ±3 standard deviations hold 99.7 % of the prior; a fitted α beyond that is
clipped, and the clip is reported by :func:`normalise_code`).

- :func:`perturb_noise` — ``z' = clip(z + n, −1, 1)``, ``n ~ N(0, s²)`` (IDEudemon §3.2, s = 0.25).
- :func:`perturb_laplace` — ``z' = clip(z + Lap(Δ/ε), −1, 1)`` (book eq. 5.11). The L1 sensitivity of
  the code domain ``[−1, 1]^K`` is ``Δ = max ‖z − z̃‖₁ = 2K`` (book eq. 5.12 over all possible
  inputs); clipping afterwards is post-processing and keeps the guarantee. The guarantee holds only
  if the noise is fresh and secret: drawn from the OS's entropy for every face and every run, and
  never written anywhere (``headveil deid`` does this; a fixed or published seed lets anyone
  subtract the noise and voids it). It covers the released identity code only: the image also
  carries pose, expression, light and (with photo texture) the person's own skin colours, which no
  noise here protects, and repeated releases of the same face add up (ε per release).
- :func:`rotate_keyed` / :func:`recover_keyed` — rotate the unit direction of α toward a reference
  direction derived from a secret key (book eq. 6.9 / 8.5–8.6), keeping ‖α‖; the same key undoes it,
  another key yields another identity (see the function docstrings for the exactly invertible map).
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

from headveil.common.errors import HeadVeilError

CODE_SCALE = 3.0
"""c: α = c z maps the normalised code z ∈ [−1, 1] to N(0, I) units."""

REFERENCE_MIX = 10
"""k: a key's reference direction is the normalised sum of k standard-normal codes (book ch. 6: a
combination of k identities, so it corresponds to no real person)."""


class InvalidKeyError(HeadVeilError, ValueError):
    """An unusable key (empty, unreadable)."""


def _code(alpha, name: str = "alpha") -> np.ndarray:
    a = np.asarray(alpha, np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty (K,) vector; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def normalise_code(alpha) -> tuple[np.ndarray, int]:
    """``z = clip(α / c, −1, 1)`` (``(K,) float64``) and the number of clipped components."""
    z = _code(alpha) / CODE_SCALE
    return np.clip(z, -1.0, 1.0), int(np.sum(np.abs(z) > 1.0))


def denormalise_code(z) -> np.ndarray:
    """``α = c z`` (``(K,) float64``, N(0, I) units)."""
    return CODE_SCALE * _code(z, "z")


def perturb_noise(alpha, scale: float, rng: np.random.Generator) -> np.ndarray:
    """IDEudemon Step I: ``z' = clip(z + n, −1, 1)``, ``n ~ N(0, scale²)``; returns α' ``(K,)``.

    ``scale = 0`` returns α unchanged (when α lies inside ±c)."""
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be ≥ 0; got {scale}")
    z, _ = normalise_code(alpha)
    if scale == 0:
        return _code(alpha).copy()
    return denormalise_code(np.clip(z + rng.normal(0.0, scale, z.shape), -1.0, 1.0))


def laplace_sensitivity(n_components: int) -> float:
    """L1 sensitivity of the normalised code domain ``[−1, 1]^K``: ``Δ = 2K``."""
    return 2.0 * int(n_components)


def perturb_laplace(alpha, epsilon: float, rng: np.random.Generator,
                    sensitivity: float | None = None) -> np.ndarray:
    """ε-IdentityDP Laplace mechanism on the normalised code (book eq. 5.11); returns α' ``(K,)``.

    Args:
        alpha: ``(K,)`` identity code.
        epsilon: privacy budget ε > 0 (``inf`` = no noise).
        sensitivity: Δ (default :func:`laplace_sensitivity` of K, the whole code domain).
    """
    if not (epsilon > 0):
        raise ValueError(f"epsilon must be > 0; got {epsilon}")
    z, _ = normalise_code(alpha)
    if np.isinf(epsilon):
        return _code(alpha).copy()
    delta = laplace_sensitivity(len(z)) if sensitivity is None else float(sensitivity)
    return denormalise_code(np.clip(z + rng.laplace(0.0, delta / epsilon, z.shape), -1.0, 1.0))


# -- keyed rotation -------------------------------------------------------------------------------
MIN_KEY_BYTES = 16
"""Keys shorter than 128 bits are refused (a short key can be found by trying them all)."""


def read_key(path) -> bytes:
    """The key bytes of a key file (surrounding whitespace stripped). Never logged.

    Key file format: any bytes, at least :data:`MIN_KEY_BYTES` (128 bits) after stripping
    surrounding whitespace; ``headveil keygen --out FILE`` writes a 256-bit key as 64 hex digits.
    The file must not be readable by group or others (``chmod 600 FILE``).

    Raises:
        InvalidKeyError: unreadable, group/world-readable, or shorter than 128 bits.
    """
    import os
    import stat
    from pathlib import Path

    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes().strip()
    except OSError as exc:
        raise InvalidKeyError(f"cannot read the key file {path}: {exc.strerror}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidKeyError(f"the key file {path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
                              f"run: chmod 600 {path}")
    if not data:
        raise InvalidKeyError(f"the key file {path} is empty")
    if len(data) < MIN_KEY_BYTES:
        raise InvalidKeyError(f"the key in {path} is {len(data)} byte(s); a key needs at least {MIN_KEY_BYTES} "
                              "(128 bits): make one with `headveil keygen --out FILE`")
    return data


def new_key_text() -> str:
    """A fresh 256-bit key from the OS's secure random source, as 64 hex digits."""
    import secrets

    return secrets.token_hex(32)


def key_check(key: bytes) -> str:
    """A 32-bit check value of ``key`` (HMAC-SHA-256 under a fixed label, 8 hex digits): stored with
    a keyed output so that a wrong key is reported as wrong instead of giving a plausible face. It
    tells nothing usable about the key (2³² candidates share each value)."""
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise InvalidKeyError("a key must be non-empty bytes")
    return hmac.new(bytes(key), b"headveil/id-keyed/check/v1", hashlib.sha256).hexdigest()[:8]


def reference_direction(key: bytes, n_components: int) -> np.ndarray:
    """Unit reference direction ``(K,)`` derived from ``key`` (HMAC-SHA-256 → a 256-bit seed →
    the normalised sum of :data:`REFERENCE_MIX` standard-normal codes)."""
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise InvalidKeyError("a key must be non-empty bytes")
    digest = hmac.new(bytes(key), b"headveil/id-keyed/v1", hashlib.sha256).digest()
    rng = np.random.default_rng(np.random.SeedSequence(int.from_bytes(digest, "big")))
    r = rng.standard_normal((REFERENCE_MIX, int(n_components))).sum(axis=0)
    return r / np.linalg.norm(r)


def _angle_exponent(theta_deg: float) -> float:
    if not 0 <= theta_deg < 90:
        raise ValueError(f"theta must be in [0, 90) degrees; got {theta_deg}")
    return 1.0 - np.log2(1.0 - theta_deg / 90.0)


def _plane(u: np.ndarray, r: np.ndarray) -> tuple[float, np.ndarray]:
    cos = float(np.clip(u @ r, -1.0, 1.0))
    e = u - cos * r
    n = np.linalg.norm(e)
    if n < 1e-12:
        raise HeadVeilError("the identity direction coincides with the key's reference; use another key")
    return float(np.arccos(cos)), e / n


def _map_angle(alpha, key: bytes, theta_deg: float, inverse: bool, name: str) -> np.ndarray:
    a = _code(alpha, name)
    norm = np.linalg.norm(a)
    if norm == 0:
        raise HeadVeilError("a zero identity code has no direction to rotate")
    p = _angle_exponent(theta_deg)
    r = reference_direction(key, len(a))
    psi, e = _plane(a / norm, r)
    psi_new = np.pi * (psi / np.pi) ** (1.0 / p if inverse else p)
    return norm * (np.cos(psi_new) * r + np.sin(psi_new) * e)


def rotate_keyed(alpha, key: bytes, theta_deg: float = 70.0) -> np.ndarray:
    """Rotate the direction of α toward the key's reference ``r`` in the plane span{α, r}; returns α'.

    The book rotates by a fixed θ (eq. 6.9: ``z cos θ + z₉₀ sin θ``), which cannot be undone when α
    is closer than θ to ``r`` (the rotation passes ``r`` and two codes land on one). HeadVeil uses the
    monotone angle map ``ψ' = π (ψ/π)^p`` of the angle ψ between α and ``r``, with
    ``p = 1 − log₂(1 − θ/90°)`` so that a code at the typical ψ = 90° is rotated by exactly θ; the map
    is a bijection of [0, π], so recovery is exact for every α. ‖α'‖ = ‖α‖.
    """
    return _map_angle(alpha, key, theta_deg, False, "alpha")


def recover_keyed(alpha_protected, key: bytes, theta_deg: float = 70.0) -> np.ndarray:
    """Invert :func:`rotate_keyed` with the same key and θ (a wrong key gives another identity)."""
    return _map_angle(alpha_protected, key, theta_deg, True, "alpha_protected")


def key_space_bits(key: bytes) -> float:
    """Upper bound on the key space in bits: ``min(8 · len(key), 256)`` (the HMAC digest); the real
    strength is the key's entropy (a 6-digit PIN, the book's choice, has only ~20 bits)."""
    return float(min(8 * len(key), 256))
