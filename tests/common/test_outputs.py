import json

import pytest

from headveil.common.outputs import atomic_output_dir, build_manifest, sha256_file, write_json


def test_atomic_dir_success(tmp_path):
    with atomic_output_dir(tmp_path / "out") as d:
        (d / "a.txt").write_text("x")
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "out" / "a.txt").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_output_dir(tmp_path / "out") as d:
            (d / "a.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_failure_keeps_previous(tmp_path):
    with atomic_output_dir(tmp_path / "out") as d:
        (d / "v1").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(tmp_path / "out") as d:
            raise RuntimeError
    assert (tmp_path / "out" / "v1").exists()


def test_manifest_fields(tmp_path):
    f = tmp_path / "in.bin"
    f.write_bytes(b"abc")
    m = build_manifest("headveil test", {"a": 1}, seed=3, inputs=[f], backends={"raster": "numpy"})
    assert m["seed"] == 3 and m["config"] == {"a": 1} and m["backends"] == {"raster": "numpy"}
    # sha256("abc"), a published test vector
    assert m["inputs"][0]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert "torch" in m["versions"]
    write_json(tmp_path / "m.json", m)
    assert json.loads((tmp_path / "m.json").read_text())["command"] == "headveil test"
    assert sha256_file(f) == m["inputs"][0]["sha256"]
