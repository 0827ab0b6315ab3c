"""NNEF quantization: the four standard quantization fragments, as ops of graph.nnef and as
entries of graph.quant.

The fragments are fake quantization (they return the dequantized value), computed here once,
as IR ops (``quantize_value``): the converters of the fragments, graph.quant entries of
activations (``fake_quantize``) and of float-valued variables use it. A variable whose .dat
holds integer codes is dequantized in numpy instead (``dequantize_variable``): the code is
the fragment's ``q``. Parameters given as tensors (per channel) broadcast the NNEF way:
leading axes aligned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.errors import ConversionError, ModelLoadError
from compiler.ir.builder import Builder
from compiler.ir.graph import Value

from ..converters import NodeContext
from .elementwise import round_half_away
from .registry import NnefContext, aligned, converter

SCHEMES = (
    "zero_point_linear_quantize",
    "min_max_linear_quantize",
    "linear_quantize",
    "logarithmic_quantize",
)
TENSOR_PARAMS = {
    "zero_point_linear_quantize": ("zero_point", "scale"),
    "min_max_linear_quantize": ("min", "max"),
    "linear_quantize": ("min", "max"),
    "logarithmic_quantize": ("max",),
}


# -- the fragments as IR ops -------------------------------------------------------------------
def _c(ctx: NodeContext, value: float) -> Value:
    return ctx.const(np.float32(value), "float32")


def _bin(ctx: NodeContext, op: str, a: Value, b: Value) -> Value:
    return ctx.emit(op, *aligned(ctx, a, b))


def _clamp(ctx: NodeContext, x: Value, a: Value, b: Value) -> Value:
    """NNEF's ``clamp(x, a, b) = max(min(x, b), a)``: a clip for constant scalar bounds, else
    the IR minimum/maximum. Not NNEF's select-based min/max (elementwise.py's): that chain uses
    each operand twice, and fused over two fragments in a row it makes TVM's kernel build take
    minutes. They differ on NaN only (NNEF's clamp maps NaN to b, these keep it)."""
    if a.const is not None and b.const is not None and a.const.size == b.const.size == 1:
        return ctx.emit("clip", x, min=float(a.const.reshape(())), max=float(b.const.reshape(())))
    return _bin(ctx, "maximum", _bin(ctx, "minimum", x, b), a)


def _zero_point_linear(
    ctx: NodeContext, x: Value, zero_point: Value, scale: Value, attrs: dict[str, Any]
) -> Value:
    bits, signed, symmetric = int(attrs["bits"]), bool(attrs["signed"]), bool(attrs["symmetric"])
    z = ctx.emit("cast", zero_point, to="float32")
    s = _bin(ctx, "add", round_half_away(ctx, _bin(ctx, "div", x, scale)), z)
    r = float(2 ** (bits - 1) - 1 if signed else 2**bits - 1)
    low = 0.0 if not signed else -r if symmetric else -r - 1.0
    q = _clamp(ctx, s, _c(ctx, low), _c(ctx, r))
    return _bin(ctx, "mul", _bin(ctx, "sub", q, z), scale)


def _min_max_linear(
    ctx: NodeContext, x: Value, lo: Value, hi: Value, attrs: dict[str, Any]
) -> Value:
    bits, signed, symmetric = int(attrs["bits"]), bool(attrs["signed"]), bool(attrs["symmetric"])
    r = _c(ctx, 2**bits - 1 - int(signed and symmetric))
    z = _clamp(ctx, x, lo, hi)
    p = _c(ctx, 2 ** (bits - 1) - int(symmetric) if signed else 0)
    span = _bin(ctx, "sub", hi, lo)
    scaled = _bin(ctx, "mul", _bin(ctx, "div", _bin(ctx, "sub", z, lo), span), r)
    q = _bin(ctx, "sub", round_half_away(ctx, scaled), p)
    return _bin(ctx, "add", _bin(ctx, "mul", _bin(ctx, "div", _bin(ctx, "add", q, p), r), span), lo)


def _logarithmic(ctx: NodeContext, x: Value, hi: Value, attrs: dict[str, Any]) -> Value:
    """``sign(x) * 2 ^ round(clamp(log2(|x|), m - r, m))``, ``m = ceil(log2(max))``: a
    constant ``max`` gets its ``m`` from numpy's exact log2 (log / ln 2 in float32 can put a
    power of two just above itself, and ceil would then round it up)."""
    r = float(2 ** int(attrs["bits"]) - 1)
    if hi.const is not None:
        m = ctx.const(np.ceil(np.log2(hi.const.astype(np.float64))).astype(np.float32), "float32")
    else:
        m = ctx.emit("ceil", _log2(ctx, hi))
    e = _clamp(ctx, _log2(ctx, ctx.emit("abs", x)), _bin(ctx, "sub", m, _c(ctx, r)), m)
    q = round_half_away(ctx, e)
    return _bin(ctx, "mul", ctx.emit("sign", x), _bin(ctx, "pow", _c(ctx, 2.0), q))


def _log2(ctx: NodeContext, x: Value) -> Value:
    return ctx.emit("div", ctx.emit("log", x), _c(ctx, float(np.log(2.0))))


def quantize_value(
    ctx: NodeContext, scheme: str, x: Value, params: dict[str, Value], attrs: dict[str, Any]
) -> Value:
    """``x`` through the quantization fragment ``scheme`` (its tensor parameters in
    ``params``, the rest in ``attrs``): the one implementation of the fragments."""
    if not x.dtype.is_float:
        raise ctx.error(f"{scheme} quantizes scalar tensors, got {x.type}")
    if scheme == "zero_point_linear_quantize":
        return _zero_point_linear(ctx, x, params["zero_point"], params["scale"], attrs)
    if scheme == "linear_quantize":
        attrs = {**attrs, "signed": False, "symmetric": False}
        scheme = "min_max_linear_quantize"
    if scheme == "min_max_linear_quantize":
        return _min_max_linear(ctx, x, params["min"], params["max"], attrs)
    if scheme == "logarithmic_quantize":
        return _logarithmic(ctx, x, params["max"], attrs)
    raise ctx.error(f"unknown quantization {scheme!r} (nnxc knows {', '.join(SCHEMES)})")


def _converter(scheme: str):
    def convert(ctx: NnefContext) -> Value:
        x = ctx.x("x")
        params = {
            p: ctx.x(p, "int64" if p == "zero_point" else "float32") for p in TENSOR_PARAMS[scheme]
        }
        return quantize_value(ctx, scheme, x, params, dict(ctx.operation.attribs))

    return convert


for _scheme in SCHEMES:
    if _scheme != "linear_quantize":  # expanded by the parser (importer.LOWERED)
        converter(_scheme)(_converter(_scheme))


# -- graph.quant entries ----------------------------------------------------------------------
def _scheme_of(quant: dict, what: str) -> str:
    scheme = quant.get("op-name")
    if scheme not in SCHEMES:
        raise ConversionError(
            f"{what}: graph.quant quantizes it with {scheme!r}; nnxc knows {', '.join(SCHEMES)}"
        )
    return str(scheme)


class _EntryContext(NodeContext):
    """Emits a graph.quant entry's ops; its errors name the tensor and the entry."""

    def __init__(self, scheme: str, what: str, builder: Builder) -> None:
        super().__init__(scheme, what, [], builder)

    def error(self, message: str) -> ConversionError:
        return ConversionError(f"{self.name}: graph.quant {self.op_type}: {message}")


def fake_quantize(builder: Builder, value: Value, quant: dict, what: str) -> Value:
    """An activation's graph.quant entry: ``value`` quantized and dequantized where it is
    computed, by the fragment the entry names."""
    scheme = _scheme_of(quant, what)
    ctx = _EntryContext(scheme, what, builder)
    params = {
        p: builder.const(np.asarray(quant[p], np.int64 if p == "zero_point" else np.float32))
        for p in TENSOR_PARAMS[scheme]
    }
    try:
        return quantize_value(ctx, scheme, value, params, quant)
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. parameters that do not broadcast
        raise ConversionError(f"{what}: graph.quant {scheme}: {type(e).__name__}: {e}") from e


def dequantize_variable(codes: np.ndarray, quant: dict, what: str) -> np.ndarray:
    """The float32 values of a variable whose .dat holds integer codes, by its graph.quant
    entry: the code is the fragment's ``q``; codes outside its range are refused."""
    scheme = _scheme_of(quant, what)
    if codes.dtype.kind not in "iu":
        raise ModelLoadError(f"{what}: {scheme} needs integer codes, its .dat holds {codes.dtype}")
    if scheme == "logarithmic_quantize":
        raise ModelLoadError(
            f"{what}: integer codes of logarithmic_quantize are not defined (its q is a base-2 "
            "exponent and carries no sign, nor a zero); store the variable as floats"
        )
    q = np.asarray(codes).astype(np.int64)
    bits = int(quant["bits"])
    if scheme == "linear_quantize":
        signed = symmetric = False
    else:
        signed, symmetric = bool(quant["signed"]), bool(quant["symmetric"])
    if scheme == "zero_point_linear_quantize":
        r = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        low = 0 if not signed else -r if symmetric else -r - 1
    else:
        r = 2**bits - 1 - int(signed and symmetric)
        p = 2 ** (bits - 1) - int(symmetric) if signed else 0
        low, r = -p, r - p
    if q.size and (q.min() < low or q.max() > r):
        raise ModelLoadError(
            f"{what}: codes {q.min()}..{q.max()} fall outside [{low}, {r}], the range of "
            f"{scheme} with bits = {bits}, signed = {str(signed).lower()}, symmetric = "
            f"{str(symmetric).lower()}"
        )
    try:
        data = _dequantized(q, scheme, quant, signed, symmetric, what)
    except ValueError as e:  # parameters that do not broadcast against the codes
        raise ModelLoadError(f"{what}: graph.quant {scheme}: {e}") from None
    if data.shape != q.shape:
        raise ModelLoadError(
            f"{what}: graph.quant {scheme} parameters broadcast its shape {list(q.shape)} to "
            f"{list(data.shape)}"
        )
    return data


def _dequantized(
    q: np.ndarray, scheme: str, quant: dict, signed: bool, symmetric: bool, what: str
) -> np.ndarray:
    bits = int(quant["bits"])
    qf = q.astype(np.float32)
    if scheme == "zero_point_linear_quantize":
        z = _param(quant, "zero_point", q.ndim, what).astype(np.float32)
        return ((qf - z) * _param(quant, "scale", q.ndim, what)).astype(np.float32)
    lo, hi = _param(quant, "min", q.ndim, what), _param(quant, "max", q.ndim, what)
    pf = np.float32(2 ** (bits - 1) - int(symmetric) if signed else 0)
    rf = np.float32(2**bits - 1 - int(signed and symmetric))
    return ((qf + pf) / rf * (hi - lo) + lo).astype(np.float32)


def _param(quant: dict, name: str, rank: int, what: str) -> np.ndarray:
    """A parameter of the entry aligned the NNEF way (trailing 1s) to a tensor of ``rank``."""
    v = np.asarray(quant[name])
    if name != "zero_point":
        v = v.astype(np.float32)
    if v.ndim > rank:
        raise ModelLoadError(
            f"{what}: graph.quant {name} of shape {list(v.shape)} has a rank above {rank}"
        )
    return v.reshape(v.shape + (1,) * (rank - v.ndim))
