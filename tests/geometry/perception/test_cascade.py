"""The detector cascade finds every face of a group photo, small ones included."""

import numpy as np
import pytest

pytestmark = pytest.mark.faces


def _group(n_side: int = 2):
    """The astronaut pasted four times (faces of about 55–100 px) onto one canvas; returns it and the paste boxes."""
    import cv2
    import skimage.data

    a = skimage.data.astronaut()[20:300, 120:380]
    canvas = np.full((700, 1000, 3), 180, np.uint8)
    boxes = []
    for i, (scale, x, y) in enumerate(((1.0, 40, 60), (0.8, 520, 40), (0.7, 300, 380), (0.6, 760, 420))):
        im = cv2.resize(a if i % 2 == 0 else a[:, ::-1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = im.shape[:2]
        canvas[y:y + h, x:x + w] = im
        boxes.append((x, y, x + w, y + h))
    return canvas, boxes


@pytest.mark.parametrize("detector", ["mediapipe", "dlib"])
def test_every_face_of_a_group_photo_is_found(detector):
    from headveil.geometry.perception.detectors import detect_faces

    img, boxes = _group()
    found = detect_faces(img, detector)
    assert len(found) == len(boxes)
    for x0, y0, x1, y1 in boxes:  # one detection inside each pasted photo, landmarks inside it too
        inside = [d for d in found if x0 <= d.box[0] and d.box[2] <= x1 and y0 <= d.box[1] and d.box[3] <= y1]
        assert len(inside) == 1 and 40 < inside[0].size < 200  # faces of 56–99 px here
    sizes = [d.size for d in found]
    assert sizes == sorted(sizes, reverse=True)


def test_the_cascade_is_what_finds_the_small_faces():
    from headveil.geometry.perception.detectors import detect_faces

    img, boxes = _group()
    assert len(detect_faces(img, "mediapipe", cascade=False)) < len(boxes) == len(detect_faces(img, "mediapipe"))
