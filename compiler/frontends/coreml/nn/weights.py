"""NeuralNetwork weights (``WeightParams``) as float32 numpy arrays: ``floatValue``,
``float16Value`` (raw little-endian halves), ``rawValue`` codes with linear or look-up-table
quantization (1-8 bits, sub-byte codes packed most significant bit first, as coremltools'
``quantization_utils`` writes them), and ``int8RawValue`` (int8 with one scale).

coremltools' own de-quantizer returns early for anything but ``rawValue``, so nnxc decodes
every field itself; nothing here is hand-parsed protobuf, only the documented byte layouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.errors import ConversionError


def decode(wp: Any, shape: Sequence[int], what: str, axis: int = 0) -> np.ndarray:
    """The weights of ``wp`` as a float32 array of ``shape``; linear quantization scales
    and biases apply per slice of ``axis`` (0; 1 for deconvolution kernels) or to all."""
    count = int(np.prod(shape, dtype=np.int64))
    field = _field(wp)
    if field == "floatValue":
        data = np.asarray(wp.floatValue, dtype=np.float32)
    elif field == "float16Value":
        raw = wp.float16Value
        if len(raw) % 2:
            raise ConversionError(f"{what}: float16Value holds an odd number of bytes")
        data = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif field == "int8RawValue":
        data = _dequantize(np.frombuffer(wp.int8RawValue, np.int8), wp, count, what, axis, shape)
    elif field == "rawValue":
        if not wp.HasField("quantization"):
            raise ConversionError(f"{what}: rawValue without quantization parameters")
        bits = int(wp.quantization.numberOfBits)
        if not 1 <= bits <= 8:
            raise ConversionError(f"{what}: {bits}-bit quantization (1 to 8 bits are defined)")
        codes = unpack_bits(np.frombuffer(wp.rawValue, np.uint8), count, bits, what)
        data = _dequantize(codes, wp, count, what, axis, shape)
    else:
        data = np.zeros(0, np.float32)
    if data.size != count:
        raise ConversionError(
            f"{what}: {data.size} values for shape {list(shape)} ({count} needed)"
        )
    return data.reshape(tuple(shape))


def present(wp: Any) -> bool:
    """Whether ``wp`` holds any values (an absent bias is an empty WeightParams)."""
    return _field(wp) is not None


def _field(wp: Any) -> str | None:
    for name in ("floatValue", "float16Value", "rawValue", "int8RawValue"):
        if len(getattr(wp, name)):
            return name
    return None


def unpack_bits(raw: np.ndarray, count: int, bits: int, what: str) -> np.ndarray:
    """``count`` unsigned codes of ``bits`` bits each, packed most significant bit first."""
    if bits == 8:
        codes = raw
    else:
        bitstream = np.unpackbits(raw)  # each byte's bits from bit 7 down
        if bitstream.size < count * bits:
            raise ConversionError(
                f"{what}: {raw.size} bytes of {bits}-bit codes for {count} values"
            )
        grouped = bitstream[: count * bits].reshape(count, bits).astype(np.uint16)
        codes = grouped @ (1 << np.arange(bits - 1, -1, -1, dtype=np.uint16))
    if codes.size < count:
        raise ConversionError(f"{what}: {codes.size} codes for {count} values")
    return codes[:count]


def _dequantize(
    codes: np.ndarray, wp: Any, count: int, what: str, axis: int, shape: Sequence[int]
) -> np.ndarray:
    q = wp.quantization
    kind = q.WhichOneof("QuantizationType")
    if kind == "lookupTableQuantization":
        table = np.asarray(q.lookupTableQuantization.floatValue, np.float32)
        if codes.size and int(codes.max()) >= table.size:
            raise ConversionError(
                f"{what}: code {int(codes.max())} past the {table.size}-entry look-up table"
            )
        return table[codes.astype(np.int64)]
    if kind != "linearQuantization":
        raise ConversionError(f"{what}: quantized weights without quantization parameters")
    scale = np.asarray(q.linearQuantization.scale, np.float32)
    bias = np.asarray(q.linearQuantization.bias, np.float32)
    if bias.size == 0:
        bias = np.zeros(1, np.float32)
    values = codes.astype(np.float32)
    if scale.size <= 1 and bias.size <= 1:
        return values * (scale[0] if scale.size else 1.0) + bias[0]
    channels = int(shape[axis]) if len(shape) > axis else 1
    for name, v in (("scale", scale), ("bias", bias)):
        if v.size not in (1, channels):
            raise ConversionError(f"{what}: {v.size} quantization {name}s for {channels} channels")
    shaped = np.moveaxis(values.reshape(tuple(shape)), axis, 0).reshape(channels, -1)
    out = shaped * scale.reshape(-1, 1) + bias.reshape(-1, 1)
    rest = [int(shape[i]) for i in range(len(shape)) if i != axis]
    return np.moveaxis(out.reshape(channels, *rest), 0, axis).reshape(-1)
