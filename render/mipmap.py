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


def mip_levels(texture: np.ndarray, density: float,
               uv_box: tuple[float, float, float, float] | None = None) -> list[tuple[np.ndarray, float]]:
    """Mip levels of ``texture (S, S, C)`` for a render that samples it at ``density`` pixels per UV
    unit, with their blend weights (trilinear filtering, one level pair per render — a face's texels
    are about evenly dense on screen): the levels ``2^k`` and ``2^(k+1)`` coarser around
    ``log2(S / density)``, weighted by its fraction; ``[(texture, 1)]`` when the render is as dense as
    the texture. Minification without it samples a 2048² atlas on a face of 100 px at one texel in
    eight, which shows as pixel noise.

    ``uv_box (u0, u1, v0, v1)``: the UV rectangle the render looks up (bilinear, at most); the levels
    are then computed over it alone (the same values there, 0 elsewhere): a mouth's few pixels need
    a few texels of the atlas."""
    S = texture.shape[0]
    if density <= 0 or texture.shape[1] != S or S < density:
        return [(texture, 1.0)]
    lvl = float(np.log2(S / density))
    k = int(np.floor(lvl))
    frac = lvl - k
    # the base level must be exact wherever the coarser one reads it: over its own box, two rings and
    # the 2×2 blocks it averages
    base = texture if k == 0 else reduce_texture(texture, 1 << k, _texel_box(uv_box, S >> k, 2 * (2 + _RINGS + 1) + 2))
    if base is None:
        return [(texture, 1.0)]
    coarser = reduce_texture(base, 2, _texel_box(uv_box, base.shape[0] // 2, 2)) if frac > 1e-3 else None
    if coarser is None:
        return [(base, 1.0)]
    return [(base, 1.0 - frac), (coarser, frac)]


#: Rings of empty texels beside the islands that :func:`reduce_texture` fills (bilinear lookups at
#: an island's border read them).
_RINGS = 2


def _texel_box(uv_box, n: int, margin: int) -> tuple[int, int, int, int] | None:
    """The texel rows and columns ``(r0, r1, c0, c1)`` (ends excluded) of an ``n``² level that
    bilinear lookups inside ``uv_box (u0, u1, v0, v1)`` read, grown by ``margin`` texels; None for
    the whole level (no box)."""
    if uv_box is None:
        return None
    u0, u1, v0, v1 = uv_box
    c0, c1 = int(np.floor(u0 * n - 0.5)) - margin, int(np.floor(u1 * n - 0.5)) + 2 + margin
    r0, r1 = int(np.floor((1 - v1) * n - 0.5)) - margin, int(np.floor((1 - v0) * n - 0.5)) + 2 + margin
    return max(r0, 0), min(r1, n), max(c0, 0), min(c1, n)


def reduce_texture(texture: np.ndarray, f: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray | None:
    """``texture (S, S, C)`` box-averaged by ``f`` (None when ``S`` is not a multiple of ``f`` or the
    result would be under 8 texels a side). Texels that are 0 in every channel are the atlas's empty
    space: left out of the averages, and the empty texels beside the islands take their neighbours'
    mean (two rings), so island borders keep their colour under bilinear lookups.

    ``box (r0, r1, c0, c1)``: the rows and columns of the result that are needed (ends excluded);
    only they (and the rings around them) are computed, the same as without a box, the rest is 0.
    A ``uint8`` texture gives ``float32`` in its own units (0–255), without a float copy of all of it."""
    import cv2

    S = texture.shape[0]
    if S % f or S // f < 8:
        return None
    n = S // f
    t = np.asarray(texture).reshape(S, S, -1)
    C = t.shape[-1]
    out = np.zeros((n, n, C), np.float32)
    # the block-aligned region computed: the box asked for, grown by the rings filled around islands
    R0, R1, C0, C1 = (0, n, 0, n) if box is None else (max(box[0] - _RINGS - 1, 0), min(box[1] + _RINGS + 1, n),
                                                       max(box[2] - _RINGS - 1, 0), min(box[3] + _RINGS + 1, n))
    if R1 <= R0 or C1 <= C0:
        return out.reshape(n, n, *texture.shape[2:])
    tr = np.asarray(t[R0 * f:R1 * f, C0 * f:C1 * f], np.float32)  # a uint8 atlas converted over the region alone
    if C == 3:  # albedo ≥ 0: grey (positive weights) > 0 ⇔ some channel > 0, in one fast pass
        w = (cv2.cvtColor(np.ascontiguousarray(tr), cv2.COLOR_RGB2GRAY) > 0).astype(np.float32)
    else:
        w = (np.abs(tr).sum(-1) > 0).astype(np.float32)
    rows, cols = np.flatnonzero(w.max(1) > 0), np.flatnonzero(w.max(0) > 0)
    if len(rows) == 0:
        return out.reshape(n, n, *texture.shape[2:])
    # only the block-aligned box around the used texels (and the two rings grown around them)
    nr, nc = R1 - R0, C1 - C0
    r0, r1 = max(rows[0] // f - _RINGS, 0), min(rows[-1] // f + _RINGS + 1, nr)
    c0, c1 = max(cols[0] // f - _RINGS, 0), min(cols[-1] // f + _RINGS + 1, nc)
    h, wd = r1 - r0, c1 - c0
    tb, wb = tr[r0 * f:r1 * f, c0 * f:c1 * f], w[r0 * f:r1 * f, c0 * f:c1 * f]
    ws = cv2.resize(wb, (wd, h), interpolation=cv2.INTER_AREA).reshape(h, wd)
    ts = cv2.resize(tb, (wd, h), interpolation=cv2.INTER_AREA).reshape(h, wd, C) / np.maximum(ws, 1e-6)[..., None]
    have = ws > 0
    for _ in range(_RINGS):  # grow the islands by a texel: the mean of the filled neighbours
        num = cv2.boxFilter(np.where(have[..., None], ts, 0), -1, (3, 3), normalize=False,
                            borderType=cv2.BORDER_CONSTANT).reshape(h, wd, C)
        den = cv2.boxFilter(have.astype(np.float32), -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        ts = np.where(have[..., None], ts, num / np.maximum(den, 1e-6)[..., None])
        have = have | (den > 0)
    out[R0 + r0:R0 + r1, C0 + c0:C0 + c1] = ts
    return out.reshape(n, n, *texture.shape[2:])
