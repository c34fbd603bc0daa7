import json

import numpy as np

from headveil.geometry.mesh_io import load_mesh
from headveil.pipelines.synth import SynthCommand, run_synth


def test_synth_outputs_and_determinism(tmp_path, model):
    cfg = SynthCommand(subjects=2, views=1, seed=5, image_size=64, out=tmp_path / "a")
    run_synth(cfg, model)
    names = sorted(p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith("."))
    assert names == ["index.jsonl", "manifest.json", "s0000_v00", "s0001_v00"]
    d = tmp_path / "a" / "s0000_v00"
    assert {p.name for p in d.iterdir()} == {"image.png", "codes.json", "camera.json", "gt_mesh.ply"}
    assert (tmp_path / "a" / ".headveil").is_file()  # marks the folder as the tool's own
    codes = json.loads((d / "codes.json").read_text())
    assert len(codes["identity"]) == model.n_id and abs(codes["pose"]["yaw_deg"]) <= 45
    v, f, c = load_mesh(d / "gt_mesh.ply")
    assert v.shape == (model.n_vertices, 3) and c is not None
    np.testing.assert_allclose(v, model.vertices(codes["identity"], codes["expression_vector"]), atol=1e-6)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["config"]["subjects"] == 2
    # same seed → identical images; another seed → different ones
    run_synth(SynthCommand(subjects=2, seed=5, image_size=64, out=tmp_path / "b"), model)
    run_synth(SynthCommand(subjects=2, seed=6, image_size=64, out=tmp_path / "c"), model)
    a = (tmp_path / "a/s0001_v00/image.png").read_bytes()
    assert a == (tmp_path / "b/s0001_v00/image.png").read_bytes()
    assert a != (tmp_path / "c/s0001_v00/image.png").read_bytes()


def test_synth_rejects_bad_counts(tmp_path, model):
    import pytest

    with pytest.raises(ValueError, match="subjects"):
        run_synth(SynthCommand(subjects=0, out=tmp_path / "x"), model)
    with pytest.raises(ValueError, match="face-cone"):
        run_synth(SynthCommand(capture=True, capture_split=(2, 2), capture_face_cone=180.0, out=tmp_path / "x"), model)
    assert not (tmp_path / "x").exists()
