"""ONNX elementwise converters: onnxruntime == nnxc reference == nnxc on TVM."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnxutil import check_model, make_model
from oputil import run_tvm

from backends.reference import run_graph
from compiler.errors import ConversionError
from compiler.frontends.onnx import import_onnx

rng = np.random.default_rng(1)


def randn(*shape: int, dtype: str = "float32") -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def node(op_type: str, inputs: list[str], output: str = "out", **attrs) -> object:
    return helper.make_node(op_type, inputs, [output], **attrs)


def check_one(op_type: str, inputs: dict[str, np.ndarray], opset: int = 21, **attrs):
    model = make_model([node(op_type, list(inputs), **attrs)], list(inputs.items()), ["out"],
                       opset=opset)  # fmt: skip
    return check_model(model, inputs)


def test_add_relu():
    a = randn(2, 3)
    b = randn(3)
    model = make_model(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["out"])],
        [("a", a), ("b", b)],
        ["out"],
    )
    check_model(model, {"a": a, "b": b})


@pytest.mark.parametrize(
    "op_type",
    ["Abs", "Neg", "Exp", "Sigmoid", "Tanh", "Erf", "Floor", "Ceil", "Round", "Sign", "Sin",
     "Cos", "Atan", "Sinh", "Asinh", "Softplus", "Softsign", "HardSwish", "Mish", "Relu"],
)  # fmt: skip
def test_unary(op_type):
    check_one(op_type, {"x": randn(3, 4) * 2})


def test_unary_with_domains():
    x = np.abs(randn(2, 5)) + 0.2
    for op_type in ["Log", "Sqrt", "Reciprocal", "Acosh"]:
        check_one(op_type, {"x": x + (1 if op_type == "Acosh" else 0)})
    u = np.tanh(randn(2, 5)) * 0.9
    for op_type in ["Asin", "Acos", "Atanh"]:
        check_one(op_type, {"x": u})


@pytest.mark.parametrize(
    "op_type,attrs",
    [("LeakyRelu", {"alpha": 0.2}), ("LeakyRelu", {}), ("Elu", {"alpha": 0.7}), ("Selu", {}),
     ("Selu", {"alpha": 2.0, "gamma": 3.0}), ("Celu", {"alpha": 1.5}),
     ("HardSigmoid", {"alpha": 0.3, "beta": 0.6}), ("ThresholdedRelu", {"alpha": 0.4}),
     ("Shrink", {"bias": 0.1, "lambd": 0.6}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"})],
)  # fmt: skip
def test_activation_attributes(op_type, attrs):
    check_one(op_type, {"x": randn(2, 3, 4) * 2}, **attrs)


def test_prelu_unidirectional():
    x = randn(2, 3, 4, 5)
    check_one("PRelu", {"x": x, "slope": np.abs(randn(3, 1, 1)) * 0.3})
    check_one("PRelu", {"x": x, "slope": randn(5)})


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("dtype", ["float32", "int32", "int64", "uint8"])
def test_arithmetic(op_type, dtype):
    a = rng.integers(1, 50, (3, 4)).astype(dtype)
    b = rng.integers(1, 9, (4,)).astype(dtype)
    if dtype.startswith("int"):
        a = a - 25
    check_one(op_type, {"a": a, "b": b})


def test_integer_div_truncates():
    a = np.array([-7, 7, -7, 7, -1], "int32")
    b = np.array([2, 2, -2, -2, 3], "int32")
    (y,) = check_one("Div", {"a": a, "b": b})
    np.testing.assert_array_equal(y, [-3, 3, 3, -3, 0])


# onnxruntime refuses float Mod with fmod=0; the op tests cover that case
@pytest.mark.parametrize(
    "fmod,dtype", [(0, "int32"), (0, "int64"), (1, "int32"), (1, "int64"), (1, "float32")]
)
def test_mod(fmod, dtype):
    a = np.array([-4, 7, 5, 4, -7, 8, -9], dtype)
    b = np.array([2, -3, 8, -2, 3, 5, 4], dtype)
    check_one("Mod", {"a": a, "b": b}, fmod=fmod)


def test_pow_mixed_dtypes():
    x = np.abs(randn(3, 4)) + 0.5
    check_one("Pow", {"x": x, "y": np.array([2, 3, 1, 0], "int64")})
    check_one("Pow", {"x": x, "y": randn(4)})
    xi = np.array([[1, 2, 3], [4, 5, 6]], "int64")
    check_one("Pow", {"x": xi, "y": np.array([2.0, 3.0, 0.5], "float32")})
    check_one("Pow", {"x": xi, "y": np.array([3, 2, 1], "int64")})
    check_one("Pow", {"x": xi.astype("int32"), "y": np.array([3, 2, 1], "int32")})


def test_variadic_sum_mean_max_min():
    a, b, c = randn(2, 3), randn(3), randn(1, 3)
    for op_type in ["Sum", "Mean", "Max", "Min"]:
        model = make_model(
            [node(op_type, ["a", "b", "c"])], [("a", a), ("b", b), ("c", c)], ["out"]
        )
        check_model(model, {"a": a, "b": b, "c": c})
        check_one(op_type, {"a": a})  # one input: the input itself
    ai, bi = np.array([1, -5, 3], "int8"), np.array([[0], [-9]], "int8")
    check_one("Max", {"a": ai, "b": bi})
    check_one("Min", {"a": ai, "b": bi})


@pytest.mark.parametrize("op_type", ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"])
@pytest.mark.parametrize("dtype", ["float32", "int64", "uint8"])
def test_comparisons(op_type, dtype):
    a = rng.integers(0, 4, (2, 3, 4)).astype(dtype)
    b = rng.integers(0, 4, (3, 1)).astype(dtype)
    (y,) = check_one(op_type, {"a": a, "b": b})
    assert y.dtype == np.bool_


def test_logic_and_where():
    a = rng.integers(0, 2, (2, 3)).astype(bool)
    b = rng.integers(0, 2, (3,)).astype(bool)
    for op_type in ["And", "Or", "Xor", "Equal"]:
        check_one(op_type, {"a": a, "b": b})
    check_one("Not", {"a": a})
    check_one("Where", {"c": a, "x": randn(2, 1), "y": randn(3)})
    check_one("Where", {"c": b, "x": np.arange(3, dtype="int64"), "y": np.zeros((2, 1), "int64")})


def test_bit_ops():
    a = np.array([[16, 3, 255, 128]], "uint8")
    s = np.array([1, 2, 3, 7], "uint8")
    check_one("BitShift", {"a": a, "b": s}, direction="LEFT")
    check_one("BitShift", {"a": a, "b": s}, direction="RIGHT")
    x, y = np.array([12, -1, 7], "int32"), np.array([10, 3, -8], "int32")
    for op_type in ["BitwiseAnd", "BitwiseOr", "BitwiseXor"]:
        check_one(op_type, {"a": x, "b": y})
    check_one("BitwiseNot", {"a": x})


def test_isinf_isnan():
    x = np.array([1.0, np.inf, -np.inf, np.nan, -2.0], "float32")
    check_one("IsNaN", {"x": x})
    check_one("IsInf", {"x": x})
    check_one("IsInf", {"x": x}, detect_negative=0)
    check_one("IsInf", {"x": x}, detect_positive=0)


@pytest.mark.parametrize(
    "src,dst",
    [("float32", TensorProto.INT32), ("float32", TensorProto.BOOL), ("bool", TensorProto.FLOAT),
     ("int64", TensorProto.FLOAT16), ("float32", TensorProto.DOUBLE), ("int32", TensorProto.INT8),
     ("float32", TensorProto.FLOAT)],
)  # fmt: skip
def test_cast(src, dst):
    x = np.array([[0.0, 1.5, -2.7, 100.0], [-0.0, 3.0, 0.2, -1.0]]).astype(src)
    check_one("Cast", {"x": x}, to=dst)


def test_cast_like():
    x = randn(2, 3) * 10
    like = np.zeros((1,), "int32")
    check_one("CastLike", {"x": x, "like": like})
    check_one("CastLike", {"x": x, "like": np.zeros(1, "float32")})


def test_clip_opset6_attributes():
    x = randn(3, 4) * 3
    check_one("Clip", {"x": x}, opset=7, min=-1.0, max=1.5)
    check_one("Clip", {"x": x}, opset=7, max=0.5)
    check_one("Clip", {"x": x}, opset=7)


@pytest.mark.parametrize(
    "dtype,lo,hi", [("float32", -1.0, 1.0), ("float32", 2.0, 1.0), ("int8", -3, 100),
                    ("int64", None, 4), ("float32", 0.0, None)]
)  # fmt: skip
def test_clip_constant_inputs(dtype, lo, hi):
    x = (randn(3, 4) * 5).astype(dtype)
    inits, names = [], ["x"]
    for key, bound in (("lo", lo), ("hi", hi)):
        if bound is None:
            names.append("")
        else:
            names.append(key)
            inits.append((key, np.array(bound, dtype)))
    model = make_model([node("Clip", names)], [("x", x)], ["out"], initializers=inits, opset=13)
    check_model(model, {"x": x})


def test_clip_dynamic_bounds_keep_min_then_max():
    # bounds that are graph inputs become maximum/minimum (min first: min > max gives max)
    x = randn(3, 4) * 3
    feeds = {"x": x, "lo": np.array(0.5, "float32"), "hi": np.array(-0.5, "float32")}
    model = make_model([node("Clip", ["x", "lo", "hi"])], list(feeds.items()), ["out"], opset=13)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = sess.run(None, feeds)
    graph = import_onnx(model)
    assert [n.op for n in graph.nodes] == ["maximum", "minimum"]
    (got,) = run_graph(graph, feeds).values()
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, np.full((3, 4), -0.5, "float32"))


def test_legacy_broadcast_attribute_is_refused():
    model = make_model(
        [node("Add", ["a", "b"], broadcast=1)],
        [("a", randn(2, 3)), ("b", randn(3))],
        ["out"],
        opset=7,
    )
    with pytest.raises(ConversionError, match="broadcast"):
        import_onnx(model)


@pytest.mark.parametrize(
    ("src", "to"),
    [
        ("float32", TensorProto.INT32),
        ("int64", TensorProto.DOUBLE),
        ("uint8", TensorProto.INT8),
        ("bool", TensorProto.UINT8),
        ("float16", TensorProto.INT16),
    ],
)
def test_bitcast(src, to):
    x = (rng.standard_normal((2, 5)) * 100).astype(src)
    if src == "int64":
        x = np.array([4607182418800017408, -4611686018427387904], np.int64)
    model = make_model(
        [helper.make_node("BitCast", ["x"], ["y"], to=to)], [("x", x)], ["y"], opset=26
    )
    graph = import_onnx(model)  # onnxruntime 1.32 lacks some of these type pairs
    want = x.view(np.uint8) if src == "bool" else x.view(graph.outputs[0].type.np_dtype)
    for out in (run_tvm(graph, {"x": x})[0], run_graph(graph, {"x": x})["y"]):
        assert out.dtype == want.dtype
        np.testing.assert_array_equal(out, want)


def test_bitcast_to_another_width_is_refused():
    x = np.zeros(3, np.float32)
    model = make_model(
        [helper.make_node("BitCast", ["x"], ["y"], to=TensorProto.INT16)], [("x", x)], ["y"],
        opset=26,
    )  # fmt: skip
    with pytest.raises(ConversionError, match="BitCast node .*bit widths differ"):
        import_onnx(model)
