"""Convex Hull Escape Perturbation (CHEP), CHEP/SBC paper §2.2, eq. (10)–(11).

Notation of the paper: a gallery of identity codes ``P``; a pivot set ``Q ⊆ P`` (never perturbed);
for a target α, the perturbation set ``q_α`` = the ``q`` pivots nearest to α (eq. 10, or the
furthest, §5); ``α_mid`` = the centroid of ``q_α``; the jump ``α' = α + b (α_mid − α)`` (eq. 11,
``b = 2`` reflects α through ``α_mid``; any ``b > 1`` leaves the neighbourhood). The neighbour set
``G_α`` (the ``G ≥ dim α + 1`` gallery identities nearest to α) spans the hull ``C_G(α)``; whether α
and α' lie inside it is decided exactly by linear-programming feasibility (:func:`in_convex_hull`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from headveil.common.errors import HeadVeilError

SELECTIONS = ("nearest", "furthest")


class GalleryError(HeadVeilError, ValueError):
    """A pivot set or gallery that CHEP cannot use (too small, duplicates, contains the target)."""


@dataclass(frozen=True)
class CHEPPerturbation:
    """CHEP hyperparameters (stateless; see the module docstring for the symbols).

    Attributes:
        q: pivots per target, ``1 ≤ q ≤ min(|Q|, dim α)``.
        b: jump factor of eq. (11); 0 returns α unchanged, ``b > 1`` escapes, 2 is the paper's.
        selection: ``nearest`` (eq. 10) or ``furthest`` (§5 future work).
        hull_size: ``G``, the neighbour-set size for the hull check (default ``dim α + 1``).
        check_hull: run the LP hull test (a few ms per call at dim 100 with G = 101).
    """

    q: int = 10
    b: float = 2.0
    selection: str = "nearest"
    hull_size: int | None = None
    check_hull: bool = True

    def __post_init__(self) -> None:
        if int(self.q) != self.q or self.q < 1:
            raise GalleryError(f"q must be a positive integer; got {self.q}")
        if not np.isfinite(self.b) or self.b < 0:
            raise GalleryError(f"b must be a finite number ≥ 0; got {self.b}")
        if self.selection not in SELECTIONS:
            raise GalleryError(f"selection must be one of {SELECTIONS}; got {self.selection!r}")


@dataclass
class CHEPResult:
    """One perturbation.

    Attributes:
        alpha: ``(K,) float64`` the perturbed code α'.
        pivots: indices into the pivot array of ``q_α`` (nearest first).
        alpha_mid: ``(K,)`` centroid of ``q_α``.
        delta_norm: ‖δ‖ = ‖α' − α‖ (N(0, I) units).
        inside_before / inside_after: α / α' inside ``Hull(G_α)`` (None when not checked).
        nearest_gallery_distance: distance from α' to the nearest gallery identity (α excluded).
        nearest_gallery_distance_before: the same for α.
    """

    alpha: np.ndarray
    pivots: np.ndarray
    alpha_mid: np.ndarray
    delta_norm: float
    inside_before: bool | None = None
    inside_after: bool | None = None
    nearest_gallery_distance: float | None = None
    nearest_gallery_distance_before: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"pivots": self.pivots.tolist(), "delta_norm": self.delta_norm,
                "inside_before": self.inside_before, "inside_after": self.inside_after,
                "escaped": None if self.inside_after is None else not self.inside_after,
                "nearest_gallery_distance": self.nearest_gallery_distance,
                "nearest_gallery_distance_before": self.nearest_gallery_distance_before, "notes": self.notes}


def _as_codes(x, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim != ndim:
        raise GalleryError(f"{name} must have {ndim} dimension(s); got shape {a.shape}")
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise GalleryError(f"{name} is empty or contains NaN/inf")
    return a


def check_gallery(codes: np.ndarray, name: str = "gallery", atol: float = 1e-9) -> np.ndarray:
    """Validate ``codes (N, K)``: finite, at least one row, no duplicate identities (within ``atol``)."""
    codes = _as_codes(codes, name, 2)
    if len(codes) > 1:
        from scipy.spatial import cKDTree

        pairs = cKDTree(codes).query_pairs(atol)
        if pairs:
            i, j = sorted(next(iter(pairs)))
            raise GalleryError(f"{name} has duplicate identities (rows {i} and {j}); each identity must appear once")
    return codes


def in_convex_hull(point: np.ndarray, vertices: np.ndarray, tol: float = 1e-9) -> bool:
    """Exact test whether ``point (K,)`` lies in the convex hull of ``vertices (G, K)``.

    Solved as LP feasibility: find λ ≥ 0 with Σλ = 1 and Vᵀλ = point (HiGHS through
    ``scipy.optimize.linprog``). Works for G ≤ K + 1 as well (then the hull is a simplex or lower-
    dimensional and almost every point is outside).
    """
    from scipy.optimize import linprog

    V = _as_codes(vertices, "hull vertices", 2)
    p = _as_codes(point, "point", 1)
    if V.shape[1] != p.shape[0]:
        raise GalleryError(f"point has {p.shape[0]} components, hull vertices {V.shape[1]}")
    A_eq = np.vstack([V.T, np.ones((1, len(V)))])
    b_eq = np.concatenate([p, [1.0]])
    res = linprog(np.zeros(len(V)), A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs",
                  options={"primal_feasibility_tolerance": max(tol, 1e-10)})
    if res.status == 0:
        return True
    if res.status == 2:  # infeasible
        return False
    raise RuntimeError(f"hull LP failed: {res.message}")


def select_pivots(alpha: np.ndarray, pivots: np.ndarray, q: int, selection: str = "nearest") -> np.ndarray:
    """Indices of ``q_α`` (eq. 10): the ``q`` rows of ``pivots (Q, K)`` nearest to (or furthest
    from) ``alpha (K,)`` in L2, nearest (furthest) first. Minimising the sum of distances over
    q-subsets is solved exactly by the q individually nearest rows."""
    d = np.linalg.norm(pivots - alpha[None], axis=1)
    order = np.argsort(d if selection == "nearest" else -d, kind="stable")
    return order[:q]


def chep_perturb(alpha, pivots, params: CHEPPerturbation | None = None, gallery=None) -> CHEPResult:
    """Perturb one identity code by a pivot jump (eq. 11) and report the hull escape.

    Args:
        alpha: ``(K,)`` the target identity code (N(0, I) units).
        pivots: ``(Q, K)`` the pivot set Q; must not contain α and must not repeat an identity.
        params: :class:`CHEPPerturbation`.
        gallery: ``(P, K)`` identities for the neighbour set ``G_α`` and the nearest-identity
            distance (default: the pivots). Rows equal to α are ignored (α is not its own neighbour).

    Returns:
        :class:`CHEPResult`. An α already outside its hull is jumped anyway (paper §2.2) and noted.

    Raises:
        GalleryError: ``|Q| < q``, ``q > dim α``, duplicate pivots, α among the pivots, bad shapes.
    """
    p = params or CHEPPerturbation()
    a = _as_codes(alpha, "alpha", 1)
    Q = check_gallery(pivots, "pivot set")
    K = a.shape[0]
    if Q.shape[1] != K:
        raise GalleryError(f"pivots have {Q.shape[1]} components, alpha {K}")
    if p.q > len(Q):
        raise GalleryError(f"q = {p.q} pivots requested but the pivot set has only Q = {len(Q)} identities (need Q ≥ q)")
    if p.q > K:
        raise GalleryError(f"q = {p.q} exceeds dim α = {K} (the paper requires q ≤ dim α)")
    if np.any(np.all(np.isclose(Q, a[None], atol=1e-9, rtol=0), axis=1)):
        raise GalleryError("the pivot set contains the target identity; pivots are never perturbed (choose "
                           "pivots from other identities)")
    idx = select_pivots(a, Q, p.q, p.selection)
    mid = Q[idx].mean(axis=0)
    out = a + p.b * (mid - a)
    res = CHEPResult(out, idx, mid, float(np.linalg.norm(out - a)))
    G = Q if gallery is None else _as_codes(gallery, "gallery", 2)
    if G.shape[1] != K:
        raise GalleryError(f"gallery has {G.shape[1]} components, alpha {K}")
    G = G[~np.all(np.isclose(G, a[None], atol=1e-9, rtol=0), axis=1)]
    if len(G):
        res.nearest_gallery_distance = float(np.linalg.norm(G - out[None], axis=1).min())
        res.nearest_gallery_distance_before = float(np.linalg.norm(G - a[None], axis=1).min())
    if p.check_hull and len(G):
        g = p.hull_size or K + 1
        if len(G) < g:
            res.notes.append(f"gallery has {len(G)} identities, fewer than G = {g}: the hull is degenerate "
                             "(dimension < dim α), so almost every code lies outside it")
        near = G[np.argsort(np.linalg.norm(G - a[None], axis=1), kind="stable")[:g]]
        res.inside_before = in_convex_hull(a, near)
        res.inside_after = in_convex_hull(out, near)
        if not res.inside_before:
            res.notes.append("α was already outside Hull(G_α); jumped anyway (paper §2.2)")
    return res
