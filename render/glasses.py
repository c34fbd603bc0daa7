"""Glasses frames on a photographed face: found by their lens outlines, then kept on top of a new
face or replaced with it.

A frame is thin and long, and a skin-colour model alone misses much of it: an amber or metal rim
has nearly the skin's colour, a dark rim's edges blend with the skin. What tells a frame apart is
its shape: each lens is outlined by a closed line round the eye. :func:`find_glasses` measures the
photo's line strength (:func:`ridge_strength`, the Hessian's ridge measure of the lightness, with
the eyes resampled to :data:`EYE_WIDTH_PX`) and tries a family of lens outlines round each eye
(superellipses, :func:`lens_outlines`). An outline's *coverage* is the share of its points on a
strong line; points on the eye itself count as misses (a lens does not run over the lids), points
on a brow count for :data:`BROW_WEIGHT` (a rim may lie along it, and a brow alone is a strong line). The two lenses
are scored as a pair, mirror images across the face up to a turned head's parallax, and a face
wears glasses when the pair's worse lens is covered past :data:`GLASSES_COVERAGE`: a bare eye's
brow, lids and creases, or one side's wrinkles, fall short of that on at least one side.

:func:`frame_mask` then marks the frame: the outlines' points moved onto the rim they lie near
(:func:`_snap`) and the bridge give the rim's line; the frame's own colour is modelled from it (two
colours for a dark browline over amber rims); the pixels near that line that match it better than
the skin, and are not skin, are the frame. The eyes, the brows' cores and the lips stay the face's.

Measured in ``benchmarks/bench_glasses.py`` (section ``glasses``): frames drawn on photos without
glasses, where the settings were chosen, and the package photos' real glasses, held out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from headveil.render.face_parts import FEATURES, polygon_mask

#: Landmarks glasses are looked for by, per scheme: outer eye corners (image left, right) and inner
#: eye corners (left, right).
FRAME_LANDMARKS = {"mediapipe478": {"outer": (33, 263), "inner": (133, 362)},
                   "ibug68": {"outer": (36, 45), "inner": (39, 42)}}
#: Lightness line strength (CIELAB L*, scale-normalised ridge measure, eyes at EYE_WIDTH_PX) a
#: lens outline's point must reach to count as on a line (chosen on the development set).
LINE_STRENGTH = 8.0
#: Share of a lens outline's points (brow points weighted by BROW_WEIGHT) on a line for the lens to
#: be there; the pair's worse lens must pass. On the development set, bare faces reach at most 0.39
#: and the frames found 0.52–1.0; a thin light rim on light skin stays near 0.2–0.4, unfound.
GLASSES_COVERAGE = 0.5
#: Weight of a lens outline's point on a brow (a rim may lie along a brow, and a brow alone is a
#: strong line: such points count for less, neither free nor full).
BROW_WEIGHT = 0.5
#: Eye width (px) the photo's eye band is resampled to before its lines are measured.
EYE_WIDTH_PX = 32.0
#: How far (eye widths) a lens outline's point may move along its normal to the rim it lies near.
SNAP_RANGE = 0.2
#: How far (eye widths) from a lens outline a frame's pixels may lie.
ZONE_RANGE = 0.2
#: Distance (robust units) to the frame's own colour within which a pixel is frame.
FRAME_DISTANCE = 3.0
#: The frame colour model's floors (CIELAB L*, a*, b* in OpenCV's 8-bit units): tighter in
#: lightness than the skin model's 15 (a rim is evenly dark or light).
FRAME_FLOORS = np.array([8.0, 3.0, 3.0])
#: Skin distance (robust units) past which a frame's colour, and each of its pixels, is not this
#: face's skin (below the occluders' 4: a thin rim's pixels blend with the skin around them).
SKIN_LIMIT = 3.0
#: Half the width of the heaviest rim, as a share of the face's size.
FRAME_HALF_WIDTH = 0.025
#: How far (grid steps of 0.1 eye widths along the eyes' line) the right lens may sit off the
#: mirror image of the left one.
PARALLAX_STEPS = 6
#: Points per lens outline.
N_OUTLINE = 72


def ridge_strength(lightness: np.ndarray, sigmas: tuple[float, ...]) -> np.ndarray:
    """``(h, w) float64``: the strongest line (dark or bright) at each pixel over Gaussian scales
    ``sigmas`` (px): ``σ² (|λ₁| − |λ₂|)`` of the Hessian of the blurred ``lightness (h, w)`` (L*),
    ``|λ₁| ≥ |λ₂|`` — large across a line, small on flat skin and on round blobs (pores)."""
    import cv2

    L = np.asarray(lightness, np.float64)
    out = np.zeros_like(L)
    for s in sigmas:
        g = cv2.GaussianBlur(L, (0, 0), s)
        xx = cv2.Sobel(g, cv2.CV_64F, 2, 0, ksize=3) / 4.0
        yy = cv2.Sobel(g, cv2.CV_64F, 0, 2, ksize=3) / 4.0
        xy = cv2.Sobel(g, cv2.CV_64F, 1, 1, ksize=3) / 4.0
        half_tr = (xx + yy) / 2
        disc = np.sqrt(np.maximum(half_tr ** 2 - (xx * yy - xy ** 2), 0.0))
        a, b = np.abs(half_tr + disc), np.abs(half_tr - disc)
        out = np.maximum(out, s * s * np.abs(a - b))
    return out


#: The lens outlines' parameter axes: dx, dy (eye widths), half-width a, half-height b (eye widths), exponent p.
_AXES = (np.linspace(-0.4, 0.4, 9), np.linspace(-0.4, 0.4, 9), np.linspace(0.7, 1.6, 10), np.linspace(0.45, 1.05, 7),
         np.array([2.0, 3.0, 5.0]))


@functools.lru_cache(maxsize=1)
def _grid() -> np.ndarray:
    """``(M, 5) float64``: every outline's parameters (dx, dy, a, b, p), in :data:`_AXES` order."""
    return np.array(np.meshgrid(*_AXES, indexing="ij")).reshape(5, -1).T


@functools.lru_cache(maxsize=1)
def _mirror_index() -> np.ndarray:
    """``(M,) int``: for each outline of :func:`lens_outlines`, the one with the offset along the
    eyes' line negated (the dx axis is symmetric)."""
    return np.arange(int(np.prod([len(a) for a in _AXES]))).reshape([len(a) for a in _AXES])[::-1].reshape(-1)


def _best_along_dx(score: np.ndarray, steps: int) -> np.ndarray:
    """For each cell of the outline grid ``score`` (shaped as :data:`_AXES`), the flat index of
    the best-scoring cell within ``±steps`` along the dx axis (the other parameters equal)."""
    flat = np.arange(score.size).reshape(score.shape)
    best, where = np.full(score.shape, -np.inf), np.zeros(score.shape, np.int64)
    n = score.shape[0]
    for k in range(-steps, steps + 1):
        lo, hi = max(0, -k), min(n, n - k)  # cells i whose neighbour i + k exists
        cand = score[lo + k:hi + k]
        better = cand > best[lo:hi]
        best[lo:hi] = np.where(better, cand, best[lo:hi])
        where[lo:hi] = np.where(better, flat[lo + k:hi + k], where[lo:hi])
    return where


def lens_outlines(center: np.ndarray, eye_width: float, angle: float, height_unit: float | None = None,
                  n: int = N_OUTLINE) -> tuple[np.ndarray, np.ndarray]:
    """Candidate lens outlines round one eye: superellipses (exponents 2, 3, 5: round to nearly
    rectangular) with half-width 0.7–1.6 and half-height 0.45–1.05 eye widths, centred within
    ±0.4 eye widths across and ±0.4 up and down of the eye's centre, turned by the eyes' line
    ``angle`` (radians, image frame). Offsets and sizes across are in this eye's ``eye_width``
    (px), those up and down in ``height_unit`` (px; default ``eye_width``): a turned head
    foreshortens the far eye's width, not its height.

    Returns:
        ``(outlines (M, n, 2) float32 px, params (M, 5) float64: dx, dy, a, b (in those units), p)``.
    """
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    dx, dy, a, b, p = (g.astype(np.float32) for g in np.meshgrid(*_AXES, indexing="ij", sparse=True))
    e = 2 / np.asarray(_AXES[4])
    ux = (np.sign(c) * np.abs(c) ** e[:, None]).reshape((1,) * 4 + (len(e), n)).astype(np.float32)  # unit shapes
    uy = (np.sign(s) * np.abs(s) ** e[:, None]).reshape((1,) * 4 + (len(e), n)).astype(np.float32)
    eye_width = np.float32(eye_width)
    hu = eye_width if height_unit is None else np.float32(height_unit)
    x, y = a[..., None] * eye_width * ux, b[..., None] * hu * uy
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    ox, oy = dx[..., None] * eye_width, dy[..., None] * hu  # the centre's offset, in the eyes' frame
    cx, cy = center[0] + ca * ox - sa * oy, center[1] + sa * ox + ca * oy
    out = np.stack(np.broadcast_arrays(cx + ca * x - sa * y, cy + sa * x + ca * y), -1).reshape(-1, n, 2)
    return out, _grid()


@dataclass
class Glasses:
    """What :func:`find_glasses` found on one face.

    Attributes:
        worn: both lenses' coverage passed :data:`GLASSES_COVERAGE`.
        coverage: ``(left, right)`` the chosen pair's coverage per eye (image left first), in [0, 1].
        outlines: ``(2, n, 2) float32`` the best outline per eye (pixels of the photo).
        band_strength: ``(h, w) float32`` line strength (:func:`ridge_strength`) over the eye band
            (the box the outlines were tried in), whose top-left pixel is ``origin`` ``(x, y)``.
        eye_width: mean eye width (corner to corner, px).
        shape: ``(H, W)`` of the photo.
    """

    worn: bool
    coverage: tuple[float, float]
    outlines: np.ndarray
    band_strength: np.ndarray
    origin: tuple[int, int]
    eye_width: float
    shape: tuple[int, int]

    def strength(self) -> np.ndarray:
        """``(H, W) float32``: the line strength over the photo, 0 outside the eye band."""
        out = np.zeros(self.shape, np.float32)
        x0, y0 = self.origin
        h, w = self.band_strength.shape
        out[y0:y0 + h, x0:x0 + w] = self.band_strength
        return out


#: How many faces' :func:`find_glasses` answers are kept (keyed by a hash of the eye band's pixels,
#: the landmarks and the photo's size).
FOUND_CACHE = 4
_FOUND: dict = {}


def _cache_key(band: np.ndarray, points: np.ndarray, scheme: str, shape: tuple[int, int]) -> bytes:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for part in (np.ascontiguousarray(band), np.ascontiguousarray(points, np.float64)):
        h.update(part.tobytes())
    h.update(f"{scheme}{shape}{band.shape}".encode())
    return h.digest()


def find_glasses(photo: np.ndarray, points: np.ndarray, scheme: str) -> Glasses | None:
    """Whether one face wears glasses, and where their lenses are.

    Args:
        photo: ``(H, W, 3) uint8`` RGB.
        points: ``(L, 2)`` the face's landmarks (pixels) in ``scheme`` (``mediapipe478`` or ``ibug68``).

    Returns:
        :class:`Glasses`, or None when the scheme has no eye corners or the eyes are under 4 px wide.
    """
    import cv2

    pts = np.asarray(points, np.float64)
    lm, feats = FRAME_LANDMARKS.get(scheme), FEATURES.get(scheme)
    if lm is None or feats is None or len(pts) <= max(*lm["outer"], *lm["inner"]):
        return None
    H, W = photo.shape[:2]
    (ol, orr), (il, ir) = pts[list(lm["outer"])], pts[list(lm["inner"])]
    ew = 0.5 * (np.linalg.norm(ol - il) + np.linalg.norm(orr - ir))
    if ew < 4:
        return None
    size = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 1.0)
    # the eye band: every outline tried lies inside it
    xs, ys = np.array([ol[0], orr[0], il[0], ir[0]]), np.array([ol[1], orr[1], il[1], ir[1]])
    y0, y1 = int(max(ys.min() - 1.3 * ew, 0)), int(min(ys.max() + 1.6 * ew, H))
    x0, x1 = int(max(xs.min() - 1.7 * ew, 0)), int(min(xs.max() + 1.7 * ew, W))
    if y1 - y0 < 8 or x1 - x0 < 8:
        return Glasses(False, (0.0, 0.0), np.zeros((2, N_OUTLINE, 2), np.float32), np.zeros((0, 0), np.float32),
                       (x0, y0), float(ew), (H, W))
    # the same face searched again (deid looks for occluders a second time when a new face grows
    # past the first search): the answer is kept for the last few eye bands and landmarks
    key = _cache_key(photo[y0:y1, x0:x1], pts, scheme, (H, W))
    if key in _FOUND:
        return _FOUND[key]
    L = cv2.cvtColor(np.ascontiguousarray(photo[y0:y1, x0:x1]), cv2.COLOR_RGB2LAB)[..., 0].astype(np.float64) * (100 / 255)
    # lines are measured with the eyes at EYE_WIDTH_PX (a small face's creases are as sharp as a
    # frame's rim at its own scale; the same scales then see the same structures on every face)
    f = EYE_WIDTH_PX / ew
    h, w = L.shape
    hs, ws = max(int(round(h * f)), 8), max(int(round(w * f)), 8)
    Ls = cv2.resize(L, (ws, hs), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    band = cv2.resize(ridge_strength(Ls, (1.0, 2.0, 3.0)), (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    strength = np.zeros((H, W), np.float32)
    strength[y0:y1, x0:x1] = band
    near = cv2.dilate(strength, np.ones((3, 3), np.uint8))  # a point within 1 px of a line is on it
    g = max(1, int(0.015 * size))
    eyes = polygon_mask(pts, [feats["eye_left"]], (H, W), g) | polygon_mask(pts, [feats["eye_right"]], (H, W), g)
    brows = (polygon_mask(pts, [feats["brow_left"]], (H, W), g) | polygon_mask(pts, [feats["brow_right"]], (H, W), g)) & ~eyes
    angle = float(np.arctan2(orr[1] - ol[1], orr[0] - ol[0]))
    # per pixel: the line strength an outline's point finds there (0 on the eyes: a lens does not
    # run over the lids, so such a point is a miss) and whether it counts (not on a brow)
    line_at = np.where(eyes, 0.0, near).astype(np.float32).ravel()
    counts = np.where(brows, BROW_WEIGHT, 1.0).astype(np.float32).ravel()
    covs, sharps, outlines = [], [], []
    for o, i in ((ol, il), (orr, ir)):
        P, params = lens_outlines((o + i) / 2, float(np.linalg.norm(o - i)), angle, height_unit=float(ew))
        xi, yi = np.rint(P[..., 0]).astype(np.int32), np.rint(P[..., 1]).astype(np.int32)
        inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        lin = np.clip(yi, 0, H - 1) * W + np.clip(xi, 0, W - 1)
        v = np.where(inside, np.take(line_at, lin), 0.0)
        counted = np.take(counts, lin)
        n_counted = np.maximum(counted.sum(1), 1e-6)
        covs.append(((v > LINE_STRENGTH) * counted).sum(1) / n_counted)
        sharps.append((np.minimum(v * (0.5 / LINE_STRENGTH), 1.0) * counted).sum(1) / n_counted)
        outlines.append(P)
    # the two lenses are one frame: mirror images across the face (the right lens's offset along
    # the eyes' line is the left's negated, give or take PARALLAX_STEPS grid steps: a turned head
    # shows both lenses shifted one way, as they sit in front of the eyes; sizes in each eye's own
    # width, which the turn foreshortens alike). A pair is as covered as its worse lens.
    mirror = _mirror_index()
    score_r = covs[1] + 0.25 * sharps[1]
    shape = [len(ax) for ax in _AXES]
    best_r = _best_along_dx(score_r.reshape(shape), PARALLAX_STEPS).reshape(-1)  # right outline per left one
    right = best_r[mirror]
    # among pairs about as covered, the one on the strongest lines, then the larger (a lens holds
    # the eye's creases and bags inside it)
    area = params[:, 2] * params[:, 3]
    pair = np.minimum(covs[0], covs[1][right])
    j = int(np.argmax(pair + 0.25 * np.minimum(sharps[0], sharps[1][right]) + 0.02 * area))
    cover = [float(covs[0][j]), float(covs[1][right[j]])]
    best = [outlines[0][j], outlines[1][right[j]]]
    worn = min(cover) >= GLASSES_COVERAGE
    found = Glasses(worn, (cover[0], cover[1]), np.array(best), band, (x0, y0), float(ew), (H, W))
    _FOUND[key] = found
    while len(_FOUND) > FOUND_CACHE:
        _FOUND.pop(next(iter(_FOUND)))
    return found


def glasses_band(glasses: Glasses, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W) bool``: the box the glasses span: their lens outlines, grown by 0.8 eye widths
    across (a rim's outer corners) and 0.3 up and down (past :data:`ZONE_RANGE`, where a frame's
    pixels may lie); nothing when they are not worn."""
    H, W = shape
    out = np.zeros((H, W), bool)
    if glasses is None or not glasses.worn:
        return out
    lo, hi = glasses.outlines.reshape(-1, 2).min(0), glasses.outlines.reshape(-1, 2).max(0)
    ew = glasses.eye_width
    x0, x1 = int(max(lo[0] - 0.8 * ew - 1, 0)), int(min(hi[0] + 0.8 * ew + 2, W))
    y0, y1 = int(max(lo[1] - 0.3 * ew - 1, 0)), int(min(hi[1] + 0.3 * ew + 2, H))
    out[y0:y1, x0:x1] = True
    return out


def _bridge(glasses: Glasses) -> tuple[np.ndarray, np.ndarray]:
    """The bridge's ends ``(2,)`` px: each lens outline's point nearest the other lens, in its upper half."""
    a, b = glasses.outlines
    ua, ub = a[a[:, 1] <= np.median(a[:, 1])], b[b[:, 1] <= np.median(b[:, 1])]
    return (ua[np.argmin(np.linalg.norm(ua - b.mean(0), axis=1))],
            ub[np.argmin(np.linalg.norm(ub - a.mean(0), axis=1))])


def rim_zone(glasses: Glasses, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W) bool``: where a frame's pixels may lie: within :data:`ZONE_RANGE` eye widths of
    either lens outline or of the bridge; nothing when the glasses are not worn. A donor's bake
    leaves it out whole (rims of the skin's colour, a lens's edge tint)."""
    import cv2

    zone = np.zeros(shape, np.uint8)
    if glasses is None or not glasses.worn:
        return zone.astype(bool)
    for P in glasses.outlines:
        cv2.polylines(zone, [np.round(P).astype(np.int32)], True, 1, 1)
    pa, pb = _bridge(glasses)
    cv2.line(zone, tuple(int(v) for v in np.round(pa)), tuple(int(v) for v in np.round(pb)), 1, 1)
    r = 2 * int(np.ceil(ZONE_RANGE * glasses.eye_width)) + 1
    return cv2.dilate(zone, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (r, r))).astype(bool)


def _snap(outline: np.ndarray, strength: np.ndarray, reach: float) -> np.ndarray:
    """``(n, 2)``: each point of a closed ``outline`` moved along its normal, within ``±reach`` px,
    to the strongest line there; NaN where that line is weaker than half :data:`LINE_STRENGTH`."""
    H, W = strength.shape
    tangent = np.roll(outline, -1, 0) - np.roll(outline, 1, 0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) / np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    offsets = np.arange(-int(np.ceil(reach)), int(np.ceil(reach)) + 1, dtype=np.float64)
    cand = outline[:, None, :] + offsets[None, :, None] * normal[:, None, :]
    xi = np.clip(np.round(cand[..., 0]).astype(int), 0, W - 1)
    yi = np.clip(np.round(cand[..., 1]).astype(int), 0, H - 1)
    v = strength[yi, xi]
    k = np.argmax(v, 1)
    out = cand[np.arange(len(outline)), k]
    out[v[np.arange(len(outline)), k] < 0.5 * LINE_STRENGTH] = np.nan
    return out


def _draw_runs(canvas: np.ndarray, points: np.ndarray) -> None:
    """Join consecutive non-NaN ``points (n, 2)`` of a closed outline that lie close together."""
    import cv2

    step = np.nanmedian(np.linalg.norm(np.roll(points, -1, 0) - points, axis=1))
    for p, q in zip(points, np.roll(points, -1, 0)):
        if np.isfinite(p).all() and np.isfinite(q).all() and np.linalg.norm(p - q) <= 3 * step:
            cv2.line(canvas, tuple(int(v) for v in np.round(p)), tuple(int(v) for v in np.round(q)), 1, 1)


def frame_mask(photo: np.ndarray, points: np.ndarray, scheme: str, region: np.ndarray,
               distance: np.ndarray | None = None, glasses: Glasses | None = None) -> np.ndarray:
    """``(H, W) bool``: the glasses frame of one face; nothing when :func:`find_glasses` finds
    none, or when the rim's line has the skin's own colour (creases, or a rim the skin model
    cannot tell from skin: it is then left to the face).

    Args:
        photo: ``(H, W, 3) uint8`` RGB; points: ``(L, 2)`` landmarks (pixels) in ``scheme``.
        region: ``(H, W) bool`` where the frame may be (the searched face region).
        distance: ``(H, W) float`` the face's skin distance
            (:func:`~headveil.render.occlusion.skin_distance`, fitted outside the glasses' band);
            None: the frame's colour alone decides.
        glasses: :func:`find_glasses`'s result, when already at hand.
    """
    import cv2

    pts = np.asarray(points, np.float64)
    H, W = photo.shape[:2]
    none = np.zeros((H, W), bool)
    g = find_glasses(photo, pts, scheme) if glasses is None else glasses
    if g is None or not g.worn:
        return none
    strength = g.strength()
    size = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 1.0)
    feats = FEATURES[scheme]
    g_px = max(1, int(0.015 * size))
    eyes = polygon_mask(pts, [feats["eye_left"]], (H, W), g_px) | polygon_mask(pts, [feats["eye_right"]], (H, W), g_px)
    lips = polygon_mask(pts, [feats["lips"]], (H, W), 2)
    # a brow's core (its polygon, 1.5 % of the face in) stays the face's; a rim along its edge is frame
    core = polygon_mask(pts, [feats["brow_left"]], (H, W), 0) | polygon_mask(pts, [feats["brow_right"]], (H, W), 0)
    core = cv2.erode(core.astype(np.uint8), np.ones((2 * g_px + 1,) * 2, np.uint8)).astype(bool)
    blocked = eyes | core | lips | ~np.asarray(region, bool)
    # the rim's line: each outline point moved to the strongest line near it; and the bridge
    seeds = np.zeros((H, W), np.uint8)
    for P in g.outlines:
        _draw_runs(seeds, _snap(P, np.where(blocked, 0.0, strength), SNAP_RANGE * g.eye_width))
    pa, pb = _bridge(g)
    cv2.line(seeds, tuple(int(v) for v in np.round(pa)), tuple(int(v) for v in np.round(pb)), 1, 1)
    zone = rim_zone(g, (H, W)) & ~blocked
    seeds = seeds.astype(bool) & zone & (strength > LINE_STRENGTH)
    if seeds.sum() < 10:
        return none
    # the frame's own colour: a robust CIELAB Gaussian of its line pixels (FRAME_FLOORS), or two
    # when they split into halves of clearly different lightness (a dark browline over amber
    # rims); a colour whose pixels the skin model accepts is dropped
    lab = cv2.cvtColor(photo, cv2.COLOR_RGB2LAB).astype(np.float64)
    x = lab[seeds]
    skin_at = None if distance is None else np.asarray(distance)[seeds]
    halves = [x]
    cut = np.median(x[:, 0])
    lo, hi = x[:, 0] <= cut, x[:, 0] > cut
    if lo.sum() >= 5 and hi.sum() >= 5 and np.median(x[hi, 0]) - np.median(x[lo, 0]) > 2 * FRAME_FLOORS[0]:
        halves = [x[m] for m in (lo, hi) if skin_at is None or np.median(skin_at[m]) > SKIN_LIMIT]
    elif skin_at is not None and np.median(skin_at) <= SKIN_LIMIT:
        halves = []
    if not halves:  # the lines are the skin's own (creases), or a rim of the skin's colour
        return none
    d_frame = np.full((H, W), np.inf)
    for part in halves:
        med = np.median(part, 0)
        mad = np.maximum(np.median(np.abs(part - med), 0) * 1.4826, FRAME_FLOORS)
        d_frame = np.minimum(d_frame, np.sqrt((((lab - med) / mad) ** 2).sum(-1)))
    # no farther from the rim's line than a heavy rim's half-width
    k = 2 * int(np.ceil(FRAME_HALF_WIDTH * size)) + 1
    near_line = cv2.dilate(seeds.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
    like = zone & near_line & (d_frame < FRAME_DISTANCE)
    if distance is not None:  # nearer the frame's colour than the skin's, and not skin
        like &= (d_frame < np.asarray(distance)) & (np.asarray(distance) > SKIN_LIMIT)
    n, lab_img = cv2.connectedComponents(like.astype(np.uint8), connectivity=8)
    touched = np.unique(lab_img[seeds & like])
    return np.isin(lab_img, touched[touched > 0])
