"""MIL data-movement ops (mil/tensor.py) against numpy and PyTorch.

Programs are converted with coremltools' empty pass pipeline, so each op reaches nnxc as
written (the default pipeline folds constants and rewrites some ops); the fp16 test uses the
default pipeline, which makes the program compute in float16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import get_new_symbol, types
from coremlutil import check, ct, save_program
from oputil import run_tvm

from backends.reference import run_graph
from compiler.errors import ConversionError, NeedsValueError
from compiler.frontends.coreml.importer import import_coreml

RNG = np.random.default_rng(0)


def _save(prog: Any, folder: Path, target: Any = None, **kw: Any) -> Path:
    return save_program(prog, folder, target=target, pass_pipeline=ct.PassPipeline.EMPTY, **kw)


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# -- reshapes ------------------------------------------------------------------------------


def test_reshapes_ios17(tmp_path: Path) -> None:
    """iOS17 reshape: a 0 copies the dim counted from the right (1 past the rank)."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3, 4))], opset_version=ct.target.iOS17)
    def prog(x):
        a = mb.reshape(x=x, shape=[1, 0, -1, 0])
        b = mb.expand_dims(x=x, axes=[0, -1])
        c = mb.squeeze(x=b, axes=[0, 2])  # axis 2 (size 3) stays, as in PyTorch
        d = mb.flatten2d(x=x, axis=-1)
        e = mb.transpose(x=x, perm=[2, 0, 1])
        f = mb.reshape_like(
            x=x,
            ref_tensors=(a, e, x),
            begins=(1, 0, 1),
            ends=(2, 1, 2),
            end_masks=(False, False, False),
        )
        return a, c, d, e, f, mb.identity(x=x)

    x = _x(2, 3, 4)
    want = [
        x.reshape(1, 2, 3, 4),
        x[:, :, :, None],
        x.reshape(6, 4),
        x.transpose(2, 0, 1),
        x.reshape(2, 4, 3),
        x,
    ]
    check(_save(prog, tmp_path, ct.target.iOS17), {"x": x}, want)


def test_reshape_ios15_zero_copies_same_position(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3, 4))], opset_version=ct.target.iOS15)
    def prog(x):
        return mb.reshape(x=x, shape=[0, -1, 2]), mb.squeeze(x=mb.reshape(x=x, shape=[1, 24, 1]))

    x = _x(2, 3, 4)
    check(_save(prog, tmp_path), {"x": x}, [x.reshape(2, 6, 2), x.reshape(24)], tvm=False)


def test_reshape_to_shape_of_input_folds(tmp_path: Path) -> None:
    """A shape computed from the input's static dims is known at compile time."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 6))])
    def prog(x):
        s = mb.shape(x=x)
        return mb.reshape(x=mb.transpose(x=x, perm=[1, 0]), shape=mb.reverse(x=s))

    x = _x(2, 6)
    check(_save(prog, tmp_path), {"x": x}, [x.T.reshape(6, 2)], tvm=False)


def test_reshapes_of_a_symbolic_dim(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[mb.TensorSpec(shape=(get_new_symbol(), 6))], opset_version=ct.target.iOS16
    )
    def prog(x):
        a = mb.reshape(x=x, shape=[-1, 3, 2])
        b = mb.flatten2d(x=mb.expand_dims(x=x, axes=[1]), axis=2)
        s = mb.shape(x=x)
        batch = mb.slice_by_index(x=s, begin=[0], end=[1])
        runtime = mb.concat(values=[batch, np.array([2, 3], np.int32)], axis=0)  # [S, 2, 3]
        c = mb.reshape(x=x, shape=runtime)
        return a, b, s, c, mb.fill_like(ref_tensor=x, value=np.float32(np.inf))

    flexible = [ct.TensorType(name="x", shape=(ct.RangeDim(1, 8), 6))]
    path = _save(prog, tmp_path, ct.target.iOS16, inputs=flexible)
    graph, _ = import_coreml(path)
    assert isinstance(graph.outputs[0].shape[0], str)
    x = _x(5, 6)
    x[0, 0] = np.nan
    inf = np.full((5, 6), np.inf, np.float32)
    want = [x.reshape(5, 3, 2), x, np.array([5, 6], np.int32), x.reshape(5, 2, 3), inf]
    check(path, {"x": x}, want, tvm=False)


def test_reshape_ios17_zeros_of_a_symbolic_dim(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, get_new_symbol()))], opset_version=ct.target.iOS17
    )
    def prog(x):
        return mb.reshape(x=x, shape=[1, 0, -1, 0])

    flexible = [ct.TensorType(name="x", shape=(2, ct.RangeDim(1, 8)))]
    path = _save(prog, tmp_path, ct.target.iOS17, inputs=flexible)
    x = _x(2, 5)
    check(path, {"x": x}, [x.reshape(1, 1, 2, 5)], tvm=False)  # the coremltools example


def test_reshape_with_runtime_shape_is_refused(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, 6)), mb.TensorSpec(shape=(2,), dtype=types.int32)]
    )
    def prog(x, s):
        return mb.reshape(x=x, shape=s)

    with pytest.raises(NeedsValueError, match="reshape node .*'shape' must be known"):
        import_coreml(_save(prog, tmp_path))


# -- concat, split, stack, tile ------------------------------------------------------------


def test_concat_split_stack_tile(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3)), mb.TensorSpec(shape=(2, 3))])
    def prog(x, y):
        a = mb.concat(values=[x, y], axis=1)
        b = mb.concat(values=[x, y, x], axis=0, interleave=True)
        c, d = mb.split(x=a, num_splits=2, axis=-1)
        e, f = mb.split(x=a, split_sizes=[1, 5], axis=1)
        g = mb.stack(values=[x, y], axis=1)
        h = mb.tile(x=x, reps=[2, 3])
        return a, b, c, d, e, f, g, h

    x, y = _x(2, 3), _x(2, 3)
    a = np.concatenate([x, y], 1)
    b = np.stack([x, y, x], 1).reshape(6, 3)
    want = [a, b, a[:, :3], a[:, 3:], a[:, :1], a[:, 1:], np.stack([x, y], 1), np.tile(x, (2, 3))]
    check(_save(prog, tmp_path), {"x": x, "y": y}, want)


# -- slices --------------------------------------------------------------------------------


def test_slices(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[mb.TensorSpec(shape=(4, 5, 6)), mb.TensorSpec(shape=(2, 5, 3))],
        opset_version=ct.target.iOS17,
    )
    def prog(x, s):
        a = mb.slice_by_index(
            x=x,
            begin=[1, -1, 0],
            end=[3, 0, 6],
            stride=[1, -2, 2],
            begin_mask=[False, False, True],
            end_mask=[False, True, False],
        )
        b = mb.slice_by_index(
            x=x, begin=[-1, 0, 2], end=[0, 5, 4], squeeze_mask=[True, False, False]
        )
        c = mb.slice_by_size(x=x, begin=[1, -3, 2], size=[2, 2, -1])
        d = mb.crop(x=x, crop_height=[1, 2], crop_width=[0, 3])
        e = mb.reverse(x=x, axes=[0, -1])
        f = mb.reverse(x=s)
        g = mb.reverse_sequence(x=s, lengths=np.array([3, 1], np.int32), seq_axis=1, batch_axis=0)
        h = mb.sliding_windows(x=x, axis=1, size=2, stride=2)
        return a, b, c, d, e, f, g, h

    x, s = _x(4, 5, 6), _x(2, 5, 3)
    g = s.copy()
    g[0, :3] = s[0, 2::-1]
    windows = np.stack([x[:, 0:2], x[:, 2:4]], axis=1)
    want = [
        x[1:3, -1::-2, ::2],
        x[-1, :, 2:4],
        x[1:3, 2:4, 2:],
        x[:, 1:3, 0:3],
        x[::-1, :, ::-1],
        s[::-1, ::-1, ::-1],
        g,
        windows,
    ]
    check(_save(prog, tmp_path, ct.target.iOS17), {"x": x, "s": s}, want)


def test_slice_update(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[mb.TensorSpec(shape=(4, 5)), mb.TensorSpec(shape=(2,))],
        opset_version=ct.target.iOS18,
    )
    def prog(x, u):
        return mb.slice_update(
            x=x, update=u, begin=[1, 3], end=[4, 0], stride=[2, 1], squeeze_mask=[False, True]
        )

    x, u = _x(4, 5), _x(2)
    want = x.copy()
    want[1:4:2, 3] = u
    check(_save(prog, tmp_path, ct.target.iOS18), {"x": x, "u": u}, [want])


# -- pad -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "np_mode", "tvm"),
    [("constant", "constant", True), ("reflect", "reflect", False), ("replicate", "edge", False)],
)
def test_pad(tmp_path: Path, mode: str, np_mode: str, tvm: bool) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3, 4))])
    def prog(x):
        return mb.pad(x=x, pad=np.array([1, 2, 0, 3], np.int32), mode=mode, constant_val=1.5)

    x = _x(2, 3, 4)
    width = [(0, 0), (1, 2), (0, 3)]
    kw = {"constant_values": 1.5} if mode == "constant" else {}
    check(_save(prog, tmp_path), {"x": x}, [np.pad(x, width, mode=np_mode, **kw)], tvm=tvm)


# -- shape, fill, range, non_zero ------------------------------------------------------------


def test_shape_fill_range_non_zero(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=ct.target.iOS16)
    def prog(x):
        s = mb.shape(x=x)
        f = mb.fill(shape=s, value=2.5)
        g = mb.fill_like(ref_tensor=x, value=-1.0)
        r = mb.range_1d(start=1.0, end=2.0, step=0.25)
        i = mb.range_1d(start=5, end=0, step=-2)
        nz = mb.non_zero(x=np.array([[0, 1, 0], [2, 0, 3]], np.float32))
        return s, mb.add(x=x, y=f), mb.add(x=x, y=g), r, i, nz

    x = _x(2, 3)
    want = [
        np.array([2, 3], np.int32),
        x + 2.5,
        x - 1,
        np.arange(1.0, 2.0, 0.25, dtype=np.float32),
        np.array([5, 3, 1], np.int32),
        np.array([[0, 1], [1, 0], [1, 2]], np.int32),
    ]
    check(_save(prog, tmp_path, ct.target.iOS16), {"x": x}, want)


def test_non_zero_of_run_time_values_is_refused(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))])
    def prog(x):
        return mb.non_zero(x=x)

    with pytest.raises(NeedsValueError, match="non_zero node .*number of non-zeros"):
        import_coreml(_save(prog, tmp_path))


# -- gather, scatter -----------------------------------------------------------------------


def test_gathers(tmp_path: Path) -> None:
    int32 = types.int32

    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(2, 3, 4)),
            mb.TensorSpec(shape=(2, 2), dtype=int32),
            mb.TensorSpec(shape=(2, 3, 2), dtype=int32),
            mb.TensorSpec(shape=(2, 2), dtype=int32),
        ],
        opset_version=ct.target.iOS16,
    )
    def prog(x, i, j, k):
        a = mb.gather(x=x, indices=i, axis=-1)
        b = mb.gather(x=x, indices=i, axis=2, batch_dims=1)
        c = mb.gather_along_axis(x=x, indices=j, axis=2)
        d = mb.gather_nd(x=x, indices=k)
        e = mb.gather_nd(
            x=x,
            indices=mb.expand_dims(x=mb.slice_by_size(x=k, begin=[0, 0], size=[2, 1]), axes=[1]),
            batch_dims=1,
        )
        return a, b, c, d, e

    x = _x(2, 3, 4)
    i = np.array([[3, -1], [0, 2]], np.int32)
    j = RNG.integers(0, 4, (2, 3, 2)).astype(np.int32)
    k = np.array([[1, 2], [0, -1]], np.int32)
    i_pos = i % 4
    b = np.stack([x[n][:, i_pos[n]] for n in range(2)])  # tf.gather, batch_dims 1
    e = np.stack([x[n][k[n, 0] % 3] for n in range(2)])[:, None]
    want = [x[:, :, i_pos], b, np.take_along_axis(x, j, 2), x[[1, 0], [2, -1]], e]
    check(_save(prog, tmp_path, ct.target.iOS16), {"x": x, "i": i, "j": j, "k": k}, want)


def test_gather_batch_dims_before_axis(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(2, 3, 4, 5)),
            mb.TensorSpec(shape=(2, 6), dtype=types.int32),
        ],
        opset_version=ct.target.iOS17,
    )
    def prog(x, i):
        a = mb.gather(x=x, indices=i, axis=2, batch_dims=1, validate_indices=False)
        b = mb.gather(x=x, indices=i, axis=1, batch_dims=-1)
        return a, b

    x = _x(2, 3, 4, 5)
    i = RNG.integers(0, 3, (2, 6)).astype(np.int32)
    a = np.stack([x[n][:, i[n]] for n in range(2)])  # [2, 3, 6, 5]
    b = np.stack([x[n][i[n]] for n in range(2)])  # [2, 6, 4, 5]
    check(_save(prog, tmp_path, ct.target.iOS17), {"x": x, "i": i}, [a, b], tvm=False)


def _scatter_reference(
    data: np.ndarray, where: tuple, updates: np.ndarray, mode: str
) -> np.ndarray:
    out = data.copy()
    ops = {
        "add": np.add,
        "sub": np.subtract,
        "mul": np.multiply,
        "div": np.divide,
        "max": np.maximum,
        "min": np.minimum,
    }
    if mode == "update":
        out[where] = updates
    else:
        ops[mode].at(out, where, updates)
    return out


@pytest.mark.parametrize("mode", ["update", "add", "sub", "mul", "div", "max", "min"])
def test_scatters(tmp_path: Path, mode: str) -> None:
    int32 = types.int32

    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(4, 3)),
            mb.TensorSpec(shape=(2,), dtype=int32),
            mb.TensorSpec(shape=(2, 3)),
            mb.TensorSpec(shape=(2, 3), dtype=int32),
            mb.TensorSpec(shape=(2, 1), dtype=int32),
        ],
    )
    def prog(x, i, u, j, k):
        a = mb.scatter(data=x, indices=i, updates=u, axis=0, mode=mode)
        b = mb.scatter_along_axis(data=x, indices=j, updates=u, axis=0, mode=mode)
        c = mb.scatter_nd(data=x, indices=k, updates=u, mode=mode)
        return a, b, c

    x, u = _x(4, 3), _x(2, 3) + 3
    i = np.array([3, 1], np.int32)
    j = np.array([[0, 1, 2], [3, 2, 1]], np.int32)
    k = np.array([[2], [0]], np.int32)
    cols = np.arange(3)[None, :]
    want = [
        _scatter_reference(x, (i,), u, mode),
        _scatter_reference(x, (j, np.broadcast_to(cols, (2, 3))), u, mode),
        _scatter_reference(x, (k[:, 0],), u, mode),
    ]
    feeds = {"x": x, "i": i, "u": u, "j": j, "k": k}
    check(_save(prog, tmp_path), feeds, want, tvm=mode in ("update", "div"))


# -- select, band_part, one_hot --------------------------------------------------------------


@pytest.mark.parametrize(("lower", "upper"), [(-1, 0), (0, -1), (1, 2), (0, 0), (-1, -1)])
def test_band_part(tmp_path: Path, lower: int, upper: int) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 4, 5))])
    def prog(x):
        return mb.band_part(x=x, lower=lower, upper=upper)

    x = _x(2, 4, 5)
    m, n = np.indices((4, 5))
    keep = ((lower < 0) | (m - n <= lower)) & ((upper < 0) | (n - m <= upper))
    check(_save(prog, tmp_path), {"x": x}, [np.where(keep, x, 0)], tvm=(lower, upper) == (1, 2))


def test_select_one_hot(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(2, 3)),
            mb.TensorSpec(shape=(2, 3)),
            mb.TensorSpec(shape=(4,), dtype=types.int32),
        ]
    )
    def prog(a, b, i):
        s = mb.select(cond=mb.greater(x=a, y=b), a=a, b=b)
        h = mb.one_hot(indices=i, one_hot_vector_size=3, axis=0, on_value=5.0, off_value=-1.0)
        return s, h

    a, b = _x(2, 3), _x(2, 3)
    i = np.array([0, 2, -1, 3], np.int32)
    hot = np.full((3, 4), -1.0, np.float32)
    hot[[0, 2], [0, 1]] = 5.0  # -1 and 3 select nothing (tf.one_hot)
    check(_save(prog, tmp_path), {"a": a, "b": b, "i": i}, [np.maximum(a, b), hot])


# -- depth, space, batch -------------------------------------------------------------------


def test_depth_space_batch(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, 8, 2, 3)), mb.TensorSpec(shape=(1, 2, 4, 6))],
        opset_version=ct.target.iOS16,
    )
    def prog(x, y):
        a = mb.depth_to_space(x=x, block_size=2)
        b = mb.space_to_depth(x=y, block_size=2)
        c = mb.pixel_shuffle(x=x, upscale_factor=2)
        d = mb.pixel_unshuffle(x=y, downscale_factor=np.uint32(2))
        e = mb.space_to_batch(x=y, block_shape=[2, 3], paddings=[[0, 2], [3, 0]])
        f = mb.batch_to_space(x=e, block_shape=[2, 3], crops=[[0, 2], [3, 0]])
        return a, b, c, d, e, f

    x, y = _x(2, 8, 2, 3), _x(1, 2, 4, 6)
    n, c, h, w = x.shape
    a = (
        x.reshape(n, 2, 2, c // 4, h, w)
        .transpose(0, 3, 4, 1, 5, 2)
        .reshape(n, c // 4, h * 2, w * 2)
    )
    b = y.reshape(1, 2, 2, 2, 3, 2).transpose(0, 3, 5, 1, 2, 4).reshape(1, 8, 2, 3)
    padded = np.pad(y, [(0, 0), (0, 0), (0, 2), (3, 0)])  # [1, 2, 6, 9]
    e = padded.reshape(1, 2, 3, 2, 3, 3).transpose(3, 5, 0, 1, 2, 4).reshape(6, 2, 3, 3)
    want = [
        a,
        b,
        torch.nn.functional.pixel_shuffle(torch.from_numpy(x), 2).numpy(),
        torch.nn.functional.pixel_unshuffle(torch.from_numpy(y), 2).numpy(),
        e,
        y,
    ]
    check(_save(prog, tmp_path, ct.target.iOS16), {"x": x, "y": y}, want)


# -- fp16 ----------------------------------------------------------------------------------


def test_fp16_program(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, 3)), mb.TensorSpec(shape=(2,), dtype=types.int32)]
    )
    def prog(x, i):
        a = mb.pad(x=x, pad=[1, 1], mode="reflect")
        b = mb.gather(x=x, indices=i, axis=1)
        c = mb.concat(values=[x, mb.reverse(x=x, axes=[1])], axis=0)
        return a, b, mb.transpose(x=c, perm=[1, 0])

    x = _x(2, 3)
    i = np.array([2, 0], np.int32)
    h = x.astype(np.float16)
    want = [np.pad(h, [(0, 0), (1, 1)], mode="reflect"), h[:, i], np.concatenate([h, h[:, ::-1]]).T]
    path = save_program(prog, tmp_path, precision="fp16")
    graph, _ = import_coreml(path)
    assert graph.metadata["precision"] == "float16"
    check(path, {"x": x, "i": i}, want, rtol=1e-3, atol=1e-3)


# -- random --------------------------------------------------------------------------------


def test_random_statistics(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))])
    def prog(logits):
        shape = np.array([100, 100], np.int32)
        u = mb.random_uniform(shape=shape, low=-1.0, high=3.0, seed=1)
        n = mb.random_normal(shape=shape, mean=2.0, stddev=0.5, seed=2)
        b = mb.random_bernoulli(shape=shape, prob=0.3, seed=3)
        c = mb.random_categorical(x=logits, size=4000, seed=4)
        return u, n, b, c

    logits = np.log(np.array([[0.2, 0.3, 0.5], [0.7, 0.1, 0.2]], np.float32))
    graph, _ = import_coreml(_save(prog, tmp_path))
    reference = list(run_graph(graph, {"logits": logits}).values())
    for u, n, b, c in (reference, run_tvm(graph, {"logits": logits})):
        assert u.shape == (100, 100) and u.min() >= -1 and u.max() < 3
        assert abs(u.mean() - 1.0) < 0.05
        assert abs(n.mean() - 2.0) < 0.02 and abs(n.std() - 0.5) < 0.02
        assert set(np.unique(b)) <= {0.0, 1.0} and abs(b.mean() - 0.3) < 0.02
        assert c.shape == (2, 4000)
        freq = np.stack([(c == k).mean(axis=1) for k in range(3)], axis=1)
        np.testing.assert_allclose(freq, np.exp(logits), atol=0.03)


_BOXES = np.array(  # (x, y, width, height): box 1 overlaps box 0 (IoU 0.6), box 3 box 2 a little
    [[0.5, 0.5, 1.0, 1.0], [0.5, 0.75, 1.0, 1.0], [3.0, 3.0, 2.0, 2.0], [4.0, 3.0, 2.0, 2.0]],
    np.float32,
)
_SCORES = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.6], [0.05, 0.1]], np.float32)


@pytest.mark.parametrize(
    ("per_class", "threshold", "kept"),
    [
        (False, 0.09, [0, 2, 3]),
        (True, 0.09, [0, 1, 2, 3]),
        (False, 0.15, [0, 2]),
        (False, 1.0, [0]),
    ],
)
def test_non_maximum_suppression(
    tmp_path: Path, per_class: bool, threshold: float, kept: list[int]
) -> None:
    """Boxes 0 and 1 overlap: box 1 goes unless suppression is per class (its best class is
    another); box 3 scores 0.1; with no box above the threshold the best one is kept."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(1,))])
    def prog(x):
        outs = mb.non_maximum_suppression(
            boxes=_BOXES[None],
            scores=_SCORES[None],
            iou_threshold=0.5,
            score_threshold=threshold,
            max_boxes=5,
            per_class_suppression=per_class,
        )
        return (x, *outs)

    want_boxes, want_scores = np.zeros((1, 5, 4), np.float32), np.zeros((1, 5, 2), np.float32)
    n = len(kept)
    want_boxes[0, :n], want_scores[0, :n] = _BOXES[kept], _SCORES[kept]
    index = np.array([kept + [-1] * (5 - n)], np.int32)
    x = np.ones(1, np.float32)
    want = [x, want_boxes, want_scores, index, np.array([n], np.int32)]
    check(_save(prog, tmp_path), {"x": x}, want, tvm=per_class)


def test_non_maximum_suppression_ios17_and_run_time_boxes(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1,))], opset_version=ct.target.iOS17)
    def prog(x):
        outs = mb.non_maximum_suppression(
            boxes=_BOXES.T[None], scores=_SCORES.T[None], iou_threshold=0.5, max_boxes=2
        )
        return (x, *outs)

    x = np.ones(1, np.float32)
    boxes, scores = _BOXES[[0, 2]].T[None], _SCORES[[0, 2]].T[None]
    want = [x, boxes, scores, np.array([[0, 2]], np.int32)]
    check(_save(prog, tmp_path, ct.target.iOS17), {"x": x}, want, tvm=False)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 4))], opset_version=ct.target.iOS17)
    def dynamic(boxes):
        return mb.non_maximum_suppression(
            boxes=boxes, scores=_SCORES.T[None], iou_threshold=0.5, max_boxes=2
        )

    # Boxes known only at run time: suppression runs in the compiled model.
    path = _save(dynamic, tmp_path, ct.target.iOS17, name="dynamic")
    check(path, {"boxes": _BOXES.T[None]}, want[1:])


def test_run_time_lengths_are_refused(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, 3)), mb.TensorSpec(shape=(2,), dtype=types.int32)]
    )
    def prog(x, n):
        return mb.reverse_sequence(x=x, lengths=n, seq_axis=1, batch_axis=0)

    with pytest.raises(NeedsValueError, match="reverse_sequence node .*'lengths' must be known"):
        import_coreml(_save(prog, tmp_path))


def test_slicing_a_symbolic_dim_is_refused(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, get_new_symbol()))])
    def prog(x):
        return mb.reverse(x=x, axes=[1])

    flexible = [ct.TensorType(name="x", shape=(2, ct.RangeDim(1, 8)))]
    with pytest.raises(ConversionError, match="reverse node .*slicing symbolic dim"):
        import_coreml(_save(prog, tmp_path, inputs=flexible))


# -- a model as ct.convert emits it ----------------------------------------------------------


class _Shuffles(torch.nn.Module):
    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = x.flatten(1)
        v, i = torch.topk(a, 3, dim=1)
        return (
            a,
            torch.cat([x[:, 1:3], x.flip(1)], dim=1),
            v,
            i,
            torch.nn.functional.pad(x, (1, 2), mode="reflect"),
            torch.gather(a, 1, idx),
            torch.cumsum(a, dim=1),
            a.argmax(dim=1),
            *x.chunk(2, dim=2),
            x.permute(2, 0, 1).unsqueeze(0).squeeze(0),
            a.mean(dim=1, keepdim=True),
        )


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_pytorch_model_in_fp16_with_a_flexible_batch(tmp_path: Path) -> None:
    """ct.convert's default pipeline on a traced model: iOS17 fp16, indices cast to uint16,
    the batch a symbolic dim."""
    x = _x(2, 4, 6)
    idx = np.array([[0, 5, 23], [1, 1, 2]], np.int64)
    model = _Shuffles().eval()
    traced = torch.jit.trace(model, (torch.from_numpy(x), torch.from_numpy(idx)))
    inputs = [
        ct.TensorType(name="x", shape=(ct.RangeDim(1, 4), 4, 6)),
        ct.TensorType(name="idx", shape=idx.shape, dtype=np.int32),
    ]
    mlmodel = ct.convert(
        traced,
        inputs=inputs,
        outputs=[ct.TensorType(name=f"y{i}") for i in range(12)],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16,
        minimum_deployment_target=ct.target.iOS17,
    )
    path = tmp_path / "shuffles.mlpackage"
    mlmodel.save(str(path))
    want = [
        t.numpy()
        for t in model(
            torch.from_numpy(x.astype(np.float16).astype(np.float32)), torch.from_numpy(idx)
        )
    ]
    want = [w.astype(np.int32) if w.dtype == np.int64 else w for w in want]
    feeds = {"x": x.astype(np.float16), "idx": idx.astype(np.int32)}  # iOS17 fp16: fp16 input
    check(path, feeds, want, rtol=1e-2, atol=1e-2)
