"""ONNX QuantizeLinear / DequantizeLinear: onnxruntime vs nnxc reference vs TVM."""

import numpy as np
import pytest
from onnx import helper
from onnxutil import check_model, make_model

from compiler.errors import ConversionError
from compiler.frontends.onnx import import_onnx

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


def test_int4_is_refused_by_name():
    x = np.zeros(4, "float32")
    node = helper.make_node("QuantizeLinear", ["x", "s"], ["y"], output_dtype=22)  # INT4
    model = make_model([node], [("x", x)], ["y"], [("s", np.float32(1))], opset=21)
    with pytest.raises(ConversionError, match="INT4"):
        import_onnx(model)
