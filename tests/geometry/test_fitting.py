import numpy as np
import pytest

from headveil.geometry.perception.detectors import Detection
from headveil.geometry.morphable.fitting import LandmarkFitConfig, _solve_bounded, fit_landmarks
from headveil.render.scene import HeadPose, SubjectCodes, portrait_camera, posed_vertices


def test_solve_bounded_warm_start_gives_the_same_optimum_and_its_active_set():
    H, g = np.eye(3), np.array([2.0, -3.0, 0.5])
    lb, ub = np.zeros(3), np.ones(3)
    for guess in ([0, 0, 0], [1, -1, 0], [-1, 1, 1]):  # none, right, all wrong
        active = np.array(guess, np.int8)
        x = _solve_bounded(H, g, lb, ub, active=active)
        np.testing.assert_allclose(x, [1.0, 0.0, 0.5])  # clip(g) for H = I
        assert active.tolist() == [1, -1, 0]


def test_solve_bounded_matches_scipy():
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(40, 8)), rng.normal(size=40)
    lb = np.r_[np.full(4, -np.inf), np.zeros(4)]
    ub = np.r_[np.full(4, np.inf), np.full(4, 0.3)]
    x = _solve_bounded(A.T @ A, A.T @ b, lb, ub)
    ref = lsq_linear(A, b, bounds=(lb, ub), method="bvls").x
    np.testing.assert_allclose(x, ref, atol=1e-8)


def _synthetic_detection(model, scheme, pose, alpha, eta, noise=0.0, seed=0):
    cam = portrait_camera(512)
    verts = posed_vertices(model, SubjectCodes(alpha, eta, np.zeros(model.n_albedo)), pose)
    uv, _ = cam.project(model.landmarks_3d(verts, scheme))
    uv = uv + np.random.default_rng(seed).normal(0, noise, uv.shape)
    return Detection(uv, scheme, np.r_[uv.min(0), uv.max(0)], 1.0, "synthetic"), cam


@pytest.mark.parametrize("scheme", ["mediapipe478", "ibug68"])
def test_fit_recovers_pose_from_exact_landmarks(model, scheme):
    rng = np.random.default_rng(3)
    alpha = rng.standard_normal(model.n_id).astype(np.float32) * 0.5
    eta = np.zeros(model.n_expr, np.float32)
    eta[model.expr_names.index("jawOpen")] = 0.3
    pose = HeadPose(20.0, 0.0, 3.0)
    det, cam = _synthetic_detection(model, scheme, pose, alpha, eta)
    fit = fit_landmarks(model, det, 512, 512, K=cam.K)
    yaw, pitch, roll = fit.head_angles
    assert abs(yaw - 20) < 4 and abs(roll - 3) < 3 and abs(pitch) < 8
    # the default prior is tuned for detector noise (σ ≈ 2.4 % of the face, ~5 px here): the fit stays
    # well inside it; told that the landmarks are exact, it reproduces them closely
    assert fit.rmse_px < 2.5
    assert fit.eta[model.expr_names.index("jawOpen")] > 0.1
    assert np.all((fit.eta >= 0) & (fit.eta <= 1))
    exact = fit_landmarks(model, det, 512, 512, LandmarkFitConfig(landmark_sigma=0.004), K=cam.K)
    assert exact.rmse_px < 0.6 * fit.rmse_px and exact.rmse_px < 1.0


def test_fit_improves_on_mean_shape(model):
    from headveil.geometry.metrics import vertex_errors_mm

    rng = np.random.default_rng(4)
    face = model.regions["face"]
    gains = []
    for k in range(3):
        alpha = rng.standard_normal(model.n_id).astype(np.float32)
        eta = np.zeros(model.n_expr, np.float32)
        det, cam = _synthetic_detection(model, "mediapipe478", HeadPose(10.0 * k, 0, 0), alpha, eta, noise=0.5, seed=k)
        fit = fit_landmarks(model, det, 512, 512, K=cam.K)
        truth = model.vertices(alpha, eta)
        gains.append(vertex_errors_mm(model.vertices_mean, truth, face, scale=True).mean()
                     - vertex_errors_mm(model.vertices(fit.alpha, fit.eta), truth, face, scale=True).mean())
    assert np.mean(gains) > 0.3  # mm better than the mean head


def test_fit_rejects_bad_points(model):
    det = Detection(np.full((478, 2), np.nan), "mediapipe478", np.array([0, 0, 100, 100.0]), 1.0, "x")
    with pytest.raises(ValueError, match="NaN"):
        fit_landmarks(model, det, 512, 512)
    det = Detection(np.zeros((10, 2)), "ibug68", np.array([0, 0, 100, 100.0]), 1.0, "x")
    with pytest.raises(ValueError, match="68"):
        fit_landmarks(model, det, 512, 512)


def test_solve_bounded_eliminates_the_unbounded_variables_exactly():
    """Unbounded variables anywhere (not only first), bounded ones active at both ends: the Schur
    path gives BVLS's optimum, and the active set it returns is the one of the bounded variables."""
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(4)  # optimum: two variables at a lower bound, two at an upper one
    A, b = rng.normal(size=(30, 7)), rng.normal(size=30) * 3
    lb = np.array([-np.inf, 0.0, -np.inf, 0.0, -0.1, -np.inf, 0.0])
    ub = np.array([np.inf, 0.2, np.inf, 0.2, 0.1, np.inf, 0.05])
    ref = lsq_linear(A, b, bounds=(lb, ub), method="bvls").x
    for guess in (np.zeros(7, np.int8), np.array([0, 1, 0, -1, 1, 0, -1], np.int8)):  # none, mostly wrong
        active = guess.copy()
        x = _solve_bounded(A.T @ A, A.T @ b, lb, ub, active=active)
        np.testing.assert_allclose(x, ref, atol=1e-8)
        at_lo, at_hi = np.isclose(ref, lb), np.isclose(ref, ub)
        assert active.tolist() == np.where(at_lo, -1, np.where(at_hi, 1, 0)).tolist()
        assert (active[np.isinf(lb)] == 0).all()


def test_a_dense_scheme_is_fitted_on_a_spread_subset_weighing_as_much(model):
    from headveil.geometry.morphable.fitting import _landmark_bases, _landmark_subset

    basis, w = _landmark_bases(model, "mediapipe478", model.n_id)
    w = np.where(w >= LandmarkFitConfig().min_weight, w, 0.0)
    idx, weights = _landmark_subset(basis.mean, w, 240)
    assert len(set(idx.tolist())) == 240 and (w[idx] > 0).all()
    np.testing.assert_allclose(weights.sum(), w.sum())  # the data term weighs as much
    np.testing.assert_array_equal(idx, _landmark_subset(basis.mean, w, 240)[0])  # deterministic
    # spread: every landmark has a kept one nearer than the typical spacing of a 240-point cover
    d = np.linalg.norm(basis.mean[w > 0][:, None] - basis.mean[idx][None], axis=2).min(1)
    spacing = np.median(np.sort(np.linalg.norm(basis.mean[idx][:, None] - basis.mean[idx][None], axis=2), 1)[:, 1])
    assert d.max() < 1.5 * spacing
    # a fit on the subset reports its landmark error over all 478 points, and is as good as the full fit
    rng = np.random.default_rng(5)
    alpha = rng.standard_normal(model.n_id).astype(np.float32) * 0.5
    det, cam = _synthetic_detection(model, "mediapipe478", HeadPose(10.0, 5.0, 0.0), alpha,
                                    np.zeros(model.n_expr, np.float32), noise=1.0)
    sub = fit_landmarks(model, det, 512, 512, K=cam.K)
    full = fit_landmarks(model, det, 512, 512, LandmarkFitConfig(max_landmarks=None), K=cam.K)
    assert abs(sub.rmse_px - full.rmse_px) < 0.15 * full.rmse_px
    assert np.abs(np.array(sub.head_angles) - np.array(full.head_angles)).max() < 1.0
