"""Legacy (spec <= 3) tensor and arithmetic layers, mostly under the rank-5 mapping
[Seq, Batch, C, H, W] of pre-2019 models, plus the EXACT mapping where the layer is valid
there. Expected values are numpy (or PyTorch) computations of NeuralNetwork.proto's text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from coremlutil import check, nn_builder, save_nn

from compiler.errors import ConversionError
from compiler.frontends.coreml.importer import import_coreml

RNG = np.random.default_rng(0)


def _rand(*shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    return RNG.uniform(low, high, shape).astype(np.float32)


def _out(y: np.ndarray) -> np.ndarray:
    """A rank-5 result as the model's undeclared output gives it: [C, H, W] when
    Seq = Batch = 1."""
    return y.reshape(y.shape[2:]) if y.shape[:2] == (1, 1) else y


def _refused(path: Path, match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        import_coreml(path)


# -- softmax, add, multiply, average, max, min, unary (one TVM build) ------------------------


def test_arithmetic_layers_rank5(tmp_path: Path) -> None:
    b = nn_builder(
        [("a", (3, 4, 5)), ("b", (3, 4, 5)), ("c", (1, 4, 5)), ("d", (3,))],
        [(n, None) for n in ("sm", "sum", "prod", "plus", "times", "avg", "mx", "mn", "rs")],
        exact=False,
    )
    b.add_softmax("sm", "a", "sm")
    b.add_elementwise("sum", ["a", "b", "c"], "sum", "ADD")
    b.add_elementwise("prod", ["a", "d"], "prod", "MULTIPLY")
    b.add_elementwise("plus", ["a"], "plus", "ADD", alpha=0.5)
    b.add_elementwise("times", ["a"], "times", "MULTIPLY", alpha=-2.0)
    b.add_elementwise("avg", ["a", "b", "c"], "avg", "AVE")
    b.add_elementwise("mx", ["a", "b", "c"], "mx", "MAX")
    b.add_elementwise("mn", ["c", "a"], "mn", "MIN")
    b.add_unary("rs", "b", "rs", "rsqrt", scale=0.5, shift=3.0, epsilon=0.25)
    a, bb, c, d = _rand(3, 4, 5), _rand(3, 4, 5), _rand(1, 4, 5), _rand(3)
    e = np.exp(a - a.max(axis=0))
    expected = [
        e / e.sum(axis=0),
        a + bb + c,
        a * d[:, None, None],
        a + 0.5,
        -2.0 * a,
        (a + bb + c) / 3,
        np.maximum(np.maximum(a, bb), c),
        np.minimum(c, a),
        1 / np.sqrt(0.5 * bb + 3.0 + 0.25),
    ]
    check(save_nn(b, tmp_path), {"a": a, "b": bb, "c": c, "d": d}, expected)


@pytest.mark.parametrize(
    ("mode", "alpha", "scale", "shift", "epsilon", "fn"),
    [
        ("sqrt", 1.0, 2.0, 0.5, None, lambda x: np.sqrt(2 * x + 0.5)),
        ("rsqrt", 1.0, 1.0, 0.0, None, lambda x: 1 / np.sqrt(x + 1e-4)),
        ("inverse", 1.0, 0.0, 1.0, 0.0, lambda x: 1 / (x + 1.0 + 1e-6)),  # 0 means defaults
        ("power", 3.0, 1.0, -1.0, None, lambda x: (x - 1.0) ** 3),
        ("power", 0.5, 1.0, 0.0, None, np.sqrt),
        ("exp", 1.0, -1.0, 0.0, None, lambda x: np.exp(-x)),
        ("log", 1.0, 1.0, 0.0, 0.5, lambda x: np.log(x + 0.5)),
        ("log", 1.0, 3.0, 0.0, None, lambda x: np.log(3 * x)),
        ("abs", 1.0, 1.0, -2.0, None, lambda x: np.abs(x - 2.0)),
        ("threshold", 1.25, 1.0, 0.0, None, lambda x: np.maximum(x, 1.25)),
    ],
)
def test_unary(tmp_path: Path, mode, alpha, scale, shift, epsilon, fn) -> None:
    b = nn_builder([("x", (2, 3, 4))], [("y", None)], exact=False)
    b.add_unary("u", "x", "y", mode, alpha=alpha, shift=shift, scale=scale, epsilon=epsilon)
    x = _rand(2, 3, 4, low=0.1, high=3.0)
    check(save_nn(b, tmp_path), {"x": x}, [fn(x)], rtol=1e-5, atol=1e-6, tvm=False)


def test_multiply_single_input_uses_alpha_as_stored(tmp_path: Path) -> None:
    """An unset alpha is 0 (proto3), and the proto says y = alpha * x."""
    b = nn_builder([("x", (2, 1, 3))], [("y", None)], exact=False)
    b.add_elementwise("m", ["x"], "y", "MULTIPLY")
    x = _rand(2, 1, 3)
    check(save_nn(b, tmp_path), {"x": x}, [np.zeros_like(x)], tvm=False)


def test_arithmetic_layers_exact(tmp_path: Path) -> None:
    """EXACT mapping: a [B, C, H, W] input; loadConstant is rank 5 in both mappings and
    broadcasts over the trailing axes."""
    b = nn_builder([("x", (2, 3, 4, 5)), ("s", (2, 1, 4, 5))], [("y", None), ("z", None)])
    k = _rand(3, 1, 1)
    b.add_load_constant("k", "k", k, [3, 1, 1])
    b.add_elementwise("add", ["x", "s", "k"], "t", "ADD")
    b.add_softmax("y", "t", "y")
    b.add_elementwise("z", ["x", "s"], "z", "MAX")
    x, s = _rand(2, 3, 4, 5), _rand(2, 1, 4, 5)
    t = x + s + k
    e = np.exp(t - t.max(axis=1, keepdims=True))
    y = (e / e.sum(axis=1, keepdims=True))[None]
    check(save_nn(b, tmp_path), {"x": x, "s": s}, [y, np.maximum(x, s)], tvm=False)


def test_add_and_multiply_broadcast_like_numpy_exact(tmp_path: Path) -> None:
    """Inputs of different ranks align their trailing axes (coremltools lowers MIL's
    numpy-style add/mul of a [3, 4] and a [1] tensor onto these layers)."""
    b = nn_builder([("x", (3, 4)), ("v", (1,)), ("w", (2, 1, 4))], [("y", None), ("z", None)])
    b.add_elementwise("add", ["x", "v"], "y", "ADD")
    b.add_elementwise("mul", ["x", "w"], "z", "MULTIPLY")
    x, v, w = _rand(3, 4), _rand(1), _rand(2, 1, 4)
    check(save_nn(b, tmp_path), {"x": x, "v": v, "w": w}, [x + v, x * w], tvm=False)


def test_add_of_incompatible_shapes_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (3, 4)), ("v", (3,))], [("y", None)])
    b.add_elementwise("add", ["x", "v"], "y", "ADD")
    _refused(save_nn(b, tmp_path), r"add node 'add': .*broadcast")


# -- dot ------------------------------------------------------------------------------------


def test_dot_and_cosine(tmp_path: Path) -> None:
    b = nn_builder(
        [("a", (2, 1, 5, 1, 1)), ("b", (2, 1, 5, 1, 1))], [("d", None), ("c", None)], exact=False
    )
    b.add_elementwise("d", ["a", "b"], "d", "DOT")
    b.add_elementwise("c", ["a", "b"], "c", "COS")
    a, bb = _rand(2, 1, 5, 1, 1), _rand(2, 1, 5, 1, 1)
    dots = np.sum(a * bb, axis=2, keepdims=True)
    norms = np.linalg.norm(a, axis=2, keepdims=True) * np.linalg.norm(bb, axis=2, keepdims=True)
    check(save_nn(b, tmp_path), {"a": a, "b": bb}, [dots, dots / norms])


def test_dot_needs_vectors(tmp_path: Path) -> None:
    b = nn_builder([("a", (5, 2, 1)), ("b", (5, 2, 1))], [("d", None)], exact=False)
    b.add_elementwise("d", ["a", "b"], "d", "DOT")
    _refused(save_nn(b, tmp_path), r"dot node 'd': the inputs must be \[\.\.\., C, 1, 1\]")


# -- reduce ---------------------------------------------------------------------------------

_AXES = {"CHW": (0, 1, 2), "HW": (1, 2), "C": (0,), "H": (1,), "W": (2,)}
_MODES = {
    "sum": np.sum,
    "avg": np.mean,
    "prod": np.prod,
    "logsum": lambda x, axis, keepdims: np.sum(np.log(x + 1e-6), axis=axis, keepdims=keepdims),
    "sumsquare": lambda x, axis, keepdims: np.sum(x * x, axis=axis, keepdims=keepdims),
    "L1": lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims),
    "L2": lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims)),
    "max": np.max,
    "min": np.min,
}


@pytest.mark.parametrize("axis", list(_AXES))
@pytest.mark.parametrize("mode", list(_MODES))
def test_reduce(tmp_path: Path, mode: str, axis: str) -> None:
    b = nn_builder([("x", (3, 4, 2))], [("y", None)], exact=False)
    b.add_reduce("r", "x", "y", axis, mode, epsilon=1e-6)
    x = _rand(3, 4, 2, low=0.5, high=1.5)
    want = _MODES[mode](x, axis=_AXES[axis], keepdims=True)
    check(save_nn(b, tmp_path), {"x": x}, [want], rtol=1e-5, atol=1e-6, tvm=False)


def test_reduce_argmax_and_logsum_epsilon(tmp_path: Path) -> None:
    """ARGMAX gives float indices; LOGSUM adds epsilon (0 means 1e-6) before the log.
    One TVM build for the reduce layer."""
    b = nn_builder([("x", (3, 4, 5))], [(n, None) for n in "chwle"], exact=False)
    for axis in "CHW":
        b.add_reduce(axis, "x", axis.lower(), axis, "argmax")
    b.add_reduce("l", "x", "l", "HW", "logsum", epsilon=0.5)
    b.add_reduce("e", "x", "e", "CHW", "logsum", epsilon=0.0)
    x = _rand(3, 4, 5, low=0.0, high=2.0)
    expected = [np.argmax(x, axis=i)[(slice(None),) * i + (None,)] for i in range(3)]
    expected = [e.astype(np.float32) for e in expected]
    expected += [
        np.sum(np.log(x + 0.5), axis=(1, 2), keepdims=True),
        np.sum(np.log(x + 1e-6), keepdims=True).reshape(1, 1, 1),
    ]
    check(save_nn(b, tmp_path), {"x": x}, expected, rtol=1e-5, atol=1e-5)


def test_reduce_argmax_over_two_axes_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (3, 4, 5))], [("y", None)], exact=False)
    b.add_reduce("r", "x", "y", "HW", "argmax")
    _refused(save_nn(b, tmp_path), r"reduce node 'r': ARGMAX reduces one axis .* not HW")


# -- reshape, flatten, permute --------------------------------------------------------------


def _reshape_ref(x: np.ndarray, target: list[int], channel_last: bool) -> np.ndarray:
    """NeuralNetwork.proto's reshape of a [Seq, 1, C, H, W] blob, step by step."""
    seq = x.shape[0]
    seq_out, (c, h, w) = (seq, target) if len(target) == 3 else (target[0], target[1:])
    if not channel_last:  # flatten to [Seq, 1, C*H*W, 1, 1], then the target shape
        return x.reshape(seq, 1, -1, 1, 1).reshape(seq_out, 1, c, h, w)
    flat = x.transpose(0, 1, 3, 4, 2).reshape(seq, 1, -1, 1, 1)  # H*W*C order
    return flat.reshape(seq_out, 1, h, w, c).transpose(0, 1, 4, 2, 3)


@pytest.mark.parametrize("channel_last", [False, True])
@pytest.mark.parametrize("target", [[6, 5, 2], [4, 5, 3, 2], [6, 1, 10], [1, 10, 2, 6]])
def test_reshape_rank5(tmp_path: Path, target: list[int], channel_last: bool) -> None:
    """A sequence of 2 [3, 4, 5] blobs; a 3-entry target keeps Seq, a 4-entry one sets it."""
    b = nn_builder([("x", (2, 1, 3, 4, 5))], [("y", None)], exact=False)
    b.add_reshape("r", "x", "y", target, int(channel_last))
    x = _rand(2, 1, 3, 4, 5)
    tvm = target == [6, 5, 2] and channel_last
    check(save_nn(b, tmp_path), {"x": x}, [_out(_reshape_ref(x, target, channel_last))], tvm=tvm)


def test_reshape_and_flatten_channel_last_follow_keras(tmp_path: Path) -> None:
    """coremltools' Keras converter gave Keras' Reshape((H, W, C)) and Flatten on HWC data
    the CHANNEL_LAST modes: the result equals Keras' own row-major reshape of HWC data."""
    b = nn_builder([("x", (3, 4, 2))], [("y", None), ("f", None)], exact=False)
    b.add_reshape("r", "x", "y", [2, 2, 6], 1)  # Keras target (H, W, C) = (2, 6, 2)
    b.add_flatten("f", 1, "x", "f")
    keras = _rand(4, 2, 3)  # H, W, C
    x = keras.transpose(2, 0, 1)
    y = keras.reshape(2, 6, 2).transpose(2, 0, 1)
    check(save_nn(b, tmp_path), {"x": x}, [y, keras.reshape(-1, 1, 1)], tvm=False)


def test_flatten_rank5_and_exact(tmp_path: Path) -> None:
    b = nn_builder([("x", (2, 1, 3, 2, 4))], [("y", None), ("z", None)], exact=False)
    b.add_flatten("f", 0, "x", "y")
    b.add_flatten("g", 1, "x", "z")
    x = _rand(2, 1, 3, 2, 4)
    expected = [x.reshape(2, 1, 24, 1, 1), x.transpose(0, 1, 3, 4, 2).reshape(2, 1, 24, 1, 1)]
    check(save_nn(b, tmp_path), {"x": x}, expected)

    b = nn_builder([("x", (2, 3, 2, 4))], [("y", None)])
    b.add_flatten("g", 1, "x", "y")
    x = _rand(2, 3, 2, 4)
    check(save_nn(b, tmp_path, "exact"), {"x": x}, [x.transpose(0, 2, 3, 1).reshape(2, 24, 1, 1)])


@pytest.mark.parametrize(
    ("axis", "numpy_perm"),
    [  # the examples of NeuralNetwork.proto, over [Seq, B, C, H, W]
        ([0, 3, 1, 2], (0, 1, 4, 2, 3)),  # [Seq, B, W, C, H]
        ([3, 1, 2, 0], (4, 1, 2, 3, 0)),  # [W, B, C, H, Seq]
        ([0, 3, 2, 1], (0, 1, 4, 3, 2)),  # [Seq, B, W, H, C]
        ([1, 0, 2, 3], (2, 1, 0, 3, 4)),
        ([0, 1, 2, 3], (0, 1, 2, 3, 4)),
    ],
)
def test_permute(tmp_path: Path, axis: list[int], numpy_perm: tuple[int, ...]) -> None:
    b = nn_builder([("x", (2, 1, 3, 4, 5))], [("y", None)], exact=False)
    b.add_permute("p", axis, "x", "y")
    x = _rand(2, 1, 3, 4, 5)
    check(save_nn(b, tmp_path), {"x": x}, [x.transpose(numpy_perm)], tvm=axis == [3, 1, 2, 0])


def test_reshape_and_permute_need_rank5(tmp_path: Path) -> None:
    b = nn_builder([("x", (3, 4, 5))], [("y", None)])
    b.add_permute("p", [0, 2, 1, 3], "x", "y")
    _refused(save_nn(b, tmp_path), r"permute node 'p': the input must be a rank-5 blob")
    b = nn_builder([("x", (3, 4, 5))], [("y", None)])
    b.add_reshape("r", "x", "y", [5, 4, 3], 0)
    _refused(save_nn(b, tmp_path), r"reshape node 'r': the input must be a rank-5 blob")
    b = nn_builder([("x", (3, 4, 5))], [("y", None)], exact=False)
    b.add_reshape("r", "x", "y", [5, 4, 4], 0)
    _refused(save_nn(b, tmp_path), r"reshape node 'r': cannot reshape \[1, 1, 3, 4, 5\]")
    b = nn_builder([("x", (1, 2, 3, 4, 5))], [("y", None)], exact=False)
    b.add_reshape("r", "x", "y", [2, 3, 2, 5], 0)
    _refused(save_nn(b, tmp_path), r"reshape node 'r': a 4-entry targetShape needs batch 1")


# -- concat, split, sequenceRepeat ----------------------------------------------------------


def test_concat_split_and_sequence_repeat(tmp_path: Path) -> None:
    b = nn_builder(
        [("a", (2, 1, 3, 2, 2)), ("b", (2, 1, 1, 2, 2)), ("s", (1, 1, 4, 2, 2))],
        [(n, None) for n in ("c", "q", "p0", "p1", "r")],
        exact=False,
    )
    b.add_elementwise("c", ["a", "b"], "c", "CONCAT")
    b.add_elementwise("q", ["c", "s"], "q", "SEQUENCE_CONCAT")
    b.add_split("sp", "c", ["p0", "p1"])
    b.add_sequence_repeat("r", 3, "c", "r")
    a, bb, s = _rand(2, 1, 3, 2, 2), _rand(2, 1, 1, 2, 2), _rand(1, 1, 4, 2, 2)
    c = np.concatenate([a, bb], axis=2)
    expected = [
        c,
        np.concatenate([c, s], axis=0),
        c[:, :, :2],
        c[:, :, 2:],
        np.tile(c, (3, 1, 1, 1, 1)),
    ]
    check(save_nn(b, tmp_path), {"a": a, "b": bb, "s": s}, expected)


def test_concat_and_split_exact(tmp_path: Path) -> None:
    b = nn_builder([("a", (2, 3, 4)), ("b", (2, 3, 4))], [(n, None) for n in ("x", "y", "z")])
    b.add_elementwise("c", ["a", "b", "a"], "c", "CONCAT")
    b.add_split("sp", "c", ["x", "y", "z"])
    a, bb = _rand(2, 3, 4), _rand(2, 3, 4)
    c = np.concatenate([a, bb, a])
    check(save_nn(b, tmp_path), {"a": a, "b": bb}, np.split(c, 3), tvm=False)


def test_split_into_unequal_parts_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (5, 2, 2))], [("y", None), ("z", None)], exact=False)
    b.add_split("sp", "x", ["y", "z"])
    _refused(save_nn(b, tmp_path), r"split node 'sp': 5 channels do not split into 2 equal")


def test_sequence_concat_needs_rank5(tmp_path: Path) -> None:
    b = nn_builder([("a", (1, 3, 4)), ("b", (1, 3, 4))], [("y", None)])
    b.add_elementwise("c", ["a", "b"], "y", "SEQUENCE_CONCAT")
    _refused(save_nn(b, tmp_path), r"concat node 'c': concat along axis -5: .* rank >= 5")


# -- reorganizeData -------------------------------------------------------------------------


def test_reorganize_data_proto_example(tmp_path: Path) -> None:
    """The [C=8, H=1, W=2] example of NeuralNetwork.proto, block size 2."""
    b = nn_builder([("x", (8, 1, 2))], [("d", None), ("p", None), ("s", None)], exact=False)
    b.add_reorganize_data("d", "x", "d", "DEPTH_TO_SPACE", 2)
    b.add_reorganize_data("p", "x", "p", "PIXEL_SHUFFLE", 2)
    b.add_reorganize_data("s", "d", "s", "SPACE_TO_DEPTH", 2)
    x = np.arange(1, 17, dtype=np.float32).reshape(8, 1, 2)
    d2s = np.array([[[1, 5, 2, 6], [9, 13, 10, 14]], [[3, 7, 4, 8], [11, 15, 12, 16]]])
    shuffle = np.array([[[1, 3, 2, 4], [5, 7, 6, 8]], [[9, 11, 10, 12], [13, 15, 14, 16]]])
    check(save_nn(b, tmp_path), {"x": x}, [d2s, shuffle, x], tvm=False)


def test_reorganize_data_rank5_and_exact(tmp_path: Path) -> None:
    """Larger blocks against PyTorch's pixel_shuffle (PIXEL_SHUFFLE) and a loop over the
    definition of SPACE_TO_DEPTH: output channel (i * b + j) * C + c."""
    b = nn_builder([("x", (2, 1, 2, 6, 3))], [("s", None), ("p", None)], exact=False)
    b.add_reorganize_data("s", "x", "s", "SPACE_TO_DEPTH", 3)
    b.add_reorganize_data("p", "s", "p", "PIXEL_SHUFFLE", 3)
    x = _rand(2, 1, 2, 6, 3)
    bs, c = 3, 2
    s2d = np.zeros((2, 1, c * bs * bs, 2, 1), np.float32)
    for i in range(bs):
        for j in range(bs):
            s2d[:, :, (i * bs + j) * c : (i * bs + j + 1) * c] = x[:, :, :, i::bs, j::bs]
    shuffled = torch.nn.functional.pixel_shuffle(torch.from_numpy(s2d[:, 0]), bs).numpy()
    check(save_nn(b, tmp_path), {"x": x}, [s2d, shuffled[:, None]])

    b = nn_builder([("x", (2, 8, 1, 2))], [("y", None)])
    b.add_reorganize_data("d", "x", "y", "DEPTH_TO_SPACE", 2)
    x = _rand(2, 8, 1, 2)
    want = x.reshape(2, 2, 2, 2, 1, 2).transpose(0, 3, 4, 1, 5, 2).reshape(2, 2, 2, 4)
    check(save_nn(b, tmp_path, "exact"), {"x": x}, [want], tvm=False)


def test_reorganize_data_needs_divisible_sizes(tmp_path: Path) -> None:
    b = nn_builder([("x", (3, 4, 4))], [("y", None)], exact=False)
    b.add_reorganize_data("d", "x", "y", "DEPTH_TO_SPACE", 2)
    _refused(save_nn(b, tmp_path), r"reorganizeData node 'd': 3 channels are not a multiple")


# -- slice, loadConstant --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axis", "start", "end", "stride", "index"),
    [
        ("channel", 1, 5, 2, np.s_[1:5:2]),
        ("channel", 0, -1, 1, np.s_[0:-1]),
        ("height", 2, -2, 1, np.s_[2:-2]),
        ("height", -3, 0, 1, np.s_[-3:]),  # end 0: to the end (Core ML's shape rule)
        ("width", -4, -1, 2, np.s_[-4:-1:2]),
        ("width", 1, 100, 3, np.s_[1::3]),
    ],
)
def test_slice(tmp_path: Path, axis: str, start: int, end: int, stride: int, index: slice) -> None:
    b = nn_builder([("x", (2, 1, 6, 7, 8))], [("y", None)], exact=False)
    b.add_slice("s", "x", "y", axis, 0, end, stride).slice.startIndex = start  # builder: >= 0
    x = _rand(2, 1, 6, 7, 8)
    where = {"channel": 2, "height": 3, "width": 4}[axis]
    want = x[(slice(None),) * where + (index,)]
    check(save_nn(b, tmp_path), {"x": x}, [want], tvm=axis == "width" and start == -4)


def test_slice_exact_and_empty(tmp_path: Path) -> None:
    b = nn_builder([("x", (4, 5))], [("y", None)])
    b.add_slice("s", "x", "y", "height", 1, -1, 2)
    x = _rand(4, 5)
    check(save_nn(b, tmp_path), {"x": x}, [x[1:-1:2]], tvm=False)
    b = nn_builder([("x", (4, 5))], [("y", None)])
    b.add_slice("s", "x", "y", "width", 4, 2, 1)
    _refused(save_nn(b, tmp_path), r"slice node 's': startIndex 4 and endIndex 2 select nothing")


def test_load_constant_rank5(tmp_path: Path) -> None:
    b = nn_builder([("x", (2, 3, 1))], [("y", None)], exact=False)
    k = _rand(2, 3, 1)
    b.add_load_constant("k", "k", k, [2, 3, 1])
    b.add_elementwise("m", ["x", "k"], "y", "MULTIPLY")
    x = _rand(2, 3, 1)
    check(save_nn(b, tmp_path), {"x": x}, [x * k], tvm=False)


# -- flexible input shapes ------------------------------------------------------------------


def _flexible_hw(b, tmp_path: Path, name: str) -> Path:
    """The builder's [3, H, W] input ``x`` with H and W ranged 2..8 (symbolic dims)."""
    array = b.spec.description.input[0].type.multiArrayType
    for lo, hi in [(3, 3), (2, 8), (2, 8)]:
        r = array.shapeRange.sizeRanges.add()
        r.lowerBound, r.upperBound = lo, hi
    b.spec.specificationVersion = max(b.spec.specificationVersion, 3)
    return save_nn(b.spec, tmp_path, name)


def test_flexible_sizes_pass_through_and_flatten_needs_them_bound(tmp_path: Path) -> None:
    b = nn_builder([("x", (3, 4, 4))], [("y", None)], exact=False)
    b.add_softmax("sm", "x", "s")
    b.add_slice("sl", "s", "t", "channel", 1, 3, 1)
    b.add_elementwise("c", ["t", "x"], "y", "CONCAT")
    path = _flexible_hw(b, tmp_path, "flex")
    x = _rand(3, 5, 7)
    e = np.exp(x - x.max(axis=0))
    sm = e / e.sum(axis=0)
    check(path, {"x": x}, [np.concatenate([sm[1:3], x])], tvm=False)

    b = nn_builder([("x", (3, 4, 4))], [("y", None)], exact=False)
    b.add_flatten("f", 0, "x", "y")
    path = _flexible_hw(b, tmp_path, "flat")
    _refused(path, r"flatten node 'f': flatten needs static sizes, got \[1, 1, 3, 'x_1', 'x_2'\]")
    x = _rand(3, 5, 7)
    check(path, {"x": x}, [x.reshape(-1, 1, 1)], tvm=False, input_shapes={"x": [3, 5, 7]})
