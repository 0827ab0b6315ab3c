"""Reading an .onnx file safely: parse errors, truncation, and external data kept inside
the model's folder (no absolute paths, no ``..``, no links leading out)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from compiler.errors import ModelLoadError, ResourceLimitError
from compiler.limits import check_tensor, format_size, max_memory, tensor_bytes


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Parse the file without touching external data; check that the graph is complete."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{p}: no such file")
    if not p.is_file():
        raise ModelLoadError(f"{p}: not a file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"{p}: cannot read: {e.strerror}") from None
    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
        if "depth" in str(e).lower() or isinstance(e, RecursionError):
            raise ModelLoadError(
                f"{p}: messages nested deeper than protobuf reads (at most 100 levels: about "
                "30 levels of subgraphs); refused"
            ) from None
        raise ModelLoadError(f"{p}: not an ONNX model (protobuf does not parse)") from None
    check_complete(model, str(p))
    return model


def _check_text(model: onnx.ModelProto, where: str) -> None:
    """Every string field (names, op types, attributes) is UTF-8 text: protobuf hands invalid
    UTF-8 over as bytes, which no name lookup expects."""
    todo: list = [model]
    while todo:  # a stack, not recursion: subgraphs nest arbitrarily deep
        msg = todo.pop()
        for fd, value in msg.ListFields():
            values = value if fd.is_repeated else [value]
            if fd.type == fd.TYPE_STRING:
                bad = next((v for v in values if isinstance(v, bytes)), None)
                if bad is not None:
                    raise ModelLoadError(
                        f"{where}: field {fd.full_name} holds {bad[:40]!r}, which is not UTF-8 "
                        "text; not a valid ONNX model"
                    )
            elif fd.message_type is not None:
                todo.extend(values)


def check_complete(model: onnx.ModelProto, where: str = "model") -> None:
    """A prefix of a real file can still parse; a model without graph, opset, outputs, or with
    values that nothing defines is not a whole model."""
    _check_text(model, where)
    g = model.graph
    if not model.opset_import or not g.node and not g.output:
        raise ModelLoadError(f"{where}: not an ONNX model (no graph or opset); truncated?")
    if not g.output:
        raise ModelLoadError(f"{where}: the graph declares no outputs; truncated file?")
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    defined |= {t.values.name for t in g.sparse_initializer}
    for node in g.node:
        for name in node.input:
            if name and name not in defined:
                raise ModelLoadError(
                    f"{where}: {node.op_type} node {node.name or node.output[0]!r} reads "
                    f"{name!r}, which nothing defines (truncated or broken model)"
                )
        defined.update(o for o in node.output if o)
    for out in g.output:
        if out.name not in defined:
            raise ModelLoadError(f"{where}: output {out.name!r} is never computed")


def safe_external_path(base: Path, location: str) -> Path:
    """The file an external-data entry names, refused unless it stays inside ``base``."""
    if not location:
        raise ModelLoadError("external data entry without a location")
    if os.path.isabs(location) or Path(location).drive:
        raise ModelLoadError(f"external data path {location!r} is absolute; refused")
    if ".." in Path(location).parts:
        raise ModelLoadError(f"external data path {location!r} leaves the model's folder; refused")
    root = base.resolve()
    target = (base / location).resolve()
    if root != target and root not in target.parents:
        raise ModelLoadError(
            f"external data path {location!r} resolves outside the model's folder; refused"
        )
    if not target.is_file():
        raise ModelLoadError(f"external data file {location!r} is missing")
    return target


def _itemsize(tensor: onnx.TensorProto) -> int:
    """Bytes per element in memory (one for the packed sub-byte types, as the IR holds them)."""
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except Exception:  # noqa: BLE001 - an unknown type: reading it reports that
        return 1


def declared_bytes(tensor: onnx.TensorProto) -> int:
    """The bytes ``tensor`` takes in memory as its dims declare them."""
    return tensor_bytes(tensor.dims, _itemsize(tensor))


def check_declared(tensor: onnx.TensorProto, what: str) -> None:
    """Refuse a tensor whose declared dims exceed the memory limit, before reading its data."""
    check_tensor(what, tensor.dims, _itemsize(tensor))


def check_total(tensors: Iterable[onnx.TensorProto]) -> None:
    """Refuse initializers that together exceed the memory limit, before reading any."""
    tensors = list(tensors)
    for t in tensors:  # the one too large by itself is named
        check_declared(t, f"initializer {t.name!r}")
    total = sum(declared_bytes(t) for t in tensors)
    if total > max_memory():
        raise ResourceLimitError(
            f"the model's {len(tensors)} initializers need {format_size(total)} in all, over "
            f"the memory limit of {format_size(max_memory())} (--max-memory)"
        )


def tensor_to_array(tensor: onnx.TensorProto, base: Path | None) -> np.ndarray:
    """An initializer's data; external data is memory-mapped from its file when aligned.

    The declared size is checked against the memory limit first: nothing is allocated for a
    tensor that would not fit.
    """
    check_declared(tensor, f"initializer {tensor.name!r}")
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        try:
            return numpy_helper.to_array(tensor)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"initializer {tensor.name!r} is unreadable: {e}") from None
    if base is None:
        raise ModelLoadError(
            f"initializer {tensor.name!r} has external data, but the model was not loaded "
            "from a file: pass a path"
        )
    info = {e.key: e.value for e in tensor.external_data}
    path = safe_external_path(base, info.get("location", ""))
    offset = int(info.get("offset", 0))
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    shape = tuple(tensor.dims)
    count = math.prod(shape)
    bits = _PACKED_BITS.get(tensor.data_type, 8 * dtype.itemsize)
    nbytes = (count * bits + 7) // 8
    if "length" in info and int(info["length"]) != nbytes:
        raise ModelLoadError(f"initializer {tensor.name!r}: external length does not match dims")
    if offset + nbytes > path.stat().st_size:
        raise ModelLoadError(f"initializer {tensor.name!r}: external file {path.name} is too short")
    if count == 0:
        return np.zeros(shape, dtype)
    if bits < 8:
        packed = np.fromfile(path, dtype=np.uint8, count=nbytes, offset=offset)
        return unpack_bits(packed, bits, count).view(dtype).reshape(shape)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


_PACKED_BITS = {
    onnx.TensorProto.INT4: 4,
    onnx.TensorProto.UINT4: 4,
    onnx.TensorProto.FLOAT4E2M1: 4,
    **{getattr(onnx.TensorProto, n): 2 for n in ("INT2", "UINT2") if hasattr(onnx.TensorProto, n)},
}
"""ONNX stores these element types packed, several per byte, the first in the low bits; the
IR holds one element per byte (see compiler/ir/types.py)."""


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """One uint8 per element holding its bit pattern, from ONNX's packed bytes."""
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    fields = (packed[:, None] >> shifts[None, :]) & np.uint8((1 << bits) - 1)
    return np.ascontiguousarray(fields.reshape(-1)[:count])
