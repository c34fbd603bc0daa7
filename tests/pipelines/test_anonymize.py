"""``headveil anonymize`` end to end on a tiny synthetic set, and its refusals."""

import json

import numpy as np
import pytest

from headveil.common.errors import HeadVeilError
from headveil.common.images import write_image
from headveil.pipelines.anonymize import AnonymizeCommand, run_anonymize

pytestmark = pytest.mark.faces


@pytest.fixture(scope="module")
def face_set(tmp_path_factory, model):
    from headveil.geometry.identity.attributes import shape_attributes
    from headveil.render.scene import HeadPose, SubjectCodes, expression_vector, portrait_camera, render_subject
    from headveil.render.shading import DirectionalLight

    d = tmp_path_factory.mktemp("faceset")
    A = shape_attributes().holdout["holdout_alpha"]
    cam = portrait_camera(384)
    for i in range(4):
        eta = expression_vector(model, {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8} if i % 2 else {})
        codes = SubjectCodes(A[i], eta, np.zeros(model.n_albedo, np.float32))
        res, _ = render_subject(model, codes, HeadPose(-10.0 + 7 * i, 0.0, 0.0), cam,
                                light=DirectionalLight((0.3, 0.3, 1.0), 0.4, 0.7, (1, 1, 1)), background=(0.5, 0.55, 0.6))
        write_image(d / f"s{i}.png", (np.clip(res.image, 0, 1) * 255 + 0.5).astype(np.uint8))
    return d


def test_anonymize_meets_the_plan_and_releases_no_original(face_set, tmp_path, model):
    from headveil.common.images import read_image

    out = tmp_path / "anon"
    res = run_anonymize(AnonymizeCommand([face_set], out=out, k=2, l=2, t=0.5, quasi=("male",), sensitive="smiling",
                                         guard="off"), model)
    assert res["faces"] == 4 and res["images_released"] == 4 and not res["failed"]
    assert res["planned"]["met"] and res["planned"]["k_anonymity"]["achieved"] >= 2
    rel = json.loads((out / "release" / "attributes.json").read_text())
    assert len(rel["faces"]) == 4 and set(rel["faces"][0]["attributes"]) == {"male", "smiling"}
    assert "values" not in json.dumps(rel)  # the originals' attribute values stay in audit/
    audit = json.loads((out / "audit" / "privacy.json").read_text())
    assert audit["before"]["quasi_identifiers"] == ["male"] and len(audit["faces_detail"]) == 4
    assert audit["fidelity"]["faces_remeasured"] >= 3
    assert (out / "manifest.json").is_file() and (out / "audit" / "privacy.json").stat().st_mode & 0o077 == 0
    for i, f in enumerate(sorted((out / "release").glob("*.png"))):
        a, b = read_image(face_set / f"s{i}.png"), read_image(f)
        assert a.shape == b.shape and (a != b).any(axis=2).sum() > 2000  # the face was re-rendered
    from headveil.pipelines.evaluate.report import ReportCommand, write_report

    page = write_report(ReportCommand(out)).read_text()
    assert "k-anonymity" in page and "re-measured" in page


@pytest.mark.parametrize("kw, msg", [
    ({"quasi": ("bald",)}, "unknown attribute 'bald'"),
    ({"sensitive": "apparent_male"}, "observed, not synthesised"),
    ({"quasi": ("smiling",), "sensitive": "smiling"}, "both a quasi-identifier"),
    ({"k": 1}, "--k must be ≥ 2"),
    ({"epsilon": -1.0}, "--epsilon must be ≥ 0"),
    ({"keep_margin": -0.5}, "--keep-margin must be ≥ 0"),
])
def test_anonymize_refuses_bad_settings_before_any_work(face_set, tmp_path, kw, msg, model):
    with pytest.raises(HeadVeilError, match=msg):
        run_anonymize(AnonymizeCommand([face_set], out=tmp_path / "x", **kw), model)
    assert not (tmp_path / "x").exists()


def test_anonymize_set_too_small_or_contradictory(face_set, tmp_path, model):
    with pytest.raises(HeadVeilError, match="larger than the set"):
        run_anonymize(AnonymizeCommand([face_set], out=tmp_path / "a", k=5), model)
    with pytest.raises(HeadVeilError, match="one face|two faces"):
        run_anonymize(AnonymizeCommand([face_set / "s0.png"], out=tmp_path / "b", k=2), model)
    with pytest.raises(HeadVeilError, match=r"l=3(\.0)? is impossible"):
        run_anonymize(AnonymizeCommand([face_set], out=tmp_path / "c", k=2, l=3), model)


def test_anonymize_epsilon_releases_the_perturbed_assignment(face_set, tmp_path, model):
    out = tmp_path / "eps"
    res = run_anonymize(AnonymizeCommand([face_set], out=out, k=2, l=1, t=1.0, quasi=("male",), sensitive="smiling",
                                         epsilon=0.0, guard="off"), model)
    assert res["epsilon"] == 0.0 and 0 <= res["perturbed"] <= 4 and res["images_released"] == 4
    audit = json.loads((out / "audit" / "privacy.json").read_text())
    rel = json.loads((out / "release" / "attributes.json").read_text())
    assigned = [f["assigned"]["smiling"] for f in audit["faces_detail"]]
    assert [f["attributes"]["smiling"] for f in rel["faces"]] == assigned  # what is released is what was drawn
    for f in audit["faces_detail"]:  # "changed" is measured against the face's own attributes
        assert ("smiling" in f["changed"]) == (f["assigned"]["smiling"] != f["original"]["smiling"])


def test_directed_codes_keep_booleans_clear_and_set_the_changed_ones(model):
    """Kept attributes read the face's own estimate, moved out to threshold ± keep_margin × spread on
    its own side when closer; changed ones read threshold ± margin × spread of the assigned side."""
    from types import SimpleNamespace

    from headveil.geometry.identity.attributes import shape_attributes
    from headveil.pipelines.anonymize import directed_codes

    sa = shape_attributes()
    fitted = sa.holdout["holdout_fitted_alpha"][0]
    own = sa.values(fitted)
    z = (own - sa.threshold) / sa.spread
    near, far = int(np.argmin(np.abs(z))), int(np.argmax(np.abs(z)))
    km = float(abs(z[near]) + abs(z[far])) / 2  # the nearest estimate lies inside this margin, the farthest beyond
    assert abs(z[far]) - abs(z[near]) > 0.2
    changed = next(n for i, n in enumerate(sa.names) if i not in (near, far))
    face = SimpleNamespace(fit=SimpleNamespace(identity=fitted, expression=np.zeros(len(model.expr_names))))
    flag = bool(own[sa.index(changed)] <= sa.threshold[sa.index(changed)])  # switched
    alpha, _ = directed_codes(face, {changed: flag}, [changed], np.zeros(len(fitted)), model, 1.5, keep_margin=km)
    got = (sa.true_values(alpha) - sa.threshold) / sa.spread
    side = np.sign(z[near]) or 1.0
    np.testing.assert_allclose(got[near], side * km, atol=1e-3)  # moved out to the margin, same side
    np.testing.assert_allclose(got[far], z[far], atol=1e-3)  # already clear: its own estimate
    np.testing.assert_allclose(got[sa.index(changed)], 1.5 if flag else -1.5, atol=1e-3)
    alpha0, _ = directed_codes(face, {changed: flag}, [changed], np.zeros(len(fitted)), model, 1.5, keep_margin=0.0)
    np.testing.assert_allclose(((sa.true_values(alpha0) - sa.threshold) / sa.spread)[near], z[near], atol=1e-3)


def test_a_person_photographed_twice_counts_once_in_its_class_face():
    """Two photos of A (albedo 0.2, α 0) and one of B (albedo 0.8, α 3) in one class: by photos the
    class face is 0.4 (two thirds A); by people it is halfway, 0.5, and α 1.5."""
    from types import SimpleNamespace

    from headveil.pipelines.anonymize import _Face, class_appearances

    def face(v, a):
        S = 8
        return _Face("x.png", 0, None, SimpleNamespace(identity=np.full(3, a)), None, {}, {},
                     np.full((S, S, 3), round(v * 255), np.uint8), np.full((S, S), 255, np.uint8),
                     np.full((S, S), 255, np.uint8), np.zeros((9, 3)))

    faces = [face(0.2, 0.0), face(0.2, 0.0), face(0.8, 3.0)]
    alpha, alb = class_appearances(faces, [0, 0, 0])[0]
    np.testing.assert_allclose(alb, 0.4, atol=2e-3)
    np.testing.assert_allclose(alpha, 1.0)
    alpha, alb = class_appearances(faces, [0, 0, 0], np.array([0, 0, 1]))[0]
    np.testing.assert_allclose(alb, 0.5, atol=2e-3)
    np.testing.assert_allclose(alpha, 1.5)
