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


def _legalized_erf(dtype: str) -> str:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 16), dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.erf(x))
        bb.emit_func_output(out)
    with _TARGET:
        mod = legalize_ops(_TARGET)(bb.get())
    return "\n".join(f.script() for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def test_float32_erf_needs_no_libm_call():
    assert "T.erf" not in _legalized_erf("float32")


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_other_erf_keeps_tvm_lowering(dtype):
    assert "T.erf" in _legalized_erf(dtype)


def test_erf_is_accurate_over_its_range():
    x = np.linspace(-6, 6, 4001, dtype=np.float32)
    x = np.concatenate([x, np.float32([0.0, -0.0, 1e-30, -1e-7, 20.0, -20.0])])
    expected = np.vectorize(math.erf)(x.astype(np.float64)).astype(np.float32)
    check_op("erf", [x], {}, expected=[expected], rtol=0, atol=5e-7)
