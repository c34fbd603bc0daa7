"""Texture filtering for minified renders: a UV atlas seen on a small face is averaged to the
render's own density before it is sampled (mip-mapping, trilinear, one level pair per render).

Without it a 2048² atlas on a face of 100 px is sampled at one texel in eight and shows as pixel
noise. Textures are ``(S, S, C) float32``; texels that are 0 in every channel are the atlas's empty
space (left out of the averages, so island borders keep their colour).
"""

from __future__ import annotations

import numpy as np

from headveil.geometry.camera import Camera
from headveil.geometry.metrics import face_normals_areas


def texture_density(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, camera: Camera,
                    visible: np.ndarray, uv_ok: np.ndarray | None = None) -> float:
    """Pixels of ``camera`` per UV unit over a rendered mesh: the median over its ``visible``
    triangle indices (those whose UVs may be interpolated) of √(pixel area / UV area); 0 when none."""
    tri = np.unique(np.asarray(visible, np.int64))
    if uv_ok is not None:
        tri = tri[np.asarray(uv_ok, bool)[tri]]
    if len(tri) == 0:
        return 0.0
    px, _ = camera.project(np.asarray(vertices, np.float64))

    def area(p):  # of the plane triangles, as a mesh at z = 0
        return face_normals_areas(np.c_[p, np.zeros(len(p))], np.asarray(faces)[tri])[1]

    a_uv = area(np.asarray(uv, np.float64))
    ok = a_uv > 1e-12
    if not ok.any():
        return 0.0
    return float(np.median(np.sqrt(area(px)[ok] / a_uv[ok])))


def mip_levels(texture: np.ndarray, density: float) -> list[tuple[np.ndarray, float]]:
    """Mip levels of ``texture (S, S, C)`` for a render that samples it at ``density`` pixels per UV
    unit, with their blend weights (trilinear filtering, one level pair per render — a face's texels
    are about evenly dense on screen): the levels ``2^k`` and ``2^(k+1)`` coarser around
    ``log2(S / density)``, weighted by its fraction; ``[(texture, 1)]`` when the render is as dense as
    the texture. Minification without it samples a 2048² atlas on a face of 100 px at one texel in
    eight, which shows as pixel noise."""
    S = texture.shape[0]
    if density <= 0 or texture.shape[1] != S or S < density:
        return [(texture, 1.0)]
    lvl = float(np.log2(S / density))
    k = int(np.floor(lvl))
    frac = lvl - k
    base = texture if k == 0 else reduce_texture(texture, 1 << k)
    if base is None:
        return [(texture, 1.0)]
    coarser = reduce_texture(base, 2) if frac > 1e-3 else None
    if coarser is None:
        return [(base, 1.0)]
    return [(base, 1.0 - frac), (coarser, frac)]


def reduce_texture(texture: np.ndarray, f: int) -> np.ndarray | None:
    """``texture (S, S, C)`` box-averaged by ``f`` (None when ``S`` is not a multiple of ``f`` or the
    result would be under 8 texels a side). Texels that are 0 in every channel are the atlas's empty
    space: left out of the averages, and the empty texels beside the islands take their neighbours'
    mean (two rings), so island borders keep their colour under bilinear lookups."""
    import cv2

    S = texture.shape[0]
    if S % f or S // f < 8:
        return None
    n = S // f
    t = np.asarray(texture, np.float32).reshape(S, S, -1)
    C = t.shape[-1]
    if C == 3:  # albedo ≥ 0: grey (positive weights) > 0 ⇔ some channel > 0, in one fast pass
        w = (cv2.cvtColor(t, cv2.COLOR_RGB2GRAY) > 0).astype(np.float32)
    else:
        w = (np.abs(t).sum(-1) > 0).astype(np.float32)
    out = np.zeros((n, n, C), np.float32)
    rows, cols = np.flatnonzero(w.max(1) > 0), np.flatnonzero(w.max(0) > 0)
    if len(rows) == 0:
        return out.reshape(n, n, *texture.shape[2:])
    # only the block-aligned box around the used texels (and the two rings grown around them)
    r0, r1 = max(rows[0] // f - 2, 0), min(rows[-1] // f + 3, n)
    c0, c1 = max(cols[0] // f - 2, 0), min(cols[-1] // f + 3, n)
    h, wd = r1 - r0, c1 - c0
    tb, wb = t[r0 * f:r1 * f, c0 * f:c1 * f], w[r0 * f:r1 * f, c0 * f:c1 * f]
    ws = cv2.resize(wb, (wd, h), interpolation=cv2.INTER_AREA).reshape(h, wd)
    ts = cv2.resize(tb, (wd, h), interpolation=cv2.INTER_AREA).reshape(h, wd, C) / np.maximum(ws, 1e-6)[..., None]
    have = ws > 0
    for _ in range(2):  # grow the islands by a texel: the mean of the filled neighbours
        num = cv2.boxFilter(np.where(have[..., None], ts, 0), -1, (3, 3), normalize=False,
                            borderType=cv2.BORDER_CONSTANT).reshape(h, wd, C)
        den = cv2.boxFilter(have.astype(np.float32), -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        ts = np.where(have[..., None], ts, num / np.maximum(den, 1e-6)[..., None])
        have = have | (den > 0)
    out[r0:r1, c0:c1] = ts
    return out.reshape(n, n, *texture.shape[2:])
