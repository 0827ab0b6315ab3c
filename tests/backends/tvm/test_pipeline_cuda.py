"""The CUDA pipeline without a GPU: every light and zoo model compiles for CUDA, through
dlight's rules, into an artifact holding a fatbin and no CUDA source; fp16 and CUDA graphs
where asked.

The whole-model tests run ``compiler.compile(..., target="cuda:sm_90")`` and nvcc, as users
do. The others read the generated CUDA source: ``_compile`` builds through the same pipeline
with ``TVM_COMPILE_FORCE_FALLBACK`` set, so TVM keeps the source instead of calling nvcc.
"""

from __future__ import annotations

import os

import pytest
import tvm
from cudautil import requires_nvcc

import compiler
from backends.tvm import TargetSpec
from backends.tvm.cuda.fatbin import read_cuda_contents
from backends.tvm.pipeline import pipeline_for
from benchmarks.models import LIGHT_MODELS, light_path
from benchmarks.zoo import ZOO_MODELS
from benchmarks.zoo import build as zoo_model
from compiler.artifact import read_metadata
from compiler.driver import _import_and_lower, _stages
from compiler.errors import NnxcError
from compiler.options import CompileOptions

_CUDA = TargetSpec({"kind": "cuda", "arch": "sm_90"})


def _compile(model, precision: str = "fp32", cuda_graph: bool = True):
    """The executable of ``model`` built for ``_CUDA`` by the driver's pipeline, with the
    kernels kept as CUDA source (no nvcc)."""
    stage, _ = _stages(None)
    _, _, mod = _import_and_lower(model, CompileOptions(), stage)
    target = _CUDA.tvm_target()
    pipeline = pipeline_for(target, None, precision, cuda_graph)
    saved = os.environ.get("TVM_COMPILE_FORCE_FALLBACK")
    os.environ["TVM_COMPILE_FORCE_FALLBACK"] = "1"
    try:
        with target:
            return tvm.compile(mod, target=target, relax_pipeline=pipeline)
    finally:
        if saved is None:
            os.environ.pop("TVM_COMPILE_FORCE_FALLBACK")
        else:
            os.environ["TVM_COMPILE_FORCE_FALLBACK"] = saved


def _modules(mod: tvm.runtime.Module) -> list[tvm.runtime.Module]:
    out = [mod]
    for m in mod.imports:
        out += _modules(m)
    return out


def _cuda_source(executable) -> str:
    cuda = [m for m in _modules(executable.mod) if m.kind == "cuda"]
    assert len(cuda) == 1, [m.kind for m in _modules(executable.mod)]
    return cuda[0].inspect_source()


def _model(name: str):
    return str(light_path(name)) if name in LIGHT_MODELS else zoo_model(name)


@requires_nvcc
@pytest.mark.parametrize("name", [*LIGHT_MODELS, *ZOO_MODELS])
def test_model_compiles_for_cuda(name, tmp_path):
    """Every kernel is scheduled (an unscheduled one fails TVM's GPU verification: no thread
    binding), nvcc builds them, the artifact holds sm_90 SASS and compute_90 PTX and no
    source, and the static-shape model runs its kernels in CUDA graphs."""
    cm = compiler.compile(_model(name), target="cuda:sm_90")
    assert "vm.builtin.cuda_graph.run_or_capture" in cm.executable.as_text()
    path = tmp_path / f"{name}.so"
    cm.export(path)
    contents = read_cuda_contents(path)
    assert (contents.sass_archs, contents.ptx_archs) == (("sm_90",), ("compute_90",))
    assert not contents.has_source
    meta = read_metadata(path)
    assert meta.target["archs"] == ["sm_90"] and meta.extra["compute_precision"] == "fp32"


def _one_node(op: str, inputs: dict, consts: dict, outputs: dict, **attrs):
    """A one-node ONNX model: ``inputs`` name -> (elem type, shape), ``consts`` name ->
    array (initializers), ``outputs`` name -> elem type."""
    from onnx import helper, numpy_helper

    node = helper.make_node(op, [*inputs, *consts], list(outputs), **attrs)
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items()],
        [numpy_helper.from_array(v, n) for n, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ops_with_cpu_style_lowerings():
    """Ops lowered through TVM's sort/scan dispatch (CPU: ``tvm.contrib.sort`` packed
    functions; CUDA: GPU kernels), whose kernels dlight's rules fail on (RoiAlign,
    NegativeLogLikelihoodLoss: ``schedules/gpu._Tolerant``; int64 Pow's 64 squarings:
    ``schedules/gpu/chains.py``), or that CUDA lacks (float16 fmod:
    ``legalize._legalize_half_mod``)."""
    import numpy as np
    from onnx import TensorProto

    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    return {
        "TopK": _one_node(
            "TopK", {"x": (f, [4, 50])}, {"k": np.array([5])}, {"v": f, "i": i64}, axis=1
        ),
        "CumSum": _one_node("CumSum", {"x": (f, [4, 50])}, {"axis": np.array(1)}, {"y": f}),
        "RoiAlign": _one_node(
            "RoiAlign",
            {"x": (f, [1, 8, 16, 16])},
            {
                "rois": np.array([[0, 0, 8, 8], [4, 4, 15, 15]], np.float32),
                "batch": np.zeros(2, np.int64),
            },
            {"y": f},
            output_height=4,
            output_width=4,
            sampling_ratio=2,
        ),
        "ArgMax": _one_node("ArgMax", {"x": (f, [4, 50])}, {}, {"y": i64}, axis=1),
        "NegativeLogLikelihoodLoss": _one_node(
            "NegativeLogLikelihoodLoss",
            {"x": (f, [3, 5, 2])},
            {"t": np.array([[0, 1], [2, 3], [4, 0]], np.int64)},
            {"y": f},
            reduction="mean",
        ),
        "Pow": _one_node("Pow", {"a": (i64, [4, 8]), "b": (i64, [4, 8])}, {}, {"y": i64}),
        "Mod": _one_node(
            "Mod",
            {"a": (TensorProto.FLOAT16, [4, 8])},
            {"b": np.full((4, 8), 1.5, np.float16)},
            {"y": TensorProto.FLOAT16},
            fmod=1,
        ),
    }


def test_control_flow_gets_no_cuda_graph():
    """An ``if`` makes branch functions; loops would call theirs recursively."""
    from onnx import TensorProto, helper

    f = TensorProto.FLOAT

    def branch(op: str):
        out = helper.make_tensor_value_info(f"{op}_y", f, [4, 8])
        return helper.make_graph([helper.make_node(op, ["x"], [f"{op}_y"])], op, [], [out])

    node = helper.make_node(
        "If", ["c"], ["y"], then_branch=branch("Relu"), else_branch=branch("Neg")
    )
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", f, [4, 8]),
        ],
        [helper.make_tensor_value_info("y", f, [4, 8])],
    )
    executable = _compile(helper.make_model(graph))
    assert "__global__" in _cuda_source(executable)
    assert "cuda_graph" not in executable.as_text()


@pytest.mark.parametrize(
    "op", ["TopK", "CumSum", "RoiAlign", "ArgMax", "NegativeLogLikelihoodLoss", "Mod", "Pow"]
)
def test_op_compiles_for_cuda(op):
    source = _cuda_source(_compile(_ops_with_cpu_style_lowerings()[op]))
    assert "__global__" in source


def test_cuda_graph_can_be_turned_off():
    executable = _compile(_model("squeezenet"), cuda_graph=False)
    assert "cuda_graph" not in executable.as_text()


def test_symbolic_shapes_get_no_cuda_graph():
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((64, 32), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])],
        [w],
    )
    executable = _compile(helper.make_model(graph))
    assert "__global__" in _cuda_source(executable)
    assert "cuda_graph" not in executable.as_text()


def test_fp16_keeps_statistics_and_io_in_float32():
    """``ToMixedPrecision`` on what our lowering emits: float32 in and out, softmax and the
    normalizations' statistics in float32, matmuls reading float16 weights stored as such."""
    from tvm import relax

    from backends.tvm.precision import mixed_precision_passes

    stage, _ = _stages(None)
    _, _, mod = _import_and_lower(_model("transformer"), CompileOptions(), stage)
    mod = tvm.transform.Sequential(mixed_precision_passes("fp16"))(mod)
    main = mod["main"]
    assert [str(p.ty.dtype) for p in main.params] == ["float32"]
    assert [str(f.dtype) for f in main.ret_ty.fields] == ["float32"]
    calls = []
    relax.analysis.post_order_visit(
        main.body, lambda e: calls.append(e) if isinstance(e, relax.Call) else None
    )
    by_op = {}
    for c in calls:
        if isinstance(c.op, tvm.ir.Op):
            by_op.setdefault(c.op.name, []).append(c)
    assert by_op["relax.nn.softmax"] and by_op["relax.nn.layer_norm"]
    for name in ("relax.nn.softmax", "relax.nn.layer_norm", "relax.mean"):
        assert all(str(c.ty.dtype) == "float32" for c in by_op.get(name, [])), name
    assert {str(a.ty.dtype) for c in by_op["relax.matmul"] for a in c.args} == {"float16"}
    assert {str(c.ty.dtype) for c in by_op["relax.matmul"]} == {"float32"}
    assert not any(isinstance(c.args[0], tvm.ir.GenericConst) for c in by_op["relax.astype"])


@pytest.mark.parametrize("name", ["transformer", "resnet50"])
def test_fp16_compiles_onto_tensor_cores(name):
    """Half kernels, matmuls (and convs, as implicit GEMMs) through dlight's WMMA path."""
    source = _cuda_source(_compile(_model(name), precision="fp16"))
    assert "half" in source and "wmma::mma_sync" in source


def test_fp16_is_refused_on_llvm():
    from backends.tvm.pipeline import pipeline_for

    with pytest.raises(NnxcError, match="fp16 is for CUDA targets"):
        pipeline_for(tvm.target.Target("llvm"), precision="fp16")
    with pytest.raises(NnxcError, match="unknown precision"):
        pipeline_for(tvm.target.Target("llvm"), precision="bf16")


def test_records_are_refused_on_cuda(tmp_path):
    from backends.tvm.pipeline import pipeline_for

    with pytest.raises(NnxcError, match="LLVM targets only"):
        pipeline_for(_CUDA.tvm_target(), records=str(tmp_path))
