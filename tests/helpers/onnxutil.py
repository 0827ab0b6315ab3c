"""Building small ONNX models and checking nnxc against onnxruntime on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper
from oputil import run_tvm

from backends.reference import run_graph
from compiler.frontends.onnx import import_onnx


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[tuple[str, np.ndarray]],
    outputs: Sequence[str],
    initializers: Sequence[tuple[str, np.ndarray]] = (),
    opset: int = 21,
) -> onnx.ModelProto:
    """A model over ``nodes``; input types come from example arrays, output types are left
    for shape inference."""

    def info(name: str, x: np.ndarray) -> onnx.ValueInfoProto:
        elem = helper.np_dtype_to_tensor_dtype(x.dtype)
        return helper.make_tensor_value_info(name, elem, x.shape)

    graph = helper.make_graph(
        list(nodes),
        "test",
        [info(n, x) for n, x in inputs],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        initializer=[onnx.numpy_helper.from_array(x, n) for n, x in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 17 else 10
    inferred = onnx.shape_inference.infer_shapes(model)
    del model.graph.output[:]
    model.graph.output.extend(
        next(v for v in [*inferred.graph.value_info, *inferred.graph.output] if v.name == o)
        for o in outputs
    )
    return model


def check_model(
    model: onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    rtol: float = 1e-4,
    atol: float = 1e-5,
    **kwargs: Any,
) -> list[np.ndarray]:
    """onnxruntime == nnxc reference interpreter == nnxc on TVM for this model."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, feeds)
    graph = import_onnx(model, **kwargs)
    ref = run_graph(graph, {v.name: feeds[v.name] for v in graph.inputs})
    got = run_tvm(graph, {v.name: feeds[v.name] for v in graph.inputs})
    for e, r, t in zip(expected, ref.values(), got, strict=True):
        np.testing.assert_allclose(r, e, rtol=rtol, atol=atol)
        np.testing.assert_allclose(t, e, rtol=rtol, atol=atol)
        assert t.dtype == e.dtype and t.shape == e.shape
    return expected


def nested_if_model(depth: int) -> onnx.ModelProto:
    """``depth`` Ifs, each in the then-branch of the one outside it, over x: float32[1] and
    c: bool: y = x when c, else -x (every else-branch negates). Built in place: protobuf's
    copies refuse messages nested over 100 deep, and this model nests 3 levels per If."""
    tensor = onnx.TensorProto.FLOAT
    model = helper.make_model(
        helper.make_graph(
            [],
            "main",
            [
                helper.make_tensor_value_info("x", tensor, [1]),
                helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, []),
            ],
            [helper.make_tensor_value_info(f"y{depth}", tensor, [1])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    g = model.graph
    for d in range(depth, 0, -1):
        node = g.node.add(op_type="If", name=f"if{d}", input=["c"], output=[f"y{d}"])
        other = node.attribute.add(name="else_branch", type=onnx.AttributeProto.GRAPH)
        other.g.name = f"else{d}"
        other.g.node.add(op_type="Neg", input=["x"], output=[f"e{d}"])
        other.g.output.add().CopyFrom(helper.make_tensor_value_info(f"e{d}", tensor, [1]))
        then = node.attribute.add(name="then_branch", type=onnx.AttributeProto.GRAPH)
        g = then.g
        g.name = f"then{d}"
        g.output.add().CopyFrom(helper.make_tensor_value_info(f"y{d - 1}", tensor, [1]))
    g.node.add(op_type="Identity", input=["x"], output=["y0"])
    return model
