"""nnxc's legalization rules: erf becomes arithmetic LLVM can vectorize, and stays accurate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tvm
from oputil import check_op
from tvm import relax

from backends.tvm import resolve_target
from backends.tvm.legalize import legalize_ops

_TARGET = resolve_target("cpu").tvm_target()


def _legalized(op, dtype: str) -> str:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 16), dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(op(x))
        bb.emit_func_output(out)
    with _TARGET:
        mod = legalize_ops(_TARGET)(bb.get())
    return "\n".join(f.script() for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def test_float32_erf_and_softmax_need_no_libm_call():
    assert "T.erf" not in _legalized(relax.op.erf, "float32")
    assert "T.exp" not in _legalized(relax.op.nn.softmax, "float32")


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_other_erf_and_softmax_keep_exact_exp(dtype):
    assert "T.erf" in _legalized(relax.op.erf, dtype)
    assert "T.exp" in _legalized(relax.op.nn.softmax, dtype)


def test_float16_softmax_sums_in_float32():
    text = _legalized(relax.op.nn.softmax, "float16")
    assert 'T.Cast("float32"' in text and 'T.float16("-inf")' in text


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_float_max_starts_at_minus_inf(dtype):
    """Not at the lowest finite value (TVM's): a row of -inf has max -inf, as in numpy."""
    text = _legalized(lambda x: relax.op.max(x, axis=[1], keepdims=True), dtype)
    assert f'T.{dtype}("-inf")' in text


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_softmax_is_accurate_with_masked_entries(axis):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 5, 40)) * 20).astype(np.float32)
    x[:, :, ::7] = -np.inf  # masked positions (attention masks)
    x[0, 0, 3] = 1e30
    e = np.exp(x.astype(np.float64) - x.max(axis=axis, keepdims=True))
    expected = (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)
    check_op("softmax", [x], {"axis": axis}, expected=[expected], rtol=1e-5, atol=1e-7)


def test_erf_is_accurate_over_its_range():
    x = np.linspace(-6, 6, 4001, dtype=np.float32)
    x = np.concatenate([x, np.float32([0.0, -0.0, 1e-30, -1e-7, 20.0, -20.0])])
    expected = np.vectorize(math.erf)(x.astype(np.float64)).astype(np.float32)
    check_op("erf", [x], {}, expected=[expected], rtol=0, atol=5e-7)


def test_float16_fmod_on_cuda_is_exact():
    """CUDA has no half fmod: the GPU rule computes in float32, which loses nothing. The
    legalized kernel is checked here on the CPU."""
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType((64,), "float16"))
    b = relax.Var("b", relax.TensorType((64,), "float16"))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.mod(a, b))
        bb.emit_func_output(out)
    cuda = tvm.target.Target({"kind": "cuda", "arch": "sm_90"})
    with cuda:
        mod = legalize_ops(cuda)(bb.get())
    (func,) = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert 'T.Cast("float32"' in func.script()
    kernel = tvm.compile(func.with_attr("global_symbol", "mod"), target="llvm")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(64) * 100).astype(np.float16)
    y = (rng.standard_normal(64) * 3).astype(np.float16)
    got = tvm.runtime.tensor(np.zeros(64, np.float16))
    kernel(tvm.runtime.tensor(x), tvm.runtime.tensor(y), got)
    np.testing.assert_array_equal(got.numpy(), np.fmod(x, y))


def test_take_builds_without_the_fast_mode_warning(capfd: pytest.CaptureFixture[str]) -> None:
    """Gathers use our take (indices are checked before it): TOPI's fast mode would print
    "Fast mode segfaults when there are out-of-bounds indices" at every build."""
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    index = np.array([[3, -4], [0, 1]], np.int64)
    check_op("gather", [data, index], {"axis": 0}, expected=[np.take(data, index, axis=0)])
    check_op("gather", [data, np.array(2)], {"axis": 1}, expected=[data[:, 2]])
    assert "Fast mode" not in capfd.readouterr().err
