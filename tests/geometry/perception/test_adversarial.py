"""Stage IV: the universal perturbation against FaceNet, and its warp into a photo."""

import numpy as np
import pytest

from headveil.geometry.perception.adversarial import apply_to_photo, universal_perturbation

pytestmark = pytest.mark.faces


@pytest.fixture(scope="module")
def facenet_crops():
    import skimage.data

    from headveil.geometry.perception.recognizers import get_recognizer, is_available

    if not is_available("facenet"):
        pytest.skip("facenet extra not installed")
    fn = get_recognizer("facenet")
    img = skimage.data.astronaut()
    row = [r for _, r in fn._find(img)][0]
    crop = fn.align(img, row)
    return fn, np.stack([crop, crop[:, ::-1].copy()]), img, row


def test_zero_budget_is_no_perturbation(facenet_crops):
    fn, crops, _, _ = facenet_crops
    u = universal_perturbation(crops, fn._net, 0.0)
    assert np.abs(u.v).max() == 0 and u.fooling_rate == 0.0


def test_perturbation_stays_in_budget_and_pushes_embeddings_apart(facenet_crops):
    fn, crops, _, _ = facenet_crops
    u = universal_perturbation(crops, fn._net, 8.0, passes=1, steps=3, delta=0.0)
    assert u.v.shape == (160, 160, 3) and np.abs(u.v).max() <= 8.0 + 1e-5
    before = fn._net.embed_crops(crops)
    after = fn._net.embed_crops(np.clip(crops + u.v + 0.5, 0, 255).astype(np.uint8))
    d = np.linalg.norm(after - before, axis=1)
    assert (d > 0.3).all()  # a random ±8 px pattern moves FaceNet by ≈ 0.1; the attack by far more


def test_apply_to_photo_warps_through_the_alignment():
    photo = np.full((40, 60, 3), 100, np.uint8)
    v = np.full((10, 10, 3), 7.0, np.float32)
    M = np.array([[1.0, 0, -20], [0, 1.0, -5]])  # crop = photo shifted by (20, 5)
    out = apply_to_photo(photo, v, M)
    assert (out[5:14, 20:29] == 107).all() and (out[:4] == 100).all() and (out[:, :19] == 100).all()
