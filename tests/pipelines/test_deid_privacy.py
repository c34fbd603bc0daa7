"""Regression tests for the privacy promises of ``headveil deid`` on a real photo.

Each test names an attack a user's adversary can run on the output folder alone, or a promise
the README makes, and fails when it works again.
"""

import json

import numpy as np
import pytest

from headveil.common.errors import HeadVeilError
from headveil.common.images import read_image, write_image
from headveil.pipelines.deid import DeidCommand, guard_identity, run_deid

pytestmark = pytest.mark.faces


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import skimage.data

    d = tmp_path_factory.mktemp("photos")
    img = skimage.data.astronaut()[:384, 64:448]
    write_image(d / "a.png", img)
    write_image(d / "b.png", img)  # the same face twice: its two outputs must not share noise
    return d


def _mesh(folder):
    from headveil.geometry.mesh_io import load_mesh

    return load_mesh(folder / "face0" / "mesh.ply")[0]


def test_id_noise_is_fresh_secret_and_not_shared(photos, tmp_path, model):
    from headveil.geometry.identity.codes import perturb_noise
    from headveil.pipelines.fit import FitConfig, fit_image

    runs = [run_deid(DeidCommand([photos], out=tmp_path / f"r{i}", guard="off"), model) for i in range(2)]
    v = {(i, n): _mesh(tmp_path / f"r{i}" / n) for i in range(2) for n in ("0001", "0002")}
    # two runs give different codes, and so do two faces of one batch (no linkage through shared noise)
    assert not np.allclose(v[0, "0001"], v[1, "0001"]) and not np.allclose(v[0, "0001"], v[0, "0002"])
    # nothing written names a seed or the code: the folder holds no codes.json for id-noise
    for i in range(2):
        folder = tmp_path / f"r{i}" / "0001"
        assert not (folder / "face0" / "codes.json").exists()
        assert json.loads((folder / "manifest.json").read_text())["seed"] is None
        assert "seed" not in json.loads((folder / "face0" / "metrics.json").read_text())
        assert runs[i]["noise"].startswith("fresh OS entropy")
    # the old attack: subtract the noise of the default seed 0; the output is not that noise
    fit = fit_image(read_image(photos / "a.png"), model, FitConfig())
    guess = perturb_noise(fit.identity, 0.25, np.random.default_rng(0))
    guess_v = model.vertices(guess, fit.expression) @ np.asarray(fit.R).T + np.asarray(fit.t)
    assert np.abs(guess_v - v[0, "0001"]).max() > 1e-4


def test_a_seed_needs_the_insecure_flag_and_marks_every_output(photos, tmp_path, model):
    with pytest.raises(HeadVeilError, match="insecure-reproducible"):
        run_deid(DeidCommand([photos / "a.png"], out=tmp_path / "s", seed=3, guard="off"), model)
    assert not (tmp_path / "s").exists()
    res = [run_deid(DeidCommand([photos], out=tmp_path / f"s{i}", seed=3, insecure_reproducible=True, guard="off"),
                    model) for i in range(2)]
    assert np.allclose(_mesh(tmp_path / "s0" / "0001"), _mesh(tmp_path / "s1" / "0001"))  # reproducible
    assert not np.allclose(_mesh(tmp_path / "s0" / "0001"), _mesh(tmp_path / "s0" / "0002"))  # still per face
    folder = tmp_path / "s0" / "0001"
    assert json.loads((folder / "face0" / "metrics.json").read_text())["insecure_reproducible"] is True
    assert json.loads((folder / "manifest.json").read_text())["insecure_reproducible"] is True
    assert res[0]["noise"] == "insecure-reproducible seed"


def test_no_face_pixel_survives_and_the_mesh_carries_no_original_colours(photos, tmp_path, model):
    from headveil.geometry.mesh_io import load_mesh
    from headveil.pipelines.fit import FitConfig, fit_image
    from headveil.render.composite import face_region_from_points

    run_deid(DeidCommand([photos / "a.png"], out=tmp_path / "n", guard="off", occluders=False), model)
    orig = read_image(photos / "a.png")
    fit = fit_image(orig, model, FitConfig())
    hull = face_region_from_points(fit.detection.points, orig.shape[:2])
    same = np.all(orig == read_image(tmp_path / "n" / "0001" / "deid.png"), axis=-1)
    assert not (same & hull).any()  # every pixel of the outlined face is re-rendered or blended
    # by default what covers the face (here the hair fringe) stays on top: exactly those pixels are kept
    run_deid(DeidCommand([photos / "a.png"], out=tmp_path / "o", guard="off"), model)
    folder = tmp_path / "o" / "0001"
    out = read_image(folder / "deid.png")
    m = json.loads((folder / "face0" / "metrics.json").read_text())
    assert m["utility"]["face_pixels_identical_share"] == 0.0 and m["utility"]["face_region_pixels"] > 1000
    kept = int((np.all(orig == out, axis=-1) & hull).sum())
    assert 0 < m["utility"]["occluder_pixels_kept"] and kept <= m["utility"]["occluder_pixels_kept"]
    assert kept < 0.3 * hull.sum()
    # the mesh's colours come from the output image, not from the photo's face
    v, f, c = load_mesh(folder / "face0" / "mesh.ply")
    from headveil.render.texture import sample_photo_colors

    from_orig, vis = sample_photo_colors(orig, v, f, fit.camera)
    from_out, _ = sample_photo_colors(out, v, f, fit.camera)
    c = np.asarray(c, np.float64)[:, :3] / (255.0 if np.asarray(c).max() > 1 else 1.0)
    assert np.abs(c[vis] - from_out[vis]).mean() < np.abs(c[vis] - from_orig[vis]).mean()


def test_guard_reports_not_detected_and_measures_with_the_original_alignment(photos, model):
    from headveil.geometry.perception.recognizers import available_recognizers, get_recognizer

    recs = {n: get_recognizer(n) for n in available_recognizers()}
    orig = read_image(photos / "a.png")
    same = guard_identity(orig, orig, recs)
    assert all(r["status"] == "matched" and r["detected"] and r["dis_aligned"] < 1e-3 for r in same.values())
    # the face painted over: no detector finds it, and that is never "not matched"
    box = recs["sface"].detect(orig)[0].astype(int)
    covered = orig.copy()
    covered[box[1]:box[3], box[0]:box[2]] = 128
    g = guard_identity(orig, covered, recs)
    for r in g.values():
        assert r["detected"] is False and r["status"] in ("not detected", "matched") and r["dis"] is None
        assert r["dis_aligned"] is not None  # still measured where the original's face was


def test_default_guard_fails_a_matched_face_and_the_batch_lists_it(photos, tmp_path, model):
    res = run_deid(DeidCommand([photos / "a.png"], out=tmp_path / "g", scale=0.01), model)
    assert not res["done"] and "still matched" in res["failed"][str(photos / "a.png")]
    res = run_deid(DeidCommand([photos / "a.png"], out=tmp_path / "w", scale=0.01, guard="warn"), model)
    assert "face0 matched by" in res["attention"]["0001"]
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["attention"] == res["attention"] and (tmp_path / "w" / "summary.json").stat().st_mode & 0o077 == 0


def test_what_a_new_face_grows_over_is_searched_for_occluders_too(photos, model):
    # a hat's band just beyond the search region: found only once the new face is drawn there
    import cv2

    from headveil.pipelines.deid import _occluders
    from headveil.pipelines.fit import FitConfig, fit_image
    from headveil.render.composite import face_region_from_points

    img = read_image(photos / "a.png").copy()
    fit = fit_image(img, model, FitConfig())
    region = face_region_from_points(fit.detection.points, img.shape[:2])
    _, _, reach, _ = _occluders(img, fit.detection, region, model, fit)
    ys, xs = np.nonzero(reach)
    top, cx = ys.min(), int(xs.mean())
    band = np.zeros(reach.shape, bool)
    band[max(top - 8, 0):max(top - 2, 0), cx - 20:cx + 20] = True  # above the search, off the face
    assert band.any() and not (band & reach).any()
    img[band] = (20, 24, 60)  # navy
    occ, _, _, _ = _occluders(img, fit.detection, region, model, fit)
    assert not (occ & band).any()  # outside the search: never found
    drawn = cv2.dilate(reach.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    occ2, _, reach2, _ = _occluders(img, fit.detection, region, model, fit, drawn)
    assert (reach2 >= drawn).all()
    assert (occ2 & band).sum() > 0.8 * band.sum()  # found where the new face reaches
