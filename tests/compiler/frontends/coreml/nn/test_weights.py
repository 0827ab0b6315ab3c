"""WeightParams decoding (nn/weights.py): floatValue, float16Value, rawValue with linear and
look-up-table quantization at several bit widths as coremltools' quantization_utils writes
them, and int8RawValue. Models with an innerProduct, a convolution and a deconvolution (whose
linear quantization runs along axis 1) are quantized by coremltools and compared against
numpy/PyTorch on the weights coremltools' own de-quantizer gives back."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coremltools.models.neural_network import quantization_utils as qu
from coremltools.proto import NeuralNetwork_pb2
from coremlutil import check, ct, nn_builder, save_nn

from compiler.errors import ConversionError
from compiler.frontends.coreml.nn import weights

RNG = np.random.default_rng(3)
MODES = {
    "linear": ct.models._QUANTIZATION_MODE_LINEAR_QUANTIZATION,
    "symmetric": ct.models._QUANTIZATION_MODE_LINEAR_SYMMETRIC,
    "lut": ct.models._QUANTIZATION_MODE_LOOKUP_TABLE_LINEAR,
}


def _rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _model() -> tuple:
    """x [1, 4, 5, 5] -> conv (6 out) and deconv (6 out, 2 groups); v [2, 7] -> innerProduct."""
    b = nn_builder([("x", (1, 4, 5, 5)), ("v", (2, 7))], [("c", None), ("d", None), ("f", None)])
    b.add_convolution(
        "conv",
        4,
        6,
        3,
        2,
        1,
        1,
        "valid",
        1,
        _rand(3, 2, 4, 6),
        _rand(6),
        True,
        input_name="x",
        output_name="c",
    )
    b.add_convolution(
        "deconv",
        4,
        6,
        2,
        3,
        2,
        1,
        "valid",
        2,
        _rand(2, 3, 4, 3),
        _rand(6),
        True,
        is_deconv=True,
        input_name="x",
        output_name="d",
    )
    b.add_inner_product("fc", _rand(5, 7), _rand(5), 7, 5, True, "v", "f")
    return b.spec


def _expected(spec, x: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    """The outputs with the float weights of ``spec`` (already de-quantized)."""
    conv, deconv, fc = (lyr for lyr in spec.neuralNetwork.layers)
    f = lambda wp, *s: torch.tensor(np.asarray(wp.floatValue, np.float32).reshape(s))  # noqa: E731
    xt = torch.from_numpy(x)
    c = F.conv2d(xt, f(conv.convolution.weights, 6, 4, 3, 2), f(conv.convolution.bias, 6))
    d = F.conv_transpose2d(
        xt,
        f(deconv.convolution.weights, 4, 3, 2, 3),
        f(deconv.convolution.bias, 6),
        stride=(2, 1),
        groups=2,
    )
    w = np.asarray(fc.innerProduct.weights.floatValue, np.float32).reshape(5, 7)
    y = v @ w.T + np.asarray(fc.innerProduct.bias.floatValue, np.float32)
    return [c.numpy(), d.numpy(), y]


def _quantize(spec, nbits: int, mode: str):
    with contextlib.redirect_stdout(io.StringIO()):  # quantization_utils prints every layer
        return qu._quantize_spec_weights(copy.deepcopy(spec), nbits, MODES[mode])


@pytest.mark.parametrize(
    "nbits, mode",
    [
        (8, "linear"),
        (8, "symmetric"),
        (5, "linear"),
        (3, "linear"),
        (1, "linear"),
        (8, "lut"),
        (6, "lut"),
        (4, "lut"),
        (2, "lut"),
        (1, "lut"),
    ],
)
def test_quantized_weights(tmp_path: Path, nbits: int, mode: str) -> None:
    spec = _quantize(_model(), nbits, mode)
    fields = {lyr.name: lyr for lyr in spec.neuralNetwork.layers}
    kinds = {"rawValue"} == {
        weights._field(fields["conv"].convolution.weights),
        weights._field(fields["deconv"].convolution.weights),
        weights._field(fields["fc"].innerProduct.weights),
    }
    assert kinds, "quantization_utils did not write rawValue weights"
    plain = copy.deepcopy(spec)
    with contextlib.redirect_stdout(io.StringIO()):
        qu._dequantize_nn_spec(plain.neuralNetwork)
    x, v = _rand(1, 4, 5, 5), _rand(2, 7)
    check(
        save_nn(spec, tmp_path),
        {"x": x, "v": v},
        _expected(plain, x, v),
        atol=1e-4,
        tvm=(nbits, mode) == (3, "linear"),
    )


def test_float16_weights(tmp_path: Path) -> None:
    spec = _model()
    half = _quantize(spec, 16, "linear")
    assert weights._field(half.neuralNetwork.layers[0].convolution.weights) == "float16Value"
    for lyr in spec.neuralNetwork.layers:  # the float32 weights rounded as float16
        params = getattr(lyr, lyr.WhichOneof("layer"))
        for wp in (params.weights, params.bias):
            rounded = np.asarray(wp.floatValue, np.float32).astype(np.float16).astype(np.float32)
            wp.ClearField("floatValue")
            wp.floatValue.extend(rounded)
    x, v = _rand(1, 4, 5, 5), _rand(2, 7)
    check(save_nn(half, tmp_path), {"x": x, "v": v}, _expected(spec, x, v), atol=1e-4, tvm=False)


def _wp(**fields) -> NeuralNetwork_pb2.WeightParams:
    wp = NeuralNetwork_pb2.WeightParams()
    for k, val in fields.items():
        setattr(wp, k, val)
    return wp


def test_int8_raw_value_with_one_scale() -> None:
    q = np.array([-128, -3, 0, 7, 127, 64], np.int8)
    wp = _wp(int8RawValue=q.tobytes())
    wp.quantization.numberOfBits = 8
    wp.quantization.linearQuantization.scale.append(0.25)
    got = weights.decode(wp, [2, 3], "w")
    np.testing.assert_array_equal(got, (q.astype(np.float32) * 0.25).reshape(2, 3))


def test_linear_scale_and_bias_per_channel_along_axis_1() -> None:
    """Deconvolution kernels quantize per slice of axis 1."""
    codes = np.arange(12, dtype=np.uint8)
    wp = _wp(rawValue=codes.tobytes())
    wp.quantization.numberOfBits = 8
    wp.quantization.linearQuantization.scale.extend([1.0, 10.0, 100.0])
    wp.quantization.linearQuantization.bias.extend([0.0, 1.0, 2.0])
    got = weights.decode(wp, [2, 3, 2], "w", axis=1)
    want = codes.reshape(2, 3, 2) * np.array([1, 10, 100]).reshape(1, 3, 1)
    np.testing.assert_allclose(got, want + np.array([0, 1, 2]).reshape(1, 3, 1))


def test_sub_byte_codes_are_packed_most_significant_bit_first() -> None:
    wp = _wp(rawValue=bytes([0b10_01_11_00, 0b01_00_00_00]))
    wp.quantization.numberOfBits = 2
    wp.quantization.lookupTableQuantization.floatValue.extend([0.5, 1.5, 2.5, 3.5])
    np.testing.assert_array_equal(weights.decode(wp, [5], "w"), [2.5, 1.5, 3.5, 0.5, 1.5])


@pytest.mark.parametrize(
    "fields, bits, shape, message",
    [
        (dict(float16Value=b"\x00\x3c\x00"), 0, [1], "float16Value holds an odd number of"),
        (dict(rawValue=b"\x01\x02"), 0, [2], "rawValue without quantization parameters"),
        (dict(rawValue=b"\x1f"), 4, [2], "code 15 past the 2-entry look-up table"),
        (dict(floatValue=[1.0, 2.0]), 0, [3], r"2 values for shape \[3\] \(3 needed\)"),
        (dict(rawValue=b"\x01"), 4, [3], "1 bytes of 4-bit codes for 3 values"),
    ],
)
def test_bad_weights_are_refused(fields: dict, bits: int, shape: list, message: str) -> None:
    wp = NeuralNetwork_pb2.WeightParams()
    for k, val in fields.items():
        if k == "floatValue":
            wp.floatValue.extend(val)
        else:
            setattr(wp, k, val)
    if bits:
        wp.quantization.numberOfBits = bits
        wp.quantization.lookupTableQuantization.floatValue.extend([0.0, 1.0])
    with pytest.raises(ConversionError, match=f"layer 'w': {message}"):
        weights.decode(wp, shape, "layer 'w'")
