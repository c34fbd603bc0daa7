import numpy as np
import pytest

from headveil.common.errors import MissingDependencyError
from headveil.geometry.perception.recognizers import RECOGNIZERS, SFaceRecognizer, get_recognizer, is_available

pytestmark = pytest.mark.faces


@pytest.fixture(scope="module")
def photos():
    import skimage.data

    from headveil.pipelines.evaluate.calibration import package_photos

    named = dict(package_photos())
    return skimage.data.astronaut(), named["grace_hopper"]


@pytest.mark.parametrize("name", RECOGNIZERS)
def test_same_person_matches_other_person_does_not(name, photos):
    astronaut, hopper = photos
    rec = get_recognizer(name)
    a = rec.embed(astronaut)
    flipped = rec.embed(np.ascontiguousarray(astronaut[:, ::-1]))
    h = rec.embed(hopper)
    assert a.detected and a.vector.shape == (128,) and a.vector.dtype == np.float32
    assert rec.is_match(rec.distance(a, flipped))       # measured: dlib 0.20, sface 0.05
    assert not rec.is_match(rec.distance(a, h))
    assert rec.distance(a, flipped) < 0.5 * rec.distance(a, h)


@pytest.mark.parametrize("name", RECOGNIZERS)
def test_known_landmarks_embed_what_the_detector_misses(name, photos):
    from headveil.geometry.perception.detectors import detect_faces

    astronaut, _ = photos
    lm = detect_faces(astronaut, "dlib")[0].points
    rec = get_recognizer(name)
    via_lm = rec.embed(astronaut, lm)
    assert via_lm.aligned_from == "landmarks" and via_lm.detected
    assert rec.is_match(rec.distance(via_lm, rec.embed(astronaut)))
    blank = np.full_like(astronaut, 128)
    assert rec.embed(blank) is None
    missed = rec.embed(blank, lm)  # still embedded, reported as not detected
    assert missed is not None and not missed.detected
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        rec.embed(astronaut, lm[:5])


def test_sface_row_orders_points_like_yunet(photos):
    from headveil.geometry.perception.detectors import detect_faces

    astronaut, _ = photos
    rec = get_recognizer("sface")
    yunet = rec._faces(astronaut)[0][4:14].reshape(5, 2)
    ours = SFaceRecognizer.row_from_landmarks68(detect_faces(astronaut, "dlib")[0].points)[4:14].reshape(5, 2)
    assert np.abs(yunet - ours).max() < 12  # px, on a ~100 px face: same order, similar places


def test_registry_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown recognizer"):
        get_recognizer("arcface")
    import headveil.geometry.perception.recognizers as R

    monkeypatch.setattr(R, "is_available", lambda name: False)
    R.get_recognizer.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match=r"headveil\[faces\]"):
            R.get_recognizer("sface")
    finally:
        R.get_recognizer.cache_clear()
    assert is_available("dlib")


def test_dlib_cnn_detector_finds_the_hog_face(photos):
    from headveil.geometry.perception.recognizers import DlibRecognizer, _iou

    _, hopper = photos
    hog = get_recognizer("dlib").detect(hopper)
    cnn = DlibRecognizer(detector="cnn").detect(hopper)
    assert len(hog) == len(cnn) == 1 and _iou(hog[0], cnn[0]) > 0.5
    assert DlibRecognizer(detector="cnn").detect(np.full_like(hopper, 128)) == []
    with pytest.raises(ValueError, match="hog"):
        DlibRecognizer(detector="viola-jones")


@pytest.mark.parametrize("name", RECOGNIZERS)
def test_reidentify_measures_the_output_against_others_too(name, photos):
    astronaut, hopper = photos
    rec = get_recognizer(name)
    a, h = rec.embed(astronaut).vector, rec.embed(hopper).vector
    same = rec.reidentify(astronaut, astronaut, others=np.stack([h, a]))
    assert same["status"] == "matched" and same["dis_others"] == pytest.approx(0.0, abs=1e-5)
    far = rec.reidentify(astronaut, astronaut, others=h[None])
    assert far["dis_others"] == pytest.approx(float(rec.distance(a, h)), rel=1e-5)
    assert "dis_others" not in rec.reidentify(astronaut, astronaut)
    blank = rec.reidentify(astronaut, np.full_like(astronaut, 128), others=h[None])
    assert blank["status"] == "not detected" and blank["dis_others"] is None
