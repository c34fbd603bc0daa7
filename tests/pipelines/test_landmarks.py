"""The derived correspondences agree with the detectors on renders of identities not used to
derive them (the derivation used seed 7; these use seed 99)."""

import numpy as np
import pytest

from headveil.geometry.perception.detectors import detect_face
from headveil.render.scene import HeadPose, SubjectCodes, portrait_camera, render_subject

pytestmark = pytest.mark.faces


@pytest.mark.parametrize("detector,scheme", [("mediapipe", "mediapipe478"), ("dlib", "ibug68")])
def test_projected_landmarks_agree_with_detector(model, detector, scheme):
    rng = np.random.default_rng(99)
    cam = portrait_camera(384)
    nmes = []
    for k in range(3):
        c = model.sample_codes(rng)
        codes = SubjectCodes(c["alpha"], np.zeros(model.n_expr, np.float32), c["beta"])
        res, verts = render_subject(model, codes, HeadPose(12.0 * (k - 1), 0, 0), cam)
        img = np.clip(res.image * 255 + 0.5, 0, 255).astype(np.uint8)
        det = detect_face(img, detector)
        proj, _ = cam.project(model.landmarks_3d(verts, scheme))
        eyes = model.landmarks_3d(verts, scheme)
        w = model.landmark_set(scheme).weight > 0.3
        iod = np.linalg.norm(np.subtract(*cam.project(verts[[model.part_mask("eye_left").argmax(),
                                                             model.part_mask("eye_right").argmax()]])[0]))
        nmes.append(np.linalg.norm(proj[w] - det.points[w], axis=1).mean() / iod)
        assert eyes.shape[0] == len(model.landmark_set(scheme))
    # reliable landmarks land within a few percent of the inter-ocular distance
    assert np.median(nmes) < 0.06
