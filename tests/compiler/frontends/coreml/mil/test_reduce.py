"""MIL reductions, arg-reductions, cumsum, topk and argsort (mil/reduce.py) against numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import get_new_symbol, types
from coremlutil import check, ct, save_program

from compiler.errors import ConversionError
from compiler.frontends.coreml.importer import import_coreml

RNG = np.random.default_rng(1)

_NUMPY = {
    "reduce_l1_norm": lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k),
    "reduce_l2_norm": lambda x, a, k: np.sqrt(np.sum(x * x, axis=a, keepdims=k)),
    "reduce_log_sum": lambda x, a, k: np.log(np.sum(x, axis=a, keepdims=k)),
    "reduce_log_sum_exp": lambda x, a, k: np.log(np.sum(np.exp(x), axis=a, keepdims=k)),
    "reduce_max": lambda x, a, k: np.max(x, axis=a, keepdims=k),
    "reduce_mean": lambda x, a, k: np.mean(x, axis=a, keepdims=k),
    "reduce_min": lambda x, a, k: np.min(x, axis=a, keepdims=k),
    "reduce_prod": lambda x, a, k: np.prod(x, axis=a, keepdims=k),
    "reduce_sum": lambda x, a, k: np.sum(x, axis=a, keepdims=k),
    "reduce_sum_square": lambda x, a, k: np.sum(x * x, axis=a, keepdims=k),
}


def _save(prog: Any, folder: Path, target: Any = None, **kw: Any) -> Path:
    return save_program(prog, folder, target=target, pass_pipeline=ct.PassPipeline.EMPTY, **kw)


@pytest.mark.parametrize(
    ("axes", "keep", "tvm"), [(None, False, True), ([1, -1], True, False), ([0], False, False)]
)
def test_reductions(tmp_path: Path, axes: list[int] | None, keep: bool, tvm: bool) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3, 4))])
    def prog(x):
        kw = {} if axes is None else {"axes": axes}
        return tuple(getattr(mb, name)(x=x, keep_dims=keep, **kw) for name in _NUMPY)

    x = RNG.uniform(0.5, 1.5, (2, 3, 4)).astype(np.float32)
    a = None if axes is None else tuple(axes)
    want = [np.asarray(fn(x, a, keep), np.float32) for fn in _NUMPY.values()]
    check(_save(prog, tmp_path), {"x": x}, want, rtol=1e-5, atol=1e-6, tvm=tvm)


def test_arg_reductions_and_cumsum(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(3, 4))], opset_version=ct.target.iOS17)
    def prog(x):
        return (
            mb.reduce_argmax(x=x),
            mb.reduce_argmin(x=x, axis=0, keep_dims=True),
            mb.reduce_argmax(x=x, axis=1, output_dtype="int32"),
            mb.cumsum(x=x, axis=1),
            mb.cumsum(x=x, axis=0, exclusive=True),
            mb.cumsum(x=x, axis=-1, reverse=True, exclusive=True),
        )

    x = RNG.standard_normal((3, 4)).astype(np.float32)
    x[1, 3] = x[1, 0]  # a tie: the first index wins
    rev = np.flip(np.cumsum(np.flip(x, 1), 1), 1) - x
    want = [
        np.argmax(x, -1).astype(np.int32),
        np.argmin(x, 0)[None].astype(np.int32),
        np.argmax(x, 1).astype(np.int32),
        np.cumsum(x, 1),
        np.cumsum(x, 0) - x,
        rev,
    ]
    check(_save(prog, tmp_path, ct.target.iOS17), {"x": x}, want)


def test_topk_argsort_ios15(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, 5)), mb.TensorSpec(shape=(2, 5), dtype=types.int32)]
    )
    def prog(x, i):
        v, idx = mb.topk(x=x, k=3)
        w, jdx = mb.topk(x=i, k=2, axis=0, ascending=True)
        return v, idx, w, jdx, mb.argsort(x=x), mb.argsort(x=i, axis=0, ascending=True)

    x = RNG.standard_normal((2, 5)).astype(np.float32)
    i = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]], np.int32)
    order = np.argsort(-x, axis=-1, kind="stable")[:, :3]
    want = [
        np.take_along_axis(x, order, -1),
        order.astype(np.int32),
        np.sort(i, 0),
        np.argsort(i, 0, kind="stable").astype(np.int32),
        np.argsort(-x, -1, kind="stable").astype(np.int32),
        np.argsort(i, 0, kind="stable").astype(np.int32),
    ]
    check(_save(prog, tmp_path), {"x": x, "i": i}, want)


def test_topk_ios16_values_only(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(3, 4))], opset_version=ct.target.iOS17)
    def prog(x):
        a = mb.topk(x=x, k=2, ascending=True, sort=False, return_indices=False)
        b, idx = mb.topk(x=x, k=3, axis=0)
        return a, b, idx

    x = RNG.standard_normal((3, 4)).astype(np.float32)
    order = np.argsort(-x, axis=0, kind="stable")
    want = [np.sort(x, -1)[:, :2], np.take_along_axis(x, order, 0), order.astype(np.int32)]
    check(_save(prog, tmp_path, ct.target.iOS17), {"x": x}, want, tvm=False)


def test_fp16_reductions(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 8))])
    def prog(x):
        return mb.reduce_mean(x=x, axes=[1]), mb.reduce_max(x=x, axes=[0], keep_dims=True)

    x = RNG.standard_normal((2, 8)).astype(np.float32)
    h = x.astype(np.float16)
    want = [h.astype(np.float32).mean(1), h.max(0, keepdims=True)]
    check(save_program(prog, tmp_path, precision="fp16"), {"x": x}, want, rtol=2e-3, atol=2e-3)


def test_argsort_along_a_symbolic_axis_is_refused(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, get_new_symbol()))])
    def prog(x):
        return mb.argsort(x=x)

    flexible = [ct.TensorType(name="x", shape=(2, ct.RangeDim(1, 8)))]
    with pytest.raises(ConversionError, match="argsort node .*must be static to sort along it"):
        import_coreml(_save(prog, tmp_path, inputs=flexible))
