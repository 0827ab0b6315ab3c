"""Tensor ops: shape and data movement (reshape, transpose, concat, split, slice, pad, ...).

Shape-defining operands are attributes here, fully resolved by the frontends: ``reshape``
holds no -1 and no copy-0, ``slice`` holds clamped non-negative indices, ``pad`` lists
begin and end pads for every axis. Symbolic dims pass through where the result stays a
plain dim name; elsewhere inference raises IRTypeError naming the dim.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..types import Dim, IRTypeError, TensorType
from .registry import Attr, define
from .shapes import broadcast_shapes, normalize_axis

# -- reshape -------------------------------------------------------------------------------


def _static_product(dims: Sequence[Dim]) -> int:
    return int(np.prod([d for d in dims if isinstance(d, int)], dtype=np.int64))


def _reshape_normalize(in_types, attrs):
    """Fill ``name_axes``: where each dim name of ``shape`` sits in the input's shape.

    The numpy reference sees arrays, not types, so it needs this to give each name its
    run-time size.
    """
    (x,) = in_types
    names = [d for d in attrs["shape"] if isinstance(d, str)]
    missing = [n for n in names if n not in x.shape]
    if missing:
        raise IRTypeError(f"reshape {x} -> {attrs['shape']}: {missing} are not dims of the input")
    return {**attrs, "name_axes": [x.shape.index(n) for n in names]}


def _reshape_infer(in_types, attrs) -> TensorType:
    (x,) = in_types
    shape = tuple(attrs["shape"])
    if any(isinstance(d, int) and d < 0 for d in shape):
        raise IRTypeError(f"reshape shape {list(shape)} must be resolved (no -1)")
    # The same dim names on both sides, and the same product of the static sizes.
    same_names = Counter(d for d in x.shape if isinstance(d, str)) == Counter(
        d for d in shape if isinstance(d, str)
    )
    if not same_names or _static_product(x.shape) != _static_product(shape):
        raise IRTypeError(f"cannot reshape {x} to {list(shape)}: element counts differ")
    return x.with_shape(shape)


def _reshape_reference(xs, attrs):
    (x,) = xs
    shape = list(attrs["shape"])
    names = iter(attrs["name_axes"])
    for i, d in enumerate(shape):
        if isinstance(d, str):
            axis = next(names)
            shape[i] = -1 if axis < 0 else x.shape[axis]
    return x.reshape(shape)


define(
    "reshape",
    inputs=["x"],
    attrs={
        "shape": Attr("dims", doc="the output shape: sizes and dim names, no -1"),
        "name_axes": Attr("ints", [], doc="filled by normalize: input axis of each dim name"),
    },
    normalize=_reshape_normalize,
    infer=_reshape_infer,
    reference=_reshape_reference,
    doc="Same elements in row-major order under a new shape.",
)

# -- transpose -----------------------------------------------------------------------------


def _transpose_normalize(in_types, attrs):
    rank = in_types[0].rank
    perm = [normalize_axis(p, rank) for p in attrs["perm"]]
    if sorted(perm) != list(range(rank)):
        raise IRTypeError(f"perm {attrs['perm']} is not a permutation of {rank} axes")
    return {**attrs, "perm": perm}


define(
    "transpose",
    inputs=["x"],
    attrs={"perm": Attr("ints", doc="output axis i is input axis perm[i]")},
    normalize=_transpose_normalize,
    infer=lambda ts, a: ts[0].with_shape([ts[0].shape[p] for p in a["perm"]]),
    reference=lambda xs, a: np.transpose(xs[0], a["perm"]),
)

# -- concat --------------------------------------------------------------------------------


def _concat_infer(in_types, attrs) -> TensorType:
    first = in_types[0]
    axis = attrs["axis"]
    for t in in_types[1:]:
        if t.dtype != first.dtype or t.rank != first.rank:
            raise IRTypeError(f"concat of {first} and {t}: dtypes or ranks differ")
        for i, (a, b) in enumerate(zip(first.shape, t.shape)):
            if i != axis and a != b and isinstance(a, int) and isinstance(b, int):
                raise IRTypeError(f"concat of {first} and {t}: dim {i} differs")
    dims = [t.shape[axis] for t in in_types]
    names = [d for d in dims if isinstance(d, str)]
    if not names:
        total: Dim = sum(int(d) for d in dims)
    elif len(names) == 1 and all(d == 0 for d in dims if isinstance(d, int)):
        total = names[0]
    else:
        raise IRTypeError(f"concat along axis {axis} of symbolic dims {dims} is not supported")
    shape = [
        next((t.shape[i] for t in in_types if isinstance(t.shape[i], int)), first.shape[i])
        for i in range(first.rank)
    ]
    shape[axis] = total
    return first.with_shape(shape)


define(
    "concat",
    inputs=["xs*"],
    attrs={"axis": Attr("int")},
    normalize=lambda ts, a: {**a, "axis": normalize_axis(a["axis"], ts[0].rank)},
    infer=_concat_infer,
    reference=lambda xs, a: np.concatenate(xs, axis=a["axis"]),
)

# -- split ---------------------------------------------------------------------------------


def _split_normalize(in_types, attrs):
    x = in_types[0]
    axis = normalize_axis(attrs["axis"], x.rank)
    sizes = attrs["sizes"]
    if any(s < 0 for s in sizes) or not sizes:
        raise IRTypeError(f"split sizes {sizes} must be non-negative, at least one")
    dim = x.shape[axis]
    if isinstance(dim, int) and sum(sizes) != dim:
        raise IRTypeError(f"split sizes {sizes} do not add up to dim {axis} of {x}")
    if isinstance(dim, str):
        raise IRTypeError(f"cannot split symbolic dim {dim!r} of {x}")
    return {**attrs, "axis": axis}


def _split_infer(in_types, attrs) -> list[TensorType]:
    x = in_types[0]
    axis, sizes = attrs["axis"], attrs["sizes"]
    return [x.with_shape(x.shape[:axis] + (s,) + x.shape[axis + 1 :]) for s in sizes]


define(
    "split",
    inputs=["x"],
    attrs={"axis": Attr("int"), "sizes": Attr("ints", doc="size of each output along axis")},
    normalize=_split_normalize,
    infer=_split_infer,
    reference=lambda xs, a: np.split(xs[0], np.cumsum(a["sizes"])[:-1], axis=a["axis"]),
    num_outputs=None,
    doc="One output per entry of sizes.",
)

# -- slice ---------------------------------------------------------------------------------


def _clamp_slice(start: int, end: int, step: int, dim: int) -> tuple[int, int, int]:
    """ONNX/numpy slice bounds of one axis made explicit: (start, end, step) in range.

    Idempotent, and read the same way by numpy and Relax: with a negative step an end of
    ``-dim - 1`` means "through index 0"; an empty slice is (0, 0, 1).
    """
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, -1), dim - 1), min(max(end, -1), dim - 1)
    if not range(start, end, step):
        return 0, 0, 1
    if end == -1:
        end = -dim - 1
    return start, end, step


def _slice_normalize(in_types, attrs):
    x = in_types[0]
    starts, ends, steps = attrs["starts"], attrs["ends"], attrs["steps"]
    axes = attrs["axes"] if attrs["axes"] else list(range(len(starts)))
    if not steps:
        steps = [1] * len(starts)
    if not len(axes) == len(starts) == len(ends) == len(steps):
        raise IRTypeError("slice axes, starts, ends and steps must have one entry each")
    entries = {}
    for axis, start, end, step in zip(axes, starts, ends, steps):
        axis = normalize_axis(axis, x.rank)
        if axis in entries:
            raise IRTypeError(f"slice repeats axis {axis}")
        if step == 0:
            raise IRTypeError("slice step must not be 0")
        dim = x.shape[axis]
        if isinstance(dim, str):
            if step == 1 and start == 0 and end >= 2**31 - 1:
                continue  # the whole of a symbolic dim
            raise IRTypeError(f"slicing symbolic dim {dim!r} of {x} is not supported")
        start, end, step = _clamp_slice(start, end, step, dim)
        if step == 1 and start == 0 and end == dim:
            continue  # the whole axis: no slicing needed
        entries[axis] = (start, end, step)
    axes = sorted(entries)
    return {
        "axes": axes,
        "starts": [entries[a][0] for a in axes],
        "ends": [entries[a][1] for a in axes],
        "steps": [entries[a][2] for a in axes],
    }


def _slice_length(start: int, end: int, step: int) -> int:
    return len(range(start, -1 if end < -1 else end, step))


def _slice_infer(in_types, attrs) -> TensorType:
    x = in_types[0]
    shape = list(x.shape)
    for axis, s, e, st in zip(attrs["axes"], attrs["starts"], attrs["ends"], attrs["steps"]):
        shape[axis] = _slice_length(s, e, st)
    return x.with_shape(shape)


def _slice_reference(xs, attrs):
    x = xs[0]
    index: list[Any] = [slice(None)] * x.ndim
    for axis, s, e, st in zip(attrs["axes"], attrs["starts"], attrs["ends"], attrs["steps"]):
        index[axis] = slice(s, e, st)
    return x[tuple(index)]


define(
    "slice",
    inputs=["x"],
    attrs={
        "axes": Attr("ints", [], doc="sliced axes, sorted; empty with starts = all leading"),
        "starts": Attr("ints"),
        "ends": Attr("ints", doc="exclusive; -dim-1 with a negative step: through index 0"),
        "steps": Attr("ints", [], doc="empty = all 1"),
    },
    normalize=_slice_normalize,
    infer=_slice_infer,
    reference=_slice_reference,
    doc="Numpy basic slicing; normalize clamps indices and drops axes taken whole.",
)

# -- pad -----------------------------------------------------------------------------------

PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_normalize(in_types, attrs):
    x = in_types[0]
    pads = attrs["pads"]
    if len(pads) != 2 * x.rank:
        raise IRTypeError(f"pad needs {2 * x.rank} pads (begin..., end...) for {x}, got {pads}")
    for i, d in enumerate(x.shape):
        if isinstance(d, str) and (pads[i] or pads[i + x.rank]):
            raise IRTypeError(f"padding symbolic dim {d!r} of {x} is not supported")
    return attrs


def _pad_infer(in_types, attrs) -> TensorType:
    x = in_types[0]
    pads, r = attrs["pads"], x.rank
    shape: list[Dim] = []
    for i, d in enumerate(x.shape):
        if isinstance(d, str):
            shape.append(d)
            continue
        n = d + pads[i] + pads[i + r]
        if n < 0:
            raise IRTypeError(f"pads {pads} remove more than all of dim {i} of {x}")
        if attrs["mode"] != "constant" and d == 0 and n != 0:
            raise IRTypeError(f"{attrs['mode']} padding of an empty dim {i} of {x}")
        if attrs["mode"] == "reflect" and max(pads[i], pads[i + r]) >= d:
            raise IRTypeError(f"reflect pads {pads} must be smaller than dim {i} of {x}")
        if attrs["mode"] == "wrap" and max(pads[i], pads[i + r]) > d:
            raise IRTypeError(f"wrap pads {pads} must not exceed dim {i} of {x}")
        shape.append(n)
    return x.with_shape(shape)


def _pad_reference(xs, attrs):
    x = xs[0]
    r = x.ndim
    begin, end = attrs["pads"][:r], attrs["pads"][r:]
    # Negative pads crop first (ONNX allows them); numpy pads only the non-negative part.
    crop = tuple(
        slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(zip(begin, end))
    )
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    if attrs["mode"] == "constant":
        return np.pad(
            x, width, mode="constant", constant_values=np.array(attrs["value"]).astype(x.dtype)
        )
    return np.pad(x, width, mode=attrs["mode"])


define(
    "pad",
    inputs=["x"],
    attrs={
        "pads": Attr("ints", doc="[begin..., end...] for every axis; negative pads crop"),
        "mode": Attr("str", "constant", PAD_MODES),
        "value": Attr("float", 0.0, doc="fill value of constant mode"),
    },
    normalize=_pad_normalize,
    infer=_pad_infer,
    reference=_pad_reference,
)

# -- tile, broadcast_to --------------------------------------------------------------------


def _tile_infer(in_types, attrs) -> TensorType:
    x = in_types[0]
    reps = attrs["repeats"]
    if len(reps) != x.rank or any(r < 0 for r in reps):
        raise IRTypeError(f"tile of {x} needs {x.rank} non-negative repeats, got {reps}")
    shape: list[Dim] = []
    for d, r in zip(x.shape, reps):
        if isinstance(d, str) and r != 1:
            raise IRTypeError(f"tiling symbolic dim {d!r} of {x} is not supported")
        shape.append(d if isinstance(d, str) else d * r)
    return x.with_shape(shape)


define(
    "tile",
    inputs=["x"],
    attrs={"repeats": Attr("ints", doc="one count per axis")},
    infer=_tile_infer,
    reference=lambda xs, a: np.tile(xs[0], a["repeats"]),
)


def _broadcast_to_infer(in_types, attrs) -> TensorType:
    x = in_types[0]
    shape = tuple(attrs["shape"])
    lead = len(shape) - x.rank
    if lead < 0 or broadcast_shapes(x.shape, shape) != shape:
        raise IRTypeError(f"cannot broadcast {x} to {list(shape)}")
    for i, d in enumerate(shape):
        if isinstance(d, str) and (i < lead or x.shape[i - lead] != d):
            # The reference reads a named size from the input's own dim at that axis.
            raise IRTypeError(f"broadcast of {x} to {list(shape)}: {d!r} is not the input's dim")
    return x.with_shape(shape)


def _broadcast_to_reference(xs, attrs):
    x = xs[0]
    shape = list(attrs["shape"])
    lead = len(shape) - x.ndim
    for i, d in enumerate(shape):
        if isinstance(d, str):  # a named dim is the input's own dim at the aligned axis
            shape[i] = x.shape[i - lead]
    return np.broadcast_to(x, shape)


define(
    "broadcast_to",
    inputs=["x"],
    attrs={"shape": Attr("dims")},
    infer=_broadcast_to_infer,
    reference=_broadcast_to_reference,
    doc="Numpy broadcasting to a given shape (one-directional).",
)

# -- shape ---------------------------------------------------------------------------------


def _shape_normalize(in_types, attrs):
    rank = in_types[0].rank
    start, end = attrs["start"], attrs["end"]
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return {"start": start, "end": max(end, start)}


define(
    "shape",
    inputs=["x"],
    attrs={"start": Attr("int", 0), "end": Attr("int", 2**62, doc="exclusive; clamped")},
    normalize=_shape_normalize,
    infer=lambda ts, a: TensorType("int64", (a["end"] - a["start"],)),
    reference=lambda xs, a: np.array(xs[0].shape[a["start"] : a["end"]], dtype=np.int64),
    reads_values=False,
    doc="The input's dims start..end as int64; folds whenever they are static.",
)

# -- identity, dropout ---------------------------------------------------------------------

define("identity", inputs=["x"], infer=lambda ts, a: ts[0], reference=lambda xs, a: xs[0])

define(
    "dropout",
    inputs=["x"],
    attrs={"ratio": Attr("float", 0.5)},
    infer=lambda ts, a: ts[0],
    reference=lambda xs, a: xs[0],
    doc="Inference dropout: the identity, kept so that simplification can remove it.",
)
