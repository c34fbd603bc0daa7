"""``headveil recover``: undo an id-keyed de-identification with its key.

``headveil deid --method id-keyed`` writes, per face, ``codes.json`` (:func:`keyed_codes`: the
protected identity code, expression, pose, camera, θ and a check value of the key — nothing of the
original); with the key, :func:`run_recover` turns the protected code back into the person's own
code and re-renders the face of ``deid.png`` at that shape into ``OUT/recovered.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from headveil.common.errors import HeadVeilError
from headveil.common.images import read_image, write_image
from headveil.common.outputs import atomic_output_dir, build_manifest, write_json
from headveil.pipelines.commands import command


@dataclass
class RecoverCommand:
    """Undo an id-keyed de-identification with its key; writes OUT/recovered.png and the recovered code."""

    folder: Annotated[Path, tyro.conf.Positional]
    """A face folder written by headveil deid --method id-keyed (OUT/0001/face0: codes.json; deid.png beside it)."""
    key_file: Path
    """The key file used for the de-identification (a wrong key is reported as wrong)."""
    out: Path | None = None
    """Output folder (default: the image folder's name + _recovered, e.g. OUT/0001_recovered)."""
    overwrite: bool = False
    """Write into an existing folder headveil did not make."""


def keyed_codes(spec, params, out, fit, model, key: bytes, camera) -> dict:
    """What ``headveil recover`` needs of an id-keyed output: the protected code (useless without the
    key), expression, pose, camera, θ and a check value of the key. Nothing of the original."""
    from headveil.geometry.identity.codes import key_check

    return {"schema": 1, "method": spec.name, "render": getattr(params, "render", None),
            "theta_deg": getattr(params, "theta", None), "key_check": key_check(key),
            "identity_protected": np.asarray(out.codes).tolist(),
            "expression": fit.expression.tolist(), "albedo": fit.albedo.tolist(),
            "R": np.asarray(fit.R).tolist(), "t": np.asarray(fit.t).tolist(), "camera": camera.to_dict(),
            "model": model.name, "frame": "model -> OpenCV camera"}


def run_recover(cmd: RecoverCommand, model=None) -> dict:
    """``headveil recover``: the identity code of an id-keyed output, re-rendered into its image.

    What it restores is the *code* α, exactly. The image is the de-identified photo with the face
    re-rendered at the recovered shape, coloured from the de-identified photo itself (the original's
    pixels were never kept): the shape is the person's again, the skin texture is what deid.png
    shows. A wrong key is refused by the key check stored with the output."""
    from headveil.common.outputs import check_output_path
    from headveil.geometry.camera import Camera
    from headveil.geometry.identity.codes import InvalidKeyError, key_check, read_key, recover_keyed
    from headveil.geometry.morphable.model import load_embedded
    from headveil.render.deid import face3d

    folder = Path(cmd.folder)
    try:
        codes = json.loads((folder / "codes.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HeadVeilError(f"{folder}: no readable codes.json ({exc}); is this a `headveil deid --method id-keyed` "
                            "output?") from None
    if codes.get("method") != "id-keyed":
        raise HeadVeilError(f"{folder} was made with {codes.get('method')!r}; only id-keyed is reversible")
    image_dir = folder if (folder / "deid.png").is_file() else folder.parent
    out = Path(cmd.out or image_dir.with_name(image_dir.name + "_recovered"))
    check_output_path(out, [image_dir], cmd.overwrite)
    key = read_key(cmd.key_file)
    if codes.get("key_check") is not None and key_check(key) != codes["key_check"]:
        raise InvalidKeyError(f"wrong key: {cmd.key_file} is not the key {folder} was made with")
    model = model or load_embedded()
    a_prot = np.asarray(codes["identity_protected"], np.float64)
    a = recover_keyed(a_prot, key, float(codes["theta_deg"]))
    img = read_image(image_dir / "deid.png")
    eta = np.asarray(codes["expression"], np.float64)
    R, t = np.asarray(codes["R"]), np.asarray(codes["t"])
    cam = Camera.from_dict(codes["camera"])
    v_prot = model.vertices(a_prot, eta)
    if codes.get("render") in ("photo", "donor"):
        colors = face3d.photo_colors(img, model, v_prot, R, t, cam)
    else:
        colors = model.albedo(codes["albedo"])
    sub = face3d.face_submesh(model)
    idx = sub.vertex_index
    comp = face3d.rerender_face(img, cam, R, t, v_prot[idx], sub.faces, model.vertices(a, eta)[idx], sub.faces,
                                colors[idx], unlit=codes.get("render") in ("photo", "donor"))
    with atomic_output_dir(out, overwrite=cmd.overwrite, private=True) as tmp:
        write_image(tmp / "recovered.png", comp.image)
        write_json(tmp / "codes.json", {"schema": 1, "method": "id-keyed", "identity_recovered": a.tolist(),
                                        "model": model.name})
        write_json(tmp / "manifest.json", build_manifest("headveil recover", {"folder": None}, seed=None,
                                                         inputs=[], backends={}, extra={"model": model.name}))
    return {"out": str(out), "delta_norm": float(np.linalg.norm(a - a_prot))}


@command("recover", RecoverCommand)
def _cli_recover(cfg: RecoverCommand) -> None:
    print(f"wrote {run_recover(cfg)['out']}/recovered.png")
