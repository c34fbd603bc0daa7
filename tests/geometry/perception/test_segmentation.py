"""The shipped person segmenter: a person in front, the background behind."""

import numpy as np
import pytest

pytestmark = pytest.mark.faces


def test_person_and_background_are_told_apart():
    import skimage.data

    from headveil.geometry.perception.segmentation import MODEL_PATH, person_mask

    assert MODEL_PATH.is_file() and MODEL_PATH.stat().st_size == 249505
    img = skimage.data.astronaut()
    m = person_mask(img)
    assert m.shape == img.shape[:2] and m.dtype == np.float32 and 0 <= m.min() <= m.max() <= 1
    assert np.median(m[100:200, 200:280]) > 0.9  # the face
    assert m[0:40, 0:40].mean() < 0.1  # the studio wall in the top-left corner
    with pytest.raises(ValueError):
        person_mask(np.zeros((10, 10), np.uint8))
