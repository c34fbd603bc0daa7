"""A reader for TensorFlow frozen graphs (``GraphDef`` ``.pb`` files) without TensorFlow.

Only the protobuf wire format is decoded (varints, length-delimited fields, fixed32/64), and only
the messages a frozen inference graph uses: ``GraphDef.node`` → ``NodeDef`` (name, op, inputs,
attributes) → ``AttrValue`` (string, int, float, bool, dtype, shape, tensor, list) → ``TensorProto``
(dtype, shape, ``tensor_content`` or the typed ``*_val`` fields). The result is plain Python and
numpy, so a graph can be run by any array library (see :mod:`headveil.geometry.perception.facenet`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headveil.common.errors import HeadVeilError

#: TensorFlow ``DataType`` enum values → numpy dtypes (the ones frozen graphs carry).
TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
             10: np.bool_, 19: np.float16}


class GraphFormatError(HeadVeilError):
    """The file is not a readable frozen TensorFlow graph."""


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise GraphFormatError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise GraphFormatError("varint too long")


def fields(buf) -> list[tuple[int, int, object]]:
    """Decode one message: ``[(field number, wire type, value)]``; a length-delimited value is a
    ``memoryview`` (a sub-message, string or packed array), a varint an int, fixed32/64 raw bytes."""
    buf = memoryview(buf)
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = bytes(buf[i:i + 8]), i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise GraphFormatError("truncated field")
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = bytes(buf[i:i + 4]), i + 4
        else:
            raise GraphFormatError(f"unsupported wire type {wt}")
        out.append((num, wt, v))
    return out


def _packed_varints(v) -> list[int]:
    buf, i, out = memoryview(v), 0, []
    while i < len(buf):
        x, i = _varint(buf, i)
        out.append(x)
    return out


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


def _shape(buf) -> list[int]:
    dims = []
    for num, _, v in fields(buf):
        if num == 2:  # TensorShapeProto.dim
            size = 0
            for n2, _, v2 in fields(v):
                if n2 == 1:
                    size = _signed(v2)
            dims.append(size)
    return dims


def _tensor(buf) -> np.ndarray:
    dtype, shape, content, vals = 1, [], None, []
    for num, wt, v in fields(buf):
        if num == 1:
            dtype = v
        elif num == 2:
            shape = _shape(v)
        elif num == 4:
            content = bytes(v)
        elif num == 5:  # float_val
            vals += list(np.frombuffer(bytes(v), "<f4")) if wt == 2 else [np.frombuffer(v, "<f4")[0]]
        elif num == 6:  # double_val
            vals += list(np.frombuffer(bytes(v), "<f8")) if wt == 2 else [np.frombuffer(v, "<f8")[0]]
        elif num in (7, 10, 11):  # int_val, int64_val, bool_val
            vals += [_signed(x) for x in (_packed_varints(v) if wt == 2 else [v])]
    if dtype not in TF_DTYPES:
        raise GraphFormatError(f"unsupported tensor dtype {dtype}")
    dt = np.dtype(TF_DTYPES[dtype]).newbyteorder("<")
    n = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, dt).astype(TF_DTYPES[dtype])
    else:
        arr = np.asarray(vals if vals else [0], TF_DTYPES[dtype])
        if arr.size == 1 and n > 1:  # a splat constant
            arr = np.full(n, arr[0], TF_DTYPES[dtype])
    if arr.size != n:
        raise GraphFormatError(f"tensor holds {arr.size} values for shape {shape}")
    return arr.reshape(shape)


def _attr(buf):
    for num, wt, v in fields(buf):
        if num == 2:
            return bytes(v).decode("utf-8", "replace")
        if num == 3:
            return _signed(v)
        if num == 4:
            return float(np.frombuffer(v, "<f4")[0])
        if num == 5:
            return bool(v)
        if num == 6:
            return ("dtype", v)
        if num == 7:
            return _shape(v)
        if num == 8:
            return _tensor(v)
        if num == 1:  # ListValue
            items: list = []
            for n2, w2, v2 in fields(v):
                if n2 == 2:
                    items.append(bytes(v2).decode("utf-8", "replace"))
                elif n2 == 3:
                    items += [_signed(x) for x in (_packed_varints(v2) if w2 == 2 else [v2])]
                elif n2 == 4:
                    items += list(np.frombuffer(bytes(v2), "<f4")) if w2 == 2 else [float(np.frombuffer(v2, "<f4")[0])]
                elif n2 == 5:
                    items += [bool(x) for x in (_packed_varints(v2) if w2 == 2 else [v2])]
            return items
    return None


@dataclass
class Node:
    """One ``NodeDef``: ``name``, ``op``, ``inputs`` (``name[:k]``, ``^control`` ones dropped), ``attr``."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attr: dict = field(default_factory=dict)


def read_graph(path: str | Path) -> dict[str, Node]:
    """The nodes of the frozen graph at ``path``, by name, in file (topological) order."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GraphFormatError(f"cannot read the graph {path}: {e.strerror or e}") from None
    nodes: dict[str, Node] = {}
    for num, wt, v in fields(data):
        if num != 1 or wt != 2:
            continue
        node = Node("", "")
        for n2, _, v2 in fields(v):
            if n2 == 1:
                node.name = bytes(v2).decode()
            elif n2 == 2:
                node.op = bytes(v2).decode()
            elif n2 == 3:
                s = bytes(v2).decode()
                if not s.startswith("^"):
                    node.inputs.append(s)
            elif n2 == 5:  # map entry: key = 1, value = 2
                key, val = None, None
                for n3, _, v3 in fields(v2):
                    if n3 == 1:
                        key = bytes(v3).decode()
                    elif n3 == 2:
                        val = _attr(v3)
                nodes_key = key if key is not None else ""
                node.attr[nodes_key] = val
        nodes[node.name] = node
    if not nodes:
        raise GraphFormatError(f"{path} holds no graph nodes")
    return nodes
