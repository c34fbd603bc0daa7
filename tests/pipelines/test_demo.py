import json

import pytest

from headveil.pipelines.demo import DemoCommand, run_demo

pytestmark = [pytest.mark.faces, pytest.mark.slow]


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    res = run_demo(DemoCommand(out=out, image_size=256, turntable_frames=3, turntable_size=64, reconstruct_steps=(2, 2)))
    names = {p.name for p in out.iterdir()}
    assert {"input.png", "comparison.png", "fit_turntable.mp4", "metrics.json", "manifest.json", "gt_mesh.ply",
            "gt_mesh.obj", "gt_mesh.glb", "fit", "ground_truth.json", "photo_comparison.png", "deid", "capture",
            "reconstruction"} <= names
    assert {p.name for p in (out / "fit").iterdir()} == {"mesh.ply", "mesh.obj", "mesh.glb", "fit.json"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["face_vertex_error_mm"]["rigid_mean"] < 10
    # the mission's other steps: a real photo through deid (with the guard's verdict), a private reconstruction
    assert set(m["deid"]["guard"]) == {"dlib", "sface"} and m["deid"]["face_pixels_identical_share"] == 0.0
    assert m["reconstruction"]["private"] and m["reconstruction"]["view_counts"] == {"neutral_rgb": 10,
                                                                                      "protected_gradient": 20}
    assert m["reconstruction"]["stage2_face_chamfer_mm"] < 20 and (out / "reconstruction" / "mesh_stage1.ply").is_file()
    assert res["metrics"]["landmark_rmse_px"] < 5
    # the evaluation step: every registered method was attacked by both recognizers and reported
    assert (out / "evaluation" / "eval" / "report.html").is_file()
    ev = m["evaluation"]
    assert set(ev) == {"dlib", "sface"}
    assert ev["dlib"]["mask"]["detectability"] == 0.0 and ev["dlib"]["mask"]["dis_mean"] > ev["dlib"]["blur"]["dis_mean"]
