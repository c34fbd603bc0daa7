"""Atomic outputs and run manifests.

Every run writes its outputs into a temporary sibling folder and renames it into place at the
end, so a failed run never leaves a partial output folder. Every output folder carries a
``manifest.json`` with the resolved config, package versions, backends, seed and input hashes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from headveil.common.errors import HeadVeilError

MANIFEST_NAME = "manifest.json"
_VERSIONED = ("headveil", "torch", "numpy", "scipy", "trimesh", "scikit-image", "opencv-python-headless",
              "mediapipe", "dlib-bin", "face-recognition")


def cache_dir() -> Path:
    """Where results kept across runs live (cached priors, compiled kernels): ``$HEADVEIL_CACHE``
    or ``~/.cache/headveil``. Entries are keyed by their inputs, so a stale one is never read."""
    return Path(os.environ.get("HEADVEIL_CACHE") or Path.home() / ".cache" / "headveil")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_versions(names: Sequence[str] = _VERSIONED) -> dict[str, str]:
    """Installed versions of the named distributions (``"absent"`` when not installed); looked up
    once per process (≈ 10 ms a time: every manifest of a batch asks)."""
    return dict(_versions(tuple(names)))


@functools.lru_cache(maxsize=8)
def _versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    from importlib import metadata

    out = [("python", platform.python_version())]
    for name in names:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "absent"))
    return tuple(out)


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, paths, numpy scalars/arrays and tuples into JSON-ready values."""
    import numpy as np

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # torch tensors, without importing torch
        return obj.detach().cpu().tolist()
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_replace(tmp: str | os.PathLike, path: str | os.PathLike, private: bool = False) -> None:
    """Give a finished temp file ordinary permissions (0666 less the umask; 0600 when ``private``)
    and rename it to ``path``."""
    os.chmod(tmp, 0o600 if private else 0o666 & ~_umask())
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp file path next to ``path`` (same suffix unless given); on success it is renamed
    to ``path`` with ordinary permissions, on any exception it is removed (no partial files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix if suffix is None else suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        atomic_replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data: Any, private: bool = False) -> None:
    """Write JSON atomically (temp file in the same folder, then rename); ``private``: mode 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(to_jsonable(data), f, indent=2, sort_keys=False)
            f.write("\n")
        atomic_replace(tmp, path, private)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def build_manifest(command: str, config: Any, seed: int | None, inputs: Sequence[str | os.PathLike] = (),
                   backends: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    """Assemble a run manifest: command, resolved config, versions, backends, seed, input hashes."""
    return {
        "command": command,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": to_jsonable(config),
        "seed": seed,
        "backends": dict(backends or {}),
        "versions": package_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "inputs": [{"path": str(p), "sha256": sha256_file(p)} for p in inputs],
        **(dict(extra) if extra else {}),
    }


OWNER_MARK = ".headveil"
"""A file HeadVeil writes into every output folder it creates: a folder holding it is the tool's own
and may be replaced by a later run; any other non-empty folder is the user's and is never deleted."""


class OutputError(HeadVeilError):
    """An output path is unsafe: a file, inside the inputs, foreign and non-empty, or being written."""


def is_owned(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` was written by HeadVeil (it holds :data:`OWNER_MARK`)."""
    return (Path(folder) / OWNER_MARK).is_file()


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_output_path(out: str | os.PathLike, inputs: Sequence[str | os.PathLike] = (), overwrite: bool = False,
                      replaces_whole: bool = True) -> Path:
    """Refuse an unsafe output path before any work starts; returns it.

    Refused: a path that is an existing file; a path equal to an input or inside an input folder;
    with ``replaces_whole`` (the command writes the folder as one unit) a path that contains an
    input; a non-empty folder HeadVeil did not write, unless ``overwrite`` (then only the tool's own
    files are written into it, nothing else is removed).

    Raises:
        OutputError: naming the path and the fix.
    """
    out = Path(out)
    res = out.resolve()
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is an existing file; give a folder path")
    for p in inputs:
        q = Path(p).resolve()
        if res == q or (q.is_dir() and _inside(res, q)):
            raise OutputError(f"--out {out} lies inside the input {p}; write the outputs elsewhere")
        if replaces_whole and _inside(q, res):
            raise OutputError(f"--out {out} contains the input {p}; its folder is replaced as a whole, so write "
                              "the outputs elsewhere")
    if out.is_dir() and not overwrite and not is_owned(out) and any(out.iterdir()):
        raise OutputError(f"--out {out} is a non-empty folder headveil did not write; choose a new folder or pass "
                          "--overwrite (only headveil's own files are then written into it, nothing is removed)")
    return out


def open_output_root(out: str | os.PathLike, command: str, inputs: Sequence[str | os.PathLike] = (),
                     overwrite: bool = False, private: bool = False) -> Path:
    """Check ``out`` (:func:`check_output_path`, per-item subfolders), create it and mark it as the
    tool's own (unless it is a user folder written into with ``overwrite``); returns it."""
    out = check_output_path(out, inputs, overwrite, replaces_whole=False)
    fresh = not out.exists() or not any(out.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    if private and (fresh or is_owned(out)):  # never change the mode of a user's own folder
        os.chmod(out, 0o700)
    if fresh or is_owned(out):
        write_json(out / OWNER_MARK, {"command": command}, private=private)
    return out


def make_private(path: str | os.PathLike) -> None:
    """``chmod`` a file to 0600, or a folder and everything in it to 0700 / 0600."""
    path = Path(path)
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o700)
            for f in files:
                os.chmod(os.path.join(root, f), 0o600)
    else:
        os.chmod(path, 0o600)


@contextlib.contextmanager
def output_lock(final: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on writing ``final`` (a lock file beside it); a second writer fails at
    once with :class:`OutputError` instead of racing the first."""
    import fcntl

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = final.parent / f".{final.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another headveil run is writing {final}; wait for it or choose another --out") from None
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output_dir(final: str | os.PathLike, overwrite: bool = False, private: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success it becomes ``final``.

    - On any exception the temporary folder is removed and ``final`` is left as it was, so no
      partial output folder is ever visible under the final name.
    - A ``final`` that HeadVeil wrote (it holds :data:`OWNER_MARK`) or that is empty is replaced as a
      whole. A non-empty folder the tool did not write is refused (:class:`OutputError`) unless
      ``overwrite``; then the new files are moved into it one by one and nothing else is removed.
    - ``private``: the folder is 0700 and its files 0600 (outputs that describe a person).
    - Concurrent writers to the same ``final`` are serialised by :func:`output_lock` (the second fails).
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise OutputError(f"{final} is an existing file; cannot write a folder there")
    with output_lock(final):
        foreign = final.is_dir() and not is_owned(final) and any(final.iterdir())
        if foreign and not overwrite:
            raise OutputError(f"{final} is a non-empty folder headveil did not write; choose a new folder or pass "
                              "--overwrite (only headveil's own files are then written into it)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
        try:
            yield tmp
            if not foreign:
                (tmp / OWNER_MARK).write_text("headveil output\n")
            if private:
                make_private(tmp)
            else:
                os.chmod(tmp, 0o777 & ~_umask())
            if foreign:  # write into the user's folder: replace only the names this run wrote
                for entry in sorted(tmp.iterdir()):
                    dest = final / entry.name
                    if dest.is_dir() and not dest.is_symlink():
                        shutil.rmtree(dest)
                    os.replace(entry, dest)
                tmp.rmdir()
            elif final.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
                os.replace(final, trash / "old")
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any], private: bool = False) -> None:
    """Write ``arrays`` as a compressed ``.npz`` atomically and byte-for-byte reproducibly (the zip
    entries carry a fixed date, not the time of writing, so equal arrays give an equal checksum);
    ``np.load`` reads it like any ``.npz``."""
    import io
    import zipfile

    import numpy as np

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for key in arrays:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(arrays[key]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o600 << 16
                z.writestr(info, buf.getvalue())
        atomic_replace(tmp, path, private)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
