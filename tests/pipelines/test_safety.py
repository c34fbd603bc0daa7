"""Every command is safe on a user's own folders: no leaks in protected captures, no deleted user
files, one line per user error, exit codes a script can read, batches that survive Ctrl-C."""

import json

import numpy as np
import pytest

from headveil.common.images import write_image
from headveil.pipelines.cli import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    import skimage.data

    d = tmp_path_factory.mktemp("photos")
    write_image(d / "a.png", skimage.data.astronaut()[:384, 64:448])
    return d


# -- protected captures hold nothing of the face ------------------------------------------------------
def _leak_scan(folder, source_protected_rgb):
    """What a script given only ``folder`` could use to re-render a protected view."""
    from PIL import Image

    found = []
    for p in folder.rglob("*"):
        if p.is_dir():
            continue
        if p.suffix in (".ply", ".obj", ".glb", ".npz"):
            found.append(f"mesh {p.name}")
        if p.suffix == ".json":
            text = p.read_text()
            for word in ("identity", "model_codes", "albedo", "expression", "gt_mesh", "alpha"):
                if f'"{word}"' in text:
                    found.append(f"{word} in {p.name}")
        if p.suffix == ".png":
            with Image.open(p) as im:
                if im.mode in ("RGB", "RGBA", "P", "L"):
                    arr = np.asarray(im.convert("RGB"))
                    if any(arr.shape == s.shape and np.abs(arr.astype(int) - s).mean() < 3 for s in source_protected_rgb):
                        found.append(f"RGB of a protected view in {p.name}")
    return found


@pytest.fixture(scope="module")
def rgb_capture(model, tmp_path_factory):
    from headveil.pipelines.capture import write_synthetic_capture
    from headveil.render.scene import SubjectCodes

    c = model.sample_codes(np.random.default_rng(2))
    codes = SubjectCodes(c["alpha"], np.zeros(model.n_expr, np.float32), c["beta"])
    return write_synthetic_capture(tmp_path_factory.mktemp("cap") / "c", model, codes, split=(3, 4), size=32, seed=2)


def test_protected_capture_holds_no_codes_mesh_or_protected_rgb(rgb_capture, tmp_path, capsys):
    from headveil.common.images import read_image
    from headveil.pipelines.capture import load_capture

    # a user capture that carries codes, a coloured mesh and a private note next to its frames
    src = tmp_path / "src"
    import shutil

    shutil.copytree(rgb_capture, src)
    shutil.copy(rgb_capture.with_name("c_ground_truth") / "gt_mesh.ply", src / "gt_mesh.ply")
    meta = json.loads((src / "transforms.json").read_text())
    meta["gt_mesh"] = "gt_mesh.ply"
    meta["model_codes"] = json.loads((rgb_capture.with_name("c_ground_truth") / "codes.json").read_text())
    meta["frames"][0]["subject_name"] = "Jane Doe"
    (src / "transforms.json").write_text(json.dumps(meta))
    cap = load_capture(src)
    prot_rgb = [np.asarray(read_image(src / meta["frames"][i]["file_path"]), int) for i in cap.views("protected")]
    assert _leak_scan(src, prot_rgb)  # the scan finds what the source holds
    code, _, err = _run(["protect", str(src), "--out", str(tmp_path / "p")], capsys)
    assert code == 0, err
    assert _leak_scan(tmp_path / "p", prot_rgb) == []
    assert "Jane Doe" not in (tmp_path / "p" / "transforms.json").read_text()
    man = (tmp_path / "p" / "manifest.json").read_text()
    assert str(src) not in man and json.loads(man)["inputs"] == []
    assert load_capture(tmp_path / "p").summary() == {"neutral_rgb": 3, "protected_gradient": 4}


def test_synth_capture_protect_holds_nothing_of_the_face(tmp_path, capsys):
    code, out, _ = _run(["synth", "--capture", "--subjects", "1", "--capture-split", "3", "4", "--capture-size", "32",
                         "--capture-protect", "--out", str(tmp_path / "caps")], capsys)
    assert code == 0 and "ground_truth" in out and "--ground-truth" in out
    cap = tmp_path / "caps" / "s0000"
    assert _leak_scan(cap, []) == []
    assert (tmp_path / "caps" / "ground_truth" / "s0000" / "gt_mesh.ply").is_file()
    meta = json.loads((cap / "transforms.json").read_text())
    neutral = [f for f in meta["frames"] if f["privacy"] == "neutral"]
    assert all(f["content"] == "gradient" for f in meta["frames"] if f["privacy"] == "protected")
    # the default cone keeps neutral views behind the head (±30° of straight back)
    for f in neutral:
        pos = np.asarray(f["c2w"])[:3, 3]
        yaw = np.degrees(np.arctan2(pos[0], pos[2]))
        assert abs(abs(yaw) - 180) <= 30 + 1e-6


# -- user folders are never deleted ------------------------------------------------------------------
def test_protect_refuses_to_write_into_its_inputs(photo_dir, tmp_path, capsys):
    before = sorted(p.name for p in photo_dir.iterdir())
    code, _, err = _run(["protect", str(photo_dir), "--out", str(photo_dir)], capsys)
    assert code == 2 and "inside the input" in err and err.count("\n") == 1
    code, _, err = _run(["protect", str(photo_dir), "--out", str(photo_dir.parent)], capsys)
    assert code == 2 and "contains the input" in err
    assert sorted(p.name for p in photo_dir.iterdir()) == before


@pytest.mark.faces
def test_deid_keeps_the_users_files(photo_dir, tmp_path, capsys, model):
    proj = tmp_path / "proj"
    (proj / "0001").mkdir(parents=True)
    (proj / "0001" / "notes.txt").write_text("mine")
    code, _, err = _run(["deid", str(photo_dir / "a.png"), "--out", str(proj), "--guard", "off"], capsys)
    assert code == 2 and "--overwrite" in err
    code, _, err = _run(["deid", str(photo_dir / "a.png"), "--out", str(proj), "--guard", "off", "--overwrite"], capsys)
    assert code == 0, err
    assert (proj / "0001" / "notes.txt").read_text() == "mine" and (proj / "0001" / "deid.png").is_file()
    (tmp_path / "file").write_text("x")
    code, _, err = _run(["deid", str(photo_dir / "a.png"), "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "existing file" in err and (tmp_path / "file").read_text() == "x"


@pytest.mark.faces
# -- one line per user error, exit codes -------------------------------------------------------------
@pytest.mark.parametrize("argv, what", [
    (["deid", "{photo}", "--scale", "-1"], "--scale"),
    (["deid", "{photo}", "--method", "id-dp", "--epsilon", "0"], "--epsilon"),
    (["deid", "{photo}", "--method", "id-keyed", "--theta", "95", "--key-file", "{photo}"], "--theta"),
    (["fit", "{photo}", "--format", "stl"], "--format"),
    (["deid", "{photo}", "--seed", "1"], "insecure-reproducible"),
    (["reconstruct", "{tmp}", "--out", "{tmp}/r"], "transforms.json"),
])
def test_user_errors_are_one_line(argv, what, photo_dir, tmp_path, capsys):
    argv = [a.format(photo=photo_dir / "a.png", tmp=tmp_path) for a in argv]
    code, _, err = _run(argv, capsys)
    assert code == 2 and what in err and err.count("\n") == 1 and "Traceback" not in err


def test_capture_frame_without_file_path_is_one_line(rgb_capture, tmp_path, capsys):
    import shutil

    d = tmp_path / "bad"
    shutil.copytree(rgb_capture, d)
    meta = json.loads((d / "transforms.json").read_text())
    del meta["frames"][1]["file_path"]
    (d / "transforms.json").write_text(json.dumps(meta))
    code, _, err = _run(["reconstruct", str(d), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "no file_path" in err and err.count("\n") == 1


@pytest.mark.faces
def test_exit_codes_tell_partial_from_total_failure(photo_dir, tmp_path, capsys):
    write_image(tmp_path / "blank.png", np.full((120, 120, 3), 128, np.uint8))
    code, _, _ = _run(["fit", str(photo_dir / "a.png"), str(tmp_path / "blank.png"), "--out", str(tmp_path / "f")],
                      capsys)
    assert code == 1 and json.loads((tmp_path / "f" / "summary.json").read_text())["failed"]
    code, _, _ = _run(["fit", str(tmp_path / "blank.png"), "--out", str(tmp_path / "g")], capsys)
    assert code == 3
    code, _, _ = _run(["fit", str(photo_dir / "a.png"), "--out", str(tmp_path / "h")], capsys)
    assert code == 0


def test_ctrl_c_is_one_line_with_status_130(monkeypatch, capsys):
    import headveil.pipelines.cli as cli

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "dispatch", interrupted)
    code, _, err = _run(["info"], capsys)
    assert code == 130 and err == "headveil: interrupted\n"


@pytest.mark.faces
def test_an_interrupted_batch_writes_its_summary_and_resumes(photo_dir, tmp_path, model, monkeypatch):
    import shutil

    import headveil.pipelines.deid as run_mod
    from headveil.pipelines.deid import DeidCommand, run_deid

    imgs = tmp_path / "in"
    imgs.mkdir()
    for n in ("x", "y", "z"):
        shutil.copy(photo_dir / "a.png", imgs / f"{n}.png")
    real, calls = run_mod.deid_image, []

    def stop_on_second(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(run_mod, "deid_image", stop_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_deid(DeidCommand([imgs], out=tmp_path / "o", guard="off"), model)
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["interrupted"] and list(s["done"].values()) == ["0001"]
    monkeypatch.setattr(run_mod, "deid_image", real)
    res = run_deid(DeidCommand([imgs], out=tmp_path / "o", guard="off", resume=True), model)
    assert sorted(res["done"].values()) == ["0001", "0002", "0003"] and not res["interrupted"]


@pytest.mark.faces
def test_an_unexpected_error_in_one_image_fails_only_that_image(photo_dir, tmp_path, model, monkeypatch):
    import shutil

    import headveil.pipelines.deid as run_mod
    from headveil.pipelines.deid import DeidCommand, run_deid

    imgs = tmp_path / "in"
    imgs.mkdir()
    for n in ("x", "y"):
        shutil.copy(photo_dir / "a.png", imgs / f"{n}.png")
    real = run_mod.deid_image

    def broken_on_x(img, cmd, *a, **kw):
        if any(isinstance(x, str) and x.endswith("x.png") for x in a):
            raise ZeroDivisionError("bug in a plugin")
        return real(img, cmd, *a, **kw)

    monkeypatch.setattr(run_mod, "deid_image", broken_on_x)
    res = run_deid(DeidCommand([imgs], out=tmp_path / "o", guard="off"), model)
    assert list(res["done"].values()) == ["0002"]
    assert res["failed"][str(imgs / "x.png")] == "ZeroDivisionError: bug in a plugin"
