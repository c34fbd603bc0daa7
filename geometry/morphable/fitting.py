"""Fit the morphable model to 2D landmarks: pose, identity α and expression η.

Camera: pinhole with square pixels; the focal length is given (known camera) or set to
``focal_factor × max(W, H)`` (a typical photo). The head pose (``R``, ``t``) maps model-frame
points to the OpenCV camera frame.

Algorithm (alternating closed-form steps, IDEudemon §3.2 / CHEP §1.2):

1. Pose from the mean-shape landmarks by PnP (SQPnP, then Levenberg–Marquardt unless the joint
   refinement follows directly).
2. Shape: with the pose fixed, each landmark's projection constraint becomes linear in the
   model point X after multiplying by its depth,

   .. math:: \\frac{1}{z_i}\\big((f R_{0} + (c_x - u_i) R_{2})\\cdot X_i + f t_0 + (c_x - u_i) t_2\\big) = 0,

   (and the same for y), with :math:`X_i = \\bar L_i + S_i\\alpha + E_i\\eta` linear in the codes.
   Solved as bounded linear least squares (η in the model's expression range) with the Tikhonov
   prior :math:`\\|\\alpha\\|^2 + \\|(\\eta - \\eta_0)/\\sigma_\\eta\\|^2` (α ~ N(0, I) by
   construction of the basis), landmark noise σ = ``landmark_sigma`` × face size.
3. Pose again by PnP from the current shape (LM, warm-started); repeat (``n_iterations``).
4. Joint refinement of (pose, α, η) with the same residuals and prior by projected
   Levenberg–Marquardt (analytic Jacobian). It converges from step 1's pose to the same fit as
   from the alternation's, so by default steps 2–3 are skipped (``n_iterations=0``).

Each bounded solve eliminates the unbounded variables (pose, α) by a Cholesky solve and runs its
active set on η alone; BLAS runs on one thread (the matrices are ≤ 1000 × 170). About 3 ms per
68-point fit here (BENCHMARKS.md ``fit``).

η₀ is MediaPipe's blendshape read-out when available (same ARKit names) less the read-out's
bias on the model's neutral renders (measured when the model is built), else 0. With
``use_depth`` and a detection that carries relative depths (MediaPipe), rows
:math:`\tfrac{f}{\bar z} R_2 (X_i - \bar X) = d_i` with noise ``depth_sigma`` × σ are added.
The bounds on η are enforced by an active set: solve, clamp the violators, re-solve.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.geometry.perception.detectors import Detection
from headveil.geometry.morphable.model import MorphableModel
from headveil.geometry.transforms import euler_from_rotation, rotation_to_rodrigues

#: Expression units that landmarks alone barely tell from pose or identity (sideways jaw, gaze,
#: cheek puff, …); they get the tighter ``rare_expression_sigma`` prior.
RARE_UNITS = ("jawLeft", "jawRight", "jawForward", "mouthLeft", "mouthRight", "cheekPuff", "cheekSquintLeft",
              "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "mouthRollLower", "mouthRollUpper",
              "mouthShrugLower", "mouthShrugUpper", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft",
              "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
              "tongueOut")

#: world→camera rotation of a camera on +Z looking at the origin (OpenCV axes): a frontal head.
FRONTAL = np.diag([1.0, -1.0, -1.0])


@dataclass
class LandmarkFitConfig:
    """Settings of fit_landmarks."""

    n_iterations: int = 0
    """Alternations of linear shape and PnP pose before the joint refinement. The refinement
    started from the mean shape's PnP pose reaches the same fit (40 synthetic faces, split in two:
    face error and pose equal to 0.01 mm / 0.01° with 0 or 2 alternations, on the half used to
    choose and on the other), so by default there are none; with joint_iterations 0 they are
    the whole fit (the papers' alternating scheme)."""
    n_identity: int | None = None
    """Identity components to fit (default: all of the model's)."""
    focal_factor: float = 1.2
    """Focal length as a multiple of the larger image side when no camera is given."""
    landmark_sigma: float = 0.024
    """Landmark noise as a fraction of the face size (sets the prior's relative weight). Detector errors on faces are systematic rather than white, so a larger value than the detector's own pixel noise fits best (a sweep over 30 synthetic faces: 0.006 → 4.3 mm, 0.012 → 3.7 mm, 0.024 → 3.4 mm mean face error)."""
    identity_prior: float = 1.0
    """Multiplier of the ‖α‖² prior (1 = the model's own statistics)."""
    expression_sigma: float = 0.7
    """Std of η around η₀ in the prior. Loose enough that 68 points still open the jaw; the sweep over 30 synthetic faces moves the face error by ≤ 0.05 mm between 0.35 and 0.7."""
    rare_expression_sigma: float = 0.24
    """Std for units that 2D landmarks confuse with pose or identity (RARE_UNITS)."""
    use_blendshapes: bool = True
    """Start η from MediaPipe's blendshapes (when the detection has them)."""
    min_weight: float = 0.05
    """Landmarks with a correspondence weight below this are ignored."""
    use_depth: bool = False
    """Use the detector's relative landmark depth (MediaPipe) as a weak constraint. Off by default: on synthetic faces it did not lower the shape error (3.50 vs 3.36 mm)."""
    depth_sigma: float = 4.0
    """Noise of the relative depth as a multiple of the 2D landmark noise."""
    joint_iterations: int = 15
    """Levenberg–Marquardt steps of the final joint (pose, α, η) bounded least-squares refinement (0 disables it)."""
    max_landmarks: int | None = 240
    """Fit at most this many landmarks of a dense scheme (MediaPipe's 478): a farthest-point subset
    of the model's landmark positions, each kept point weighted by the points nearest to it (so the
    data term weighs as much as with all of them); None: every landmark. Chosen on 20 synthetic
    faces among 120–240 (240: the same face error, 1.5× faster), reported on 30 others: 3.81 mm
    against 3.82 with all 478, pose error 2.97° against 3.05°, 1.49× faster. The landmark RMSE is
    measured over every landmark either way."""
    joint_tolerance: float = 1e-4
    """The refinement stops after a step that lowers the cost by less than this fraction (1e-4:
    one step fewer than 1e-5 on most faces, the same fit to 0.001 mm; 1e-3 moves the pose)."""


@dataclass
class LandmarkFit:
    """Result of :func:`fit_landmarks`.

    Attributes:
        alpha: ``(K,) float32`` identity code (N(0, I) units).
        eta: ``(E,) float32`` expression weights.
        R: ``(3, 3)`` model → camera rotation (OpenCV camera axes).
        t: ``(3,)`` model → camera translation, metres.
        K: ``(3, 3)`` intrinsics used, pixels.
        width, height: image size.
        rmse_px: weighted landmark reprojection RMSE in pixels.
        scheme: landmark scheme used.
    """

    alpha: np.ndarray
    eta: np.ndarray
    R: np.ndarray
    t: np.ndarray
    K: np.ndarray
    width: int
    height: int
    rmse_px: float
    scheme: str

    @property
    def head_angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees of the head relative to a frontal view of this camera."""
        return euler_from_rotation(FRONTAL.T @ self.R)

    def pose_dict(self) -> dict:
        yaw, pitch, roll = self.head_angles
        return {"R": self.R.tolist(), "t": self.t.tolist(), "rodrigues": rotation_to_rodrigues(self.R).tolist(),
                "yaw_deg": yaw, "pitch_deg": pitch, "roll_deg": roll, "frame": "model -> OpenCV camera"}


def _landmark_bases(model: MorphableModel, scheme: str, n_id: int) -> tuple[_Basis, np.ndarray]:
    """Landmark rows of the model, stacked (:class:`_Basis`: mean ``(L, 3)``, identity and
    expression directions), and the landmark weights ``(L,)``, float64; cached on the model per
    (scheme, n_id)."""
    cache = model.__dict__.setdefault("_landmark_basis_cache", {})
    key = (scheme, n_id)
    if key not in cache:
        lm = model.landmark_set(scheme)
        f = model.faces[lm.face_index]  # (L, 3)
        b = lm.bary.astype(np.float64)

        def comb(arr):  # arr (..., V, 3) -> (..., L, 3)
            return np.einsum("lk,...lkd->...ld", b, arr[..., f, :])

        cache[key] = (_Basis(comb(model.vertices_mean.astype(np.float64)),
                             comb(model.shape_basis[:n_id].astype(np.float64)),
                             comb(model.expr_basis.astype(np.float64))), lm.weight.astype(np.float64))
    return cache[key]


def _landmark_subset(mean: np.ndarray, w: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices (k,), weights (k,))``: ``k`` of the landmarks with ``w > 0``, by farthest-point
    sampling of their mean positions ``mean (L, 3)`` (from the one nearest their weighted centroid;
    deterministic), each weighted by the total weight of the landmarks nearest to it."""
    valid = np.flatnonzero(w > 0)
    P = mean[valid]
    c = np.average(P, axis=0, weights=w[valid])
    chosen = [int(np.argmin(np.linalg.norm(P - c, axis=1)))]
    d = np.linalg.norm(P - P[chosen[0]], axis=1)
    for _ in range(k - 1):
        j = int(np.argmax(d))
        chosen.append(j)
        d = np.minimum(d, np.linalg.norm(P - P[j], axis=1))
    chosen = np.array(chosen)
    nearest = np.argmin(np.linalg.norm(P[:, None] - P[chosen][None], axis=2), axis=1)
    weights = np.bincount(nearest, weights=w[valid], minlength=k)
    return valid[chosen], weights


class _Basis:
    """The landmark basis stacked for BLAS: codes ``c = (α, η)`` ``(P,)``, ``P = K + E``.

    ``flat (P, L·3)`` (``X = mean + (c @ flat)`` reshaped), ``lt (L, 3, P)`` (per landmark, the
    derivative of its 3D point in the codes) and ``axes (3, L, P)`` (the same, axis-major: a row
    combination is three multiply-adds over contiguous ``(L, P)`` blocks, not L tiny matmuls)."""

    def __init__(self, Lm: np.ndarray, Ls: np.ndarray, Le: np.ndarray):
        B = np.concatenate([Ls, Le])  # (P, L, 3)
        self.mean, self.n_id = Lm, len(Ls)
        self.flat = np.ascontiguousarray(B.reshape(len(B), -1))
        self.lt = np.ascontiguousarray(B.transpose(1, 2, 0))
        self.axes = np.ascontiguousarray(B.transpose(2, 1, 0))

    def subset(self, idx: np.ndarray) -> "_Basis":
        """The basis of landmarks ``idx`` alone."""
        B = self.flat.reshape(len(self.flat), -1, 3)
        return _Basis(self.mean[idx], B[: self.n_id, idx], B[self.n_id:, idx])

    def points(self, codes: np.ndarray) -> np.ndarray:
        """``(L, 3)`` landmark points of ``codes (P,)``."""
        return self.mean + (codes @ self.flat).reshape(self.mean.shape)

    def rows(self, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``(L, P)``: per landmark, ``a_l · ∂X_l/∂c`` for row vectors ``a (L, 3)`` (into ``out``
        when given)."""
        return np.einsum("ld,dlp->lp", a, self.axes, out=out)


def _project(X: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Xc = X @ R.T + t
    z = Xc[:, 2]
    uv = (Xc @ K.T)[:, :2] / z[:, None]
    return uv, z


def _pnp(X: np.ndarray, uv: np.ndarray, K: np.ndarray, w: np.ndarray, R=None, t=None, refine: bool = True):
    """Pose of the points ``X`` seen at ``uv``: SQPnP (or the given ``R``, ``t``), then, with
    ``refine``, Levenberg–Marquardt on the reprojection error."""
    import cv2

    use = w > 0
    obj, img = X[use].astype(np.float64), uv[use].astype(np.float64)
    if R is None:
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, None, flags=cv2.SOLVEPNP_SQPNP)
        if not ok:
            raise HeadVeilError("pose initialisation (PnP) failed")
    else:
        rvec, tvec = cv2.Rodrigues(R)[0], t.reshape(3, 1).copy()
    if refine:
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, None, rvec, tvec)
    Rm = cv2.Rodrigues(rvec)[0]
    tv = tvec.reshape(3)
    if tv[2] <= 0:
        raise HeadVeilError("pose estimate puts the head behind the camera")
    return Rm, tv


def _spd_solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``H⁻¹ g`` (``g`` a vector or columns) for a symmetric positive definite ``H`` (Cholesky,
    LAPACK ``dposv``; half the work of an LU). Falls back to LU when ``H`` is not numerically
    positive definite."""
    from scipy.linalg import lapack

    if len(H) == 0:  # every variable at a bound
        return np.zeros_like(g, dtype=np.float64)
    _, x, info = lapack.dposv(H, g)
    return x if info == 0 else np.linalg.solve(H, g)


def _solve_bounded(H: np.ndarray, g: np.ndarray, lb: np.ndarray, ub: np.ndarray, max_passes: int = 8,
                   active: np.ndarray | None = None) -> np.ndarray:
    """Minimise ½xᵀHx − gᵀx subject to lb ≤ x ≤ ub (H positive definite).

    The variables without bounds (pose, α) are eliminated first by one Cholesky solve (their
    optimum is linear in the bounded ones: the Schur complement), so the active-set passes run on
    the bounded variables alone (η: 58 of 164 here) — the same optimum, a fraction of the work.

    ``active (n,) int8`` (−1 at the lower bound, +1 at the upper, 0 free), when given, is the first
    guess of the active set (e.g. the previous iteration's) and is updated in place to the final
    one: a right guess takes one solve instead of two or three."""
    bounded = np.isfinite(lb) | np.isfinite(ub)
    if bounded.all() or not bounded.any():
        return _active_set(H, g, lb, ub, max_passes, active)
    u, b = np.flatnonzero(~bounded), np.flatnonzero(bounded)
    if u[-1] < b[0]:  # unbounded first (the fitter's layout): blocks are slices, not copies
        k = len(u)
        Huu, Hub, Hbb, gu, gb = H[:k, :k], H[:k, k:], H[k:, k:], g[:k], g[k:]
    else:
        Huu, Hub, Hbb, gu, gb = H[np.ix_(u, u)], H[np.ix_(u, b)], H[np.ix_(b, b)], g[u], g[b]
    sol = _spd_solve(Huu, np.column_stack([gu, Hub]))  # [H_uu⁻¹ g_u | H_uu⁻¹ H_ub]
    base, coupling = sol[:, 0], sol[:, 1:]
    # reduced problem in the bounded variables: ½ x_bᵀ S x_b − sᵀ x_b
    S = Hbb - Hub.T @ coupling
    sub = None if active is None else active[b]
    xb = _active_set(S, gb - Hub.T @ base, lb[b], ub[b], max_passes, sub)
    if active is not None:
        active[u], active[b] = 0, sub
    x = np.empty(len(g))
    x[u], x[b] = base - coupling @ xb, xb
    return x


def _active_set(H, g, lb, ub, max_passes, active):
    """The active-set iteration of :func:`_solve_bounded`: solve on the free variables, clamp the
    violators at their bounds, release clamped ones whose gradient points inside, repeat."""
    n = len(g)
    x = np.zeros(n)
    if active is not None:
        fixed = active != 0
        x[active < 0], x[active > 0] = lb[active < 0], ub[active > 0]
        fixed &= np.isfinite(x)
    else:
        fixed = np.zeros(n, bool)
    for _ in range(max_passes):
        free = ~fixed
        if fixed.any():
            rhs = g[free] - H[np.ix_(free, fixed)] @ x[fixed]
            x[free] = _spd_solve(H[np.ix_(free, free)], rhs)
        else:  # no bound active: the whole system, no submatrix copies
            x = _spd_solve(H, g)
        lo, hi = free & (x < lb), free & (x > ub)
        if not (lo.any() or hi.any()):
            # release clamped variables whose gradient pulls them back inside
            grad = H @ x - g
            release = fixed & (((x <= lb) & (grad < -1e-9)) | ((x >= ub) & (grad > 1e-9)))
            if not release.any():
                break
            fixed &= ~release
            continue
        x[lo], x[hi] = lb[lo], ub[hi]
        fixed |= lo | hi
    if active is not None:
        active[:] = 0
        active[fixed & (x <= lb)], active[fixed & (x >= ub)] = -1, 1
    return np.clip(x, lb, ub)


def _joint_refine(basis, pts, K, sw, depth, cfg, reg, prior_mean, lb, ub, alpha, eta, R, t, code_active=None):
    """Joint bounded least squares over (rotation vector, t, α, η) with an analytic Jacobian,
    solved by a projected Levenberg–Marquardt iteration. ``code_active`` (the codes' active set of
    the alternation before) is the first guess of which codes sit at a bound."""
    import cv2

    n_id, n_e = basis.n_id, basis.flat.shape[0] - basis.n_id
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    use_depth = depth is not None

    def unpack(p):
        return p[:3], p[3:6], p[6:6 + n_id], p[6 + n_id:]

    def residuals(p):
        rv, tv, a, e = unpack(p)
        Rm = cv2.Rodrigues(rv)[0]
        X = basis.points(p[6:])
        Xc = X @ Rm.T + tv
        u = fx * Xc[:, 0] / Xc[:, 2] + cx
        v = fy * Xc[:, 1] / Xc[:, 2] + cy
        r = [(u - pts[:, 0]) * sw, (v - pts[:, 1]) * sw]
        if use_depth:
            zbar = np.average(Xc[:, 2], weights=sw ** 2)
            dz = (Xc[:, 2] - zbar) * fx / zbar
            r.append((dz - depth) * sw / cfg.depth_sigma)
        r.append(reg * np.concatenate([a, e]) - prior_mean)
        return np.concatenate(r)

    def jacobian(p):
        rv, tv = p[:3], p[3:6]
        Rm, dR = cv2.Rodrigues(rv)  # dR: (3, 9), row k = dR/drv_k flattened
        X = basis.points(p[6:])
        Xc = X @ Rm.T + tv
        z = Xc[:, 2]
        dXr = [X @ dR[k].reshape(3, 3).T for k in range(3)]  # ∂Xc/∂rv_k, (L, 3) each

        def d_params(c, out=None):  # rows c_l · ∂Xc_l/∂p for per-landmark vectors c (L, 3) → (L, 6 + P)
            out = np.empty((len(c), len(p))) if out is None else out
            for k, d in enumerate(dXr):
                np.einsum("ld,ld->l", c, d, out=out[:, k])
            out[:, 3:6] = c
            basis.rows(c @ Rm, out=out[:, 6:])
            return out

        L, zero = len(z), np.zeros_like(z)
        J = np.empty(((3 if use_depth else 2) * L, len(p)))  # the data rows, filled block by block
        # the weights sw are folded into the row vectors: the rows are linear in them
        d_params(np.stack([fx / z, zero, -fx * Xc[:, 0] / z ** 2], 1) * sw[:, None], J[:L])
        d_params(np.stack([zero, fy / z, -fy * Xc[:, 1] / z ** 2], 1) * sw[:, None], J[L:2 * L])
        if use_depth:
            dz = d_params(np.stack([zero, zero, np.ones_like(z)], 1))  # ∂Xc_z/∂p
            w2 = sw ** 2 / np.sum(sw ** 2)
            zbar = w2 @ z
            dzbar = w2 @ dz
            # d/dp of (z - zbar) * fx / zbar
            dd = fx * ((dz - dzbar) / zbar - (z - zbar)[:, None] * dzbar[None] / zbar ** 2)
            J[2 * L:] = dd * (sw / cfg.depth_sigma)[:, None]
        return J  # the data rows; the prior rows (diag(reg) on the codes) are added to H, g

    # projected Levenberg–Marquardt on the normal equations (bounds on η via the active set)
    p = np.concatenate([cv2.Rodrigues(R)[0].reshape(3), t, alpha, eta])
    lo = np.concatenate([np.full(6, -np.inf), lb])
    hi = np.concatenate([np.full(6, np.inf), ub])
    p = np.clip(p, lo, hi)
    r = residuals(p)
    cost = r @ r
    lam = 1e-3
    n_prior = n_id + n_e
    active = np.zeros(len(p), np.int8)  # the active set, carried from step to step
    if code_active is not None:
        active[6:] = code_active
    reg2, n = reg ** 2, len(p)
    stale = True  # the normal equations are rebuilt only after an accepted step
    for _ in range(cfg.joint_iterations):
        if stale:
            J = jacobian(p)
            n_data = len(J)
            # JᵀJ in float32 (half the time of float64's; only the step's direction depends on
            # it), the gradient Jᵀr in float64 (the optimum, where it vanishes, depends on it)
            J32 = J.astype(np.float32)
            H, g = (J32.T @ J32).astype(np.float64), J.T @ r[:n_data]
            H.ravel()[6 * (n + 1)::n + 1] += reg2  # the prior rows [0 | diag(reg)] without forming them
            g[6:] += reg * r[n_data:n_data + n_prior]
            scale = np.maximum(np.diag(H), 1e-9)
            stale = False
        Hd = H.copy()
        Hd.ravel()[::n + 1] += lam * scale
        step = _solve_bounded(Hd, -g, lo - p, hi - p, active=active)
        p_new = p + step
        r_new = residuals(p_new)
        cost_new = r_new @ r_new
        if cost_new < cost:
            done = cost - cost_new < cfg.joint_tolerance * cost
            p, r, cost, lam, stale = p_new, r_new, cost_new, max(lam / 3, 1e-9), True
            if done:
                break
        else:
            lam *= 8
            if lam > 1e6:
                break
    rv, tv, a, e = unpack(p)
    return a, e, cv2.Rodrigues(rv)[0], tv


def _landmark_subset_cached(model, scheme: str, n_id: int, min_weight: float, k: int):
    """``(indices (k,), weights (k,), the subset's _Basis)`` of :func:`_landmark_subset` over the
    landmarks of weight ≥ ``min_weight``; cached on the model."""
    cache = model.__dict__.setdefault("_landmark_subset_cache", {})
    key = (scheme, n_id, min_weight, k)
    if key not in cache:
        basis, w = _landmark_bases(model, scheme, n_id)
        idx, weights = _landmark_subset(basis.mean, np.where(w >= min_weight, w, 0.0), k)
        cache[key] = (idx, weights, basis.subset(idx))
    return cache[key]


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from scipy.linalg import lapack  # noqa: F401  (load scipy's BLAS before the controller looks)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def fit_landmarks(model: MorphableModel, detection: Detection, width: int, height: int,
                  cfg: LandmarkFitConfig | None = None, K: np.ndarray | None = None) -> LandmarkFit:
    """Fit pose, α and η to one detection.

    Args:
        model: the morphable model (must have landmarks of ``detection.scheme``).
        detection: detected landmarks, pixels.
        width, height: image size in pixels.
        cfg: settings.
        K: ``(3, 3)`` known intrinsics; default ``f = focal_factor × max(W, H)``, centred.

    BLAS runs on one thread during the fit: its matrices (≤ 1000 × 170) are too small for threads
    to pay (2 threads take twice as long here), and numpy's and scipy's BLAS, each with its own
    spinning pool, slow each other down when both are threaded.
    """
    with _blas_controller().limit(limits=1, user_api="blas"):
        return _fit_landmarks(model, detection, width, height, cfg, K)


def _fit_landmarks(model, detection, width, height, cfg, K) -> LandmarkFit:
    cfg = cfg or LandmarkFitConfig()
    n_id = model.n_id if cfg.n_identity is None else min(cfg.n_identity, model.n_id)
    pts = np.asarray(detection.points, np.float64)
    if not np.all(np.isfinite(pts)):
        raise ValueError("detection points contain NaN or inf")
    basis, w = _landmark_bases(model, detection.scheme, n_id)
    if pts.shape != (len(basis.mean), 2):
        raise ValueError(f"{detection.scheme} expects ({len(basis.mean)}, 2) points, got {pts.shape}")
    w = np.where(w >= cfg.min_weight, w, 0.0)
    full_basis, full_pts, full_w = basis, pts, w
    depth_in = detection.depth
    if cfg.max_landmarks is not None and (w > 0).sum() > cfg.max_landmarks:
        idx, w, basis = _landmark_subset_cached(model, detection.scheme, n_id, cfg.min_weight, int(cfg.max_landmarks))
        pts = pts[idx]
        if depth_in is not None:
            depth_in = np.asarray(depth_in)[idx]
    Lm = basis.mean
    if K is None:
        f = cfg.focal_factor * max(width, height)
        K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    K = np.asarray(K, np.float64)
    f_x, f_y, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    face = max(detection.size, 1.0)
    sigma = cfg.landmark_sigma * face
    eta0 = np.zeros(model.n_expr)
    if cfg.use_blendshapes and detection.blendshapes:
        bias = model.metadata.get("mediapipe_blendshape_bias", {})
        for i, n in enumerate(model.expr_names):
            eta0[i] = detection.blendshapes.get(n, 0.0) - bias.get(n, 0.0)
    lo_e, hi_e = model.expr_range
    eta0 = np.clip(eta0, lo_e, hi_e)
    alpha, eta = np.zeros(n_id), eta0.copy()
    X = basis.points(np.concatenate([alpha, eta]))
    # a joint refinement right after fits the pose itself: SQPnP's pose is start enough for it
    # (the same fit on 40 synthetic faces, 1.1x faster)
    R, t = _pnp(X, pts, K, w, refine=cfg.n_iterations > 0 or cfg.joint_iterations == 0)
    sw = np.sqrt(w) / sigma
    use_depth = cfg.use_depth and depth_in is not None
    depth = None if not use_depth else np.asarray(depth_in, np.float64) - np.average(depth_in, weights=w)
    e_sigma = np.array([cfg.rare_expression_sigma if n in RARE_UNITS else cfg.expression_sigma
                        for n in model.expr_names])
    reg = np.concatenate([np.full(n_id, np.sqrt(cfg.identity_prior)), 1 / e_sigma])
    prior_mean = np.concatenate([np.zeros(n_id), eta0 / e_sigma])
    lb = np.concatenate([np.full(n_id, -np.inf), np.full(model.n_expr, lo_e)])
    ub = np.concatenate([np.full(n_id, np.inf), np.full(model.n_expr, hi_e)])
    active = np.zeros(len(lb), np.int8)  # the bounded solve's active set, carried between iterations
    if use_depth:  # landmark-centred basis of the depth rows (the weights do not change)
        lt_c = basis.lt - np.average(basis.lt, axis=0, weights=w)[None]
        Mc = Lm - np.average(Lm, axis=0, weights=w)
    for _ in range(cfg.n_iterations):
        X = basis.points(np.concatenate([alpha, eta]))
        _, z = _project(X, R, t, K)
        # rows: a_i · X_i + c_i, with a = (f R_0 + (c - u) R_2) / z
        ax = (f_x * R[0][None] + (cx - pts[:, :1]) * R[2][None]) / z[:, None]
        ay = (f_y * R[1][None] + (cy - pts[:, 1:]) * R[2][None]) / z[:, None]
        cx_ = (f_x * t[0] + (cx - pts[:, 0]) * t[2]) / z
        cy_ = (f_y * t[1] + (cy - pts[:, 1]) * t[2]) / z
        A_rows, b_rows = [], []
        for a, c in ((ax, cx_), (ay, cy_)):
            # a·(Lm + Ls^T α + Le^T η) + c = 0
            A_rows.append(basis.rows(a) * sw[:, None])
            b_rows.append(-((a * Lm).sum(1) + c) * sw)
        if use_depth:
            # (f / z̄) R_2 · (X_i − X̄) = d_i, X̄ the weighted landmark centroid
            zbar = float(np.average(z, weights=w))
            r2 = R[2] * (f_x / zbar)
            swd = sw / cfg.depth_sigma
            A_rows.append((r2 @ lt_c) * swd[:, None])
            b_rows.append((depth - Mc @ r2) * swd)
        A = np.concatenate(A_rows)
        b = np.concatenate(b_rows)
        x = _solve_bounded(A.T @ A + np.diag(reg ** 2), A.T @ b + reg * prior_mean, lb, ub, active=active)
        alpha, eta = x[:n_id], x[n_id:]
        X = basis.points(x)
        R, t = _pnp(X, pts, K, w, R, t)
    if cfg.joint_iterations > 0:
        alpha, eta, R, t = _joint_refine(basis, pts, K, sw, depth, cfg, reg, prior_mean, lb, ub, alpha, eta, R, t,
                                         active)
        X = basis.points(np.concatenate([alpha, eta]))
    if basis is not full_basis:  # the error over every landmark, not only the fitted ones
        X, pts, w = full_basis.points(np.concatenate([alpha, eta])), full_pts, full_w
    uv, _ = _project(X, R, t, K)
    err = np.linalg.norm(uv - pts, axis=1)
    rmse = float(np.sqrt(np.sum(w * err ** 2) / max(np.sum(w), 1e-12)))
    a_full = np.zeros(model.n_id, np.float32)
    a_full[:n_id] = alpha
    return LandmarkFit(a_full, eta.astype(np.float32), R, t, K, int(width), int(height), rmse, detection.scheme)
