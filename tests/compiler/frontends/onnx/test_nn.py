"""ONNX nn converters: each model runs in onnxruntime, the nnxc reference and TVM."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnxutil import check_model, make_model
from oputil import run_tvm

from backends.reference import run_graph
from compiler.frontends.onnx import import_onnx

rng = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype("float32")


def one_node(op, inputs, attrs=None, initializers=(), opset=21, n_out=1, **kw):
    """A model of one node; ``inputs`` are (name, array) pairs fed at run time."""
    names = [n for n, _ in inputs] + [n for n, _ in initializers]
    outs = ["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, kw.pop("node_inputs", names), outs, **(attrs or {}))
    model = make_model([node], inputs, outs, initializers, opset=opset)
    return check_model(model, dict(inputs), **kw)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(auto_pad):
    x, w, b = randn(1, 3, 9, 8), randn(4, 3, 3, 2), randn(4)
    attrs = dict(auto_pad=auto_pad, strides=[2, 3])
    one_node("Conv", [("x", x)], attrs, [("w", w), ("b", b)])


def test_conv_grouped_dilated_1d():
    x, w = randn(2, 4, 11), randn(6, 2, 3)
    one_node("Conv", [("x", x), ("w", w)], dict(group=2, dilations=[2], pads=[1, 2]))


@pytest.mark.parametrize(
    "attrs",
    [
        dict(strides=[2, 2], output_shape=[10, 8]),
        dict(strides=[3, 2], pads=[1, 0, 1, 1], output_padding=[1, 1]),
        dict(strides=[2, 2], auto_pad="SAME_UPPER"),
    ],
)
def test_conv_transpose(attrs):
    x, w = randn(1, 2, 4, 3), randn(2, 3, 3, 3)
    one_node("ConvTranspose", [("x", x), ("w", w)], attrs)


@pytest.mark.parametrize("ceil_mode", [0, 1])
def test_max_pool(ceil_mode):
    x = randn(1, 2, 9, 8)
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1], ceil_mode=ceil_mode)
    one_node("MaxPool", [("x", x)], attrs, opset=12)


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool(count_include_pad):
    x = randn(1, 2, 7, 8)
    attrs = dict(kernel_shape=[3, 2], pads=[1, 1, 1, 0], count_include_pad=count_include_pad)
    one_node("AveragePool", [("x", x)], attrs)


def test_average_pool_same_upper():
    one_node(
        "AveragePool",
        [("x", randn(1, 1, 7, 6))],
        dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    )


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
def test_global_pools(op):
    one_node(op, [("x", randn(2, 3, 5, 4))])


def test_lp_pool():
    one_node(
        "LpPool",
        [("x", randn(1, 2, 6, 6))],
        dict(kernel_shape=[2, 3], p=3, strides=[2, 1]),
        rtol=1e-3,
    )


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 2)), ((2, 3, 4), (4,)), ((5,), (2, 5, 3))])
def test_matmul(sa, sb):
    one_node("MatMul", [("a", randn(*sa)), ("b", randn(*sb))])


@pytest.mark.parametrize(
    "attrs,c_shape",
    [
        ({}, None),
        (dict(transA=1, transB=1, alpha=0.5, beta=2.0), (4,)),
        (dict(transB=1), (3, 4)),
        (dict(beta=0.0), (1,)),
    ],
)
def test_gemm(attrs, c_shape):
    a = randn(5, 3) if attrs.get("transA") else randn(3, 5)
    b = randn(4, 5) if attrs.get("transB") else randn(5, 4)
    inputs = [("a", a), ("b", b)] + ([("c", randn(*c_shape))] if c_shape else [])
    one_node("Gemm", inputs, attrs, opset=13)


def test_batch_norm_inference_and_training():
    x, s, b, m, v = randn(2, 3, 4, 5), randn(3), randn(3), randn(3), np.abs(randn(3)) + 0.1
    feeds = [("x", x), ("s", s), ("b", b), ("m", m), ("v", v)]
    one_node("BatchNormalization", feeds, dict(epsilon=1e-3), opset=9)
    one_node(
        "BatchNormalization",
        feeds,
        dict(training_mode=1, momentum=0.8),
        opset=15,
        n_out=3,
        rtol=1e-3,
    )


def test_instance_norm():
    one_node(
        "InstanceNormalization",
        [("x", randn(2, 3, 4, 5)), ("s", randn(3)), ("b", randn(3))],
        rtol=1e-3,
    )


@pytest.mark.parametrize("axis,n_out", [(-1, 1), (1, 3), (2, 1)])
def test_layer_norm(axis, n_out):
    x = randn(2, 3, 4, 5)
    tail = x.shape[axis:]
    one_node(
        "LayerNormalization",
        [("x", x), ("s", randn(*tail)), ("b", randn(*tail))],
        dict(axis=axis),
        opset=17,
        n_out=n_out,
        rtol=1e-3,
    )


@pytest.mark.parametrize("opset", [18, 21])
def test_group_norm(opset):
    x = randn(2, 6, 3, 4)
    n = 3 if opset == 18 else 6
    one_node(
        "GroupNormalization",
        [("x", x), ("s", randn(n)), ("b", randn(n))],
        dict(num_groups=3),
        opset=opset,
        rtol=1e-3,
    )


def test_mean_variance_normalization():
    one_node("MeanVarianceNormalization", [("x", randn(2, 3, 4, 5))], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset,axis", [(11, 1), (11, -1), (13, 1), (13, 0)])
def test_softmax_family(op, opset, axis):
    one_node(op, [("x", randn(2, 3, 4))], dict(axis=axis), opset=opset)


def test_lrn():
    one_node("LRN", [("x", randn(2, 7, 3, 3))], dict(size=3, alpha=1e-3, beta=0.6, bias=1.5))


@pytest.mark.parametrize(
    "equation,shapes",
    [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("...ij->...ji", [(2, 3, 4)]), ("ii", [(3, 3)])],
)
def test_einsum(equation, shapes):
    one_node(
        "Einsum", [(f"x{i}", randn(*s)) for i, s in enumerate(shapes)], dict(equation=equation)
    )


@pytest.mark.parametrize(
    "attrs,scales,sizes",
    [
        (dict(mode="linear"), [1, 1, 0.6, 1.5], None),
        (dict(mode="linear", coordinate_transformation_mode="align_corners"), None, [1, 2, 5, 9]),
        (dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1), [1, 1, 2.0, 0.75], None),
        (
            dict(
                mode="nearest",
                nearest_mode="round_prefer_ceil",
                coordinate_transformation_mode="asymmetric",
            ),
            [1, 1, 1.7, 2.0],
            None,
        ),
        (
            dict(mode="nearest", coordinate_transformation_mode="pytorch_half_pixel"),
            None,
            [1, 2, 3, 1],
        ),
        (dict(mode="linear", antialias=1), None, [1, 2, 2, 3]),
    ],
)
def test_resize(attrs, scales, sizes):
    x = randn(1, 2, 4, 6)
    inits = [("roi", np.zeros(0, "float32")), ("scales", np.asarray(scales or [], "float32"))]
    names = ["x", "roi", "scales"]
    if sizes is not None:
        inits.append(("sizes", np.asarray(sizes, "int64")))
        names.append("sizes")
    one_node("Resize", [("x", x)], attrs, inits, opset=19, node_inputs=names, rtol=1e-4, atol=1e-5)


def test_resize_axes_and_keep_aspect_ratio():
    x = randn(1, 2, 4, 6)
    inits = [("sizes", np.asarray([6, 6], "int64"))]
    attrs = dict(axes=[3, 2], keep_aspect_ratio_policy="not_larger", mode="nearest")
    one_node("Resize", [("x", x)], attrs, inits, opset=19, node_inputs=["x", "", "", "sizes"])


def test_resize_v10_and_upsample():
    x = randn(1, 2, 3, 4)
    scales = ("scales", np.asarray([1, 1, 2, 3], "float32"))
    one_node("Resize", [("x", x)], dict(mode="nearest"), [scales], opset=10)
    one_node("Upsample", [("x", x)], dict(mode="linear"), [scales], opset=9)


LIGHT = Path(onnx.__file__).parent / "backend/test/data/light"


def randomized(path: Path) -> onnx.ModelProto:
    """The model with random weights in place of its constant-filled ConstantOfShape ones."""
    model = onnx.load(path)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    keep = []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = [int(d) for d in inits[node.input[0]]]
            data = (rng.standard_normal(shape) * 0.1).astype("float32")
            if len(shape) == 1:  # BatchNorm variances (and the other vectors) kept positive
                data = np.abs(data) + 0.5
            g.initializer.append(numpy_helper.from_array(data, node.output[0]))
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in keep for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    inputs = [i for i in g.input if i.name in used]
    del g.input[:]
    g.input.extend(inputs)
    return model


def test_light_squeezenet_matches_onnxruntime():
    model = randomized(LIGHT / "light_squeezenet.onnx")
    x = rng.standard_normal((1, 3, 224, 224)).astype("float32")
    weights = {t.name for t in model.graph.initializer}
    (name,) = [i.name for i in model.graph.input if i.name not in weights]
    check_model(model, {name: x}, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 4), (3, 2, 6, 6), (1, 1)])
def test_det(shape):
    x = rng.standard_normal(shape).astype("float32")
    model = make_model([helper.make_node("Det", ["x"], ["y"])], [("x", x)], ["y"], opset=22)
    check_model(model, {"x": x}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "k, past, bias, activation",
    [
        (4, True, True, "silu"),
        (3, False, False, "none"),
        (1, False, True, "swish"),
    ],
)
def test_causal_conv_with_state(k, past, bias, activation):
    """Depthwise causal conv carrying k - 1 positions of state; onnxruntime has no kernel:
    ONNX's reference is the judge."""
    b, c, length = 2, 3, 5
    inputs = [("x", randn(b, c, length)), ("w", randn(c, 1, k))]
    names = ["x", "w", "b" if bias else "", "past" if past else ""]
    if bias:
        inputs.append(("b", randn(c)))
    if past:
        inputs.append(("past", randn(b, c, k - 1)))
    while not names[-1]:
        names.pop()
    node = helper.make_node("CausalConvWithState", names, ["y", "state"], activation=activation)
    model = make_model([node], inputs, ["y", "state"], opset=27)
    feeds = dict(inputs)
    expected = ReferenceEvaluator(model).run(None, feeds)
    graph = import_onnx(model)
    for got in (list(run_graph(graph, feeds).values()), run_tvm(graph, feeds)):
        for g, e in zip(got, expected, strict=True):
            assert g.shape == e.shape, (g.shape, e.shape)
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
