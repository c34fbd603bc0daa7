import numpy as np
import pytest

from headveil.geometry.perception import metrics as M
from headveil.geometry.perception.recognizers import distance_matrix, pairwise_distance


def test_far_frr_eer_tar_hand_values():
    genuine = [0.1, 0.2, 0.3, 0.5]
    impostor = [0.4, 0.6, 0.7, 0.8]
    far, frr = M.far_frr(genuine, impostor, [0.25, 0.45, 0.9])
    assert far.tolist() == [0.0, 0.25, 1.0]      # impostors below the threshold
    assert frr.tolist() == [0.5, 0.25, 0.0]      # genuines at or above it
    roc = M.equal_error_rate(genuine, impostor)
    assert roc.eer == 0.25 and 0.4 < roc.eer_threshold <= 0.5
    sep = M.equal_error_rate([0.1, 0.2], [0.5, 0.6])
    assert sep.eer == 0.0 and sep.eer_threshold == pytest.approx(0.35)  # halfway between the classes
    assert M.tar_at_far(genuine, impostor, 0.0) == 0.75   # threshold 0.4: genuines 0.1, 0.2, 0.3
    assert M.tar_at_far(genuine, impostor, 0.25) == 1.0   # threshold 0.6
    assert M.verification_rate([0.1, 0.5, 0.7], 0.6) == pytest.approx(2 / 3)
    assert M.detectability([True, False, True, True]) == 0.75


def test_distances():
    assert pairwise_distance([3.0, 4.0], [0.0, 0.0], "l2") == 5.0
    assert pairwise_distance([1.0, 0.0], [0.0, 2.0], "cosine") == pytest.approx(1.0)
    assert pairwise_distance([1.0, 1.0], [2.0, 2.0], "cosine") == pytest.approx(0.0)
    assert distance_matrix(np.eye(2), np.eye(2), "l2")[0, 1] == pytest.approx(np.sqrt(2))


@pytest.mark.parametrize("clf", M.CLASSIFIERS)
def test_topk_identification(clf):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 5
    ids = np.repeat(np.arange(4), 5)
    gallery = centres[ids] + rng.normal(size=(20, 8)) * 0.1
    probes = centres + rng.normal(size=(4, 8)) * 0.1
    assert M.topk_identification(gallery, ids, probes, np.arange(4), (1, 4), clf, lam=1.0) == {1: 1.0, 4: 1.0}
    # probes that look like another identity are missed at top-1 but found by top-4 (all classes)
    wrong = M.topk_identification(gallery, ids, probes[[1, 2, 3, 0]], np.arange(4), (1, 4), clf, lam=10.0)
    assert wrong == {1: 0.0, 4: 1.0}
    with pytest.raises(ValueError, match="missing from the gallery"):
        M.topk_identification(gallery, ids, probes, [0, 1, 2, 9], (1,), clf)


def test_image_metrics_hand_values():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[:] = 1
    assert M.psnr(a, b) == pytest.approx(20 * np.log10(255))  # MSE = (1/255)²
    assert M.psnr(a, a) == float("inf")
    mask = np.zeros((8, 8), bool)
    mask[0, 0] = True
    c = a.copy()
    c[0, 0] = 255
    assert M.psnr(a, c, mask) == pytest.approx(0.0)          # MSE = 1 inside the mask
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert M.ssim(img, img) == pytest.approx(1.0)
    assert M.ssim(img, 255 - img) < 0
    with pytest.raises(ValueError, match="shape"):
        M.psnr(a, np.zeros((4, 4, 3), np.uint8))


def test_geometry_of_faces_metrics():
    lm = np.zeros((68, 2))
    lm[36], lm[45] = [0, 0], [100, 0]
    assert M.landmark_distance(lm, lm + [3, 4]) == pytest.approx(0.05)  # 5 px / 100 px
    assert M.landmark_distance(lm, lm + [3, 4], "none") == pytest.approx(5.0)
    assert M.pose_error_deg([179.0, 0, 0], [-179.0, 2.0, 0]) == pytest.approx(2.0)  # wraps around
    assert M.expression_error([0.0, 0.5], [0.2, 0.1]) == pytest.approx(0.3)


def test_ssim_values_by_hand():
    a = np.full((32, 32, 3), 100, np.uint8)
    assert M.ssim(a, a) == 1.0
    # a constant offset on a flat image: only the luminance term, (2 μa μb + C1) / (μa² + μb² + C1)
    b = a + 20
    mu_a, mu_b, C1 = 100 / 255, 120 / 255, 0.01 ** 2
    assert abs(M.ssim(a, b) - (2 * mu_a * mu_b + C1) / (mu_a ** 2 + mu_b ** 2 + C1)) < 1e-4
    m = np.zeros((32, 32), bool)
    m[:4, :4] = True
    assert abs(M.ssim(a, b, m) - M.ssim(a, b)) < 1e-6


def test_ssim_equals_scikit_images_gaussian_ssim():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    _, smap = structural_similarity(a / 255.0, b / 255.0, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, full=True)
    assert abs(M.ssim(a, b) - smap.mean()) < 1e-4


@pytest.mark.parametrize("box", [(20, 31, 40, 52), (0, 6, 0, 9), (50, 64, 70, 80)])  # inside, at corners
def test_psnr_and_ssim_of_a_local_change_equal_the_whole_images(box):
    """Both are computed on the box of the changed pixels alone; the whole map must agree."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    b = a.copy()
    y0, y1, x0, x1 = box
    b[y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0, 3))
    _, smap = structural_similarity(a / 255.0, b / 255.0, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, full=True)
    smap = smap.mean(-1)
    se = ((a / 255.0 - b / 255.0) ** 2).mean(-1)
    mask = np.zeros((64, 80), bool)
    mask[1:62:3, 1:78:2] = True
    assert abs(M.ssim(a, b) - smap.mean()) < 1e-5
    assert abs(M.ssim(a, b, mask) - smap[mask].mean()) < 1e-5
    assert M.psnr(a, b) == pytest.approx(10 * np.log10(1 / se.mean()), rel=1e-12)
    assert M.psnr(a, b, mask) == pytest.approx(10 * np.log10(1 / se[mask].mean()), rel=1e-12)
    assert M.psnr(a, b, ~mask & (se == 0)) == float("inf")  # only unchanged pixels under the mask
    grey = ((a[..., 0] / 255.0 - b[..., 0] / 255.0) ** 2).mean()
    assert M.psnr(a[..., 0].copy(), b[..., 0].copy()) == pytest.approx(10 * np.log10(1 / grey), rel=1e-12)
    assert M.psnr(a / 255.0, b / 255.0) == pytest.approx(M.psnr(a, b), rel=1e-12)  # float images alike


def test_face_interior_and_sharpness_ratio():
    import cv2

    # landmarks on a 100 px square: its hull eroded by 4 % of 100 px (a 5 px kernel: 2 px a side)
    pts = np.array([[50, 50], [150, 50], [150, 150], [50, 150], [100, 100]], float)
    inner = M.face_interior(pts, (200, 200))
    ys, xs = np.nonzero(inner)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (52, 148, 52, 148)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    assert M.sharpness_ratio(img, img, inner) == pytest.approx(1.0)
    soft = cv2.GaussianBlur(img, (0, 0), 1.0)
    assert M.sharpness_ratio(img, soft, inner) < 0.1 < 10 < M.sharpness_ratio(soft, img, inner)
