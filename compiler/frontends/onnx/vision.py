"""Converters of ONNX vision and detection ops: GridSample, RoiAlign, DeformConv (core ops of
their own), AffineGrid, Col2Im, CenterCropPad, MaxUnpool (exact decompositions), and
NonMaxSuppression, whose output size is the number of boxes kept: like NonZero, it converts
only when its inputs are known at compile time, and becomes a constant.
"""

from __future__ import annotations

import itertools

import numpy as np

from compiler.ir.graph import Value

from .registry import NodeContext, converter


def _static_shape(ctx: NodeContext, x: Value, what: str) -> list[int]:
    if not x.type.is_static:
        raise ctx.error(f"{what} needs a static shape, got {x.type}")
    return [int(d) for d in x.shape]


def _ints(ctx: NodeContext, i: int, what: str) -> list[int]:
    return [int(v) for v in ctx.require_value(i, what).reshape(-1)]


# -- GridSample ------------------------------------------------------------------------------

_GRID_MODES_16 = {"bilinear": "linear", "nearest": "nearest", "bicubic": "cubic"}


def _grid_sample(ctx: NodeContext, mode: str):
    x, grid = ctx.input(0), ctx.input(1)
    padding = ctx.attr("padding_mode", "zeros")
    if padding not in ("zeros", "border", "reflection"):
        raise ctx.error(f"padding_mode {padding!r} is not supported")
    return ctx.emit(
        "grid_sample",
        x,
        grid,
        mode=mode,
        padding_mode=padding,
        align_corners=bool(ctx.attr("align_corners", 0)),
    )


@converter("GridSample", since=16)
def grid_sample_v16(ctx: NodeContext):
    """Opset 16: 4-D only, modes named bilinear/bicubic."""
    mode = ctx.attr("mode", "bilinear")
    if mode not in _GRID_MODES_16:
        raise ctx.error(f"mode {mode!r} is not one of {list(_GRID_MODES_16)}")
    if ctx.input(0).type.rank != 4:
        raise ctx.error(f"opset 16 GridSample takes 4-D inputs, got {ctx.input(0).type}")
    return _grid_sample(ctx, _GRID_MODES_16[mode])


@converter("GridSample", since=20)
@converter("GridSample", since=22)
def grid_sample(ctx: NodeContext):
    """Opset 20+: N-D, modes named linear/cubic (22 only widens the types)."""
    mode = ctx.attr("mode", "linear")
    if mode not in ("linear", "nearest", "cubic"):
        raise ctx.error(f"mode {mode!r} is not one of linear, nearest, cubic")
    return _grid_sample(ctx, mode)


# -- AffineGrid ------------------------------------------------------------------------------


def _affine_axis(size: int, align_corners: bool) -> np.ndarray:
    """Normalized [-1, 1] coordinates of the pixels along one axis (centers or edges)."""
    i = np.arange(size, dtype=np.float64)
    if align_corners:
        return -1 + 2 * i / (size - 1) if size > 1 else np.full(size, -1.0)
    return -1 + (2 * i + 1) / size


@converter("AffineGrid", since=20)
def affine_grid(ctx: NodeContext):
    """grid[n, p] = theta[n] @ (x, y[, z], 1) of pixel p: a constant base grid times theta."""
    theta = ctx.input(0)
    size = _ints(ctx, 1, "size")
    spatial = size[2:]
    d = len(spatial)
    if d not in (2, 3) or theta.type.rank != 3 or theta.shape[1:] != (d, d + 1):
        raise ctx.error(f"theta {theta.type} and size {size} need (N, {d}, {d + 1}), d in 2, 3")
    align = bool(ctx.attr("align_corners", 0))
    axes = np.meshgrid(*[_affine_axis(s, align) for s in spatial], indexing="ij")
    # The grid lists the innermost axis first: (x, y) or (x, y, z), then 1.
    base = np.stack([*axes[::-1], np.ones(spatial)], axis=-1).reshape(-1, d + 1)
    t = ctx.emit("transpose", theta, perm=[0, 2, 1])  # (N, d+1, d)
    grid = ctx.emit("matmul", ctx.const(base, theta.dtype), t)  # (N, pixels, d)
    return ctx.emit("reshape", grid, shape=[theta.shape[0], *spatial, d])


# -- RoiAlign --------------------------------------------------------------------------------


def _roi_align(ctx: NodeContext, half_pixel: bool):
    mode = ctx.attr("mode", "avg")
    if mode not in ("avg", "max"):
        raise ctx.error(f"mode {mode!r} is not avg or max")
    idx = ctx.input(2)
    return ctx.emit(
        "roi_align",
        ctx.input(0),
        ctx.input(1),
        idx,
        mode=mode,
        output_height=int(ctx.attr("output_height", 1)),
        output_width=int(ctx.attr("output_width", 1)),
        sampling_ratio=int(ctx.attr("sampling_ratio", 0)),
        spatial_scale=float(ctx.attr("spatial_scale", 1.0)),
        half_pixel=half_pixel,
    )


@converter("RoiAlign", since=10)
def roi_align_v10(ctx: NodeContext):
    """Opset 10 has no coordinate_transformation_mode: it is output_half_pixel."""
    return _roi_align(ctx, half_pixel=False)


@converter("RoiAlign", since=16)
def roi_align(ctx: NodeContext):
    ctm = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if ctm not in ("half_pixel", "output_half_pixel"):
        raise ctx.error(f"coordinate_transformation_mode {ctm!r} is not supported")
    return _roi_align(ctx, half_pixel=ctm == "half_pixel")


# -- DeformConv ------------------------------------------------------------------------------


@converter("DeformConv", since=19)
@converter("DeformConv", since=22)
def deform_conv(ctx: NodeContext):
    x, w = ctx.input(0), ctx.input(1)
    if x.type.rank != 4:
        raise ctx.error(f"only 2-D deformable convolution is supported, got {x.type}")
    kernel = ctx.attr("kernel_shape")
    if kernel is not None and list(kernel) != list(w.shape[2:]):
        raise ctx.error(f"kernel_shape {kernel} differs from the weight's {w.type}")
    return ctx.emit(
        "deform_conv",
        x,
        w,
        ctx.input(2),
        ctx.input(3),
        ctx.input(4),
        strides=list(ctx.attr("strides", [1, 1])),
        pads=list(ctx.attr("pads", [0, 0, 0, 0])),
        dilations=list(ctx.attr("dilations", [1, 1])),
        groups=int(ctx.attr("group", 1)),
        offset_groups=int(ctx.attr("offset_group", 1)),
    )


# -- Col2Im ----------------------------------------------------------------------------------


@converter("Col2Im", since=18)
def col2im(ctx: NodeContext):
    """Summing each column back onto its image window is a transposed convolution of the
    columns, laid out as (N, C*K, blocks...), with a one-hot (C*K, 1, kernel...) weight and
    groups=C: every product is with 1 or 0, so the result is exact."""
    x = ctx.input(0)
    image = _ints(ctx, 1, "image_shape")
    kernel = _ints(ctx, 2, "block_shape")
    n = len(image)
    if len(kernel) != n or not 1 <= n <= 3:
        raise ctx.error(f"image_shape {image} and block_shape {kernel} need 1 to 3 equal entries")
    strides = list(ctx.attr("strides", [1] * n))
    dilations = list(ctx.attr("dilations", [1] * n))
    pads = list(ctx.attr("pads", [0] * 2 * n))
    nb, ck, length = _static_shape(ctx, x, "Col2Im input")
    k = int(np.prod(kernel))
    blocks = [
        (image[i] + pads[i] + pads[n + i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
        for i in range(n)
    ]
    if ck % k or min(blocks) < 1 or int(np.prod(blocks)) != length:
        raise ctx.error(
            f"input {x.type} does not hold C * {k} rows of {int(np.prod(blocks))} blocks "
            f"(image {image}, block {kernel})"
        )
    weight = np.zeros((ck, 1, *kernel))
    for j, offs in enumerate(itertools.product(*[range(s) for s in kernel])):
        weight[(slice(j, None, k), 0, *offs)] = 1
    cols = ctx.emit("reshape", x, shape=[nb, ck, *blocks])
    # A trailing remainder the strides do not reach is still part of the image.
    extra = [
        image[i]
        - ((blocks[i] - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1)
        + pads[i]
        + pads[n + i]
        for i in range(n)
    ]
    return ctx.emit(
        "conv_transpose",
        cols,
        ctx.const(weight, x.dtype),
        None,
        strides=strides,
        dilations=dilations,
        pads=pads,
        output_padding=extra,
        groups=ck // k,
    )


# -- CenterCropPad ---------------------------------------------------------------------------


@converter("CenterCropPad", since=18)
def center_crop_pad(ctx: NodeContext):
    """One constant pad: negative pads crop the centered window, positive ones zero-fill
    around it (the odd cell goes to the end in both cases)."""
    x = ctx.input(0)
    rank = x.type.rank
    shape = _ints(ctx, 1, "shape")
    axes = ctx.attr("axes")
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    if len(axes) != len(shape) or any(not 0 <= a < rank for a in axes):
        raise ctx.error(f"shape {shape} does not fit axes {axes} of {x.type}")
    pads = [0] * 2 * rank
    for a, want in zip(axes, shape):
        have = x.shape[a]
        if not isinstance(have, int):
            raise ctx.error(f"axis {a} needs a static size, got {x.type}")
        diff = want - have
        begin = diff // 2 if diff >= 0 else -((-diff) // 2)
        pads[a], pads[rank + a] = begin, diff - begin
    if not any(pads):
        return ctx.emit("identity", x)
    return ctx.emit("pad", x, pads=pads, mode="constant", value=0.0)


# -- MaxUnpool -------------------------------------------------------------------------------


@converter("MaxUnpool", since=9)
@converter("MaxUnpool", since=11)
def max_unpool(ctx: NodeContext):
    """Scatter the values to their flat indices in a zero tensor of the unpooled shape,
    then zero-extend at the end to output_shape when it is larger (as onnx's reference)."""
    x, indices = ctx.input(0), ctx.input(1)
    shape = _static_shape(ctx, x, "MaxUnpool input")
    if list(indices.shape) != shape:
        raise ctx.error(f"indices {indices.type} must have the shape of X {x.type}")
    n = len(shape) - 2
    kernel = list(ctx.attr("kernel_shape"))
    strides = list(ctx.attr("strides", [1] * n))
    pads = list(ctx.attr("pads", [0] * 2 * n))
    unpooled = shape[:2] + [
        (shape[2 + i] - 1) * strides[i] - pads[i] - pads[n + i] + kernel[i] for i in range(n)
    ]
    total = int(np.prod(unpooled))
    zeros = ctx.emit("broadcast_to", ctx.const(np.zeros((1,)), x.dtype), shape=[total])
    flat_i = ctx.emit("reshape", indices, shape=[int(np.prod(shape))])
    if flat_i.dtype != "int64":
        flat_i = ctx.emit("cast", flat_i, to="int64")
    flat_x = ctx.emit("reshape", x, shape=[int(np.prod(shape))])
    y = ctx.emit("scatter_elements", zeros, flat_i, flat_x, axis=0)
    y = ctx.emit("reshape", y, shape=unpooled)
    if ctx.input(2) is None:
        return y
    out = _ints(ctx, 2, "output_shape")
    if len(out) != len(unpooled) or any(o < u for o, u in zip(out, unpooled)):
        raise ctx.error(f"output_shape {out} is smaller than the unpooled shape {unpooled}")
    if out == unpooled:
        return y
    grow = [o - u for o, u in zip(out, unpooled)]
    return ctx.emit("pad", y, pads=[0] * len(out) + grow, mode="constant", value=0.0)


# -- NonMaxSuppression -----------------------------------------------------------------------


def _corners(boxes: np.ndarray, center: bool) -> np.ndarray:
    """(y1, x1, y2, x2) with y1 <= y2 and x1 <= x2, from either ONNX box encoding."""
    b = boxes.astype(np.float64)
    if center:  # (x_center, y_center, width, height)
        x, y, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
        return np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)
    y1, y2 = np.minimum(b[..., 0], b[..., 2]), np.maximum(b[..., 0], b[..., 2])
    x1, x2 = np.minimum(b[..., 1], b[..., 3]), np.maximum(b[..., 1], b[..., 3])
    return np.stack([y1, x1, y2, x2], axis=-1)


def _overlaps(box: np.ndarray, kept: np.ndarray, threshold: float) -> bool:
    """Whether ``box`` has IoU above threshold with any of ``kept`` (rows of corners)."""
    if not len(kept):
        return False
    ih = np.minimum(box[2], kept[:, 2]) - np.maximum(box[0], kept[:, 0])
    iw = np.minimum(box[3], kept[:, 3]) - np.maximum(box[1], kept[:, 1])
    inter = np.where((ih > 0) & (iw > 0), ih * iw, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (kept[:, 2] - kept[:, 0]) * (kept[:, 3] - kept[:, 1])
    union = area + areas - inter
    ok = (inter > 0) & (area > 0) & (areas > 0) & (union > 0)
    iou = np.where(ok, inter / np.where(union > 0, union, 1.0), 0.0)
    return bool((ok & (iou > threshold)).any())


def non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    max_per_class: int,
    iou_threshold: float,
    score_threshold: float | None,
    center: bool,
) -> np.ndarray:
    """Selected (batch, class, box) triples: per batch and class, boxes in order of falling
    score (the lower index first on ties), kept unless they overlap a kept one."""
    corners = _corners(boxes, center)
    selected = []
    for b, c in itertools.product(range(scores.shape[0]), range(scores.shape[1])):
        s = scores[b, c]
        order = np.argsort(-s.astype(np.float64), kind="stable")
        if score_threshold is not None:
            order = order[s[order] > score_threshold]
        kept: list[int] = []
        for i in order:
            if len(kept) >= max_per_class:
                break
            if not _overlaps(corners[b, i], corners[b, kept], iou_threshold):
                kept.append(int(i))
        selected += [(b, c, i) for i in kept]
    return np.asarray(selected, np.int64).reshape(-1, 3)


def _scalar(ctx: NodeContext, i: int, what: str) -> float | None:
    if ctx.input(i) is None:
        return None
    v = ctx.require_value(i, what, "it decides which boxes are kept")
    return None if v.size == 0 else float(v.reshape(-1)[0])


@converter("NonMaxSuppression", since=10)
@converter("NonMaxSuppression", since=11)
def non_max_suppression_op(ctx: NodeContext):
    why = "its output size is the number of boxes kept"
    boxes = ctx.require_value(0, "boxes", why)
    scores = ctx.require_value(1, "scores", why)
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3:
        raise ctx.error(f"boxes {boxes.shape} and scores {scores.shape} need (B, N, 4), (B, C, N)")
    if scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        raise ctx.error(f"scores {scores.shape} do not match boxes {boxes.shape}")
    limit = _scalar(ctx, 2, "max_output_boxes_per_class")
    iou = _scalar(ctx, 3, "iou_threshold")
    score = _scalar(ctx, 4, "score_threshold")
    center = int(ctx.attr("center_point_box", 0))
    if center not in (0, 1):
        raise ctx.error(f"center_point_box must be 0 or 1, got {center}")
    kept = non_max_suppression(
        boxes, scores, max(int(limit or 0), 0), iou or 0.0, score, bool(center)
    )
    return ctx.const(kept)
