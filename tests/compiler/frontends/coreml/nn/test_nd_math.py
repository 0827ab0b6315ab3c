"""The computing ND layers of NeuralNetwork models (nn/nd_math.py) against numpy: unary math,
broadcasting binaries, comparisons and logic (float 0/1), reductions, softmaxND, topK and
the arg layers (float indices), batchedMatmul, cumSum, oneHot, band parts, non-maximum
suppression (known inputs) and the random layers (statistics, not values)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from coremlutil import check, nn_builder, save_nn

from backends.reference import run_graph
from compiler.errors import ConversionError, NeedsValueError
from compiler.frontends.coreml.importer import import_coreml

RNG = np.random.default_rng(7)
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _f32(*shape: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return RNG.uniform(low, high, shape).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


# -- unary -----------------------------------------------------------------------------------

_UNARY = {
    "ceil": np.ceil,
    "floor": np.floor,
    "sign": np.sign,
    "round": np.round,
    "exp2": np.exp2,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "atanh": np.arctanh,
    "erf": _erf,
}


def test_unary_layers(tmp_path: Path) -> None:
    names = [*_UNARY, "acosh", "clip", "clamped", *[f"gelu_{m}" for m in range(3)]]
    b = nn_builder([("x", (2, 3, 4)), ("g", (2, 3, 4))], [(n, None) for n in names])
    for kind in _UNARY:
        getattr(b, f"add_{kind}")(kind, "x", kind)
    b.add_acosh("acosh", "g", "acosh")
    b.add_clip("clip", "x", "clip", min_value=-0.25, max_value=0.5)
    b.add_clamped_relu("clamped", "x", "clamped", alpha=0.5, beta=0.3)
    for m, mode in enumerate(["EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"]):
        b.add_gelu(f"gelu_{m}", "x", f"gelu_{m}", mode=mode)
    x = _f32(2, 3, 4, low=-0.95, high=0.95)
    x[0, 0, :3] = [0.5, -0.5, 1.5 - 1]  # ties of round: half to even
    g = 1 + np.abs(x) * 3
    x64 = x.astype(np.float64)
    gelu_tanh = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)))
    want = [fn(x64) for fn in _UNARY.values()] + [
        np.arccosh(g),
        np.clip(x, -0.25, 0.5),
        np.minimum(np.where(x >= 0, x, 0.5 * x), 0.3),
        0.5 * x64 * (1 + _erf(x64 / math.sqrt(2))),
        gelu_tanh,
        x64 * _sigmoid(1.702 * x64),
    ]
    check(save_nn(b, tmp_path), {"x": x, "g": g}, want, rtol=1e-5, atol=2e-6)


def test_round_is_half_to_even(tmp_path: Path) -> None:
    b = nn_builder([("x", (4,))], [("y", None)])
    b.add_round("round", "x", "y")
    x = np.array([0.5, 1.5, 2.5, -0.5], np.float32)
    check(save_nn(b, tmp_path), {"x": x}, [np.array([0, 2, 2, -0.0], np.float32)], tvm=False)


def test_softmax_nd_along_an_axis(tmp_path: Path) -> None:
    b = nn_builder([("x", (2, 3, 4))], [("y", None)])
    b.add_softmax_nd("softmax", "x", "y", axis=-2)
    x = _f32(2, 3, 4, low=-3, high=3)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    check(save_nn(b, tmp_path), {"x": x}, [e / e.sum(axis=1, keepdims=True)], tvm=False)


# -- binaries, comparisons, logic ------------------------------------------------------------

_BINARY = {
    "add": np.add,
    "subtract": np.subtract,
    "multiply": np.multiply,
    "divide": np.divide,
    "max": np.maximum,
    "min": np.minimum,
    "mod": np.mod,
    "floor_div": lambda a, b: np.floor(a / b),
}
_COMPARE = {
    "equal": ("add_equal", {}, np.equal),
    "not_equal": ("add_not_equal", {}, np.not_equal),
    "less": ("add_less_than", {}, np.less),
    "less_equal": ("add_less_than", {"use_less_than_equal": True}, np.less_equal),
    "greater": ("add_greater_than", {}, np.greater),
    "greater_equal": ("add_greater_than", {"use_greater_than_equal": True}, np.greater_equal),
}
_LOGIC = {"AND": np.logical_and, "OR": np.logical_or, "XOR": np.logical_xor}


def test_broadcasting_binaries_comparisons_logic(tmp_path: Path) -> None:
    outs = [*_BINARY, "pow", *_COMPARE, *_LOGIC, "NOT", "where"]
    b = nn_builder([("a", (2, 3, 4)), ("b", (3, 1)), ("p", (2, 3, 4))], [(n, None) for n in outs])
    for kind in _BINARY:
        getattr(b, f"add_{kind}_broadcastable")(kind, ["a", "b"], kind)
    b.add_pow_broadcastable("pow", ["p", "b"], "pow")
    for name, (method, kwargs, _) in _COMPARE.items():
        getattr(b, method)(name, ["a", "b"], name, **kwargs)
    for mode in _LOGIC:
        b.add_logical(mode, ["a", "b"], mode, mode)
    b.add_logical("NOT", ["a"], "NOT", "NOT")
    b.add_where_broadcastable("where", ["a", "p", "b"], "where")
    a = RNG.integers(-3, 4, (2, 3, 4)).astype(np.float32)  # integers: equal values occur
    bb = np.array([[2.0], [-3.0], [0.0]], np.float32)
    bb_div = bb.copy()
    p = _f32(2, 3, 4, low=0.5, high=2.0)
    want = []
    for fn in _BINARY.values():
        with np.errstate(all="ignore"):
            want.append(fn(a, bb).astype(np.float32))
    want.append(np.power(p, bb_div))
    want += [fn(a, bb).astype(np.float32) for *_, fn in _COMPARE.values()]
    want += [fn(a != 0, bb != 0).astype(np.float32) for fn in _LOGIC.values()]
    want += [(a == 0).astype(np.float32), np.where(a != 0, p, bb)]
    # Division by the zero row gives inf/nan alike in numpy, the reference and TVM.
    check(save_nn(b, tmp_path), {"a": a, "b": bb, "p": p}, want, rtol=1e-5, atol=1e-6)


def test_mod_follows_the_divisor_sign(tmp_path: Path) -> None:
    b = nn_builder([("a", (4,)), ("b", (4,))], [("y", None)])
    b.add_mod_broadcastable("mod", ["a", "b"], "y")
    a = np.array([5.0, -5.0, 5.0, -5.5], np.float32)
    d = np.array([3.0, 3.0, -3.0, 2.0], np.float32)
    want = np.array([2.0, 1.0, -1.0, 0.5], np.float32)
    check(save_nn(b, tmp_path), {"a": a, "b": d}, [want], tvm=False)


@pytest.mark.parametrize("name", list(_COMPARE))
def test_comparison_with_alpha(tmp_path: Path, name: str) -> None:
    method, kwargs, fn = _COMPARE[name]
    b = nn_builder([("x", (5,))], [("y", None)])
    getattr(b, method)(name, ["x"], "y", alpha=1.5, **kwargs)
    x = np.array([0.0, 1.5, 2.0, -1.5, 1.5], np.float32)
    check(save_nn(b, tmp_path), {"x": x}, [fn(x, np.float32(1.5)).astype(np.float32)], tvm=False)


def test_int32_inputs_compute_in_float(tmp_path: Path) -> None:
    b = nn_builder([("a", (3,)), ("b", (3,))], [("y", None)])
    b.spec.description.input[0].type.multiArrayType.dataType = 0x20020  # INT32
    b.add_divide_broadcastable("div", ["a", "b"], "y")
    a = np.array([7, -7, 1], np.int32)
    d = np.array([2.0, 2.0, 4.0], np.float32)
    check(save_nn(b, tmp_path), {"a": a, "b": d}, [np.array([3.5, -3.5, 0.25])], tvm=False)


# -- reductions ------------------------------------------------------------------------------

_REDUCE = {
    "sum": lambda x, a, k: np.sum(x, axis=a, keepdims=k),
    "prod": lambda x, a, k: np.prod(x, axis=a, keepdims=k),
    "mean": lambda x, a, k: np.mean(x, axis=a, keepdims=k),
    "max": lambda x, a, k: np.max(x, axis=a, keepdims=k),
    "min": lambda x, a, k: np.min(x, axis=a, keepdims=k),
    "l1": lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k),
    "l2": lambda x, a, k: np.sqrt(np.sum(x * x, axis=a, keepdims=k)),
    "sumsquare": lambda x, a, k: np.sum(x * x, axis=a, keepdims=k),
    "logsum": lambda x, a, k: np.log(np.sum(x, axis=a, keepdims=k)),
    "logsumexp": lambda x, a, k: np.log(np.sum(np.exp(x), axis=a, keepdims=k)),
}


@pytest.mark.parametrize(
    ("axes", "keepdims", "reduce_all", "tvm"),
    [
        ([-1], True, False, True),
        ([0, 2], False, False, False),
        (None, False, True, False),  # everything without keepDims: shape [1]
        ([1], False, True, False),  # reduceAll ignores axes
    ],
)
def test_reductions(
    tmp_path: Path, axes: list[int] | None, keepdims: bool, reduce_all: bool, tvm: bool
) -> None:
    b = nn_builder([("x", (2, 3, 4))], [(n, None) for n in _REDUCE])
    for name in _REDUCE:
        getattr(b, f"add_reduce_{name}")(
            name, "x", name, axes=axes, keepdims=keepdims, reduce_all=reduce_all
        )
    x = _f32(2, 3, 4, low=0.5, high=1.5)
    np_axes = None if reduce_all or axes is None else tuple(axes)
    want = [np.atleast_1d(fn(x.astype(np.float64), np_axes, keepdims)) for fn in _REDUCE.values()]
    check(save_nn(b, tmp_path), {"x": x}, want, rtol=2e-5, atol=1e-6, tvm=tvm)


# -- indices ---------------------------------------------------------------------------------


def _top(x: np.ndarray, k: int, axis: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-x if largest else x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.float32)


def test_topk_arg_layers(tmp_path: Path) -> None:
    outs = ["tv", "ti", "bv", "bi", "amax", "amin", "amax_keep", "avec", "sort_up", "sort_down"]
    b = nn_builder([("x", (3, 5, 2)), ("v", (6,))], [(n, None) for n in outs])
    b.add_topk("top", ["x"], ["tv", "ti"], k=3, axis=1)
    b.add_topk("bottom", ["x"], ["bv", "bi"], k=2, axis=-1, use_bottom_k=True)
    b.add_argmax("amax", "x", "amax", axis=1, keepdims=False)
    b.add_argmin("amin", "x", "amin", axis=-1, keepdims=False)
    b.add_argmax("amax_keep", "x", "amax_keep", axis=0, keepdims=True)
    b.add_argmax("avec", "v", "avec", axis=0, keepdims=False)  # a vector keeps shape [1]
    b.add_argsort("sort_up", "x", "sort_up", axis=1)
    b.add_argsort("sort_down", "x", "sort_down", axis=1, descending=True)
    x = RNG.permutation(30).reshape(3, 5, 2).astype(np.float32)
    v = _f32(6)
    want = [*_top(x, 3, 1, True), *_top(x, 2, 2, False)]
    want += [
        np.argmax(x, 1).astype(np.float32),
        np.argmin(x, -1).astype(np.float32),
        np.argmax(x, 0)[None].astype(np.float32),
        np.array([np.argmax(v)], np.float32),
        np.argsort(x, 1, kind="stable").astype(np.float32),
        np.argsort(-x, 1, kind="stable").astype(np.float32),
    ]
    check(save_nn(b, tmp_path), {"x": x, "v": v}, want)


def test_topk_k_from_a_known_input(tmp_path: Path) -> None:
    b = nn_builder([("x", (4, 6)), ("k", (1,))], [("values", None), ("indices", None)])
    b.add_topk("top", ["x", "k"], ["values", "indices"], axis=-1)
    path = save_nn(b, tmp_path)
    x = _f32(4, 6)
    k = np.array([2.0], np.float32)
    check(path, {"x": x}, list(_top(x, 2, 1, True)), tvm=False, input_values={"k": k})
    with pytest.raises(NeedsValueError, match="topK node 'top'.*input K"):
        import_coreml(path)


# -- batchedMatmul ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sa", "sb", "ta", "tb", "tvm"),
    [
        ((2, 3, 4), (4, 5), False, False, True),
        ((2, 4, 3), (1, 5, 4), True, True, False),
        ((4,), (3, 4, 5), False, False, False),  # [4] -> [1, 4]: output (3, 1, 5)
        ((2, 3, 4), (4,), False, False, False),  # [4] -> [4, 1]: output (2, 3, 1)
    ],
)
def test_batched_matmul_two_inputs(
    tmp_path: Path, sa: tuple, sb: tuple, ta: bool, tb: bool, tvm: bool
) -> None:
    b = nn_builder([("a", sa), ("b", sb)], [("y", None)])
    b.add_batched_mat_mul("mm", ["a", "b"], "y", transpose_a=ta, transpose_b=tb)
    a, bb = _f32(*sa), _f32(*sb)
    am = a.reshape(1, -1) if a.ndim == 1 else (np.swapaxes(a, -1, -2) if ta else a)
    bm = bb.reshape(-1, 1) if bb.ndim == 1 else (np.swapaxes(bb, -1, -2) if tb else bb)
    check(save_nn(b, tmp_path), {"a": a, "b": bb}, [am @ bm], tvm=tvm)


@pytest.mark.parametrize("shape", [(2, 3, 4), (4,)])
def test_batched_matmul_with_weights_and_bias(tmp_path: Path, shape: tuple) -> None:
    w, bias = _f32(4, 5), _f32(5)
    b = nn_builder([("x", shape)], [("y", None)])
    b.add_batched_mat_mul(
        "fc", ["x"], "y", weight_matrix_rows=4, weight_matrix_columns=5, W=w, bias=bias
    )
    x = _f32(*shape)
    check(save_nn(b, tmp_path), {"x": x}, [x @ w + bias], tvm=len(shape) == 3)


def test_batched_matmul_with_quantized_weights_per_column(tmp_path: Path) -> None:
    """The weights are stored transposed ([X2, X1]): a scale per output column."""
    codes = RNG.integers(0, 256, (4, 3)).astype(np.uint8)
    scale = np.array([0.5, 0.25, 2.0], np.float32)
    bias = np.array([-1.0, 0.0, 3.0], np.float32)
    b = nn_builder([("x", (2, 4))], [("y", None)])
    b.add_batched_mat_mul(
        "fc",
        ["x"],
        "y",
        weight_matrix_rows=4,
        weight_matrix_columns=3,
        W=codes.tobytes(),
        is_quantized_weight=True,
        nbits=8,
        quant_scale=scale,
        quant_bias=bias,
    )
    x = _f32(2, 4)
    w = codes.astype(np.float32) * scale + bias
    check(save_nn(b, tmp_path), {"x": x}, [x @ w], rtol=1e-5, atol=1e-5, tvm=False)


def test_batched_matmul_int8_dynamic_quantize_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (2, 4))], [("y", None)])
    b.add_batched_mat_mul(
        "fc", ["x"], "y", weight_matrix_rows=4, weight_matrix_columns=3, W=_f32(4, 3)
    )
    b.spec.neuralNetwork.layers[0].batchedMatmul.int8DynamicQuantize = True
    with pytest.raises(ConversionError, match="batchedMatmul node 'fc': int8DynamicQuantize"):
        import_coreml(save_nn(b, tmp_path))


# -- cumSum, oneHot, band parts --------------------------------------------------------------


def _cumsum(x: np.ndarray, axis: int, exclusive: bool, reverse: bool) -> np.ndarray:
    if reverse:
        x = np.flip(x, axis)
    out = np.cumsum(x, axis)
    if exclusive:
        out = out - x
    return np.flip(out, axis) if reverse else out


def test_cumsum_onehot_band_parts(tmp_path: Path) -> None:
    outs = ["cs", "cs_ex_rev", "oh", "oh0", "band", "band_lo", "lower", "upper"]
    b = nn_builder([("x", (3, 4)), ("i", (5,))], [(n, None) for n in outs])
    b.add_cumsum("cs", ["x"], "cs", axis=1)
    b.add_cumsum("cs_ex_rev", ["x"], "cs_ex_rev", axis=-2, exclusive=True, reverse=True)
    b.add_one_hot("oh", ["i"], "oh", one_hot_vector_size=4, on_value=5.0, off_value=-1.0)
    b.add_one_hot("oh0", ["i"], "oh0", one_hot_vector_size=3, axis=0)
    b.add_matrix_band_part("band", "x", "band", num_lower=1, num_upper=0)
    b.add_matrix_band_part("band_lo", "x", "band_lo", num_lower=-1, num_upper=1)
    b.add_lower_triangular("lower", "x", "lower", k=1)
    b.add_upper_triangular("upper", "x", "upper", k=-1)
    x = _f32(3, 4)
    i = np.array([2.0, 0.0, -1.0, 3.0, 7.0], np.float32)  # -1 and 7: rows of off values
    rows, cols = np.indices((3, 4))

    def onehot(size: int, on: float, off: float) -> np.ndarray:
        return np.where(i[:, None] == np.arange(size), on, off).astype(np.float32)

    want = [
        _cumsum(x, 1, False, False),
        _cumsum(x, 0, True, True),
        onehot(4, 5.0, -1.0),
        onehot(3, 1.0, 0.0).T,
        np.where((rows - cols <= 1) & (cols - rows <= 0), x, 0),
        np.where(cols - rows <= 1, x, 0),
        np.tril(x, 1),
        np.triu(x, -1),
    ]
    check(save_nn(b, tmp_path), {"x": x, "i": i}, want)


def test_cumsum_axis_from_an_input(tmp_path: Path) -> None:
    b = nn_builder([("x", (3, 4)), ("axis", (1,))], [("y", None)])
    b.add_cumsum("cs", ["x", "axis"], "y", exclusive=True)
    x = _f32(3, 4)
    want = [_cumsum(x, 0, True, False)]
    check(save_nn(b, tmp_path), {"x": x}, want, tvm=False, input_values={"axis": np.zeros(1)})


# -- NonMaximumSuppression -------------------------------------------------------------------


def _nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    score_threshold: float,
    max_boxes: int,
    per_class: bool,
) -> list[np.ndarray]:
    """Greedy NMS as NeuralNetwork.proto describes it, box by box."""
    batch, n, _ = boxes.shape
    out = [
        np.zeros((batch, max_boxes, 4), np.float32),
        np.zeros((batch, max_boxes, scores.shape[2]), np.float32),
        np.full((batch, max_boxes), -1.0, np.float32),
        np.zeros(batch, np.float32),
    ]
    b64 = boxes.astype(np.float64)
    lo = b64[..., :2] - b64[..., 2:] / 2
    hi = b64[..., :2] + b64[..., 2:] / 2
    for b in range(batch):
        best, label = scores[b].max(axis=1), scores[b].argmax(axis=1)
        order = np.argsort(-best.astype(np.float64), kind="stable")
        kept: list[int] = []
        for i in order:
            if len(kept) == max_boxes or best[i] < score_threshold:
                break
            for j in kept:
                side = np.clip(
                    np.minimum(hi[b, i], hi[b, j]) - np.maximum(lo[b, i], lo[b, j]), 0, None
                )
                inter = side.prod()
                union = np.prod(hi[b, i] - lo[b, i]) + np.prod(hi[b, j] - lo[b, j]) - inter
                iou = inter / union if union > 0 else 0.0
                if iou > iou_threshold and (not per_class or label[i] == label[j]):
                    break
            else:
                kept.append(int(i))
        kept = kept or [int(order[0])]
        m = len(kept)
        out[0][b, :m], out[1][b, :m], out[2][b, :m] = boxes[b, kept], scores[b, kept], kept
        out[3][b] = m
    return out


def _nms_model(tmp_path: Path, per_class: bool, n: int = 12, max_boxes: int = 5) -> Path:
    b = nn_builder([("boxes", (2, n, 4)), ("scores", (2, n, 3))], [(o, None) for o in "bsic"])
    b.add_nms(
        "nms",
        ["boxes", "scores"],
        ["b", "s", "i", "c"],
        iou_threshold=0.3,
        score_threshold=0.2,
        max_boxes=max_boxes,
        per_class_suppression=per_class,
    )
    return save_nn(b, tmp_path, f"nms{int(per_class)}")


def _detections(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boxes crowded into a small field, so that many overlap."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 2, (2, n, 2))
    sizes = rng.uniform(1, 3, (2, n, 2))
    boxes = np.concatenate([centres, sizes], axis=-1).astype(np.float32)
    return boxes, rng.uniform(0, 1, (2, n, 3)).astype(np.float32)


@pytest.mark.parametrize(("per_class", "tvm"), [(False, True), (True, False)])
def test_nms(tmp_path: Path, per_class: bool, tvm: bool) -> None:
    boxes, scores = _detections(12)
    want = _nms(boxes, scores, 0.3, 0.2, 5, per_class)
    ranked = np.argsort(-scores.max(axis=2), axis=1, kind="stable")[:, :5]
    assert (want[2] != ranked).any(axis=1).all()  # suppression mattered in both batches
    check(_nms_model(tmp_path, per_class), {"boxes": boxes, "scores": scores}, want, tvm=tvm)


def test_nms_pads_past_the_box_count(tmp_path: Path) -> None:
    boxes, scores = _detections(4)
    want = _nms(boxes, scores, 0.3, 0.2, 6, False)
    path = _nms_model(tmp_path, False, n=4, max_boxes=6)
    check(path, {"boxes": boxes, "scores": scores}, want, tvm=False)


def test_nms_threshold_inputs_and_no_survivor(tmp_path: Path) -> None:
    """Inputs 3-5 override the parameters (the thresholds may be computed at run time); when
    no box passes the score threshold the best box is given, with count 1."""
    names = ["boxes", "scores", "iou", "score", "max"]
    shapes = [(2, 6, 4), (2, 6, 3), (1,), (1,), (1,)]
    b = nn_builder(list(zip(names, shapes)), [(o, None) for o in "bsic"])
    b.add_nms("nms", names, ["b", "s", "i", "c"], score_threshold=0.0, max_boxes=3)
    path = save_nn(b, tmp_path)
    boxes, scores = _detections(6)
    scores[1] *= 0.5  # batch 1: nothing reaches 0.6
    iou, score = np.array([0.4], np.float32), np.array([0.6], np.float32)
    want = _nms(boxes, scores, 0.4, 0.6, 2, False)
    assert want[3][1] == 1 and want[2][1, 1] == -1
    feeds = {"boxes": boxes, "scores": scores, "iou": iou, "score": score}
    check(path, feeds, want, tvm=False, input_values={"max": np.array([2.0])})
    with pytest.raises(NeedsValueError, match="NonMaximumSuppression node 'nms'.*maxBoxes"):
        import_coreml(path)


# -- random ----------------------------------------------------------------------------------


def _run(path: Path, feeds: dict, **kwargs: object) -> dict[str, np.ndarray]:
    graph, _ = import_coreml(path, **kwargs)
    return dict(zip(graph.output_names, run_graph(graph, feeds).values()))


def test_random_layers_statistics(tmp_path: Path) -> None:
    n = 20000
    outs = ["nl", "ns", "nd", "ul", "us", "ud", "bl", "bs", "bd"]
    b = nn_builder([("like", (n,)), ("shape", (1,))], [(o, None) for o in outs])
    b.add_random_normal_like("nl", "like", "nl", mean=2.0, stddev=0.5, seed=3)
    b.add_random_normal_static("ns", "ns", output_shape=[n], mean=-1.0, stddev=2.0, seed=4)
    b.add_random_normal_dynamic("nd", ["shape"], "nd", mean=0.0, stddev=1.0, seed=5)
    b.add_random_uniform_like("ul", "like", "ul", minval=-1.0, maxval=3.0, seed=6)
    b.add_random_uniform_static("us", "us", output_shape=[n], minval=0.0, maxval=1.0)
    b.add_random_uniform_dynamic("ud", ["shape"], "ud", minval=2.0, maxval=4.0, seed=7)
    b.add_random_bernoulli_like("bl", "like", "bl", prob=0.3, seed=8)
    b.add_random_bernoulli_static("bs", "bs", output_shape=[n], prob=0.0, seed=9)
    b.add_random_bernoulli_dynamic("bd", ["shape"], "bd", prob=0.75, seed=10)
    path = save_nn(b, tmp_path)
    out = _run(path, {"like": np.zeros(n, np.float32)}, input_values={"shape": np.array([n])})
    tol = 4 / math.sqrt(n)  # four standard errors of a unit-variance mean
    for name, mean, std in [("nl", 2.0, 0.5), ("ns", -1.0, 2.0), ("nd", 0.0, 1.0)]:
        y = out[name]
        assert y.shape == (n,) and y.dtype == np.float32
        assert abs(y.mean() - mean) < tol * std and abs(y.std() - std) < 0.05 * std, name
    for name, lo, hi in [("ul", -1.0, 3.0), ("us", 0.0, 1.0), ("ud", 2.0, 4.0)]:
        y = out[name]
        assert y.min() >= lo and y.max() < hi, name
        assert abs(y.mean() - (lo + hi) / 2) < tol * (hi - lo), name
    for name, p in [("bl", 0.3), ("bs", 0.0), ("bd", 0.75)]:
        y = out[name]
        assert set(np.unique(y)) <= {0.0, 1.0} and abs(y.mean() - p) < tol, name
    # A seeded layer repeats its samples; two differently seeded ones differ.
    again = _run(path, {"like": np.ones(n, np.float32)}, input_values={"shape": np.array([n])})
    np.testing.assert_array_equal(out["nl"], again["nl"])
    assert not np.array_equal(out["ul"], out["ud"] - 3)


@pytest.mark.parametrize("logits", [True, False])
def test_categorical_distribution_statistics(tmp_path: Path, logits: bool) -> None:
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.0, 0.5]], np.float32)
    x = np.log(probs + 1e-30) if logits else probs * 4  # probabilities are normalized
    samples = 20000
    b = nn_builder([("x", (2, 3))], [("y", None)])
    b.add_categorical_distribution("cat", "x", "y", num_samples=samples, is_logits=logits, seed=1)
    graph, _ = import_coreml(save_nn(b, tmp_path))
    (y,) = run_graph(graph, {"x": x.astype(np.float32)}).values()
    assert y.shape == (2, samples) and y.dtype == np.float32
    freq = np.stack([(y == c).mean(axis=1) for c in range(3)], axis=1)
    np.testing.assert_allclose(freq, probs, atol=0.02)


def test_random_layers_compile(tmp_path: Path) -> None:
    """The TVM build draws from the same generator: seeded layers give the reference's
    values (uniform exactly, normal up to the rounding of log/cos/sqrt)."""
    b = nn_builder([("x", (2, 3))], [("u", None), ("c", None)])
    b.add_random_uniform_like("u", "x", "u", minval=0.0, maxval=2.0, seed=11)
    b.add_categorical_distribution("c", "x", "c", num_samples=4, seed=12)
    path = save_nn(b, tmp_path)
    x = _f32(2, 3)
    ref = _run(path, {"x": x})
    check(path, {"x": x}, [ref["u"], ref["c"]], rtol=1e-6, atol=1e-6)


def test_categorical_temperature_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (2, 3))], [("y", None)])
    b.add_categorical_distribution("cat", "x", "y", num_samples=2, temperature=0.5)
    with pytest.raises(ConversionError, match="categoricalDistribution node 'cat': temperature"):
        import_coreml(save_nn(b, tmp_path))
