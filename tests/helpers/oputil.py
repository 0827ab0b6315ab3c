"""Checking one core op: type inference, reference semantics, and the TVM lowering agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tvm
from tvm import relax

from backends.reference import run_graph
from backends.tvm import build, lower_graph, resolve_target
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.types import TensorType, from_storage, to_storage

_TARGET = resolve_target("cpu")


def single_op_graph(
    op: str,
    inputs: Sequence[np.ndarray | None],
    attrs: dict[str, Any] | None = None,
    const_inputs: Sequence[int] = (),
) -> Graph:
    """A graph applying ``op`` once; inputs listed in ``const_inputs`` become constants."""
    g = Graph()
    b = Builder(g, fold=False)
    vals = []
    for i, x in enumerate(inputs):
        if x is None:
            vals.append(None)
        elif i in const_inputs:
            vals.append(b.const(x))
        else:
            vals.append(g.add_input(f"in{i}", TensorType.of(np.asarray(x))))
    outs = b.op(op, vals, attrs or {})
    g.set_outputs(outs)
    return g


def fused_prim_funcs(graph: Graph) -> dict[str, tvm.tirx.PrimFunc]:
    """The PrimFuncs TVM's own CPU legalization and fusion make of ``graph``, unscheduled: what
    a schedule rule is handed (before nnxc's own legalizations, ``backends/tvm/legalize.py``)."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    target = _TARGET.tvm_target()
    mod = lower_graph(graph)
    with target:
        mod = tvm.transform.Sequential(
            cpu.library_dispatch_passes(target) + cpu.legalize_passes(target)
        )(mod)
    return {gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}


def run_prim_func(func: tvm.tirx.PrimFunc, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Compile one PrimFunc (its last parameter the output) for the host CPU and run it."""
    func = func.with_attr("global_symbol", "main")
    lib = tvm.compile(tvm.IRModule({"main": func}), target=_TARGET.tvm_target())
    out_ty = func.params[-1].ty
    out = tvm.runtime.tensor(np.zeros([int(d) for d in out_ty.shape], str(out_ty.dtype)))
    lib["main"](*[tvm.runtime.tensor(np.require(x, requirements="C")) for x in inputs], out)
    return out.numpy()


def run_tvm(graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Compile ``graph`` for the host CPU and run it once."""
    ex = build(lower_graph(graph), _TARGET)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    args = [tvm.runtime.tensor(to_storage(feeds[v.name], v.dtype)) for v in graph.inputs]
    result = vm["main"](*args)
    return [from_storage(result[i].numpy(), v.dtype) for i, v in enumerate(graph.outputs)]


def check_op(
    op: str,
    inputs: Sequence[np.ndarray | None],
    attrs: dict[str, Any] | None = None,
    *,
    const_inputs: Sequence[int] = (),
    expected: Sequence[np.ndarray] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> list[np.ndarray]:
    """Reference == expected (when given), TVM == reference, shapes/dtypes == inferred types."""
    g = single_op_graph(op, inputs, attrs, const_inputs)
    feeds = {
        v.name: np.asarray(x)
        for v, x in zip(
            g.inputs, [x for i, x in enumerate(inputs) if x is not None and i not in const_inputs]
        )
    }
    ref = list(run_graph(g, feeds).values())
    for r, v in zip(ref, g.outputs):
        assert r.dtype == v.type.np_dtype and r.shape == v.type.shape, (r.dtype, r.shape, v.type)
    if expected is not None:
        for r, e in zip(ref, expected, strict=True):
            np.testing.assert_allclose(r, e, rtol=rtol, atol=atol)
    got = run_tvm(g, feeds)
    for r, t in zip(ref, got, strict=True):
        assert t.dtype == r.dtype and t.shape == r.shape, (t.dtype, t.shape, r.dtype, r.shape)
        np.testing.assert_allclose(t, r, rtol=rtol, atol=atol)
    return ref
