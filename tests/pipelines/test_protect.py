"""`headveil protect` and split captures: only ‖g‖ leaves the operator; two-stage presets refuse RGB
of protected views; bad protected inputs fail before training."""

import json

import numpy as np
import pytest
from PIL import Image

from headveil.common.errors import HeadVeilError
from headveil.pipelines.capture import CaptureError, load_capture, views_split, write_synthetic_capture
from headveil.render.scene import SubjectCodes
from headveil.render.protect import ProtectConfig, dequantize, protect_image


@pytest.fixture(scope="module")
def codes(model):
    c = model.sample_codes(np.random.default_rng(5))
    return SubjectCodes(c["alpha"], np.zeros(model.n_expr, np.float32), c["beta"])


@pytest.fixture(scope="module")
def split_captures(model, codes, tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    kw = dict(size=32, seed=2, split=(3, 4))
    return (write_synthetic_capture(root / "rgb", model, codes, **kw),
            write_synthetic_capture(root / "prot", model, codes, protect=ProtectConfig(32), **kw))


def _photo_with_exif(path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0132] = "2026:01:01 10:00:00"
    img.save(path, exif=exif.tobytes(), quality=95)
    return np.asarray(Image.open(path).convert("RGB"))


def test_protect_images_writes_only_gradient_magnitudes(tmp_path):
    from headveil.pipelines.cli import main

    src = tmp_path / "in"
    src.mkdir()
    rgb = _photo_with_exif(src / "face.jpg")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["protect", str(src / "face.jpg"), "--out", str(out), "--size", "40", "--blur", "0.5"])
    assert e.value.code == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["face.png", "face.preview.png",
                                                                                    "manifest.json"]
    raw = src.joinpath("face.jpg").read_bytes()
    for p in out.iterdir():
        data = p.read_bytes()
        assert data != raw and b"SecretCam" not in data and b"Exif" not in data
    with Image.open(out / "face.png") as im:
        assert im.mode.startswith("I;16") and not im.info.get("exif") and im.size == (33, 40)
        g = dequantize(np.asarray(im))
    # the file is exactly ‖g‖ of the input (up to 16-bit quantisation), nothing else
    np.testing.assert_allclose(g, protect_image(rgb, ProtectConfig(40, 0.5)), atol=6e-5)
    with Image.open(out / "face.preview.png") as im:
        pv = np.asarray(im)
        assert not im.info.get("exif")
    assert np.array_equal(pv[..., 0], pv[..., 1]) and np.array_equal(pv[..., 1], pv[..., 2])  # grey: a view of ‖g‖
    man = json.loads((out / "manifest.json").read_text())
    assert man["inputs"] == [] and man["protect"] == {"size": 40, "blur": 0.5, "operator": "sobel"}
    assert "sha256" in man["outputs"][0]


def test_split_capture_layout_and_protected_content(split_captures):
    rgb, prot = (load_capture(p) for p in split_captures)
    assert rgb.summary() == {"neutral_rgb": 3, "protected_rgb": 4}
    assert prot.summary() == {"neutral_rgb": 3, "protected_gradient": 4}
    assert prot.protect == {"size": 32, "blur": 0.0, "operator": "sobel"}
    for i in prot.views("protected"):
        assert np.all(prot.images[i] == 0) and prot.masks[i].max() == -1  # no RGB, no silhouette
        assert not (split_captures[1] / "images" / f"{i:03d}.png").exists()
    # same cameras, and the stored ‖g‖ is the operator applied to the RGB view (8-bit vs float render)
    for i in prot.views("protected"):
        np.testing.assert_allclose(prot.cameras[i].c2w, rgb.cameras[i].c2w)
        assert np.abs(prot.gradients[i] - protect_image(rgb.images[i], ProtectConfig(32))).max() < 0.02
    labels = [lab for _, lab in views_split(10, 20, 0.6)]
    assert labels.count("protected") == 20 and labels.count("neutral") == 10


@pytest.mark.parametrize("cone", [100.0, 135.0])
def test_split_face_cone_bounds_every_view(cone):
    # yaw of a camera = angle of its position from the face direction (+Z) in the x-z plane
    for c2w, label in views_split(10, 20, 0.6, face_cone_deg=cone, seed=3):
        yaw = abs(np.degrees(np.arctan2(c2w[0, 3], c2w[2, 3])))
        assert (yaw < cone) if label == "protected" else (yaw > cone), (label, yaw)
    with pytest.raises(ValueError, match="face_cone_deg"):
        views_split(10, 20, 0.6, face_cone_deg=180.0)


def test_protect_capture_matches_synthetic_protection(split_captures, tmp_path):
    from headveil.pipelines.protect import ProtectCommand, run_protect

    res = run_protect(ProtectCommand((split_captures[0],), out=tmp_path / "p"))
    assert res["written"] == 4
    a, b = load_capture(tmp_path / "p"), load_capture(split_captures[1])
    assert a.summary() == b.summary()
    assert np.abs(a.gradients - b.gradients).max() < 0.02
    assert not any((tmp_path / "p" / "images").glob("*")) or all(
        f"{i:03d}.png" not in {p.name for p in (tmp_path / "p" / "images").iterdir()} for i in a.views("protected"))


def test_bad_protected_views_fail_on_load(split_captures, tmp_path):
    import shutil

    def variant(name, edit):
        d = tmp_path / name
        shutil.copytree(split_captures[1], d)
        meta = json.loads((d / "transforms.json").read_text())
        edit(d, meta)
        (d / "transforms.json").write_text(json.dumps(meta))
        return d

    def rgb_as_gradient(d, meta):  # an RGB image (grey, three identical channels) labelled as a gradient view
        fr = meta["frames"][0]
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(d / fr["file_path"])

    def out_of_range(d, meta):
        fr = meta["frames"][0]
        np.save(d / "g.npy", np.full((32, 32), 5.0, np.float32))
        fr["file_path"] = "g.npy"

    def wrong_size(d, meta):
        fr = meta["frames"][1]
        Image.fromarray(np.zeros((16, 16), np.uint16)).save(d / fr["file_path"])

    def mixed_operators(d, meta):
        meta["frames"][0]["protect"] = {"size": 32, "blur": 1.0, "operator": "sobel"}

    for name, edit, msg in (("rgb", rgb_as_gradient, "never RGB"), ("range", out_of_range, "gradient range"),
                            ("size", wrong_size, "share one size"), ("ops", mixed_operators, "one setting")):
        with pytest.raises(CaptureError, match=msg):
            load_capture(variant(name, edit))


def test_presets_refuse_unusable_captures(split_captures):
    from headveil.pipelines.reconstruct import check_capture_for_preset

    rgb, prot = (load_capture(p) for p in split_captures)
    with pytest.raises(HeadVeilError, match="protect them first"):
        check_capture_for_preset(rgb, "two-stage", True)  # would hold RGB of protected views
    with pytest.raises(HeadVeilError, match="only gradients"):
        check_capture_for_preset(prot, "full-rgb", True, non_private=True)
    assert check_capture_for_preset(prot, "two-stage", True) == []
    with pytest.raises(HeadVeilError, match="--non-private"):  # the non-private baseline needs the flag
        check_capture_for_preset(rgb, "full-rgb", True)
    assert "non-private" in check_capture_for_preset(rgb, "full-rgb", True, non_private=True)[0]
    no_neutral = load_capture(split_captures[1])
    no_neutral.privacy = ["protected"] * len(no_neutral)
    no_neutral.contents = ["gradient"] * len(no_neutral)
    with pytest.raises(HeadVeilError, match="no template"):
        check_capture_for_preset(no_neutral, "two-stage", False)
    with pytest.raises(HeadVeilError, match="needs neutral RGB"):
        check_capture_for_preset(no_neutral, "two-stage", True)
    assert "template" in " ".join(check_capture_for_preset(no_neutral, "grad-only", True))


@pytest.mark.slow
def test_two_stage_cli_end_to_end(split_captures, tmp_path):
    from headveil.pipelines.cli import main

    out = tmp_path / "rec"
    with pytest.raises(SystemExit) as e:
        main(["reconstruct", str(split_captures[1]), "--ground-truth", str(split_captures[1]) + "_ground_truth",
              "--out", str(out), "--steps", "2", "3",
              "--rays", "64", "--patches", "1", "--samples", "12", "--resolution", "40", "--cache-resolution", "32"])
    assert e.value.code == 0
    assert {p.name for p in out.iterdir()} >= {"mesh.ply", "mesh_stage1.ply", "checkpoint.pt", "metrics.json",
                                               "manifest.json"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["private"] and m["stages"]["stage2"]["grad_l1_batch"] >= 0 and m["stages"]["stage2"]["psnr_batch"] is None
    terms = {t["term"]: t["weight"] for t in m["stages"]["stage2"]["config"]["losses"]}
    assert terms["LipschitzLoss"] == 3e-10 and terms["GradientLoss"] == 1.0 and "RGBLoss" not in terms
    assert m["stages"]["stage1"]["config"]["views"] == "neutral"
    assert "chamfer_mm" in m["stage_meshes"]["stage1"]["geometry_vs_gt"]["face"]
    with pytest.raises(SystemExit) as e:
        main(["report", str(out)])
    assert e.value.code == 0
    page = (out / "report.html").read_text()
    assert "after stage1" in page and "ground truth" in page and page.count("data:image/png;base64") == 12


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["two-stage", "two-stage-nolip", "grad-only", "rgb+grad", "full-rgb"])
def test_every_reconstruct_preset_runs(split_captures, tmp_path, preset):
    """Each preset end to end on a tiny split capture (the private ones on its protected form, the
    non-private baseline on its RGB form with --non-private): a mesh, per-stage stats, the private flag."""
    from headveil.pipelines.reconstruct import PRESETS, ReconstructCommand, run_reconstruct

    rgb, prot = split_captures
    cap = rgb if preset == "full-rgb" else prot
    res = run_reconstruct(ReconstructCommand(cap, out=tmp_path / preset, preset=preset, non_private=preset == "full-rgb",
                                             steps=(2,), rays=32, patches=1, samples=8, resolution=32,
                                             cache_resolution=20, ground_truth=cap.with_name(cap.name + "_ground_truth")))
    m = res["metrics"]
    n_stages = len(PRESETS[preset].stages(PRESETS[preset].default_steps))
    assert m["private"] == PRESETS[preset].private and len(m["stages"]) == n_stages
    assert m["mesh"]["vertices"] > 100 and (tmp_path / preset / "mesh.ply").is_file()
    assert "chamfer_mm" in m["geometry_vs_gt"]["head"]
    assert len(m["stage_meshes"]) == n_stages - 1
