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


@pytest.mark.slow
@pytest.mark.faces
def test_an_installed_wheel_runs_deid(tmp_path):
    """`pip install` of the wheel into a fresh venv (the dependencies borrowed from this environment
    through a path file, so nothing is downloaded), then `headveil deid` on a package photo, run
    from outside the source tree so only the installed copy can be imported."""
    import shutil
    import site
    import venv

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                           "demo_out", "bench_out"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    target = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    (Path(target) / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    wheel = next(tmp_path.glob("headveil-*.whl"))
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel), "--target", target],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    import skimage.data
    from headveil.common.images import write_image

    write_image(tmp_path / "photo.png", skimage.data.astronaut())
    run = subprocess.run([str(py), "-c", "import headveil, sys; print(headveil.__file__); "
                          "from headveil.pipelines.cli import main; main(sys.argv[1:])",
                          "deid", str(tmp_path / "photo.png"), "--out", str(tmp_path / "out"), "--guard", "warn"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[0].startswith(target)  # the installed copy, not the source tree
    assert (tmp_path / "out" / "0001" / "deid.png").is_file()
