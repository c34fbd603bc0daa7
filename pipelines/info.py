"""``headveil info``: what this installation has — model, detectors, recognizers, backends."""

from __future__ import annotations

from dataclasses import dataclass

from headveil.pipelines.commands import command


@dataclass
class InfoCommand:
    """List the embedded model, landmark detectors, recognizers and backends on this machine."""

    json: bool = False
    """Print JSON instead of text."""


def collect_info() -> dict:
    import torch

    from headveil import __version__
    from headveil.geometry.perception.detectors import DETECTORS, available_detectors
    from headveil.geometry.morphable.model import EMBEDDED_PATH, load_embedded
    from headveil.render.rasterize import BACKENDS, available_backends

    try:
        model = load_embedded().summary()
        model["path"] = str(EMBEDDED_PATH)
    except Exception as exc:  # reported, not raised: info must always print
        model = {"error": str(exc)}
    avail = available_detectors()
    from headveil.render.deid.registry import available_methods
    from headveil.geometry.perception.recognizers import RECOGNIZERS
    from headveil.geometry.perception.recognizers import is_available as recognizer_available
    return {
        "headveil": __version__,
        "embedded_model": model,
        "landmark_detectors": {d: ("available" if d in avail else "missing: install headveil[faces]") for d in DETECTORS},
        "recognizers": {r: ("available" if recognizer_available(r) else "missing: install headveil[faces]")
                        for r in RECOGNIZERS},
        "deid_methods": available_methods(),
        "restorers": _restorers(),
        "raster_backends": {b: ("available" if b in available_backends() else "missing") for b in BACKENDS},
        "hashgrid_backends": _hashgrid_backends(),
        "torch": {"version": torch.__version__, "cuda": torch.cuda.is_available(), "threads": torch.get_num_threads()},
    }


def _restorers() -> dict:
    import importlib.util

    from headveil.render.restorers import available_restorers

    ort = importlib.util.find_spec("onnxruntime") is not None
    return {r: ("available" if r != "onnx" or ort else "missing: install headveil[onnx]") for r in available_restorers()}


def _hashgrid_backends() -> dict:
    from headveil.neural_fields.encodings import BACKENDS as HG, available_backends as hg_available

    needs = {"tcnn": "missing (needs CUDA + tinycudann)", "native": "missing (needs a C compiler; set $CC)"}
    return {b: ("available" if b in hg_available() else needs.get(b, "missing")) for b in HG}


def format_info(info: dict, indent: int = 0) -> str:
    lines = []
    for k, v in info.items():
        if isinstance(v, dict):
            lines.append(" " * indent + f"{k}:")
            lines.append(format_info(v, indent + 2))
        else:
            lines.append(" " * indent + f"{k}: {v}")
    return "\n".join(lines)


@command("info", InfoCommand)
def _cli(cfg: InfoCommand) -> int | None:
    import json

    info = collect_info()
    print(json.dumps(info, indent=2) if cfg.json else format_info(info))
