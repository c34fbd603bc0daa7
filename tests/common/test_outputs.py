import json

import numpy as np
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


def test_atomic_dir_never_deletes_a_foreign_folder(tmp_path):
    from headveil.common.outputs import OutputError

    user = tmp_path / "proj"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="--overwrite"):
        with atomic_output_dir(user) as d:
            (d / "deid.png").write_text("x")
    assert (user / "notes.txt").read_text() == "mine" and not (user / "deid.png").exists()
    with atomic_output_dir(user, overwrite=True) as d:  # writes into it, removes nothing
        (d / "deid.png").write_text("x")
    assert (user / "notes.txt").read_text() == "mine" and (user / "deid.png").read_text() == "x"
    assert not (user / ".headveil").exists()  # still the user's folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no temp or lock files left


def test_atomic_dir_replaces_its_own_output_and_refuses_a_file(tmp_path):
    from headveil.common.outputs import OutputError

    with atomic_output_dir(tmp_path / "out") as d:
        (d / "v1").write_text("1")
    with atomic_output_dir(tmp_path / "out") as d:  # the tool's own folder: replaced whole
        (d / "v2").write_text("2")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".headveil", "v2"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="existing file"):
        with atomic_output_dir(tmp_path / "file"):
            pass
    assert (tmp_path / "file").read_text() == "x"


def test_concurrent_writers_fail_cleanly(tmp_path):
    from headveil.common.outputs import OutputError, output_lock

    with output_lock(tmp_path / "out"):
        with pytest.raises(OutputError, match="another headveil run"):
            with atomic_output_dir(tmp_path / "out") as d:
                (d / "a").write_text("x")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no .partial or .old copies left behind


def test_concurrent_processes_to_one_folder(tmp_path):
    """Four processes write the same folder at once: each either wins or fails with OutputError;
    the folder ends whole and no stray copies remain."""
    import subprocess
    import sys

    code = ("import sys, time; from pathlib import Path; from headveil.common.outputs import atomic_output_dir, "
            "OutputError\ntry:\n    with atomic_output_dir(Path(sys.argv[1])) as d:\n        (d / 'f').write_text(sys.argv[2])"
            "\n        time.sleep(0.3)\nexcept OutputError:\n    sys.exit(9)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out"), str(i)]) for i in range(4)]
    codes = [p.wait() for p in procs]
    assert set(codes) <= {0, 9} and 0 in codes
    assert (tmp_path / "out" / "f").read_text() in {"0", "1", "2", "3"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_check_output_path_refuses_unsafe_outputs(tmp_path):
    from headveil.common.outputs import OutputError, check_output_path, open_output_root

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(b"x")
    for out, inputs, match in ((photos, [photos], "inside the input"), (photos / "sub", [photos], "inside the input"),
                               (tmp_path, [photos], "contains the input"), (photos / "a.png", [], "existing file")):
        with pytest.raises(OutputError, match=match):
            check_output_path(out, inputs)
    # per-item commands may write next to their inputs, never into a foreign non-empty folder
    with pytest.raises(OutputError, match="--overwrite"):
        open_output_root(tmp_path, "headveil test", [photos / "a.png"])
    root = open_output_root(tmp_path / "new", "headveil test", [photos / "a.png"], private=True)
    assert (root / ".headveil").is_file() and root.stat().st_mode & 0o777 == 0o700


def test_private_outputs_are_owner_only(tmp_path):
    with atomic_output_dir(tmp_path / "p", private=True) as d:
        (d / "sub").mkdir()
        (d / "sub" / "x.json").write_text("{}")
        write_json(d / "m.json", {"a": 1})
    for p in [tmp_path / "p", *(tmp_path / "p").rglob("*")]:
        assert p.stat().st_mode & 0o077 == 0, p


def test_npz_files_are_reproducible_byte_for_byte(tmp_path):
    import time

    from headveil.common.outputs import sha256_file, write_npz

    arrays = {"a": np.arange(12, dtype=np.uint8).reshape(3, 4), "b": np.linspace(0, 1, 5)}
    write_npz(tmp_path / "x.npz", arrays)
    time.sleep(2.1)  # a zip entry's time has a 2-second resolution
    write_npz(tmp_path / "y.npz", arrays)
    assert sha256_file(tmp_path / "x.npz") == sha256_file(tmp_path / "y.npz")
    with np.load(tmp_path / "x.npz") as z:
        np.testing.assert_array_equal(z["a"], arrays["a"])
        np.testing.assert_array_equal(z["b"], arrays["b"])


def test_package_versions_are_looked_up_once_and_handed_out_as_copies():
    from headveil.common.outputs import _versions, package_versions

    a = package_versions(("numpy", "no-such-distribution-x"))
    a["numpy"] = "changed"  # a caller's edit does not reach the next manifest
    b = package_versions(("numpy", "no-such-distribution-x"))
    assert b["numpy"] != "changed" and b["no-such-distribution-x"] == "absent" and "python" in b
    assert _versions.cache_info().hits >= 1
