"""Indexing ops: gather / scatter in their three flavours, trilu, one_hot.

Index operands are run-time tensors (int32 or int64) and follow ONNX semantics: a negative
index counts from the end of its axis. Out-of-range indices are undefined behaviour (the
reference raises; compiled code may read anywhere), except in ``one_hot`` where they select
nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..types import IRTypeError, TensorType
from .registry import Attr, define
from .shapes import normalize_axis

INDEX_DTYPES = ("int32", "int64")
REDUCTIONS = ("none", "add", "mul", "max", "min")


def _check_indices(t: TensorType, op: str) -> None:
    if t.dtype not in INDEX_DTYPES:
        raise IRTypeError(f"{op}: indices must be int32 or int64, got {t.dtype}")


def _wrap(indices: np.ndarray, size: int | np.ndarray) -> np.ndarray:
    """Negative indices counted from the end (ONNX), as int64."""
    indices = indices.astype(np.int64)
    return np.where(indices < 0, indices + size, indices)


def _normalize_axis_attr(in_types, attrs: dict[str, Any]) -> dict[str, Any]:
    return {**attrs, "axis": normalize_axis(attrs["axis"], in_types[0].rank)}


# -- gather --------------------------------------------------------------------------------
def _gather_infer(in_types, attrs) -> TensorType:
    data, indices = in_types
    _check_indices(indices, "gather")
    axis = attrs["axis"]
    return data.with_shape(data.shape[:axis] + indices.shape + data.shape[axis + 1 :])


def _gather_ref(xs, attrs) -> np.ndarray:
    data, indices = xs
    return np.take(data, _wrap(indices, data.shape[attrs["axis"]]), axis=attrs["axis"])


define(
    "gather",
    inputs=["data", "indices"],
    attrs={"axis": Attr("int", 0)},
    normalize=_normalize_axis_attr,
    infer=_gather_infer,
    reference=_gather_ref,
    doc="Slices of data along axis picked by indices (numpy.take); output rank r + q - 1.",
)


# -- gather_elements -----------------------------------------------------------------------
def _same_rank_indices(data: TensorType, indices: TensorType, op: str) -> None:
    _check_indices(indices, op)
    if indices.rank != data.rank:
        raise IRTypeError(f"{op}: indices rank {indices.rank} != data rank {data.rank}")


def _gather_elements_infer(in_types, attrs) -> TensorType:
    data, indices = in_types
    _same_rank_indices(data, indices, "gather_elements")
    return data.with_shape(indices.shape)


def _element_coords(data: np.ndarray, indices: np.ndarray, axis: int) -> tuple[np.ndarray, ...]:
    """Full coordinates into data for each element of indices, the axis one replaced."""
    coords = list(np.indices(indices.shape, sparse=True))
    coords[axis] = _wrap(indices, data.shape[axis])
    return tuple(coords)


def _gather_elements_ref(xs, attrs) -> np.ndarray:
    data, indices = xs
    return data[_element_coords(data, indices, attrs["axis"])]


define(
    "gather_elements",
    inputs=["data", "indices"],
    attrs={"axis": Attr("int", 0)},
    normalize=_normalize_axis_attr,
    infer=_gather_elements_infer,
    reference=_gather_elements_ref,
    doc="out[i..] = data[i.. with the axis entry replaced by indices[i..]]; shape of indices.",
)


# -- gather_nd -----------------------------------------------------------------------------
def _nd_depth(data: TensorType, indices: TensorType, batch_dims: int, op: str) -> int:
    """k: how many leading data axes (after the batch ones) one index tuple addresses."""
    _check_indices(indices, op)
    if indices.rank < 1:
        raise IRTypeError(f"{op}: indices must have rank >= 1")
    k = indices.shape[-1]
    if not isinstance(k, int):
        raise IRTypeError(f"{op}: the last dimension of indices must be static, got {k!r}")
    if not 0 <= batch_dims < min(data.rank, indices.rank):
        raise IRTypeError(f"{op}: batch_dims {batch_dims} out of range")
    if batch_dims + k > data.rank:
        raise IRTypeError(
            f"{op}: index tuples of length {k} after {batch_dims} batch dims exceed "
            f"data rank {data.rank}"
        )
    return k


def _gather_nd_infer(in_types, attrs) -> TensorType:
    data, indices = in_types
    b = attrs["batch_dims"]
    k = _nd_depth(data, indices, b, "gather_nd")
    return data.with_shape(indices.shape[:-1] + data.shape[b + k :])


def _gather_nd_ref(xs, attrs) -> np.ndarray:
    data, indices = xs
    b = attrs["batch_dims"]
    k = indices.shape[-1]
    idx = _wrap(indices, np.asarray(data.shape[b : b + k]))
    batch = int(np.prod(data.shape[:b], dtype=np.int64))
    d = data.reshape((batch, *data.shape[b:]))
    ix = idx.reshape((batch, -1, k))
    rows = np.arange(batch)[:, None]
    picked = d[(rows, *(ix[..., j] for j in range(k)))]
    return picked.reshape(indices.shape[:-1] + data.shape[b + k :])


define(
    "gather_nd",
    inputs=["data", "indices"],
    attrs={"batch_dims": Attr("int", 0)},
    infer=_gather_nd_infer,
    reference=_gather_nd_ref,
    doc="Slices of data addressed by index tuples in the last axis of indices (ONNX GatherND).",
)


# -- scatter_elements ----------------------------------------------------------------------
_REDUCE_AT = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter_elements_infer(in_types, attrs) -> TensorType:
    data, indices, updates = in_types
    _same_rank_indices(data, indices, "scatter_elements")
    if updates.dtype != data.dtype or updates.shape != indices.shape:
        raise IRTypeError(
            f"scatter_elements: updates {updates} must have the dtype of data ({data.dtype}) "
            f"and the shape of indices {indices.shape}"
        )
    return data


def _scatter_into(out: np.ndarray, where: tuple, updates: np.ndarray, reduction: str) -> None:
    """In place; repeated positions apply one after the other in index order."""
    if reduction == "none":
        out[where] = updates  # numpy keeps the last write, like a sequential loop
    else:
        _REDUCE_AT[reduction].at(out, where, updates)


def _scatter_elements_ref(xs, attrs) -> np.ndarray:
    data, indices, updates = xs
    out = data.copy()
    coords = np.broadcast_arrays(*_element_coords(data, indices, attrs["axis"]))
    _scatter_into(out, tuple(coords), updates, attrs["reduction"])
    return out


define(
    "scatter_elements",
    inputs=["data", "indices", "updates"],
    attrs={"axis": Attr("int", 0), "reduction": Attr("str", "none", REDUCTIONS)},
    normalize=_normalize_axis_attr,
    infer=_scatter_elements_infer,
    reference=_scatter_elements_ref,
    doc="Inverse of gather_elements: data with updates written (or reduced) at indices.",
)


# -- scatter_nd ----------------------------------------------------------------------------
def _scatter_nd_infer(in_types, attrs) -> TensorType:
    data, indices, updates = in_types
    k = _nd_depth(data, indices, 0, "scatter_nd")
    want = indices.shape[:-1] + data.shape[k:]
    if updates.dtype != data.dtype or updates.rank != len(want):
        raise IRTypeError(
            f"scatter_nd: updates {updates} must be {data.dtype} with shape {list(want)}"
        )
    return data


def _scatter_nd_ref(xs, attrs) -> np.ndarray:
    data, indices, updates = xs
    out = data.copy()
    k = indices.shape[-1]
    idx = _wrap(indices, np.asarray(data.shape[:k])).reshape(-1, k)
    upd = updates.reshape((idx.shape[0], *data.shape[k:]))
    _scatter_into(out, tuple(idx[:, j] for j in range(k)), upd, attrs["reduction"])
    return out


define(
    "scatter_nd",
    inputs=["data", "indices", "updates"],
    attrs={"reduction": Attr("str", "none", REDUCTIONS)},
    infer=_scatter_nd_infer,
    reference=_scatter_nd_ref,
    doc="Inverse of gather_nd (batch_dims 0): slices of updates written at index tuples.",
)


# -- trilu ---------------------------------------------------------------------------------
def _trilu_infer(in_types, attrs) -> TensorType:
    (x,) = in_types
    if x.rank < 2:
        raise IRTypeError(f"trilu needs rank >= 2, got {x}")
    return x


def _trilu_ref(xs, attrs) -> np.ndarray:
    fn = np.triu if attrs["upper"] else np.tril
    return fn(xs[0], attrs["k"])


define(
    "trilu",
    inputs=["x"],
    attrs={"upper": Attr("bool", True), "k": Attr("int", 0)},
    infer=_trilu_infer,
    reference=_trilu_ref,
    doc="Upper (j - i >= k) or lower (j - i <= k) triangle of the last two axes; rest zeroed.",
)


# -- one_hot -------------------------------------------------------------------------------
def _one_hot_normalize(in_types, attrs) -> dict[str, Any]:
    return {**attrs, "axis": normalize_axis(attrs["axis"], in_types[0].rank + 1)}


def _one_hot_infer(in_types, attrs) -> TensorType:
    indices, values = in_types
    if not (indices.dtype.is_int or indices.dtype.is_float):
        raise IRTypeError(f"one_hot: indices must be numeric, got {indices.dtype}")
    if values.shape != (2,):
        raise IRTypeError(f"one_hot: values must be [off_value, on_value], got {values}")
    if attrs["depth"] < 0:
        raise IRTypeError(f"one_hot: depth must be >= 0, got {attrs['depth']}")
    axis = attrs["axis"]
    shape = indices.shape[:axis] + (attrs["depth"],) + indices.shape[axis:]
    return TensorType(values.dtype, shape)


def _one_hot_ref(xs, attrs) -> np.ndarray:
    indices, values = xs
    depth, axis = attrs["depth"], attrs["axis"]
    idx = np.expand_dims(_wrap(indices, depth), axis)
    targets = np.arange(depth).reshape((depth,) + (1,) * (indices.ndim - axis))
    return np.where(idx == targets, values[1], values[0])


define(
    "one_hot",
    inputs=["indices", "values"],
    attrs={"depth": Attr("int"), "axis": Attr("int", -1)},
    normalize=_one_hot_normalize,
    infer=_one_hot_infer,
    reference=_one_hot_ref,
    doc="values[1] where the new axis equals the index (negatives from the end), else "
    "values[0]; values = [off, on] may be computed at run time. Indices are truncated to "
    "integers; out-of-range ones give a row of off values.",
)
