"""Test configuration: optional-dependency and GPU markers are resolved here, once.

- ``faces``: needs the faces extra (MediaPipe, dlib, SFace). Skipped where it is missing, except in CI
  (``CI=true``), where a missing extra is an error: CI installs it, so the tests must run.
- ``gpu``: needs CUDA; skipped without a device.
- ``slow``: end-to-end runs; deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest


def _has_faces() -> bool:
    from headveil.geometry.perception.detectors import available_detectors
    from headveil.geometry.perception.recognizers import available_recognizers

    return set(available_detectors()) == {"mediapipe", "dlib"} and set(available_recognizers()) == {"dlib", "sface"}


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    faces_ok = _has_faces()
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if not faces_ok and in_ci and any("faces" in it.keywords for it in items):
        raise pytest.UsageError("CI: the faces extra is not installed but faces tests were collected; "
                                "run `make setup`")
    cuda_ok = _has_cuda()
    for it in items:
        if "faces" in it.keywords and not faces_ok:
            it.add_marker(pytest.mark.skip(reason="needs headveil[faces] (mediapipe, dlib)"))
        if "gpu" in it.keywords and not cuda_ok:
            it.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(autouse=True)
def _threads():
    import torch

    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def model():
    from headveil.geometry.morphable.model import load_embedded

    return load_embedded()


@pytest.fixture(scope="session")
def rendered_subject(model):
    """A fixed synthetic subject rendered at 384² with known codes, pose and camera."""
    from headveil.render.scene import HeadPose, SubjectCodes, expression_vector, portrait_camera, render_subject

    rng = np.random.default_rng(2024)
    c = model.sample_codes(rng)
    codes = SubjectCodes(c["alpha"], expression_vector(model, {"jawOpen": 0.3, "mouthSmileLeft": 0.4,
                                                               "mouthSmileRight": 0.4}), c["beta"])
    pose = HeadPose(18.0, -6.0, 2.0)
    cam = portrait_camera(384)
    res, verts = render_subject(model, codes, pose, cam)
    image = np.clip(res.image * 255 + 0.5, 0, 255).astype(np.uint8)
    return {"image": image, "codes": codes, "pose": pose, "camera": cam, "vertices_world": verts}


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Cached priors go to a folder of this test session, not the user's ~/.cache."""
    os.environ["HEADVEIL_CACHE"] = str(tmp_path_factory.mktemp("headveil-cache"))
    yield
