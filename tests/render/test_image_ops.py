import numpy as np
import pytest

from headveil.render import image_ops


def _img():
    return np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)


def test_pixelate_blocks_are_means_and_outside_is_untouched():
    img = _img()
    out = image_ops.pixelate(img, [0, 0, 4, 4], 2)
    assert np.array_equal(out[4:], img[4:]) and np.array_equal(out[:, 4:], img[:, 4:])
    # block (0:2, 0:2) of channel 0 holds 0, 3, 24, 27 → mean 13.5 → rounds to 14 (half to even)
    assert out[0, 0, 0] == out[1, 1, 0] == 14
    assert np.array_equal(image_ops.pixelate(img, [0, 0, 8, 8], 1), img)


def test_fill_blur_and_downsample():
    img = _img()
    m = image_ops.fill(img, [2, 2, 5, 5], (255, 0, 0))
    assert (m[2:5, 2:5] == [255, 0, 0]).all() and np.array_equal(m[:2], img[:2])
    assert np.array_equal(image_ops.gaussian_blur(img, [0, 0, 8, 8], 0.0), img)
    assert np.array_equal(image_ops.downsample_blur(img, [0, 0, 8, 8], 1), img)
    flat = np.full((8, 8, 3), 77, np.uint8)  # blurring a constant image changes nothing
    assert np.array_equal(image_ops.gaussian_blur(flat, [1, 1, 7, 7], 3.0), flat)
    assert np.array_equal(image_ops.downsample_blur(flat, [1, 1, 7, 7], 3), flat)


def test_boxes_and_errors():
    box = image_ops.face_box_from_landmarks(np.array([[10, 10], [20, 10], [15, 30]]), (100, 100), margin=0.0, forehead=0.5)
    assert box.tolist() == [10, 0, 20, 30]
    assert image_ops.box_mask([1, 1, 3, 2], (4, 4)).sum() == 2
    with pytest.raises(ValueError, match="overlap"):
        image_ops.pixelate(_img(), [20, 20, 30, 30], 2)
    with pytest.raises(ValueError, match="block"):
        image_ops.pixelate(_img(), [0, 0, 4, 4], 0)
    with pytest.raises(TypeError):
        image_ops.fill(_img().astype(float), [0, 0, 4, 4])
