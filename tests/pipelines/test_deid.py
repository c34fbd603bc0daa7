"""``headveil deid`` / ``headveil recover`` end to end on a real photo, and the Table 1 smoke run."""

import json

import numpy as np
import pytest

from headveil.common.images import write_image
from headveil.pipelines.deid import DeidCommand, run_deid
from headveil.pipelines.recover import RecoverCommand, run_recover

pytestmark = pytest.mark.faces


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    import skimage.data

    d = tmp_path_factory.mktemp("photos")
    write_image(d / "astronaut.png", skimage.data.astronaut()[:384, 64:448])
    write_image(d / "blank.png", np.full((200, 200, 3), 128, np.uint8))
    return d


def _key(path, text="correct horse battery staple\n"):
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_keyed_deid_and_recover(photo, tmp_path, model):
    from headveil.common.errors import HeadVeilError
    from headveil.common.images import read_image
    from headveil.pipelines.fit import FitConfig, fit_image

    key = _key(tmp_path / "key.txt")
    out = tmp_path / "out"
    res = run_deid(DeidCommand([photo], method="id-keyed", key_file=key, out=out, format=("ply", "glb"),
                               guard="warn", names="stem"), model)
    assert list(res["done"].values()) == ["astronaut"] and "blank.png" in next(iter(res["failed"])).split("/")[-1]
    assert "no face" in next(iter(res["failed"].values())).lower()
    image_dir = out / "astronaut"
    folder = image_dir / "face0"
    assert {p.name for p in image_dir.iterdir()} == {"deid.png", "face0", "manifest.json", ".headveil"}
    assert {p.name for p in folder.iterdir()} == {"mesh.ply", "mesh.glb", "metrics.json", "codes.json"}
    for p in [*image_dir.iterdir(), *folder.iterdir()]:  # the key is never written
        assert p.is_dir() or b"correct horse" not in p.read_bytes()
        assert p.stat().st_mode & 0o077 == 0  # private: owner only
    assert image_dir.stat().st_mode & 0o777 == 0o700
    man = json.loads((image_dir / "manifest.json").read_text())
    assert man["inputs"] == [] and "deid.png" in man["output_sha256"] and man["seed"] is None
    assert "astronaut" not in json.dumps(man["config"])
    m = json.loads((folder / "metrics.json").read_text())
    assert m["change"]["delta_norm"] > 1 and m["utility"]["psnr_outside_face_db"] is None or m["utility"]["psnr_outside_face_db"] > 30
    assert set(m["reidentification"]) == {"dlib", "sface"}
    assert all(r["status"] in ("matched", "not matched", "not detected") for r in m["reidentification"].values())
    orig = fit_image(read_image(photo / "astronaut.png"), model, FitConfig()).identity
    rec = run_recover(RecoverCommand(folder, key, tmp_path / "rec"), model)  # the face folder; deid.png beside it
    got = np.array(json.loads((tmp_path / "rec" / "codes.json").read_text())["identity_recovered"])
    np.testing.assert_allclose(got, orig, atol=1e-4)
    assert (tmp_path / "rec" / "recovered.png").is_file() and rec["delta_norm"] > 1
    assert (tmp_path / "rec" / "codes.json").stat().st_mode & 0o077 == 0
    # a wrong key is refused by the stored check value instead of giving a plausible face
    wrong = _key(tmp_path / "wrong.txt", "another key of enough length")
    with pytest.raises(HeadVeilError, match="wrong key"):
        run_recover(RecoverCommand(folder, wrong, tmp_path / "rec_wrong"), model)
    assert not (tmp_path / "rec_wrong").exists()


def test_key_files_are_checked(tmp_path, photo, model):
    from headveil.geometry.identity.codes import InvalidKeyError

    img = photo / "astronaut.png"
    short = _key(tmp_path / "short.key", "1234567")
    with pytest.raises(InvalidKeyError, match="128 bits"):
        run_deid(DeidCommand([img], method="id-keyed", key_file=short, out=tmp_path / "o"), model)
    loose = _key(tmp_path / "loose.key", "a key long enough to pass the length")
    loose.chmod(0o644)
    with pytest.raises(InvalidKeyError, match="chmod 600"):
        run_deid(DeidCommand([img], method="id-keyed", key_file=loose, out=tmp_path / "o"), model)
    assert not (tmp_path / "o").exists()


def test_chep_cli_guard_and_errors(photo, tmp_path, model):
    from headveil.common.errors import HeadVeilError

    img = photo / "astronaut.png"
    res = run_deid(DeidCommand([img], method="chep", pivots="20", q=10, out=tmp_path / "c", guard="off",
                               restorer="poisson"), model)
    m = json.loads((tmp_path / "c" / "0001" / "face0" / "metrics.json").read_text())
    assert res["done"] and m["change"]["q"] == 10 and m["change"]["Q"] == 20 and m["change"]["dense_vertices"] > model.n_vertices // 3
    assert m["reidentification"] is None  # --guard off: no verdict, and none pretended
    # a near-zero change is still matched by the recognizers: the default guard fails the image
    res = run_deid(DeidCommand([img], method="id-noise", scale=0.01, out=tmp_path / "g"), model)
    assert not res["done"] and "still matched" in next(iter(res["failed"].values()))
    assert not (tmp_path / "g" / "0001").exists()
    with pytest.raises(HeadVeilError, match="Q ≥ q"):
        run_deid(DeidCommand([img], method="chep", pivots="5", q=10, out=tmp_path / "e"), model)
    with pytest.raises(HeadVeilError, match="does not apply"):
        run_deid(DeidCommand([img], method="id-noise", theta=10.0, out=tmp_path / "e"), model)
    with pytest.raises(HeadVeilError, match="key-file"):
        run_deid(DeidCommand([img], method="id-keyed", out=tmp_path / "e"), model)


def test_table1_smoke(tmp_path):
    from headveil.pipelines.evaluate.table1 import Table1Command, format_markdown, run_table1

    cfg = Table1Command(out=tmp_path / "t", identities=8, splits=((5, 3), (3, 3), (3, 5)), qs=(2,),
                       yaws=(-10.0, 10.0), size=160, recognizers=("sface",), workers=1)
    table = run_table1(cfg)
    rows = table["recognizers"]["sface"]["neutral"]
    assert len(rows) == 6 and all(0.0 <= v <= 1.0 for r in rows.values() for v in r.values())
    assert set(table["detected"]["sface"]) == {"none", "Q3_q2", "Q5_q2"}
    assert "not perturbed" in format_markdown(table)
    assert (tmp_path / "t" / "table1.md").is_file() and (tmp_path / "t" / "examples" / "id0000_none.png").is_file()
    from headveil.pipelines.evaluate.report import ReportCommand, write_report

    html = write_report(ReportCommand(tmp_path / "t")).read_text()
    assert "Table 1" in html and "not perturbed" in html and "data:image/png;base64" in html


def test_deid_reuses_saved_fits(photo, tmp_path, model):
    """`headveil deid --fits DIR` takes the fits of `headveil fit` instead of fitting again."""
    from headveil.pipelines.fit import FitCommand, run_fit

    img = photo / "astronaut.png"
    run_fit(FitCommand([img], out=tmp_path / "fits"), model)
    res = run_deid(DeidCommand([img], out=tmp_path / "d", fits=tmp_path / "fits", guard="off"), model)
    m = json.loads((tmp_path / "d" / "0001" / "face0" / "metrics.json").read_text())
    fresh = run_deid(DeidCommand([img], out=tmp_path / "e", guard="off"), model)
    m2 = json.loads((tmp_path / "e" / "0001" / "face0" / "metrics.json").read_text())
    assert res["done"] and fresh["done"] and m["fit"]["source"] == "saved" and m2["fit"]["source"] == "fitted"
    for k in ("yaw_deg", "pitch_deg", "roll_deg"):  # the same face, fitted on the photo or on its window
        assert abs(m["fit"]["pose"][k] - m2["fit"]["pose"][k]) < 2.0
    one = tmp_path / "fits" / "0001"
    assert run_deid(DeidCommand([img], out=tmp_path / "g", fits=one, guard="off"), model)["done"]


def test_deid_metrics_round_trip_through_their_type(photo, tmp_path, model):
    from headveil.common.artefacts import ArtefactError
    from headveil.pipelines.deid import DeidRecord

    run_deid(DeidCommand([photo / "astronaut.png"], out=tmp_path / "o", guard="warn"), model)
    path = tmp_path / "o" / "0001" / "face0" / "metrics.json"
    rec = DeidRecord.load(path)
    assert rec.to_json() == json.loads(path.read_text())
    assert rec.method == "id-noise" and rec.change["delta_norm"] > 0 and set(rec.reidentification) == {"dlib", "sface"}
    with pytest.raises(ArtefactError):
        DeidRecord.load(tmp_path / "o" / "0001" / "manifest.json")


def test_model_render_is_lit_from_the_camera_without_refinement(photo, tmp_path, model):
    """--appearance model with no fitted light: the default light sits near the camera in the photo's
    own frame (it used to sit behind the head, leaving only the ambient term: 0.37× the photo)."""
    from headveil.common.images import read_image
    from headveil.geometry.perception.detectors import detect_faces
    from headveil.render.composite import face_region_from_points
    from headveil.render.deid.face3d import camera_light

    img = photo / "astronaut.png"
    run_deid(DeidCommand([img], out=tmp_path / "m", appearance="model", guard="off"), model)
    o, d = read_image(img), read_image(tmp_path / "m" / "0001" / "deid.png")
    hull = face_region_from_points(detect_faces(o)[0].points, o.shape[:2])
    assert d[hull].mean() / o[hull].mean() > 0.5  # measured 0.60 (0.37 before)
    from headveil.geometry.camera import Camera

    toward = np.asarray(camera_light(Camera(np.eye(3), np.eye(4), 10, 10)).direction)
    assert toward[2] < 0 and toward[1] < 0  # OpenCV camera frame: toward the camera (−z) and up (−y)


def test_every_face_of_a_group_photo_is_deidentified(tmp_path, model):
    """A composed group photo: each face big enough gets its own face folder and is re-rendered in
    the one output image; a face below the minimum size is left as it is and reported."""
    import sys
    from pathlib import Path

    from headveil.common.images import read_image
    from headveil.render.composite import face_region_from_points

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "geometry" / "perception"))
    from test_cascade import _group

    img, _ = _group()
    write_image(tmp_path / "group.png", img)
    res = run_deid(DeidCommand([tmp_path / "group.png"], out=tmp_path / "o", guard="warn"), model)
    folder = tmp_path / "o" / "0001"
    faces = sorted(p.name for p in folder.iterdir() if p.name.startswith("face"))
    man = json.loads((folder / "manifest.json").read_text())
    assert faces == ["face0", "face1", "face2"] and man["faces"] == 3
    assert set(man["faces_left_as_they_are"]) == {"face3"} and "below" in man["faces_left_as_they_are"]["face3"]
    assert "face3 left as it is" in res["attention"]["0001"]
    out = read_image(folder / "deid.png")
    kept = []
    for f in faces:  # no pixel of a replaced face survives but what covers it, in the one output image
        m = json.loads((folder / f / "metrics.json").read_text())
        assert m["utility"]["face_pixels_identical_share"] == 0.0
        kept.append(m["utility"]["occluder_pixels_kept"])
    from headveil.geometry.perception.detectors import detect_faces

    for d, k in zip(detect_faces(img)[:3], kept):
        hull = face_region_from_points(d.points, img.shape[:2])
        assert (np.all(out == img, axis=-1) & hull).sum() <= k + 0.02 * hull.sum()
    one = run_deid(DeidCommand([tmp_path / "group.png"], out=tmp_path / "l", guard="off", faces="largest"), model)
    assert one["done"] and sorted(p.name for p in (tmp_path / "l" / "0001").iterdir() if p.name.startswith("face")) == ["face0"]
