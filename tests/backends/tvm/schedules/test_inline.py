"""Bounded inlining: a long chain of fused elementwise ops inlines in one measured step
(the per-step measuring was quadratic), and a chain that doubles its code stays bounded."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tvm
from onnx import helper
from tvm import s_tir, te
from tvm.s_tir.dlight.analysis import normalize_prim_func

import compiler
from backends.tvm.schedules import inline


def _chain(n: int, square: bool = False) -> tvm.tirx.PrimFunc:
    """``n`` elementwise steps over x: add-one steps, or squarings (each reads its producer
    twice, so inlining them all doubles the code per step)."""
    x = te.placeholder((64,), name="x")
    t = x
    for i in range(n):
        t = te.compute((64,), _square(t) if square else _add_one(t), name=f"t{i}")
    return te.create_prim_func([x, t])


def _square(t: te.Tensor):
    return lambda j: t[j] * t[j]


def _add_one(t: te.Tensor):
    return lambda j: t[j] + 1.0


def _inline(func: tvm.tirx.PrimFunc) -> tuple[s_tir.Schedule, list]:
    sch = s_tir.Schedule(func)
    return inline.inline_bounded(sch, normalize_prim_func(sch))


def test_a_long_chain_inlines_without_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[int] = []
    real = inline._inline_measured  # noqa: SLF001

    def spy(sch, blocks):
        measured.append(len(blocks))
        return real(sch, blocks)

    monkeypatch.setattr(inline, "_inline_measured", spy)
    sch, left = _inline(_chain(300))
    assert measured == [1]  # only the output block reached the measured (quadratic) path
    assert len(left) == 1
    assert len(sch.get_child_blocks(sch.get_sblock("root"))) == 1


def test_doubling_code_stays_under_the_bound() -> None:
    sch, left = _inline(_chain(14, square=True))
    assert len(sch.mod.script()) <= inline.MAX_SCRIPT_CHARS
    assert 1 < len(left) < 14  # some squarings inlined, the rest kept as blocks


def test_both_paths_give_the_same_function() -> None:
    func = _chain(40)
    fast, _ = _inline(func)
    sch = s_tir.Schedule(func)
    measured, _ = inline._inline_measured(sch, normalize_prim_func(sch))  # noqa: SLF001
    tvm.ir.assert_structural_equal(fast.mod, measured.mod)


def _diamonds(n: int) -> onnx.ModelProto:
    """``n`` steps of ``t - relu(t)`` over a small tensor: fused into one kernel where t feeds
    two blocks, so inlining copies it (2^n copies of x if all were inlined)."""
    nodes, prev = [], "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"t{i}"
        nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
        nodes.append(helper.make_node("Sub", [prev, f"r{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "diamonds",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_each_refused_inline_is_measured_once(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[tuple[str, str]] = []
    measured: list[tuple[str, str]] = []
    for kind in ("compute_inline", "reverse_compute_inline"):
        real = getattr(s_tir.Schedule, kind)

        def spy(self, block, real=real, kind=kind):
            tried.append((kind, self.get(block).name_hint))
            return real(self, block)

        monkeypatch.setattr(s_tir.Schedule, kind, spy)
    script = tvm.ir.IRModule.script

    def measuring(self, *args, **kwargs):
        measured.append(tried[-1] if tried else ("", ""))
        return script(self, *args, **kwargs)

    monkeypatch.setattr(tvm.ir.IRModule, "script", measuring)
    m = compiler.compile(_diamonds(25))
    x = np.linspace(-2, 2, 4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_allclose(m.run({"x": x})["y"], np.minimum(x, 0))
    assert measured, "the chain should reach the measured path"
    # Retrying each refused inline after every success was quadratic (and slow: each
    # measure prints a function near the bound).
    assert len(measured) == len(set(measured)), "an inline was measured twice"
