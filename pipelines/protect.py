"""``headveil protect``: the user-side protecting operator of the two-stage reconstruction.

Two forms:

- ``headveil protect IMAGE... --out DIR``: each image becomes ``DIR/<stem>.png`` (16-bit
  greyscale ‖g‖ codes, or ``.npy`` float32 with ``--format npy``) and ``DIR/<stem>.preview.png``
  (8-bit, ‖g‖ scaled by its 99th percentile for viewing), plus ``DIR/manifest.json``.
- ``headveil protect CAPTURE --out DIR`` (a folder with ``transforms.json``): a new capture where
  every ``protected`` view is replaced by its gradient file (``protected/NNN.png``, intrinsics
  scaled to the protected size, its mask dropped); ``neutral`` views are copied as they are.

What leaves the operator is ‖g‖ only. The RGB it protects is never written, cached or logged; the
outputs carry no metadata; file names of protected views in a capture are renumbered; the
manifest records hashes of the *outputs* (a hash of a sensitive photo would let anyone holding
that photo confirm it was used) and the operator settings. See :mod:`headveil.render.protect`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from headveil.common.errors import HeadVeilError
from headveil.common.outputs import atomic_output_dir, build_manifest, sha256_file, write_json
from headveil.render.protect import ProtectConfig, gradient_preview, protect_image, write_gradient
from headveil.pipelines.commands import command


@dataclass
class ProtectCommand:
    """Keep only colour-gradient magnitudes of face images (or of a capture's protected views)."""

    inputs: Annotated[tuple[Path, ...], tyro.conf.Positional]
    """Image files / folders of images, or one capture folder (with transforms.json)."""
    out: Path = Path("protected_out")
    """Output folder (a new folder; a capture input gives a new capture)."""
    size: int = 64
    """Longer side (px) after downsampling; 0 keeps the size."""
    blur: float = 0.0
    """Gaussian σ (px, after downsampling) before the derivatives."""
    operator: Literal["sobel", "central"] = "sobel"
    """Derivative kernel: sobel or central differences."""
    format: Literal["png", "npy"] = "png"
    """png: 16-bit codes (step 5.3e-5); npy: float32."""
    preview: bool = True
    """Also write an 8-bit preview of each gradient image (images form only)."""
    overwrite: bool = False
    """Write into an existing folder headveil did not make (only headveil's own files are replaced)."""


def run_protect(cmd: ProtectCommand) -> dict:
    from tqdm import tqdm

    from headveil.common.images import list_images, read_image, write_image

    try:
        op = ProtectConfig(cmd.size, cmd.blur, cmd.operator)
    except ValueError as exc:
        raise HeadVeilError(str(exc)) from None
    if not cmd.inputs:
        raise HeadVeilError("give at least one image, folder of images, or capture folder")
    from headveil.common.outputs import check_output_path

    check_output_path(cmd.out, cmd.inputs, cmd.overwrite)
    if len(cmd.inputs) == 1 and (Path(cmd.inputs[0]) / "transforms.json").is_file():
        return protect_capture(Path(cmd.inputs[0]), cmd.out, op, cmd.format, cmd.overwrite)
    paths = list_images(list(cmd.inputs))
    if not paths:
        raise HeadVeilError("no images found in the given paths")
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise HeadVeilError("two inputs share a file name stem; their outputs would collide")
    written, failed = [], []
    with atomic_output_dir(cmd.out, overwrite=cmd.overwrite, private=True) as tmp:
        for p in tqdm(paths, desc="protect", unit="image"):
            try:
                g = protect_image(read_image(p), op)
            except HeadVeilError as exc:
                failed.append({"file": p.name, "error": str(exc)})
                continue
            written.append(write_gradient(tmp / f"{p.stem}.{cmd.format}", g))
            if cmd.preview:
                write_image(tmp / f"{p.stem}.preview.png", gradient_preview(g))
        if not written:
            raise HeadVeilError(f"no image could be protected: {failed}")
        write_json(tmp / "manifest.json", build_manifest(
            "headveil protect", {"size": cmd.size, "blur": cmd.blur, "operator": cmd.operator, "format": cmd.format,
                                 "preview": cmd.preview}, seed=None, extra={
                "protect": op.to_json(), "failed": failed,
                "outputs": [{"path": w.name, "sha256": sha256_file(w)} for w in written],
                "note": "input hashes are deliberately not recorded (they would confirm a sensitive photo)"}))
    return {"out": Path(cmd.out), "written": len(written), "failed": failed}


#: The only keys a protected capture's ``transforms.json`` and its frames may hold (an allow-list:
#: anything else a source capture carries — model codes, ground-truth meshes, user metadata — is dropped).
CAPTURE_KEYS = ("camera_convention", "frames", "protect", "background")
FRAME_KEYS = ("file_path", "mask_path", "K", "c2w", "width", "height", "privacy", "content", "protect")


def protect_capture(src: Path, out: Path, op: ProtectConfig, fmt: str = "png", overwrite: bool = False) -> dict:
    """Turn every ``protected`` RGB view of capture ``src`` into a gradient view in a new capture ``out``.

    The new capture holds only what the allow-lists :data:`CAPTURE_KEYS` / :data:`FRAME_KEYS` name:
    intrinsics, poses, sizes, privacy labels, the gradient files and the neutral views with their
    masks, plus a manifest without input paths or hashes. Ground truth (meshes, model codes) is
    never copied: keep it in its own folder for evaluation (``headveil reconstruct --ground-truth``)."""
    from headveil.pipelines.capture import capture_path, load_capture

    cap = load_capture(src)  # validates the capture first (paths inside it, sizes, cameras)
    meta = json.loads((src / "transforms.json").read_text())
    frames = meta["frames"]
    prot = set(cap.views("protected", "rgb"))
    if not prot:
        raise HeadVeilError(f"{src} has no protected RGB views to protect")
    w0, h0 = cap.cameras[0].width, cap.cameras[0].height
    neutral_rgb = cap.views("neutral", "rgb")
    if neutral_rgb and op.size and max(w0, h0) > op.size:
        raise HeadVeilError(f"the neutral views are {w0}×{h0} but --size {op.size} would shrink the protected ones; "
                            "every view of a capture must share one size (use --size 0 or resize the capture)")
    new_frames = []
    with atomic_output_dir(out, overwrite=overwrite, private=True) as tmp:
        for i, fr in enumerate(frames):
            cam = cap.cameras[i]
            base = {"K": np.asarray(cam.K, float).tolist(), "c2w": cam.c2w.tolist(), "width": cam.width,
                    "height": cam.height, "privacy": cap.privacy[i]}
            if i in prot:
                g = protect_image(cap.images[i], op)  # the capture was read (and validated) once above
                s = g.shape[1] / cam.width
                K = np.asarray(cam.K, float).copy()
                K[:2] *= s
                name = f"protected/{len(new_frames):03d}.{fmt}"
                write_gradient(tmp / name, g)
                new = {**base, "file_path": name, "content": "gradient", "protect": op.to_json(), "K": K.tolist(),
                       "width": int(g.shape[1]), "height": int(g.shape[0])}
            elif cap.contents[i] == "gradient":  # already protected: copy the gradient file
                name = f"protected/{len(new_frames):03d}{Path(fr['file_path']).suffix}"
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(capture_path(src, fr["file_path"], "file_path"), tmp / name)
                new = {**base, "file_path": name, "content": "gradient", "protect": fr.get("protect") or cap.protect}
            else:
                new = dict(base)
                for key, folder in (("file_path", "images"), ("mask_path", "masks")):
                    if fr.get(key):
                        p = capture_path(src, fr[key], key)
                        p = p if p.exists() else p.with_suffix(".png")
                        name = f"{folder}/{len(new_frames):03d}{p.suffix}"
                        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(p, tmp / name)
                        new[key] = name
            new_frames.append({k: v for k, v in new.items() if k in FRAME_KEYS})
        meta = {"camera_convention": "opencv", "frames": new_frames, "protect": op.to_json(),
                "background": list(cap.background)}
        write_json(tmp / "transforms.json", {k: v for k, v in meta.items() if k in CAPTURE_KEYS})
        write_json(tmp / "manifest.json", build_manifest(
            "headveil protect (capture)", {"protect": op.to_json(), "format": fmt}, seed=None,
            extra={"protected_views": len(prot), "neutral_views": len(frames) - len(prot),
                   "note": "protected RGB views are not copied, input paths and hashes are not recorded, "
                           "and no ground truth is included"}))
    return {"out": Path(out), "written": len(prot), "failed": []}


@command("protect", ProtectCommand)
def _cli(cfg: ProtectCommand) -> int | None:
    res = run_protect(cfg)
    print(f"wrote {res['written']} gradient image(s) to {res['out']}/"
          + (f"; {len(res['failed'])} failed (listed in manifest.json)" if res["failed"] else "")
          + ("; next: headveil reconstruct " + str(res["out"])
             if (Path(res["out"]) / "transforms.json").is_file() else ""))
