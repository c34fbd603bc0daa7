"""Capture folders, the training loop and `headveil reconstruct` on tiny synthetic captures."""

import json
import shutil

import numpy as np
import pytest
import torch

from headveil.common.outputs import write_json
from headveil.geometry.camera import opencv_to_opengl
from headveil.neural_fields.encodings import resolve_backend
from headveil.pipelines.capture import CaptureError, load_capture, write_synthetic_capture
from headveil.render.scene import SubjectCodes
from headveil.pipelines.train import StageConfig, TrainingDivergedError, train
from headveil.render.losses import CodePrior, EikonalLoss, MaskLoss, ResidualPenalty, RGBLoss


@pytest.fixture(scope="module")
def capture_dir(model, tmp_path_factory):
    rng = np.random.default_rng(0)
    c = model.sample_codes(rng)
    codes = SubjectCodes(c["alpha"], np.zeros(model.n_expr, np.float32), c["beta"])
    return write_synthetic_capture(tmp_path_factory.mktemp("cap") / "c", model, codes, n_views=6, size=32, seed=1)


def _gt(capture_dir):
    return capture_dir.with_name(capture_dir.name + "_ground_truth")


def _tiny_field(model, cap):
    from headveil.neural_fields.head_field import HeadField, HeadFieldConfig

    cfg = HeadFieldConfig()
    cfg.encoding.n_levels, cfg.encoding.log2_table_size = 4, 12
    f = HeadField(model, cfg)
    f.set_codes(json.loads((_gt(cap.root) / "codes.json").read_text())["identity"])
    f.cache_prior(24)
    return f


TINY = dict(rays=64, samples=12, losses=(RGBLoss(1.0), MaskLoss(0.1), EikonalLoss(0.05, points=64), ResidualPenalty(0.01),
                                         CodePrior(1e-3)))


def test_capture_roundtrip_and_labels(capture_dir):
    cap = load_capture(capture_dir)
    assert len(cap) == 6 and cap.images.shape == (6, 32, 32, 3) and cap.masks.shape == (6, 32, 32)
    # the capture holds no ground truth; it lives in its own folder
    assert set(cap.privacy) == {"neutral", "protected"} and cap.gt_mesh is None and cap.codes == {}
    assert not any(p.suffix == ".ply" for p in capture_dir.rglob("*"))
    cap = load_capture(capture_dir, ground_truth=_gt(capture_dir))
    assert cap.gt_mesh.is_file() and len(cap.codes["identity"]) > 0
    # a camera looking at the face (+Z side) is protected
    for cam, label in zip(cap.cameras, cap.privacy):
        assert (label == "protected") == (cam.c2w[2, 3] > 0.6 * np.cos(np.radians(75)))
    assert 0.0 < cap.masks.mean() < 1.0


def test_nerf_style_transforms_are_converted(capture_dir, tmp_path):
    meta = json.loads((capture_dir / "transforms.json").read_text())
    f = meta["frames"][0]
    nerf = {"fl_x": f["K"][0][0], "fl_y": f["K"][1][1], "cx": f["K"][0][2], "cy": f["K"][1][2],
            "frames": [{"file_path": fr["file_path"],
                        "transform_matrix": opencv_to_opengl(np.array(fr["c2w"])).tolist()} for fr in meta["frames"]]}
    shutil.copytree(capture_dir / "images", tmp_path / "images")
    write_json(tmp_path / "transforms.json", nerf)
    a, b = load_capture(capture_dir), load_capture(tmp_path)
    assert all(np.allclose(x.c2w, y.c2w) and np.allclose(x.K, y.K) for x, y in zip(a.cameras, b.cameras))


def test_bad_captures_fail_before_training(capture_dir, tmp_path):
    meta = json.loads((capture_dir / "transforms.json").read_text())
    for name, edit, match in [
        ("missing", lambda m: m["frames"][0].update(file_path="images/nope.png"), "does not exist|cannot|No such|missing"),
        ("nan", lambda m: m["frames"][1]["c2w"][0].__setitem__(3, float("nan")), "NaN"),
        ("single", lambda m: m.update(frames=m["frames"][:1]), "at least 2"),
        ("away", lambda m: m["frames"][2].update(c2w=np.diag([1.0, -1.0, -1.0, 1.0]).tolist()), "does not see"),
        ("traversal", lambda m: m["frames"][0].update(file_path="../outside.png"), "leaves the capture"),
        ("absolute", lambda m: m["frames"][0].update(file_path=str(capture_dir / "images" / "000.png")),
         "leaves the capture"),
        ("mask-traversal", lambda m: m["frames"][1].update(mask_path="../../x.png"), "leaves the capture"),
        ("no-path", lambda m: m["frames"][0].pop("file_path"), "no file_path"),
        ("nan-background", lambda m: m.update(background=[float("nan"), 0, 0]), "background"),
        ("bad-background", lambda m: m.update(background="black"), "background"),
    ]:
        d = tmp_path / name
        shutil.copytree(capture_dir, d)
        m = json.loads(json.dumps(meta))
        edit(m)
        (d / "transforms.json").write_text(json.dumps(m))
        with pytest.raises(CaptureError, match=match):
            load_capture(d)
    (tmp_path / "outside.png").write_bytes((capture_dir / "images" / "000.png").read_bytes())
    with pytest.raises(CaptureError, match="leaves the capture"):  # even when the file outside exists
        load_capture(tmp_path / "traversal")


def test_training_is_deterministic_checkpoints_and_stops_on_nan(model, capture_dir, tmp_path):
    cap = load_capture(capture_dir)
    stages = [StageConfig(name="a", steps=4, **TINY)]
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        f = _tiny_field(model, cap)
        runs.append(train(f, cap, stages, seed=3, progress=False)["a"]["loss"])
    assert np.isfinite(runs[0]) and runs[0] == runs[1]

    ckpt = tmp_path / "ck.pt"
    f = _tiny_field(model, cap)
    train(f, cap, [StageConfig(name="a", steps=2, **TINY), StageConfig(name="b", steps=2, views="neutral", **TINY)],
          seed=3, checkpoint=ckpt, checkpoint_every=1, progress=False)
    state = torch.load(ckpt, weights_only=True)  # tensors and plain values only
    assert state["stage"] == 2 and state["backend"] == resolve_backend("auto") and "generator" in state

    f.density.forward = lambda s: s * float("nan")
    with pytest.raises(TrainingDivergedError, match="last good checkpoint"):
        train(f, cap, [StageConfig(name="c", steps=2, **TINY)], seed=3, checkpoint=ckpt, progress=False)
    assert torch.load(ckpt, weights_only=True)["stage"] == 2  # the good checkpoint is untouched


@pytest.mark.slow
def test_reconstruct_cli_end_to_end(capture_dir, tmp_path):
    from headveil.pipelines.cli import main

    out = tmp_path / "rec"
    with pytest.raises(SystemExit) as e:
        main(["reconstruct", str(capture_dir), "--out", str(out), "--steps", "3", "--rays", "64", "--samples", "12",
              "--resolution", "40", "--cache-resolution", "32", "--format", "ply", "obj", "--preset", "full-rgb",
              "--non-private", "--ground-truth", str(_gt(capture_dir))])
    assert e.value.code == 0
    assert {p.name for p in out.iterdir()} >= {"mesh.ply", "mesh.obj", "checkpoint.pt", "metrics.json", "manifest.json"}
    m = json.loads((out / "metrics.json").read_text())
    # the untrained residual is zero: the mesh is the prior head, within a few voxels of the truth
    assert m["geometry_vs_gt"]["face"]["chamfer_mm"] < 15 and m["backend"] == resolve_backend("auto")
    man = json.loads((out / "manifest.json").read_text())
    assert man["backends"]["hashgrid"] == resolve_backend("auto") and man["seed"] == 0


def test_render_image_in_chunks_matches_one_batch(model, capture_dir):
    from headveil.render.field import render_image

    cap = load_capture(capture_dir)
    f = _tiny_field(model, cap)
    cam = cap.cameras[0].scaled(0.5)  # 16×16
    cfg = StageConfig(samples=12)
    a = render_image(f, cam, cfg, chunk=37)
    b = render_image(f, cam, cfg, chunk=4096)
    assert a["rgb"].shape == (16, 16, 3) and np.allclose(a["rgb"], b["rgb"], atol=1e-6)
    # the untrained field is the prior head: the image centre is covered, the corners are empty
    assert a["opacity"][8, 8] > 0.9 and a["opacity"][0, 0] < 0.05
    assert 0.4 < a["depth"][8, 8] < 0.6  # the camera sits 0.6 m from the origin


def test_prior_band_brackets_the_model_surface(model, capture_dir):
    from headveil.render.field import prior_band
    from headveil.render.volume import near_far_from_sphere

    cap = load_capture(capture_dir)
    f = _tiny_field(model, cap)
    o = torch.tensor([[0.0, 0.0, 0.6], [0.0, 0.0, 0.6]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.99, -0.141]])
    d = d / d.norm(dim=1, keepdim=True)
    near, far, _ = near_far_from_sphere(o, d, 0.2)
    n2, f2 = prior_band(f, o, d, near, far, band=0.03)
    # the frontal ray meets the nose tip (z ≈ +0.1 m, i.e. t ≈ 0.5): a 6 cm band around it
    assert torch.isclose(f2[0] - n2[0], torch.tensor(0.06), atol=1e-4) and n2[0] < 0.5 < f2[0]
    s_in, _ = f.model_sdf((o[:1] + d[:1] * (0.5 * (n2[0] + f2[0]))).reshape(1, 3))
    assert s_in.abs().item() < 0.03
    # a ray that misses the head keeps its full interval
    assert n2[1] == near[1] and f2[1] == far[1]


def test_importance_samples_subdivide_intervals_at_the_surface(model, capture_dir):
    from headveil.render.field import refine_intervals, render_rays
    from headveil.render.volume import near_far_from_sphere, stratified_samples

    cap = load_capture(capture_dir)
    f = _tiny_field(model, cap)
    o = torch.tensor([[0.0, 0.0, 0.6]])
    d = torch.tensor([[0.0, 0.0, -1.0]])
    near, far, hit = near_far_from_sphere(o, d, 0.2)
    ts, te = stratified_samples(near, far, 16, perturb=False)
    gen = torch.Generator().manual_seed(0)
    ts2, te2 = refine_intervals(f, o, d, ts, te, hit, 32, generator=gen)
    # contiguous, sorted, covering the same span, with the 32 new edges added
    assert ts2.shape == (1, 48) and torch.equal(ts2[:, 1:], te2[:, :-1]) and bool((te2 >= ts2).all())
    assert ts2[0, 0] == ts[0, 0] and te2[0, -1] == te[0, -1]
    # the untrained field is the prior head, whose surface this ray meets at the nose tip (t ≈ 0.5 m):
    # most new edges fall within one stratified bin (2.5 cm) of it, where uniform draws would put 1/8
    new = torch.cat([ts2[0], te2[0, -1:]])
    assert ((new - 0.5).abs() < 0.025).sum() >= 0.7 * 32
    # in the loop: samples + importance per ray, rendered opaque like without it
    rgb, opacity, depth, _ = render_rays(f, o, d, StageConfig(samples=16, importance=32), 0.0, gen)
    assert opacity.item() > 0.9 and abs(depth.item() - 0.5) < 0.02


def test_reconstruct_refuses_the_non_private_baseline_without_its_flag(capture_dir, tmp_path, capsys):
    from headveil.pipelines.cli import main

    for args in ([], ["--preset", "full-rgb"]):  # default preset two-stage: this capture is not protected
        with pytest.raises(SystemExit) as e:
            main(["reconstruct", str(capture_dir), "--out", str(tmp_path / "r"), *args])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("protect them first" in err or "--non-private" in err)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_reconstruct_resume_matches_an_uninterrupted_run(capture_dir, tmp_path, monkeypatch):
    """Interrupted after the first checkpoint of stage 2, resumed: the same mesh, stage-1 metrics
    kept, the prior cache loaded rather than rebuilt."""
    import headveil.pipelines.train as train_mod
    from headveil.geometry.mesh_io import load_mesh
    from headveil.pipelines.reconstruct import ReconstructCommand, run_reconstruct

    def cfg(out, resume=False):
        return ReconstructCommand(capture_dir, out=out, preset="full-rgb", non_private=True, steps=(4,), rays=64,
                                 samples=12, resolution=40, cache_resolution=24, checkpoint_every=2, resume=resume,
                                 ground_truth=_gt(capture_dir))

    full = run_reconstruct(cfg(tmp_path / "a"))
    # another run into another folder finds the prior in the shared cache
    assert run_reconstruct(cfg(tmp_path / "a2"))["metrics"]["prior_cache"] == "loaded"
    real_save = train_mod.save_checkpoint
    calls = []

    def save_then_stop(*a, **kw):
        real_save(*a, **kw)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_reconstruct(cfg(tmp_path / "b"))
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    built = []
    real_cache = train_mod.HeadField.cache_prior
    monkeypatch.setattr(train_mod.HeadField, "cache_prior", lambda self, *a, **kw: built.append(1) or
                        real_cache(self, *a, **kw))
    res = run_reconstruct(cfg(tmp_path / "b", resume=True))
    assert built == [] and res["metrics"]["prior_cache"] == "loaded" and res["metrics"]["resumed"]
    from headveil.common.artefacts import ArtefactError
    from headveil.pipelines.reconstruct import ReconstructionResult

    back = ReconstructionResult.load(tmp_path / "b" / "metrics.json")  # the typed artefact round-trips
    assert back.to_json() == json.loads((tmp_path / "b" / "metrics.json").read_text()) and back.resumed
    with pytest.raises(ArtefactError, match="not a headveil.reconstruction"):
        ReconstructionResult.load(tmp_path / "b" / "manifest.json")
    va, fa, _ = load_mesh(tmp_path / "a" / "mesh.ply")
    vb, fb, _ = load_mesh(tmp_path / "b" / "mesh.ply")
    assert va.shape == vb.shape and np.array_equal(fa, fb) and np.allclose(va, vb, atol=1e-6)
    assert res["metrics"]["stages"]["rgb"]["loss"] == pytest.approx(full["metrics"]["stages"]["rgb"]["loss"], rel=1e-6)
