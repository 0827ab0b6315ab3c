"""The legacy (spec <= 3) tensor and arithmetic layers on the trailing [C, H, W] axes: concat,
softmax, reshape, flatten, permute, add/multiply/average/max/min, unary, loadConstant, reduce,
split, slice, reorganizeData, sequenceRepeat, dot.

Every leading axis is a batch axis; under the rank-5 mapping ``[Seq, Batch, C, H, W]`` the Seq
axis (-5) is what ``concat`` (sequenceConcat), ``sequenceRepeat``, ``permute`` and 4-entry
``reshape`` targets move. Semantics follow NeuralNetwork.proto and, where its comments are
silent, Core ML's own shape inference (``NeuralNetworkShapes.cpp``) and the way coremltools
lowers MIL ops onto these layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from coremltools.proto import NeuralNetwork_pb2 as _nn

from compiler.ir.graph import Value

from .registry import NnContext, layer

_EPSILON = 1e-6
"""The proto's default of ``unary.epsilon`` and ``reduce.epsilon`` (used when 0)."""


# -- helpers ---------------------------------------------------------------------------------


def _rank_at_least(ctx: NnContext, v: Value, rank: int, why: str) -> None:
    if len(v.shape) < rank:
        raise ctx.error(f"{why}: the input must have rank >= {rank}, got {list(v.shape)}")


def _static(ctx: NnContext, v: Value, axes: Sequence[int], why: str) -> list[int]:
    """The sizes of ``axes`` of ``v``, which must be known (not flexible)."""
    dims = [v.shape[a] for a in axes]
    if any(isinstance(d, str) for d in dims):
        raise ctx.error(
            f"{why} needs static sizes, got {list(v.shape)} (bind flexible dims with --input-shape)"
        )
    return [int(d) for d in dims]


def _scalar(ctx: NnContext, value: float, like: Value) -> Value:
    return ctx.const(np.array(value, np.float32), like.dtype)


def _reshape(ctx: NnContext, v: Value, shape: Sequence[int | str]) -> Value:
    if tuple(shape) == tuple(v.shape):
        return v
    return ctx.emit("reshape", v, shape=list(shape))


def _inputs(ctx: NnContext) -> list[Value]:
    if not ctx.inputs:
        raise ctx.error("needs at least one input")
    return [ctx.x(i) for i in range(len(ctx.inputs))]


# -- softmax, unary --------------------------------------------------------------------------


@layer("softmax")
def softmax(ctx: NnContext) -> Value:
    """Over the channel axis (-3) only; other axes are softmaxND's."""
    x = ctx.x()
    _rank_at_least(ctx, x, 3, "softmax normalizes axis -3")
    return ctx.emit("softmax", x, axis=-3)


_UNARY = _nn.UnaryFunctionLayerParams


@layer("unary")
def unary(ctx: NnContext) -> Value:
    """``f(scale * x + shift)``; scale 0 means 1, epsilon 0 means 1e-6. RSQRT, INVERSE and
    LOG add epsilon (coremltools lowers MIL ``log(x + epsilon)`` onto LOG with it)."""
    p = ctx.params
    x = ctx.x()
    scale = p.scale or 1.0
    eps = p.epsilon or _EPSILON
    if scale != 1.0:
        x = ctx.emit("mul", x, _scalar(ctx, scale, x))
    if p.shift != 0.0:
        x = ctx.emit("add", x, _scalar(ctx, p.shift, x))
    kind = p.type
    if kind == _UNARY.SQRT:
        return ctx.emit("sqrt", x)
    if kind == _UNARY.RSQRT:
        return ctx.emit("reciprocal", ctx.emit("sqrt", ctx.emit("add", x, _scalar(ctx, eps, x))))
    if kind == _UNARY.INVERSE:
        return ctx.emit("reciprocal", ctx.emit("add", x, _scalar(ctx, eps, x)))
    if kind == _UNARY.POWER:
        return ctx.emit("pow", x, _scalar(ctx, p.alpha, x))
    if kind == _UNARY.EXP:
        return ctx.emit("exp", x)
    if kind == _UNARY.LOG:
        return ctx.emit("log", ctx.emit("add", x, _scalar(ctx, eps, x)))
    if kind == _UNARY.ABS:
        return ctx.emit("abs", x)
    if kind == _UNARY.THRESHOLD:
        return ctx.emit("maximum", x, _scalar(ctx, p.alpha, x))
    raise ctx.error(f"unary function {kind} is not one Core ML defines")


# -- add, multiply, average, max, min, dot ---------------------------------------------------


def _fold(ctx: NnContext, op: str, xs: list[Value]) -> Value:
    """``xs[0] op xs[1] op ...`` with numpy broadcasting, which aligns the trailing
    [C, H, W] axes (coremltools lowers MIL's numpy-broadcasting add/mul onto these layers
    for inputs of different ranks the same way)."""
    out = xs[0]
    for v in xs[1:]:
        out = ctx.emit(op, out, v)
    return out


@layer("add")
def add(ctx: NnContext) -> Value:
    """The sum of the inputs; a single input gets ``alpha`` added."""
    xs = _inputs(ctx)
    if len(xs) == 1:
        return ctx.emit("add", xs[0], _scalar(ctx, ctx.params.alpha, xs[0]))
    return _fold(ctx, "add", xs)


@layer("multiply")
def multiply(ctx: NnContext) -> Value:
    """The product of the inputs; a single input is multiplied by ``alpha`` (as the proto
    says: an unset alpha is 0, not 1)."""
    xs = _inputs(ctx)
    if len(xs) == 1:
        return ctx.emit("mul", xs[0], _scalar(ctx, ctx.params.alpha, xs[0]))
    return _fold(ctx, "mul", xs)


@layer("average")
def average(ctx: NnContext) -> Value:
    xs = _inputs(ctx)
    total = _fold(ctx, "add", xs)
    if len(xs) == 1:
        return total
    return ctx.emit("div", total, _scalar(ctx, float(len(xs)), total))


@layer("max")
def maximum(ctx: NnContext) -> Value:
    return _fold(ctx, "maximum", _inputs(ctx))


@layer("min")
def minimum(ctx: NnContext) -> Value:
    return _fold(ctx, "minimum", _inputs(ctx))


@layer("dot")
def dot(ctx: NnContext) -> Value:
    """The dot product of two [..., C, 1, 1] blobs over C, as [..., 1, 1, 1]; with
    ``cosineSimilarity`` divided by both L2 norms (a zero vector gives NaN)."""
    a, b = ctx.x(0), ctx.x(1)
    for v in (a, b):
        _rank_at_least(ctx, v, 3, "dot works on [C, 1, 1] vectors")
        if tuple(v.shape[-2:]) != (1, 1):
            raise ctx.error(f"the inputs must be [..., C, 1, 1] vectors, got {list(v.shape)}")
    if len(a.shape) != len(b.shape):
        raise ctx.error(f"the inputs must have one rank, got {list(a.shape)} and {list(b.shape)}")
    axes = [-3, -2, -1]
    out = ctx.emit("reduce_sum", ctx.emit("mul", a, b), axes=axes, keepdims=True)
    if not ctx.params.cosineSimilarity:
        return out
    norm_a = ctx.emit("reduce_l2", a, axes=axes, keepdims=True)
    norm_b = ctx.emit("reduce_l2", b, axes=axes, keepdims=True)
    return ctx.emit("div", out, ctx.emit("mul", norm_a, norm_b))


# -- reduce ----------------------------------------------------------------------------------

_REDUCE = _nn.ReduceLayerParams
_REDUCE_AXES = {
    _REDUCE.CHW: [-3, -2, -1],
    _REDUCE.HW: [-2, -1],
    _REDUCE.C: [-3],
    _REDUCE.H: [-2],
    _REDUCE.W: [-1],
}
_REDUCE_OPS = {
    _REDUCE.SUM: "reduce_sum",
    _REDUCE.AVG: "reduce_mean",
    _REDUCE.PROD: "reduce_prod",
    _REDUCE.SUMSQUARE: "reduce_sum_square",
    _REDUCE.L1: "reduce_l1",
    _REDUCE.L2: "reduce_l2",
    _REDUCE.MAX: "reduce_max",
    _REDUCE.MIN: "reduce_min",
}


@layer("reduce")
def reduce(ctx: NnContext) -> Value:
    """Reduced axes are kept as 1. LOGSUM is ``sum(log(x + epsilon))`` (not log of the sum);
    ARGMAX gives the index as a float, along one axis only."""
    p = ctx.params
    x = ctx.x()
    axes = _REDUCE_AXES.get(p.axis)
    if axes is None:
        raise ctx.error(f"reduce axis {p.axis} is not one Core ML defines")
    _rank_at_least(ctx, x, -min(axes), "reduce")
    if p.mode == _REDUCE.ARGMAX:
        if len(axes) != 1:
            name = _REDUCE.ReduceAxis.Name(p.axis)
            raise ctx.error(f"ARGMAX reduces one axis (C, H or W), not {name}")
        index = ctx.emit("argmax", x, axis=axes[0], keepdims=True)
        return ctx.emit("cast", index, to=x.dtype)
    if p.mode == _REDUCE.LOGSUM:
        eps = p.epsilon or _EPSILON
        logs = ctx.emit("log", ctx.emit("add", x, _scalar(ctx, eps, x)))
        return ctx.emit("reduce_sum", logs, axes=axes, keepdims=True)
    op = _REDUCE_OPS.get(p.mode)
    if op is None:
        raise ctx.error(f"reduce mode {p.mode} is not one Core ML defines")
    return ctx.emit(op, x, axes=axes, keepdims=True)


# -- loadConstant ----------------------------------------------------------------------------


@layer("loadConstant")
def load_constant(ctx: NnContext) -> Value:
    """A [C, H, W] constant as the rank-5 blob [1, 1, C, H, W] (in both mappings)."""
    shape = [int(d) for d in ctx.params.shape]
    if len(shape) != 3:
        raise ctx.error(f"shape must be [C, H, W], got {shape}")
    data = ctx.weights(ctx.params.data, shape, "data")
    return ctx.const(data.reshape([1, 1, *shape]), "float32")


# -- reshape, flatten, permute ---------------------------------------------------------------

_RESHAPE = _nn.ReshapeLayerParams
_FLATTEN = _nn.FlattenLayerParams


def _to_hwc(ctx: NnContext, x: Value) -> Value:
    """[..., C, H, W] -> [..., H, W, C]: the element order of the CHANNEL_LAST modes."""
    r = len(x.shape)
    return ctx.emit("transpose", x, perm=[*range(r - 3), r - 2, r - 1, r - 3])


@layer("reshape")
def reshape(ctx: NnContext) -> Value:
    """A rank-5 blob [Seq, B, C, H, W] to ``targetShape`` [C, H, W] (Seq kept) or
    [Seq, C, H, W]. CHANNEL_FIRST reads and writes the elements in [C, H, W] order,
    CHANNEL_LAST in [H, W, C] order (flatten as H, W, C; fill H_out, W_out, C_out)."""
    p = ctx.params
    x = ctx.x()
    target = [int(d) for d in p.targetShape]
    if len(target) not in (3, 4):
        raise ctx.error(f"targetShape must have 3 or 4 entries, got {target}")
    if len(x.shape) != 5:
        raise ctx.error(f"the input must be a rank-5 blob [Seq, B, C, H, W], got {list(x.shape)}")
    if any(d <= 0 for d in target):
        raise ctx.error(f"targetShape {target} must be positive")
    seq, batch = x.shape[0], x.shape[1]
    if len(target) == 4:
        s, b = _static(ctx, x, [0, 1], "reshaping the Seq axis")
        if b != 1:
            raise ctx.error(f"a 4-entry targetShape needs batch 1, got {list(x.shape)}")
        out_seq: int | str = target[0]
        c, h, w = target[1:]
        in_count = s * int(np.prod(_static(ctx, x, [2, 3, 4], "reshape")))
        out_count = int(np.prod(target))
    else:
        out_seq = seq
        c, h, w = target
        in_count = int(np.prod(_static(ctx, x, [2, 3, 4], "reshape")))
        out_count = c * h * w
    if in_count != out_count:
        raise ctx.error(f"cannot reshape {list(x.shape)} to targetShape {target}")
    if p.mode == _RESHAPE.CHANNEL_FIRST:
        return _reshape(ctx, x, [out_seq, batch, c, h, w])
    if p.mode != _RESHAPE.CHANNEL_LAST:
        raise ctx.error(f"reshape mode {p.mode} is not one Core ML defines")
    hwc = _reshape(ctx, _to_hwc(ctx, x), [out_seq, batch, h, w, c])
    return ctx.emit("transpose", hwc, perm=[0, 1, 4, 2, 3])


@layer("flatten")
def flatten(ctx: NnContext) -> Value:
    """[..., C, H, W] -> [..., C*H*W, 1, 1]; CHANNEL_LAST in H, W, C order."""
    x = ctx.x()
    _rank_at_least(ctx, x, 3, "flatten")
    c, h, w = _static(ctx, x, [-3, -2, -1], "flatten")
    lead = list(x.shape[:-3])
    mode = ctx.params.mode
    if mode == _FLATTEN.CHANNEL_LAST and (h != 1 or w != 1) and c != 1:
        x = _to_hwc(ctx, x)
    elif mode not in (_FLATTEN.CHANNEL_FIRST, _FLATTEN.CHANNEL_LAST):
        raise ctx.error(f"flatten mode {mode} is not one Core ML defines")
    return _reshape(ctx, x, [*lead, c * h * w, 1, 1])


@layer("permute")
def permute(ctx: NnContext) -> Value:
    """``axis`` permutes [Seq, C, H, W] of a rank-5 blob; the batch axis stays in place."""
    x = ctx.x()
    axis = [int(a) for a in ctx.params.axis] or [0, 1, 2, 3]
    if sorted(axis) != [0, 1, 2, 3]:
        raise ctx.error(f"axis must be a permutation of [0, 1, 2, 3], got {axis}")
    if len(x.shape) != 5:
        raise ctx.error(f"the input must be a rank-5 blob [Seq, B, C, H, W], got {list(x.shape)}")
    blob_axis = [0, 2, 3, 4]  # [Seq, C, H, W] in [Seq, B, C, H, W]
    perm = [blob_axis[axis[0]], 1, *(blob_axis[a] for a in axis[1:])]
    if perm == [0, 1, 2, 3, 4]:
        return x
    return ctx.emit("transpose", x, perm=perm)


# -- concat, split, sequenceRepeat -----------------------------------------------------------


@layer("concat")
def concat(ctx: NnContext) -> Value:
    """Along C (axis -3), or along Seq (axis -5) with ``sequenceConcat``."""
    xs = _inputs(ctx)
    axis, rank = (-5, 5) if ctx.params.sequenceConcat else (-3, 3)
    for v in xs:
        _rank_at_least(ctx, v, rank, f"concat along axis {axis}")
    if len({len(v.shape) for v in xs}) > 1:
        raise ctx.error(f"the inputs must have one rank, got {[list(v.shape) for v in xs]}")
    if len(xs) == 1:
        return xs[0]
    return ctx.emit("concat", *xs, axis=axis)


@layer("split")
def split(ctx: NnContext) -> list[Value]:
    """``nOutputs`` equal parts along C (axis -3)."""
    x = ctx.x()
    _rank_at_least(ctx, x, 3, "split along axis -3")
    n = int(ctx.params.nOutputs) or ctx.num_outputs
    if n != ctx.num_outputs:
        raise ctx.error(f"nOutputs is {n} but the layer has {ctx.num_outputs} outputs")
    (c,) = _static(ctx, x, [-3], "split")
    if c % n:
        raise ctx.error(f"{c} channels do not split into {n} equal parts")
    if n == 1:
        return [x]
    return ctx.op("split", [x], axis=-3, sizes=[c // n] * n)


@layer("sequenceRepeat")
def sequence_repeat(ctx: NnContext) -> Value:
    """The whole blob repeated ``nRepetitions`` times along Seq (axis -5); 0 means 1."""
    x = ctx.x()
    _rank_at_least(ctx, x, 5, "sequenceRepeat repeats axis -5")
    n = int(ctx.params.nRepetitions) or 1
    if n == 1:
        return x
    reps = [1] * len(x.shape)
    reps[-5] = n
    return ctx.emit("tile", x, repeats=reps)


# -- reorganizeData, slice -------------------------------------------------------------------

_REORG = _nn.ReorganizeDataLayerParams


@layer("reorganizeData")
def reorganize_data(ctx: NnContext) -> Value:
    """SPACE_TO_DEPTH and its inverse DEPTH_TO_SPACE move b x b blocks between space and
    channels with the block offset as the major part of the channel (TensorFlow's and
    ONNX's DCR order); PIXEL_SHUFFLE keeps the channel major (PyTorch's, ONNX's CRD)."""
    p = ctx.params
    x = ctx.x()
    _rank_at_least(ctx, x, 3, "reorganizeData")
    b = int(p.blockSize)
    if b < 2:
        raise ctx.error(f"blockSize must be at least 2, got {b}")
    c, h, w = _static(ctx, x, [-3, -2, -1], "reorganizeData")
    lead = list(x.shape[:-3])
    k = len(lead)
    if p.mode == _REORG.SPACE_TO_DEPTH:
        if h % b or w % b:
            raise ctx.error(f"H and W of {list(x.shape)} are not multiples of blockSize {b}")
        t = _reshape(ctx, x, [*lead, c, h // b, b, w // b, b])
        perm = [*range(k), k + 2, k + 4, k, k + 1, k + 3]
        t = ctx.emit("transpose", t, perm=perm)
        return _reshape(ctx, t, [*lead, c * b * b, h // b, w // b])
    if p.mode not in (_REORG.DEPTH_TO_SPACE, _REORG.PIXEL_SHUFFLE):
        raise ctx.error(f"reorganizeData mode {p.mode} is not one Core ML defines")
    if c % (b * b):
        raise ctx.error(f"{c} channels are not a multiple of blockSize^2 = {b * b}")
    oc = c // (b * b)
    if p.mode == _REORG.DEPTH_TO_SPACE:
        t = _reshape(ctx, x, [*lead, b, b, oc, h, w])
        perm = [*range(k), k + 2, k + 3, k, k + 4, k + 1]
    else:
        t = _reshape(ctx, x, [*lead, oc, b, b, h, w])
        perm = [*range(k), k, k + 3, k + 1, k + 4, k + 2]
    t = ctx.emit("transpose", t, perm=perm)
    return _reshape(ctx, t, [*lead, oc, h * b, w * b])


_SLICE = _nn.SliceLayerParams
_SLICE_AXES = {_SLICE.CHANNEL_AXIS: -3, _SLICE.HEIGHT_AXIS: -2, _SLICE.WIDTH_AXIS: -1}


@layer("slice")
def slice_(ctx: NnContext) -> Value:
    """``x[start:end:stride]`` along C, H or W. Negative indices count from the end, and
    an end of 0 means the end of the axis (Core ML's shape rule: with start -3 and end 0
    the output has 3 entries)."""
    p = ctx.params
    x = ctx.x()
    axis = _SLICE_AXES.get(p.axis)
    if axis is None:
        raise ctx.error(f"slice axis {p.axis} is not one Core ML defines")
    _rank_at_least(ctx, x, -axis, "slice")
    (n,) = _static(ctx, x, [axis], "slice")
    stride = int(p.stride)
    if stride < 1:
        raise ctx.error(f"stride must be positive, got {stride}")
    start, end = int(p.startIndex), int(p.endIndex)
    start = start + n if start < 0 else start
    end = end + n if end <= 0 else end
    start, end = min(max(start, 0), n), min(max(end, 0), n)
    if end <= start:
        raise ctx.error(
            f"startIndex {p.startIndex} and endIndex {p.endIndex} select nothing of {n} entries"
        )
    return ctx.emit("slice", x, axes=[axis], starts=[start], ends=[end], steps=[stride])
