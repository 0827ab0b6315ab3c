"""Lowering of vision ops (grid_sample, roi_align, deform_conv, max_pool_indices) to TE.

TVM's topi has grid_sample and roi_align, but not with ONNX's semantics in every mode
(cubic taps under reflection, coordinates clamped only outside the image, RoiAlign's max of
weighted taps), so each op is a ``te.compute`` over the coordinate rules its core op
definition shares with the numpy reference (``compiler.ir.ops.vision``), evaluated here on
TE expressions: both sides run the same formulas.
"""

from __future__ import annotations

import itertools
from typing import Any

from tvm import relax, te, tirx

from compiler.ir.ops.nn_conv import pool_geometry
from compiler.ir.ops.vision import (
    bilinear_zero,
    grid_pixel,
    grid_source,
    grid_taps,
    roi_box,
    roi_sample,
)

from .registry import LowerContext, lowers


def _work_dtype(dtype: str) -> str:
    return "float64" if dtype == "float64" else "float32"


def _expr(v: Any, like: Any) -> Any:
    """A Python number as a constant of ``like``'s dtype (TE needs matching operand types)."""
    if not isinstance(v, int | float):
        return v
    for attr in ("ty", "dtype"):  # expressions carry .ty, tensor loads .dtype
        if hasattr(like, attr):
            return tirx.const(v, str(getattr(like, attr)))
    return tirx.const(v, "float32")


class _TEOps:
    """The arithmetic the shared coordinate rules use, on TE expressions."""

    def __init__(self, work: str) -> None:
        self.work = work

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        a2 = _expr(a, b)
        return tirx.Select(cond, a2, _expr(b, a2))

    @staticmethod
    def trunc(x: Any) -> Any:
        return tirx.trunc(x)

    @staticmethod
    def floor(x: Any) -> Any:
        return tirx.floor(x)

    @staticmethod
    def rint(x: Any) -> Any:
        return tirx.nearbyint(x)  # half to even, like numpy's rint

    @staticmethod
    def logical_or(a: Any, b: Any) -> Any:
        return tirx.Or(a, b)

    @staticmethod
    def logical_and(a: Any, b: Any) -> Any:
        return tirx.And(a, b)

    @staticmethod
    def clip(x: Any, lo: Any, hi: Any) -> Any:
        return tirx.max(tirx.min(x, _expr(hi, x)), _expr(lo, x))

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:
        return tirx.max(a, _expr(b, a))

    @staticmethod
    def floormod2(x: Any) -> Any:
        return x - tirx.floor(x / 2) * 2

    @staticmethod
    def to_int(x: Any) -> Any:
        return tirx.Cast("int64", x)

    def to_float(self, x: Any) -> Any:
        return tirx.Cast(self.work, x)


def _static(shape) -> list[int]:
    """The sizes of a TE shape; these kernels are generated for static shapes only."""
    if not all(isinstance(d, tirx.IntImm) for d in shape):
        raise ValueError(f"needs static shapes (bind dims with --input-shape), got {list(shape)}")
    return [int(d) for d in shape]


def _sum(terms: list[Any]) -> Any:
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


# -- grid_sample -----------------------------------------------------------------------------


_TAPS = {"nearest": 1, "linear": 2, "cubic": 4}


def _grid_axis(
    grid: te.Tensor, a: int, size: int, attrs: dict[str, Any], ops: _TEOps
) -> list[tuple[te.Tensor, te.Tensor | None]]:
    """Stages of one spatial axis: its source coordinate, then each tap's index (-1 where
    it reads zero padding) and weight (None for nearest)."""
    d = grid.shape[-1]
    shape = grid.shape[:-1]
    src = te.compute(
        shape,
        lambda *i: grid_source(ops, tirx.Cast(ops.work, grid[(*i, d - 1 - a)]), size, attrs),
        name=f"grid_source{a}",
    )

    def index_fn(t: int) -> Any:
        def fn(*i: Any) -> Any:
            index, valid = grid_pixel(ops, grid_taps(ops, src[i], attrs)[t][0], size, attrs)
            return index if valid is None else tirx.Select(valid, index, _expr(-1, index))

        return fn

    def weight_fn(t: int) -> Any:
        return lambda *i: grid_taps(ops, src[i], attrs)[t][1]

    taps = []
    for t in range(_TAPS[attrs["mode"]]):
        index = te.compute(shape, index_fn(t), name=f"grid_index{a}_{t}")
        weight = None
        if attrs["mode"] != "nearest":
            weight = te.compute(shape, weight_fn(t), name=f"grid_weight{a}_{t}")
        taps.append((index, weight))
    return taps


def grid_sample_te(x: te.Tensor, grid: te.Tensor, attrs: dict[str, Any]) -> te.Tensor:
    """Per-axis tap stages, shared by all channels; the output sums the products over
    every combination of taps."""
    work = _work_dtype(x.dtype)
    ops = _TEOps(work)
    n, c, *spatial = _static(x.shape)
    out = _static(grid.shape[1:-1])
    zeros = attrs["padding_mode"] == "zeros"
    axes = [_grid_axis(grid, a, size, attrs, ops) for a, size in enumerate(spatial)]

    def body(b: Any, ch: Any, *o: Any) -> Any:
        terms = []
        for combo in itertools.product(*axes):
            at = (b, *o)
            idx = [index[at] for index, _ in combo]
            clipped = [tirx.max(i, _expr(0, i)) for i in idx] if zeros else idx
            term = tirx.Cast(work, x[(b, ch, *clipped)])
            for _, weight in combo:
                if weight is not None:
                    term = term * weight[at]
            if zeros:
                valid = idx[0] >= 0
                for i in idx[1:]:
                    valid = tirx.And(valid, i >= 0)
                term = tirx.Select(valid, term, tirx.const(0, work))
            terms.append(term)
        return tirx.Cast(x.dtype, _sum(terms))

    return te.compute((n, c, *out), body, name="grid_sample")


@lowers("grid_sample")
def _grid_sample(ctx: LowerContext, args: list) -> Any:
    return ctx.bb.call_te(
        grid_sample_te, args[0], args[1], dict(ctx.attrs), primfunc_name_hint="grid_sample"
    )


# -- roi_align -------------------------------------------------------------------------------


def roi_align_te(
    x: te.Tensor, rois: te.Tensor, batch_indices: te.Tensor, attrs: dict[str, Any]
) -> te.Tensor:
    work = _work_dtype(x.dtype)
    ops = _TEOps(work)
    n, c, height, width = _static(x.shape)
    r = _static(rois.shape)[0]
    grid = attrs["sampling_ratio"]
    iy = te.reduce_axis((0, grid), name="iy")
    ix = te.reduce_axis((0, grid), name="ix")

    def body(k: Any, ch: Any, ph: Any, pw: Any) -> Any:
        box = [tirx.Cast(work, rois[k, j]) for j in range(4)]
        y0, x0, bin_h, bin_w = roi_box(ops, box, attrs)
        y = y0 + ops.to_float(ph) * bin_h + (ops.to_float(iy) + 0.5) * bin_h / grid
        xx = x0 + ops.to_float(pw) * bin_w + (ops.to_float(ix) + 0.5) * bin_w / grid
        b = ops.clip(tirx.Cast("int64", batch_indices[k]), 0, n - 1)
        terms = [
            tirx.Cast(work, x[b, ch, row, col]) * w
            for row, col, w in roi_sample(ops, y, xx, height, width)
        ]
        if attrs["mode"] == "avg":
            return te.sum(_sum(terms) / float(grid * grid), axis=[iy, ix])
        best = terms[0]
        for t in terms[1:]:
            best = tirx.max(best, t)
        return te.max(best, axis=[iy, ix])

    y = te.compute((r, c, attrs["output_height"], attrs["output_width"]), body, name="roi_align")
    if y.dtype == x.dtype:
        return y
    return te.compute(y.shape, lambda *i: tirx.Cast(x.dtype, y(*i)), name="roi_align_cast")


@lowers("roi_align")
def _roi_align(ctx: LowerContext, args: list) -> Any:
    if ctx.attrs["sampling_ratio"] < 1:
        raise ValueError(
            f"roi_align node {ctx.node.name!r}: sampling_ratio=0 (samples per bin from each "
            "region's size, known only at run time) is not supported by the TVM backend"
        )
    return ctx.bb.call_te(roi_align_te, *args, dict(ctx.attrs), primfunc_name_hint="roi_align")


# -- deform_conv -----------------------------------------------------------------------------


def deform_columns_te(
    x: te.Tensor,
    offset: te.Tensor,
    mask: te.Tensor | None,
    kernel: tuple[int, int],
    attrs: dict[str, Any],
) -> te.Tensor:
    """(N, C, kh, kw, OH, OW): what each kernel tap reads, bilinearly at its offset
    position (zeros outside), times its mask."""
    work = _work_dtype(x.dtype)
    ops = _TEOps(work)
    n, c, height, width = _static(x.shape)
    kh, kw = kernel
    oh, ow = _static(offset.shape[2:])
    per_offset_group = c // attrs["offset_groups"]
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
    pt, pl = attrs["pads"][:2]

    def sample(b: Any, ch: Any, i: Any, j: Any, y: Any, xx: Any) -> Any:
        tap = (ch // per_offset_group * kh + i) * kw + j
        py = ops.to_float(y * sh - pt + i * dh) + tirx.Cast(work, offset[b, tap * 2, y, xx])
        px = ops.to_float(xx * sw - pl + j * dw) + tirx.Cast(work, offset[b, tap * 2 + 1, y, xx])
        terms = [
            tirx.Select(valid, tirx.Cast(work, x[b, ch, row, col]) * wt, tirx.const(0, work))
            for row, col, wt, valid in bilinear_zero(ops, py, px, height, width)
        ]
        v = _sum(terms)
        if mask is not None:
            v = v * tirx.Cast(work, mask[b, tap, y, xx])
        return tirx.Cast(x.dtype, v)

    return te.compute((n, c, kh, kw, oh, ow), sample, name="deform_columns")


@lowers("deform_conv")
def _deform_conv(ctx: LowerContext, args: list) -> Any:
    """The sampled columns (a TE kernel), then one batched matmul per group with the
    weight, so the contraction gets nnxc's matmul schedule."""
    x, w, offset, bias, mask = (list(args) + [None, None])[:5]
    out = ctx.out_types[0]
    n, m, oh, ow = out.shape
    _, cg, kh, kw = ctx.node.inputs[1].type.shape
    groups = ctx.attrs["groups"]
    attrs = dict(ctx.attrs)

    def columns(*tensors: te.Tensor) -> te.Tensor:
        mk = tensors[2] if len(tensors) > 2 else None
        return deform_columns_te(tensors[0], tensors[1], mk, (kh, kw), attrs)

    operands = [x, offset] + ([mask] if mask is not None else [])
    cols = ctx.emit(ctx.bb.call_te(columns, *operands, primfunc_name_hint="deform_columns"))
    depth = cg * kh * kw
    cols = ctx.emit(relax.op.reshape(cols, [n, groups, depth, oh * ow]))
    wg = ctx.emit(relax.op.reshape(w, [1, groups, m // groups, depth]))
    y = ctx.emit(relax.op.reshape(ctx.emit(relax.op.matmul(wg, cols)), [n, m, oh, ow]))
    if bias is None:
        return y
    return relax.op.add(y, ctx.emit(relax.op.reshape(bias, [1, m, 1, 1])))


# -- max_pool_indices ------------------------------------------------------------------------


def max_pool_indices_te(x: te.Tensor, attrs: dict[str, Any]) -> te.Tensor:
    """Window maximum, then the smallest row-major position holding it (the first in
    window order), then that position as ONNX's flattened index."""
    n, c, *spatial = _static(x.shape)
    k = len(spatial)
    out, _ = pool_geometry(spatial, attrs)
    low = tirx.min_value(x.dtype)
    plane = 1
    for s in spatial:
        plane *= s

    def window(o: list[Any], r: list[Any]) -> tuple[list[Any], Any]:
        pos = [
            o[a] * attrs["strides"][a] - attrs["pads"][a] + r[a] * attrs["dilations"][a]
            for a in range(k)
        ]
        inside = None
        for p, size in zip(pos, spatial):
            ok = tirx.And(p >= 0, p < size)
            inside = ok if inside is None else tirx.And(inside, ok)
        clipped = [tirx.max(tirx.min(p, size - 1), 0) for p, size in zip(pos, spatial)]
        return clipped, inside

    def axes(tag: str) -> list[Any]:
        return [te.reduce_axis((0, kk), name=f"{tag}{a}") for a, kk in enumerate(attrs["kernel"])]

    r1 = axes("k")

    def best_fn(b: Any, ch: Any, *o: Any) -> Any:
        pos, inside = window(list(o), r1)
        return te.max(tirx.Select(inside, x[(b, ch, *pos)], low), axis=r1)

    best = te.compute((n, c, *out), best_fn, name="pool_max")
    r2 = axes("j")
    none = tirx.const(plane, "int64")

    def key_fn(b: Any, ch: Any, *o: Any) -> Any:
        pos, inside = window(list(o), r2)
        flat = tirx.const(0, "int64")
        for p, size in zip(pos, spatial):
            flat = flat * size + tirx.Cast("int64", p)
        hit = tirx.And(inside, x[(b, ch, *pos)] == best[(b, ch, *o)])
        return te.min(tirx.Select(hit, flat, none), axis=r2)

    key = te.compute((n, c, *out), key_fn, name="pool_argmax")

    def index_fn(b: Any, ch: Any, *o: Any) -> Any:
        flat = key[(b, ch, *o)]
        pos = []
        for size in reversed(spatial):
            pos.insert(0, tirx.floormod(flat, size))
            flat = tirx.floordiv(flat, size)
        order = list(range(k))
        if attrs["storage_order"]:
            order.reverse()
        index = tirx.const(0, "int64")
        for a in order:
            index = index * spatial[a] + pos[a]
        image = tirx.Cast("int64", b) * c + tirx.Cast("int64", ch)
        return image * plane + index

    return te.compute((n, c, *out), index_fn, name="pool_indices")


@lowers("max_pool_indices")
def _max_pool_indices(ctx: LowerContext, args: list) -> Any:
    return ctx.bb.call_te(
        max_pool_indices_te, args[0], dict(ctx.attrs), primfunc_name_hint="max_pool_indices"
    )
