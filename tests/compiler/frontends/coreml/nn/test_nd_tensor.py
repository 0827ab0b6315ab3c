"""The ND data-movement layers (spec >= 4) against numpy: gathers and scatters in every mode,
reverse/reverseSeq, stack/concatND/splitND/transpose/tile, the slices, shape and fill layers,
reshapes, constantPad and whereNonZero; and the errors for operands nnxc needs at compile time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from coremlutil import check, nn_builder, save_nn

from compiler.errors import ConversionError, NeedsValueError
from compiler.frontends.coreml.importer import import_coreml

RNG = np.random.default_rng(0)


def _rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


_APPLY = {
    "UPDATE": lambda a, b: b,
    "ADD": np.add,
    "SUB": np.subtract,
    "MUL": np.multiply,
    "DIV": np.divide,
    "MAX": np.maximum,
    "MIN": np.minimum,
}


@pytest.mark.parametrize("mode", list(_APPLY))
def test_gathers_and_scatters(tmp_path: Path, mode: str) -> None:
    """Indices arrive as float blobs (negative ones count from the end); the reducing modes
    see repeated indices."""
    f = _APPLY[mode]
    unique = mode == "UPDATE"
    data = _rand(3, 5)
    upd = _rand(3, 2, 2) + 2.0 * (mode == "DIV")
    idx = np.array([[0, -1], [2, 1]] if unique else [[0, -1], [4, 1]], np.float32)
    nd_idx = np.array([[1], [-3]] if unique else [[1], [1]], np.float32)
    nd_upd = _rand(2, 5) + 2.0 * (mode == "DIV")
    ax_idx = np.array([[0, 1, 2, 0, 1]] if unique else [[0, 1, 2, 0, 1], [0, 0, 2, 0, 1]])
    ax_idx = ax_idx.astype(np.float32)
    ax_upd = _rand(*ax_idx.shape) + 2.0 * (mode == "DIV")
    b = nn_builder(
        [("data", (3, 5)), ("idx", (2, 2)), ("upd", (3, 2, 2)), ("nd_idx", (2, 1))]
        + [("nd_upd", (2, 5)), ("ax_idx", ax_idx.shape), ("ax_upd", ax_idx.shape)],
        [(n, None) for n in ("g", "gnd", "gax", "s", "snd", "sax")],
    )
    b.add_gather("g", ["data", "idx"], "g", axis=-1)
    b.add_gather_nd("gnd", ["data", "nd_idx"], "gnd")
    b.add_gather_along_axis("gax", ["data", "ax_idx"], "gax", axis=0)
    b.add_scatter("s", ["data", "idx", "upd"], "s", axis=1, mode=mode)
    b.add_scatter_nd("snd", ["data", "nd_idx", "nd_upd"], "snd", mode=mode)
    b.add_scatter_along_axis("sax", ["data", "ax_idx", "ax_upd"], "sax", axis=0, mode=mode)
    ii, ni, ai = idx.astype(int), nd_idx.astype(int), ax_idx.astype(int)
    s, snd, sax = data.copy(), data.copy(), data.copy()
    for j, k in enumerate(ii.reshape(-1)):
        s[:, k] = f(s[:, k], upd.reshape(3, 4)[:, j])
    for j, k in enumerate(ni[:, 0]):
        snd[k] = f(snd[k], nd_upd[j])
    for r in range(ai.shape[0]):
        for c in range(ai.shape[1]):
            sax[ai[r, c], c] = f(sax[ai[r, c], c], ax_upd[r, c])
    feeds = dict(data=data, idx=idx, upd=upd, nd_idx=nd_idx, nd_upd=nd_upd)
    feeds |= dict(ax_idx=ax_idx, ax_upd=ax_upd)
    gax = np.take_along_axis(data, np.where(ai < 0, ai + 3, ai), axis=0)
    want = [np.take(data, ii, axis=1), data[ni[:, 0]], gax, s, snd, sax]
    check(save_nn(b, tmp_path), feeds, want, tvm=mode in ("UPDATE", "DIV"))


def test_reverse_and_reverse_seq(tmp_path: Path) -> None:
    x = _rand(2, 4, 3)
    lengths = np.array([3, 1], np.float32)
    b = nn_builder([("x", (2, 4, 3)), ("len", (2,))], [("r", None), ("rs", None)])
    b.add_reverse("r", "x", "r", reverse_dim=[True, False, True])
    b.add_reverse_sequence("rs", ["x", "len"], "rs", batch_axis=0, seq_axis=1)
    rs = x.copy()
    for i, n in enumerate(lengths.astype(int)):
        rs[i, :n] = x[i, :n][::-1]
    check(save_nn(b, tmp_path), {"x": x, "len": lengths}, [x[::-1, :, ::-1], rs])


def test_stack_concat_split_transpose_tile(tmp_path: Path) -> None:
    x, y = _rand(2, 3), _rand(2, 3)
    b = nn_builder(
        [("x", (2, 3)), ("y", (2, 3))],
        [(n, None) for n in ("st", "cat", "inter", "s0", "s1", "s2", "e0", "e1", "t", "t1", "t2")],
    )
    b.add_stack("st", ["x", "y"], "st", axis=-1)
    b.add_concat_nd("cat", ["x", "y"], "cat", axis=0)
    b.add_concat_nd("inter", ["x", "y"], "inter", axis=-1, interleave=True)
    b.add_split_nd("split", "x", ["s0", "s1", "s2"], axis=1, split_sizes=[1, 0, 2])
    b.add_split_nd("halves", "cat", ["e0", "e1"], axis=0, num_splits=2)
    b.add_transpose("t", [1, 0], "x", "t")
    b.add_tile("t1", "x", "t1", reps=[3])
    b.add_load_constant_nd("reps", "reps", np.array([2.0, 1.0]), shape=[2])
    b.add_tile("t2", ["x", "reps"], "t2")
    inter = np.stack([x, y], axis=-1).reshape(2, 6)
    want = [np.stack([x, y], -1), np.concatenate([x, y]), inter, x[:, :1], x[:, 1:1], x[:, 1:]]
    want += [x, y, x.T, np.tile(x, [1, 3]), np.tile(x, [2, 1])]
    check(save_nn(b, tmp_path), {"x": x, "y": y}, want)


SLICES = [
    # begin, end, strides, begin masks, end masks, squeeze masks, numpy index
    ([1, 0, 3], [3, -1, 0], [1, 1, -1], [0, 0, 0], [0, 0, 0], None, np.s_[1:3, 0:-1, 3:0:-1]),
    ([9, 2, 3], [3, -3, 2], [2, 2, 2], [1, 0, 1], [0, 1, 1], None, np.s_[:3:2, 2::2, ::2]),
    ([0, -2, 0], [2, 0, 4], [1, -1, 1], [0, 0, 1], [0, 1, 0], None, np.s_[0:2, -2::-1, :4]),
    ([-1, 2, 0], [0, 0, 5], [1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 0, 0], np.s_[-1, 2:0, 0:5]),
    ([1, 1, 4], [0, 5, 0], [1, 2, 1], [0, 0, 0], [0, 0, 0], [1, 0, 1], np.s_[1, 1:5:2, 4]),
]


@pytest.mark.parametrize("case", range(len(SLICES)))
def test_slice_static(tmp_path: Path, case: int) -> None:
    begin, end, strides, bm, em, sm, index = SLICES[case]
    x = _rand(3, 5, 6)
    b = nn_builder([("x", (3, 5, 6))], [("y", None)])
    masks = [[bool(v) for v in m] for m in (bm, em, sm or [0, 0, 0])]
    b.add_slice_static("s", "x", "y", begin, end, strides, *masks)
    check(save_nn(b, tmp_path), {"x": x}, [x[index]], tvm=case == 4)


def test_slice_dynamic_and_by_size(tmp_path: Path) -> None:
    """Compile-time bounds from constant blobs; a run-time begin where only the squeezed
    axes (sliceDynamic) or a fixed size (sliceBySize) read it."""
    x = _rand(4, 6)
    b = nn_builder(
        [("x", (4, 6)), ("at", (2,)), ("from", (1,))], [(n, None) for n in ("a", "r", "sz", "w")]
    )
    b.add_load_constant_nd("begin", "begin", np.array([1.0, -5.0]), shape=[2])
    b.add_load_constant_nd("end", "end", np.array([3.0, 6.0]), shape=[2])
    b.add_slice_dynamic(
        "a", ["x", "begin", "end"], "a", strides=[1, 2], begin_masks=[0, 0], end_masks=[0, 0]
    )
    b.add_slice_dynamic(
        "r",
        ["x", "at"],
        "r",
        end_ids=[0, 0],
        strides=[1, 1],
        begin_masks=[False, True],
        end_masks=[False, True],
        squeeze_masks=[True, False],
    )
    b.add_slice_by_size("sz", ["x", "from"], "sz", axis=1, size=3)
    b.add_sliding_windows("w", "x", "w", axis=1, window_size=4, step=2)
    at = np.array([-2.0, 0.0], np.float32)
    windows = np.stack([x[:, 0:4], x[:, 2:6]], axis=1)
    for start in (2.0, -4.0):
        feeds = {"x": x, "at": at, "from": np.array([start], np.float32)}
        s = int(start) % 6
        want = [x[1:3, -5:6:2], x[-2], x[:, s : s + 3], windows]
        check(save_nn(b, tmp_path), feeds, want, tvm=start == 2.0)


def test_shape_fill_broadcast_range(tmp_path: Path) -> None:
    x = _rand(2, 3)
    row = _rand(3)
    outs = ["shape", "fl", "fs", "fd", "bl", "bs", "bd", "rs", "rd", "c"]
    b = nn_builder([("x", (2, 3)), ("row", (3,))], [(n, None) for n in outs])
    b.add_get_shape("shape", "x", "shape")
    b.add_fill_like("fl", "x", "fl", value=1.5)
    b.add_fill_static("fs", "fs", [2, 1, 2], value=-3.0)
    b.add_fill_dynamic("fd", "shape", "fd", value=7.0)
    b.add_broadcast_to_like("bl", ["row", "x"], "bl")
    b.add_broadcast_to_static("bs", "row", "bs", [4, 1, 3])
    b.add_broadcast_to_dynamic("bd", ["row", "shape"], "bd")
    b.add_range_static("rs", "rs", end=2.0, start=-1.0, step=0.75)
    b.add_load_constant_nd("end", "end", np.array([10.0]), shape=[1])
    b.add_load_constant_nd("start", "start", np.array([1.0]), shape=[1])
    b.add_range_dynamic("rd", ["end", "start"], "rd", step=4)
    b.add_load_constant_nd("c", "c", np.arange(6.0), shape=[3, 2])
    want = [np.array([2.0, 3.0], np.float32), np.full((2, 3), 1.5), np.full((2, 1, 2), -3.0)]
    want += [np.full((2, 3), 7.0), np.broadcast_to(row, (2, 3)), np.broadcast_to(row, (4, 1, 3))]
    want += [np.broadcast_to(row, (2, 3)), np.arange(-1.0, 2.0, 0.75), np.arange(1.0, 10.0, 4)]
    want += [np.arange(6.0).reshape(3, 2)]
    check(save_nn(b, tmp_path), {"x": x, "row": row}, want)


def test_fill_and_broadcast_like_keep_symbolic_dims(tmp_path: Path) -> None:
    b = nn_builder([("x", (2, 3)), ("row", (3,))], [("fl", None), ("bl", None)])
    b.add_fill_like("fl", "x", "fl", value=2.0)
    b.add_broadcast_to_like("bl", ["row", "x"], "bl")
    for lo, hi in [(1, -1), (3, 3)]:
        r = b.spec.description.input[0].type.multiArrayType.shapeRange.sizeRanges.add()
        r.lowerBound, r.upperBound = lo, hi
    x, row = _rand(5, 3), _rand(3)
    x[0, 0] = np.nan
    want = [np.full((5, 3), 2.0), np.broadcast_to(row, (5, 3))]
    path = save_nn(b, tmp_path)
    graph, _ = import_coreml(path)
    assert graph.outputs[0].shape == graph.outputs[1].shape == ("x_0", 3)
    check(path, {"x": x, "row": row}, want, tvm=False)


def test_reshapes(tmp_path: Path) -> None:
    x = _rand(1, 4, 1, 3)
    outs = ["sq", "sqa", "ex", "f2", "rl", "rst", "rd", "rp"]
    b = nn_builder([("x", (1, 4, 1, 3)), ("like", (6, 2))], [(n, None) for n in outs])
    b.add_squeeze("sq", "x", "sq", axes=[0, -2])
    b.add_squeeze("sqa", "x", "sqa", squeeze_all=True)
    b.add_expand_dims("ex", "sq", "ex", axes=[0, -1])
    b.add_flatten_to_2d("f2", "x", "f2", axis=-2)
    b.add_reshape_like("rl", ["x", "like"], "rl")
    b.add_reshape_static("rst", "x", "rst", [3, -1])
    b.add_load_constant_nd("shape", "shape", np.array([2.0, 2.0, 3.0]), shape=[3])
    b.add_reshape_dynamic("rd", ["x", "shape"], "rd")
    b.add_rank_preserving_reshape("rp", "x", "rp", [0, 2, -1, 1])
    want = [x.reshape(4, 3), x.reshape(4, 3), x.reshape(1, 4, 3, 1), x.reshape(4, 3)]
    want += [x.reshape(6, 2), x.reshape(3, 4), x.reshape(2, 2, 3), x.reshape(1, 2, 6, 1)]
    like = np.zeros((6, 2), np.float32)
    check(save_nn(b, tmp_path), {"x": x, "like": like}, want)


def test_squeeze_to_rank_one(tmp_path: Path) -> None:
    b = nn_builder([("x", (1,)), ("y", (1, 1))], [("a", None), ("b", None)])
    b.add_squeeze("a", "x", "a", axes=[0])
    b.add_squeeze("b", "y", "b", squeeze_all=True)
    one = np.array([3.0], np.float32)
    check(save_nn(b, tmp_path), {"x": one, "y": one.reshape(1, 1)}, [one, one], tvm=False)


def test_constant_pad(tmp_path: Path) -> None:
    x = _rand(2, 3)
    b = nn_builder([("x", (2, 3))], [("p", None), ("g", None), ("i", None)])
    b.add_constant_pad("p", ["x"], "p", value=-1.0, pad_amounts=[0, 1, 2, 0])
    b.add_constant_pad(
        "g", ["x"], "g", value=4.0, pad_amounts=[0, 5, 4, 0], pad_to_given_output_size_mode=True
    )
    b.add_load_constant_nd("amounts", "amounts", np.array([1.0, 2.0]), shape=[2])
    b.add_constant_pad("i", ["x", "amounts"], "i", value=0.5)
    want = [
        np.pad(x, [(0, 1), (2, 0)], constant_values=-1.0),
        np.pad(x, [(0, 3), (1, 0)], constant_values=4.0),
        np.pad(x, [(0, 0), (1, 2)], constant_values=0.5),
    ]
    check(save_nn(b, tmp_path), {"x": x}, want)


def test_where_non_zero_of_a_constant(tmp_path: Path) -> None:
    data = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    b = nn_builder([("x", (2,))], [("nz", None)])
    b.add_load_constant_nd("c", "c", data, shape=[2, 3])
    b.add_where_nonzero("nz", "c", "nz")
    b.add_activation("unused", "RELU", "x", "unused_out")
    want = np.argwhere(data != 0).astype(np.float32)
    check(save_nn(b, tmp_path), {"x": np.zeros(2, np.float32)}, [want], tvm=False)


def test_errors_name_the_layer(tmp_path: Path) -> None:
    cases = []
    b = nn_builder([("x", (4,))], [("nz", None)])
    b.add_where_nonzero("nz_layer", "x", "nz")
    cases.append((b, NeedsValueError, r"whereNonZero node 'nz_layer'.*number of non-zeros"))
    b = nn_builder([("x", (2, 3)), ("s", (2,))], [("y", None)])
    b.add_reshape_dynamic("rd_layer", ["x", "s"], "y")
    cases.append((b, NeedsValueError, r"reshapeDynamic node 'rd_layer'.*output shape"))
    b = nn_builder([("x", (2, 3)), ("at", (2,))], [("y", None)])
    b.add_slice_dynamic("sd_layer", ["x", "at"], "y", end_ids=[1, 3], strides=[1, 1])
    cases.append((b, ConversionError, r"sd_layer.*begin of axis 0 sets the output shape"))
    b = nn_builder([("x", (2, 3)), ("i", (2,)), ("u", (3, 3))], [("y", None)])
    b.add_scatter("sc_layer", ["x", "i", "u"], "y", axis=0)
    cases.append((b, ConversionError, r"scatter node 'sc_layer'.*must have shape \[2, 3\]"))
    b = nn_builder([("x", (2, 3))], [("y", None)])
    b.add_squeeze("sq_layer", "x", "y", axes=[1])
    cases.append((b, ConversionError, r"sq_layer.*cannot squeeze dim 1"))
    for i, (builder, error, message) in enumerate(cases):
        with pytest.raises(error, match=message):
            import_coreml(save_nn(builder, tmp_path, f"m{i}"))


def test_int32_index_inputs(tmp_path: Path) -> None:
    """Integer index blobs (an INT32 model input) are used without a cast."""
    b = nn_builder([("x", (4, 6)), ("i", (3,)), ("at", (1,))], [("g", None), ("s", None)])
    for desc in b.spec.description.input[1:]:
        desc.type.multiArrayType.dataType = 0x20020  # INT32
    b.add_gather("g", ["x", "i"], "g", axis=0)
    b.add_slice_by_size("s", ["x", "at"], "s", axis=-1, size=2)
    x = _rand(4, 6)
    feeds = {"x": x, "i": np.array([3, -4, 1], np.int32), "at": np.array([-3], np.int32)}
    check(save_nn(b, tmp_path), feeds, [x[[3, 0, 1]], x[:, 3:5]])


def test_slice_dynamic_with_every_operand_an_input(tmp_path: Path) -> None:
    names = ["begin", "end", "strides", "bmask", "emask", "smask"]
    values = [[0, 5, 1], [2, 0, 3], [1, -2, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    b = nn_builder([("x", (3, 6, 4))], [("y", None), ("sq", None)])
    for name, v in zip(names, values):
        b.add_load_constant_nd(name, name, np.array(v, np.float64), shape=[3])
    b.add_slice_dynamic("y", ["x", *names], "y")
    b.add_squeeze("sq", "y", "sq")
    x = _rand(3, 6, 4)
    y = x[:2, 5::-2, 1]
    check(save_nn(b, tmp_path), {"x": x}, [y, y], tvm=False)


def test_more_errors_name_the_layer(tmp_path: Path) -> None:
    cases = []
    b = nn_builder([("x", (2, 3))], [("y", None)])
    b.add_tile("tile_layer", "x", "y", reps=[1, 2, 3])
    cases.append((b, r"tile node 'tile_layer': reps \[1, 2, 3\] must have 1 to 2 entries"))
    b = nn_builder([("x", (2, 3))], [("y", None)])
    b.add_constant_pad(
        "pad_layer", ["x"], "y", pad_amounts=[1, 4, 0, 0], pad_to_given_output_size_mode=True
    )
    cases.append((b, r"pad_layer': axis 0 gives an output size on both sides"))
    b = nn_builder([("x", (2, 3)), ("z", (2, 2))], [("y", None)])
    b.add_concat_nd("cat_layer", ["x", "z"], "y", axis=1, interleave=True)
    cases.append((b, r"cat_layer': interleave needs inputs of one shape"))
    b = nn_builder([("x", (2, 3))], [("a", None), ("b", None)])
    b.add_split_nd("split_layer", "x", ["a", "b"], axis=1, num_splits=2)
    cases.append((b, r"split_layer': dim 1 of float32\[2, 3\] does not split into 2 equal"))
    for i, (builder, message) in enumerate(cases):
        with pytest.raises(ConversionError, match=message):
            import_coreml(save_nn(builder, tmp_path, f"m{i}"))
