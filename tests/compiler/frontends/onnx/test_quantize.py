"""ONNX QuantizeLinear / DequantizeLinear: onnxruntime vs nnxc reference vs TVM."""

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from onnxutil import check_model, make_model
from oputil import run_tvm

from backends.reference import run_graph
from compiler.errors import ConversionError
from compiler.frontends.onnx import import_onnx
from compiler.ir.types import dtype

rng = np.random.default_rng(0)


def one_node(op, inputs, initializers=(), opset=21, **attrs):
    names = [n for n, _ in inputs] + [n for n, _ in initializers]
    node = helper.make_node(op, names, ["y"], **attrs)
    model = make_model([node], inputs, ["y"], initializers, opset=opset)
    return check_model(model, dict(inputs), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16"])
def test_quantize_per_tensor_saturates_and_rounds_half_to_even(dtype):
    info = np.iinfo(dtype)
    halves = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], "float32")
    big = np.array([info.min * 3.0, info.max * 3.0, 1e12, -1e12], "float32")
    x = np.concatenate([halves, big, rng.uniform(-300, 300, 20).astype("float32")])
    zero = np.array(3 if dtype.startswith("u") else -2, dtype)
    y = one_node("QuantizeLinear", [("x", x)], [("s", np.float32(0.5)), ("z", zero)])
    assert y[0].dtype == dtype and y[0].min() == info.min and y[0].max() == info.max


def test_quantize_default_uint8_without_zero_point():
    x = rng.uniform(-10, 300, (3, 4)).astype("float32")
    one_node("QuantizeLinear", [("x", x)], [("s", np.array([2.0], "float32"))], opset=13)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_quantize_per_axis(axis):
    x = rng.uniform(-100, 100, (3, 4, 5)).astype("float32")
    n = x.shape[axis]
    scale = rng.uniform(0.5, 2, n).astype("float32")
    zero = rng.integers(-10, 10, n).astype("int8")
    one_node("QuantizeLinear", [("x", x)], [("s", scale), ("z", zero)], axis=axis)


def test_quantize_blocked_with_runtime_scale():
    """block_size 3 over 7 columns: the last block is short."""
    x = rng.uniform(-100, 100, (2, 7)).astype("float32")
    scale = rng.uniform(0.5, 2, (2, 3)).astype("float32")
    zero = rng.integers(0, 20, (2, 3)).astype("uint8")
    one_node("QuantizeLinear", [("x", x), ("s", scale)], [("z", zero)], axis=1, block_size=3)


def test_quantize_float16_input():
    x = rng.uniform(-50, 50, 16).astype("float16")
    one_node("QuantizeLinear", [("x", x)], [("s", np.float16(0.25)), ("z", np.int16(7))], opset=21)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32"])
def test_dequantize_per_tensor(dtype):
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -(2**20)), min(info.max, 2**20)
    x = rng.integers(lo, hi, (4, 5), endpoint=True).astype(dtype)
    zero = np.array(0 if dtype == "int32" else (lo + hi) // 3, dtype)
    one_node("DequantizeLinear", [("x", x)], [("s", np.float32(0.125)), ("z", zero)])


def test_dequantize_per_axis_runtime_float16_scale():
    x = rng.integers(-128, 127, (2, 3, 4)).astype("int8")
    zero = rng.integers(-5, 5, 3).astype("int8")
    scale = rng.uniform(0.1, 1, 3).astype("float16")
    one_node("DequantizeLinear", [("x", x), ("s", scale)], [("z", zero)], axis=1, opset=21)


def test_dequantize_blocked():
    x = rng.integers(0, 255, (5, 4)).astype("uint8")
    scale = rng.uniform(0.1, 1, (3, 4)).astype("float32")
    zero = rng.integers(0, 255, (3, 4)).astype("uint8")
    one_node("DequantizeLinear", [("x", x)], [("s", scale), ("z", zero)], axis=0, block_size=2)


# -- the narrow dtypes: against onnx's reference implementation (onnxruntime lacks most) --

NARROW = {
    "float8_e4m3fn": TensorProto.FLOAT8E4M3FN,
    "float8_e4m3fnuz": TensorProto.FLOAT8E4M3FNUZ,
    "float8_e5m2": TensorProto.FLOAT8E5M2,
    "float8_e5m2fnuz": TensorProto.FLOAT8E5M2FNUZ,
    "float4_e2m1fn": TensorProto.FLOAT4E2M1,
    "int4": TensorProto.INT4,
    "uint4": TensorProto.UINT4,
    "int2": TensorProto.INT2,
    "uint2": TensorProto.UINT2,
}


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")


def _against_onnx(model, feeds):
    """onnx's ReferenceEvaluator == nnxc reference (bit for bit) == nnxc on TVM."""
    (expected,) = ReferenceEvaluator(model).run(None, feeds)
    graph = import_onnx(model)
    (ref,) = run_graph(graph, {v.name: feeds[v.name] for v in graph.inputs}).values()
    (got,) = run_tvm(graph, {v.name: feeds[v.name] for v in graph.inputs})
    assert ref.dtype == got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(_bits(ref), _bits(expected))
    # TVM may fold x + 0 to x, so a zero's sign can differ (float4_e2m1fn adds its zero point)
    np.testing.assert_array_equal(got.astype(np.float32), expected.astype(np.float32))
    return got


@pytest.mark.parametrize("saturate", [1, 0])
@pytest.mark.parametrize("name", list(NARROW))
def test_quantize_dequantize_round_trip_narrow(name, saturate):
    d = dtype(name)
    top = float(ml_dtypes.finfo(d.np).max) if d.is_float else float(ml_dtypes.iinfo(d.np).max)
    special = [0.0, -0.0, 0.25, -0.5, 2.5]
    if d.is_float:  # onnx's reference casts inf to int32 (undefined) before it saturates
        special += [np.inf, -np.inf]
    x = np.concatenate([rng.uniform(-3 * top, 3 * top, 40), special]).astype("float32")
    scale = np.float32(0.5)
    zero = np.zeros((), d.np) if d.is_float else np.array(1, d.np)
    attrs = {"saturate": saturate} if name.startswith("float8") else {}
    q_node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs)
    model = make_model([q_node], [("x", x)], ["q"], [("s", scale), ("z", zero)], opset=23)
    q = _against_onnx(model, {"x": x})
    assert q.dtype == d.np
    dq_node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])
    model = make_model([dq_node], [("q", q)], ["y"], [("s", scale), ("z", zero)], opset=23)
    y = _against_onnx(model, {"q": q})
    # what survives the trip: values in range, within half a step (float8: relative)
    if d.is_float:
        ok = np.abs(x) < top * 0.25
        assert np.all(np.abs(y[ok] - x[ok]) <= np.abs(x[ok]) * 0.15 + 0.5)
    else:
        info = ml_dtypes.iinfo(d.np)
        ok = (x >= (int(info.min) - 1) * scale) & (x <= (int(info.max) - 1) * scale)
        assert np.all(np.abs(y[ok] - x[ok]) <= scale / 2)


def test_quantize_int4_blocked_with_output_dtype():
    x = rng.uniform(-20, 20, (4, 6)).astype("float32")
    scale = rng.uniform(0.5, 2, (4, 2)).astype("float32")
    node = helper.make_node(
        "QuantizeLinear", ["x", "s"], ["q"], axis=1, block_size=3, output_dtype=TensorProto.INT4
    )
    model = make_model([node], [("x", x)], ["q"], [("s", scale)], opset=21)
    q = _against_onnx(model, {"x": x})
    assert q.dtype == ml_dtypes.int4 and q.astype(np.int8).min() >= -8


def test_float8_nonzero_zero_point_is_refused():
    x = np.zeros(4, "float32")
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    zero = np.array(1.0, ml_dtypes.float8_e4m3fn)
    model = make_model([node], [("x", x)], ["y"], [("s", np.float32(1)), ("z", zero)])
    with pytest.raises(ConversionError, match="float8_e4m3fn zero point must be 0"):
        import_onnx(model)


def test_string_tensors_are_refused_clearly():
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.STRING, [2])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(ConversionError, match="string tensors are not supported"):
        import_onnx(model)


# -- integer matmul / conv and the QLinear ops -----------------------------------------------


def ints(dtype, *shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("a_dtype, b_dtype", [("uint8", "int8"), ("int8", "uint8")])
@pytest.mark.parametrize("zero_rank", [1, 3])
def test_matmul_integer_per_row_and_column_zero_points_is_exact(a_dtype, b_dtype, zero_rank):
    """K = 300 products of up to 255 * 255: sums far beyond float32's exact integers. Zero
    points per row of A and column of B, as vectors or shaped [.., M, 1] / [.., 1, N]
    (onnxruntime takes only scalars: checked against numpy)."""
    a, b = ints(a_dtype, 2, 3, 300), ints(b_dtype, 300, 5)
    za, zb = ints(a_dtype, 3), ints(b_dtype, 5)
    expected = (a.astype(np.int64) - za[:, None]) @ (b.astype(np.int64) - zb)
    if zero_rank == 3:
        za, zb = za.reshape(1, 3, 1), zb.reshape(1, 5)
    node = helper.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["y"])
    model = make_model([node], [("a", a), ("b", b)], ["y"], [("za", za), ("zb", zb)], opset=10)
    graph = import_onnx(model)
    for got in (run_graph(graph, {"a": a, "b": b})["y"], run_tvm(graph, {"a": a, "b": b})[0]):
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, expected)


def test_matmul_integer_without_zero_points():
    one_node("MatMulInteger", [("a", ints("uint8", 4, 7)), ("b", ints("uint8", 7, 3))], opset=10)


@pytest.mark.parametrize("per_channel", [False, True])
def test_conv_integer_pads_after_the_shift(per_channel):
    """Per-channel weight zero points: onnxruntime has none, ONNX's reference is the judge."""
    x, w = ints("uint8", 1, 2, 5, 5), ints("uint8", 3, 2, 3, 3)
    zw = ints("uint8", 3) if per_channel else np.uint8(7)
    inits = [("zx", np.uint8(100)), ("zw", zw)]
    if not per_channel:
        one_node("ConvInteger", [("x", x), ("w", w)], inits, opset=10, pads=[1, 1, 1, 1])
        return
    node = helper.make_node("ConvInteger", ["x", "w", "zx", "zw"], ["y"], pads=[1, 1, 1, 1])
    model = make_model([node], [("x", x), ("w", w)], ["y"], inits, opset=10)
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x, "w": w})
    graph = import_onnx(model)
    np.testing.assert_array_equal(run_graph(graph, {"x": x, "w": w})["y"], expected)
    np.testing.assert_array_equal(run_tvm(graph, {"x": x, "w": w})[0], expected)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_qlinear_matmul(dtype):
    a, b = ints(dtype, 2, 4, 16), ints(dtype, 16, 3)
    f, z = np.float32, np.dtype(dtype).type
    mid = 0 if dtype == "int8" else 128
    inits = [
        ("sa", f(0.02)),
        ("za", z(mid - 3)),
        ("sb", f(0.05)),
        ("zb", z(mid + 5)),
        ("sy", f(1.0)),
        ("zy", z(mid + 10)),
    ]
    names = ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"]
    node = helper.make_node("QLinearMatMul", names, ["y"])
    model = make_model([node], [("a", a), ("b", b)], ["y"], inits, opset=21)
    (y,) = check_model(model, {"a": a, "b": b}, rtol=0, atol=0)
    assert y.dtype == dtype and len(np.unique(y)) > 5  # not all saturated


def test_qlinear_conv_per_channel_scale_and_bias():
    """Weights in [-64, 63]: onnxruntime's AVX2 u8s8 kernels add pairs of uint8 * int8 products
    in saturating int16 (vpmaddubsw), so with full-range weights its results are wrong on
    machines without AVX-512 VNNI (seen here: 95 where the exact value is 34)."""
    x = ints("uint8", 1, 2, 6, 6)
    w = rng.integers(-64, 63, (4, 1, 3, 3), endpoint=True).astype("int8")
    inits = [
        ("sx", np.float32(0.01)),
        ("zx", np.uint8(120)),
        ("sw", rng.uniform(0.01, 0.05, 4).astype("float32")),
        ("zw", np.zeros(4, "int8")),
        ("sy", np.float32(0.05)),
        ("zy", np.uint8(128)),
        ("bias", rng.integers(-500, 500, 4).astype("int32")),
    ]
    names = ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "bias"]
    node = helper.make_node("QLinearConv", names, ["y"], group=2, strides=[2, 2])
    model = make_model([node], [("x", x), ("w", w)], ["y"], inits, opset=10)
    check_model(model, {"x": x, "w": w}, rtol=0, atol=0)


@pytest.mark.parametrize("lo, hi", [(-3.0, 5.0), (1.0, 4.0), (-6.0, -2.0)])
def test_dynamic_quantize_linear(lo, hi):
    """The range always includes 0 (all positive or all negative inputs too)."""
    x = rng.uniform(lo, hi, (3, 7)).astype("float32")
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    model = make_model([node], [("x", x)], ["y", "s", "z"], opset=11)
    check_model(model, {"x": x}, rtol=0, atol=0)


def test_matmul_integer_refuses_int16():
    a = np.zeros((2, 2), "int16")
    node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    model = make_model([node], [("a", a), ("b", a)], ["y"], opset=10)
    with pytest.raises(ConversionError, match="MatMulInteger node .*int8 or uint8"):
        import_onnx(model)
