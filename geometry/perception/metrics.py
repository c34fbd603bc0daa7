"""Privacy and utility metrics: pure functions of embeddings, distances, images and codes.

Privacy (the recognizer is the attacker; distances are "smaller = more similar", see
:mod:`.recognizers`):

- DIS: the identity distance between an original and its protected version (IDEudemon §4.1).
- verification rate at a threshold: the fraction of (original, protected) pairs still matched.
- ROC of genuine/impostor distances: FAR, FRR, the equal-error rate and its threshold, TAR@FAR.
- top-κ closed-set identification: classifiers trained on gallery embeddings (CHEP §2.5: SVM and
  logistic regression — L2 one-vs-rest, L2 multinomial, L1 multinomial — with λ ∈ {1, 10}, i.e.
  ``C = 1/λ``) rank the identities of protected probes; accuracy = true identity in the top κ.
- detectability: the fraction of protected faces the recognizer's own detector still finds.

Utility: PSNR, SSIM (whole image or inside a mask), landmark distance (normalised by the
inter-ocular distance), head-pose error (degrees), expression error (blendshape / η distances).

Naturalness: face-region sharpness, the variance of the Laplacian of the grey image inside the
landmark hull eroded by 4 % of the face (:func:`face_interior`, :func:`sharpness_ratio`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The classifiers of the top-κ identification attack: name → (penalty, multi-class scheme).
CLASSIFIERS = ("svm", "logreg_l2_ovr", "logreg_l2_multinomial", "logreg_l1_multinomial")


def _as_1d(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def verification_rate(distances, threshold: float) -> float:
    """Fraction of pairs matched: ``distance < threshold`` (NaN for no pairs)."""
    d = _as_1d(distances, "distances")
    return float((d < threshold).mean()) if d.size else float("nan")


def far_frr(genuine, impostor, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """False accept / false reject rates at each threshold (match = ``distance < threshold``).

    Args:
        genuine: ``(G,)`` distances of same-identity pairs.
        impostor: ``(I,)`` distances of different-identity pairs.
        thresholds: ``(T,)``.

    Returns:
        ``far (T,)`` = fraction of impostors below the threshold, ``frr (T,)`` = fraction of
        genuines at or above it.
    """
    g, i = np.sort(_as_1d(genuine, "genuine")), np.sort(_as_1d(impostor, "impostor"))
    if g.size == 0 or i.size == 0:
        raise ValueError("far_frr needs at least one genuine and one impostor distance")
    t = _as_1d(thresholds, "thresholds")
    far = np.searchsorted(i, t, side="left") / i.size
    frr = 1.0 - np.searchsorted(g, t, side="left") / g.size
    return far, frr


@dataclass
class RocSummary:
    """Equal-error operating point and rates of one recognizer on one set."""

    eer: float
    eer_threshold: float
    n_genuine: int
    n_impostor: int

    def to_json(self) -> dict:
        return self.__dict__.copy()


def equal_error_rate(genuine, impostor) -> RocSummary:
    """EER: the threshold where FAR = FRR (the midpoint of the crossing between candidate thresholds).

    Candidate thresholds are the midpoints between consecutive pooled distances (plus the ends),
    so a perfectly separated set has EER 0 with the threshold halfway between the classes.
    """
    g, i = _as_1d(genuine, "genuine"), _as_1d(impostor, "impostor")
    pooled = np.unique(np.concatenate([g, i]))
    cand = np.concatenate([[pooled[0] - 1e-9], 0.5 * (pooled[1:] + pooled[:-1]), [pooled[-1] + 1e-9]])
    far, frr = far_frr(g, i, cand)
    k = int(np.argmin(np.abs(far - frr) + 1e-12 * np.arange(len(cand))))
    return RocSummary(float(0.5 * (far[k] + frr[k])), float(cand[k]), int(g.size), int(i.size))


def tar_at_far(genuine, impostor, far: float) -> float:
    """True accept rate at the largest threshold whose FAR does not exceed ``far``."""
    g, i = np.sort(_as_1d(genuine, "genuine")), np.sort(_as_1d(impostor, "impostor"))
    if not 0 <= far <= 1:
        raise ValueError(f"far must lie in [0, 1]; got {far}")
    n_accept = int(np.floor(far * i.size + 1e-9))  # impostors allowed below the threshold
    thr = i[n_accept] if n_accept < i.size else np.inf  # match is strict: d < thr
    return float((g < thr).mean())


def _make_classifier(name: str, lam: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    C = 1.0 / lam
    if name == "svm":
        return LinearSVC(C=C, max_iter=20000)
    if name == "logreg_l2_ovr":
        return OneVsRestClassifier(LogisticRegression(C=C, max_iter=5000))
    if name == "logreg_l2_multinomial":
        return LogisticRegression(C=C, max_iter=5000)
    if name == "logreg_l1_multinomial":
        return LogisticRegression(C=C, l1_ratio=1.0, solver="saga", max_iter=5000)
    raise ValueError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")


def fit_identifier(gallery, gallery_ids, classifier: str = "svm", lam: float = 1.0):
    """Train an identity classifier on ``gallery (N, D)`` embeddings with labels ``gallery_ids (N,)``
    (≥ 2 identities; ``C = 1/λ``); returns the fitted scikit-learn estimator."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X, y = np.asarray(gallery, np.float64), np.asarray(gallery_ids)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"gallery must be (N, D) with N labels; got {X.shape} and {len(y)} labels")
    if len(np.unique(y)) < 2:
        raise ValueError("top-κ identification needs at least 2 gallery identities")
    clf = _make_classifier(classifier, lam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return clf


def topk_accuracy(clf, probes, probe_ids, ks=(1, 5)) -> dict[int, float]:
    """Top-κ accuracy of a fitted identifier (:func:`fit_identifier`) on ``probes (M, D)``."""
    P, py = np.asarray(probes, np.float64), np.asarray(probe_ids)
    if P.ndim != 2 or len(P) != len(py):
        raise ValueError(f"probes must be (M, D) with M labels; got {P.shape} and {len(py)} labels")
    unknown = set(py.tolist()) - set(clf.classes_.tolist())
    if unknown:
        raise ValueError(f"probe identities missing from the gallery: {sorted(unknown)[:5]}")
    scores = clf.decision_function(P)
    if scores.ndim == 1:  # binary: positive = classes[1]
        scores = np.stack([-scores, scores], 1)
    order = np.argsort(-scores, axis=1)
    rank = np.argmax(clf.classes_[order] == py[:, None], axis=1)
    return {int(k): float((rank < k).mean()) for k in ks}


def topk_identification(gallery, gallery_ids, probes, probe_ids, ks=(1, 5), classifier: str = "svm",
                        lam: float = 1.0) -> dict[int, float]:
    """Closed-set top-κ identification accuracy of probes against a trained gallery classifier.

    Args:
        gallery: ``(N, D)`` embeddings of known identities (≥ 2 identities).
        gallery_ids: ``(N,)`` identity labels.
        probes: ``(M, D)`` embeddings to identify (e.g. protected images).
        probe_ids: ``(M,)`` their true identities (must occur in the gallery).
        ks: the κ values.
        classifier: one of :data:`CLASSIFIERS`.
        lam: regularisation λ (``C = 1/λ``).

    Returns:
        ``{κ: accuracy}`` (fraction of probes whose identity is among the κ best scores).
    """
    X, P = np.asarray(gallery, np.float64), np.asarray(probes, np.float64)
    if X.ndim != 2 or P.ndim != 2 or X.shape[1] != P.shape[1]:
        raise ValueError(f"gallery (N, D) and probes (M, D) must share D; got {X.shape} and {P.shape}")
    unknown = set(np.asarray(probe_ids).tolist()) - set(np.asarray(gallery_ids).tolist())
    if unknown:
        raise ValueError(f"probe identities missing from the gallery: {sorted(unknown)[:5]}")
    return topk_accuracy(fit_identifier(X, gallery_ids, classifier, lam), P, probe_ids, ks)


def detectability(detected) -> float:
    """Fraction of faces the detector found (``detected``: bools)."""
    d = np.asarray(detected, dtype=bool).reshape(-1)
    return float(d.mean()) if d.size else float("nan")


# -- utility -------------------------------------------------------------------------------------

def _check_shapes(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"images must be (H, W) or (H, W, C); got {a.shape}")


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _check_shapes(a, b)
    a, b = np.asarray(a), np.asarray(b)
    to01 = lambda x: x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)  # noqa: E731
    return to01(a), to01(b)


def _changed_box(a: np.ndarray, b: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box (row and column slices) of the pixels where ``a`` and ``b`` differ in any
    channel; None when they are identical. An edited face in a photo's window is a small part of
    it: the metrics need only its box."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == np.uint8 and b.dtype == np.uint8:  # OpenCV's |a − b|, rows first: ≈ 6× numpy's a != b
        import cv2

        H, W = a.shape[:2]
        d = cv2.absdiff(np.ascontiguousarray(a), np.ascontiguousarray(b)).reshape(H, -1)
        rows = np.flatnonzero(d.max(1))
        if len(rows) == 0:
            return None
        band = d[rows[0]:rows[-1] + 1].reshape(-1, W, d.shape[1] // W).max(0).max(1)
        cols = np.flatnonzero(band)
    else:
        diff = a != b
        if diff.ndim == 3:
            diff = diff.any(-1)
        rows, cols = np.flatnonzero(diff.any(1)), np.flatnonzero(diff.any(0))
        if len(rows) == 0:
            return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _grown(box: tuple[slice, slice], grow: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """``box`` grown by ``grow`` pixels on every side, clipped to an image of ``shape (H, W)``."""
    return (slice(max(box[0].start - grow, 0), min(box[0].stop + grow, shape[0])),
            slice(max(box[1].start - grow, 0), min(box[1].stop + grow, shape[1])))


def _mask_of(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask, bool)
    if m.shape != shape:
        raise ValueError(f"mask must be (H, W) = {shape}; got {m.shape}")
    if not m.any():
        raise ValueError("mask is empty")
    return m


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of two images (uint8, or float in [0, 1]) over all pixels or a ``(H, W)`` bool mask
    (the squared error averaged over the channels, then over the pixels; peak 1). Computed on the
    box of the pixels that differ (the rest add zero error).

    ``inf`` for identical images.
    """
    _check_shapes(a, b)
    a, b = np.asarray(a), np.asarray(b)
    m = _mask_of(mask, a.shape[:2])
    n = a.shape[0] * a.shape[1] if m is None else int(m.sum())
    box = _changed_box(a, b)
    if box is None:
        return float("inf")
    if a.dtype == np.uint8 and b.dtype == np.uint8:  # exact integer squared errors, in 1/255² units
        d = a[box].astype(np.int32) - b[box]
        se, peak = d * d, 255.0 ** 2
    else:
        a, b = _check_pair(a[box], b[box])
        se, peak = (a - b) ** 2, 1.0
    c = se.shape[-1] if se.ndim == 3 else 1
    if se.ndim == 3:
        se = se.sum(-1)
    total = float(se.sum(dtype=np.float64) if m is None else se[m[box]].sum(dtype=np.float64))
    return float("inf") if total == 0 else float(10 * np.log10(peak * n * c / total))


def face_interior(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W) bool``: the convex hull of a face's landmarks ``points (N, 2)`` (pixels, x right, y
    down) eroded by 4 % of the face's size (at least 3 px): the face without its outline."""
    import cv2

    pts = np.asarray(points, np.float64)
    hull = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    k = max(3, int(0.04 * max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))) | 1
    return cv2.erode(hull, np.ones((k, k), np.uint8)) > 0


def laplacian_variance(image: np.ndarray, mask: np.ndarray) -> float:
    """Variance of the Laplacian of ``image (H, W, 3) uint8`` RGB's grey levels (0–255) inside
    ``mask (H, W) bool``: its finest detail (noise, texture, edges)."""
    import cv2

    g = cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(g, cv2.CV_64F)[np.asarray(mask, bool)].var())


def sharpness_ratio(original: np.ndarray, output: np.ndarray, mask: np.ndarray) -> float:
    """How much sharper ``output`` is than ``original`` (both ``(H, W, 3) uint8``) inside ``mask``:
    the ratio of their :func:`laplacian_variance` (1 = as sharp; the naturalness limits are 0.7–1.3)."""
    return laplacian_variance(output, mask) / max(laplacian_variance(original, mask), 1e-9)


#: The SSIM window's radius in pixels (11 taps).
SSIM_RADIUS = 5


def _gauss11(x: np.ndarray) -> np.ndarray:
    """Gaussian blur σ = 1.5 over an 11-tap window (truncated at 3.5 σ), mirrored borders: the SSIM window."""
    import cv2

    return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SSIM (Wang et al. 2004: Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03, population
    covariances) of two images (uint8, or float in [0, 1]), its map averaged over the channels, then
    over the image or inside a ``(H, W)`` bool mask. Scikit-image's
    ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)`` full map,
    computed in float32 with OpenCV blurs: ≈ 10× faster, within 1e-4 of it (the most on flat
    patches); identical images give exactly 1. The map is exactly 1 wherever the two images agree
    over a whole window (:data:`SSIM_RADIUS` px around), so it is computed on the box of the pixels
    that differ alone (grown by the window, and again so that box's own border does not count)."""
    _check_shapes(a, b)
    a, b = np.asarray(a), np.asarray(b)
    shape = a.shape[:2]
    m = _mask_of(mask, shape)
    changed = _changed_box(a, b)
    if changed is None:
        return 1.0
    inner = _grown(changed, SSIM_RADIUS, shape)  # where the map can differ from 1
    box = _grown(changed, 2 * SSIM_RADIUS, shape)  # what the map there is computed from
    a, b = _check_pair(a[box], b[box])
    a, b = a.astype(np.float32), b.astype(np.float32)
    C1, C2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = _gauss11(a), _gauss11(b)
    va, vb, cov = _gauss11(a * a), _gauss11(b * b), _gauss11(a * b)
    va -= mu_a * mu_a
    vb -= mu_b * mu_b
    cov -= mu_a * mu_b
    smap = ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a * mu_a + mu_b * mu_b + C1) * (va + vb + C2))
    if smap.ndim == 3:
        smap = smap.mean(-1)
    sub = (slice(inner[0].start - box[0].start, inner[0].stop - box[0].start),
           slice(inner[1].start - box[1].start, inner[1].stop - box[1].start))
    smap = smap[sub]
    if m is None:  # the pixels outside the inner box add exactly 1 each
        n = shape[0] * shape[1]
        return float((smap.sum(dtype=np.float64) + (n - smap.size)) / n)
    m_in = m[inner]
    n = int(m.sum())
    return float((smap[m_in].sum(dtype=np.float64) + (n - int(m_in.sum()))) / n)


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Wang, Simoncelli & Bovik (2003): the exponents of the five scales."""


def ms_ssim(a: np.ndarray, b: np.ndarray, weights=MS_SSIM_WEIGHTS) -> float:
    """Multi-scale SSIM of two images (uint8 or float [0, 1]; colour is compared on its luma
    Y = 0.299 R + 0.587 G + 0.114 B): Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03, 2 × 2 mean
    downsampling between scales; contrast-structure at every scale, luminance at the coarsest.
    Identical images give 1. Images need ≥ 2^(scales−1) × 7 pixels per side (else fewer scales
    are used, their weights renormalised)."""
    from scipy.ndimage import gaussian_filter

    a, b = _check_pair(a, b)
    if a.ndim == 3:
        y = np.array([0.299, 0.587, 0.114])
        a, b = a[..., :3] @ y, b[..., :3] @ y
    w = np.asarray(weights, np.float64)
    n = len(w)
    while n > 1 and min(a.shape) < 7 * 2 ** (n - 1):
        n -= 1
    w = w[:n] / w[:n].sum()
    C1, C2 = 0.01 ** 2, 0.03 ** 2
    f = lambda x: gaussian_filter(x, 1.5, truncate=3.5)  # noqa: E731  (an 11-tap window)
    out = 1.0
    for s in range(n):
        mu_a, mu_b = f(a), f(b)
        va, vb, cov = f(a * a) - mu_a ** 2, f(b * b) - mu_b ** 2, f(a * b) - mu_a * mu_b
        cs = float(np.mean((2 * cov + C2) / (va + vb + C2)))
        if s == n - 1:
            lum = float(np.mean((2 * mu_a * mu_b + C1) / (mu_a ** 2 + mu_b ** 2 + C1)))
            out *= max(lum * cs, 0.0) ** w[s]
        else:
            out *= max(cs, 0.0) ** w[s]
            H, W = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
            a = a[:H, :W].reshape(H // 2, 2, W // 2, 2).mean((1, 3))
            b = b[:H, :W].reshape(H // 2, 2, W // 2, 2).mean((1, 3))
    return float(out)


def landmark_distance(a, b, normalise: str = "interocular") -> float:
    """Mean point distance between two landmark sets ``(N, 2)`` in pixels.

    ``normalise="interocular"`` divides by the outer-eye-corner distance of ``a`` (iBUG-68
    points 36 and 45), ``"none"`` returns pixels.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"landmarks must be matching (N, 2) arrays; got {a.shape} and {b.shape}")
    d = float(np.linalg.norm(a - b, axis=1).mean())
    if normalise == "none":
        return d
    if normalise == "interocular":
        if len(a) != 68:
            raise ValueError("interocular normalisation needs iBUG-68 points")
        return d / float(np.linalg.norm(a[36] - a[45]))
    raise ValueError(f"normalise must be 'interocular' or 'none'; got {normalise!r}")


def pose_error_deg(a, b) -> float:
    """Largest absolute difference of (yaw, pitch, roll) in degrees."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != (3,) or b.shape != (3,):
        raise ValueError("poses must be (yaw, pitch, roll) triples in degrees")
    return float(np.abs((a - b + 180.0) % 360.0 - 180.0).max())


def expression_error(a, b) -> float:
    """Mean absolute difference of two expression vectors (η codes or 52 blendshape scores in [0, 1])."""
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"expression vectors differ in length: {a.size} vs {b.size}")
    return float(np.abs(a - b).mean())
