"""A wheel built from pyproject.toml holds every module of the source tree (a hand-kept package
list once dropped the restorers and CHEP from installed copies)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"tests", "benchmarks", "build", "dist"}


def _source_modules() -> set[str]:
    out = set()
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT)
        if rel.parts[0] in SKIP or any(part.startswith(".") for part in rel.parts):
            continue
        out.add("headveil/" + rel.as_posix())
    return out


@pytest.mark.slow
def test_wheel_contains_every_module(tmp_path):
    import shutil

    # build from a clean copy: setuptools reuses an in-tree build/ folder, whose stale files would hide a gap
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                           "demo_out", "bench_out"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(tmp_path.glob("headveil-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_modules() - names)
    assert not missing, f"modules missing from the wheel: {missing}"
    assert any(n.startswith("headveil/assets/head_model/") for n in names)
