"""Elementwise core ops: inferred types, numpy references against hand-written expectations,
and the TVM lowering against the reference (bit-exact for integers)."""

import math

import ml_dtypes
import numpy as np
import pytest
from oputil import check_op, run_tvm, single_op_graph

from backends.reference import run_graph
from compiler.ir.graph import Graph
from compiler.ir.ops import get_op
from compiler.ir.types import IRTypeError, TensorType, dtype

rng = np.random.default_rng(0)


def randn(*shape: int, dtype: str = "float32") -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x.astype("float64"))


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, x.astype("float64"))


UNARY = {
    "neg": (lambda x: -x, None),
    "abs": (np.abs, None),
    "exp": (np.exp, None),
    "log": (np.log, "positive"),
    "sqrt": (np.sqrt, "positive"),
    "reciprocal": (lambda x: 1 / x, "positive"),
    "sin": (np.sin, None),
    "cos": (np.cos, None),
    "tan": (np.tan, None),
    "asin": (np.arcsin, "unit"),
    "acos": (np.arccos, "unit"),
    "atan": (np.arctan, None),
    "sinh": (np.sinh, None),
    "cosh": (np.cosh, None),
    "asinh": (np.arcsinh, None),
    "acosh": (np.arccosh, "above1"),
    "atanh": (np.arctanh, "unit"),
    "tanh": (np.tanh, None),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), None),
    "erf": (erf, None),
    "floor": (np.floor, None),
    "ceil": (np.ceil, None),
    "relu": (lambda x: np.maximum(x, 0), None),
    "softplus": (softplus, None),
    "softsign": (lambda x: x / (1 + np.abs(x)), None),
    "mish": (lambda x: x * np.tanh(softplus(x)), None),
    "hard_swish": (lambda x: x * np.clip(x / 6 + 0.5, 0, 1), None),
    "sign": (np.sign, None),
}


def _domain(kind: str | None, dtype: str) -> np.ndarray:
    x = randn(3, 4, dtype="float64") * 3
    if kind == "positive":
        x = np.abs(x) + 0.1
    elif kind == "unit":
        x = np.tanh(x) * 0.99
    elif kind == "above1":
        x = np.abs(x) + 1
    return x.astype(dtype)


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_float32(op):
    fn, kind = UNARY[op]
    x = _domain(kind, "float32")
    check_op(op, [x], expected=[fn(x)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["exp", "sigmoid", "erf", "tanh", "softplus"])
@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_unary_other_floats(op, dtype):
    fn, kind = UNARY[op]
    x = _domain(kind, dtype)
    tol = 2e-3 if dtype == "float16" else 1e-12
    check_op(op, [x], expected=[fn(x).astype(dtype)], rtol=tol, atol=tol)


@pytest.mark.xfail(
    strict=True,
    reason="known regression: the generic CPU schedule inlines softplus's log1p((1+u)-1 trick) "
    "and TIR's simplifier folds (1+u)-1 to u, so tails lose relative accuracy (~6% at x=-16)",
)
def test_softplus_mish_tails_are_accurate():
    # log1p-quality tails: exp(x) for very negative x, x for large x
    x = np.concatenate([np.linspace(-40, 40, 81), [-80, 80, 0]]).astype("float32")
    check_op("softplus", [x], expected=[softplus(x)], rtol=1e-6, atol=1e-30)
    check_op("mish", [x], expected=[x * np.tanh(softplus(x))], rtol=1e-6, atol=1e-30)


def test_round_half_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.4, 2.6, -3.7], "float32")
    check_op("round", [x], expected=[np.array([0, 2, 2, 0, -2, -2, 0, 3, -4], "float32")])


def test_sign_keeps_nan_and_handles_ints():
    x = np.array([-2.5, 0.0, 3.0, np.nan], "float32")
    (r,) = check_op("sign", [x])
    np.testing.assert_array_equal(r, [-1, 0, 1, np.nan])
    check_op("sign", [np.array([-5, 0, 7], "int32")], expected=[np.array([-1, 0, 1])])
    check_op("sign", [np.array([0, 7], "uint8")], expected=[np.array([0, 1])])


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64"])
def test_integer_unary(dtype):
    x = np.array([-7, -1, 0, 3, 100], dtype)
    check_op("neg", [x], expected=[-x])
    check_op("abs", [x], expected=[np.abs(x)])
    check_op("relu", [x], expected=[np.maximum(x, 0)])
    check_op("bitwise_not", [x], expected=[~x])


def test_abs_unsigned_and_bool_ops():
    check_op("abs", [np.array([0, 200], "uint8")], expected=[np.array([0, 200], "uint8")])
    b = np.array([[True, False], [False, True]])
    check_op("logical_not", [b], expected=[~b])


def test_isnan_isinf():
    x = np.array([1.0, np.inf, -np.inf, np.nan, 0.0], "float32")
    (r,) = check_op("isnan", [x], expected=[np.isnan(x)])
    assert r.dtype == np.bool_
    check_op("isinf", [x], expected=[np.isinf(x)])
    check_op("isinf", [x], {"detect_negative": False}, expected=[x == np.inf])
    check_op("isinf", [x], {"detect_positive": False}, expected=[x == -np.inf])
    check_op("isinf", [x], {"detect_positive": False, "detect_negative": False},
             expected=[np.zeros(5, bool)])  # fmt: skip


def test_parameterized_activations():
    x = randn(4, 5) * 3
    neg = x < 0
    check_op("leaky_relu", [x], {"alpha": 0.1}, expected=[np.where(neg, 0.1 * x, x)])
    check_op("elu", [x], {"alpha": 0.5}, expected=[np.where(neg, 0.5 * (np.exp(x) - 1), x)])
    a, g = 1.6732632, 1.0507010
    selu = g * np.where(x <= 0, a * (np.exp(x) - 1), x)
    check_op("selu", [x], expected=[selu])
    celu = np.maximum(x, 0) + np.minimum(0, 2.0 * (np.exp(x / 2.0) - 1))
    check_op("celu", [x], {"alpha": 2.0}, expected=[celu])
    hs = np.clip(0.3 * x + 0.4, 0, 1)
    check_op("hard_sigmoid", [x], {"alpha": 0.3, "beta": 0.4}, expected=[hs])
    check_op("thresholded_relu", [x], {"alpha": 0.5}, expected=[np.where(x > 0.5, x, 0)])
    shrink = np.where(x < -1.0, x + 0.2, np.where(x > 1.0, x - 0.2, 0))
    check_op("shrink", [x], {"bias": 0.2, "lambd": 1.0}, expected=[shrink])


def test_gelu_both_forms():
    x = randn(3, 7) * 3
    exact = 0.5 * x * (1 + erf(x / np.sqrt(2)))
    check_op("gelu", [x], expected=[exact])
    c = np.sqrt(2 / np.pi)
    tanh_form = 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x**3)))
    check_op("gelu", [x], {"approximate": "tanh"}, expected=[tanh_form])


def test_clip_bounds_order_and_ints():
    x = randn(10) * 3
    check_op("clip", [x], {"min": -1.0, "max": 0.5}, expected=[np.clip(x, -1, 0.5)])
    check_op("clip", [x], {"min": 0.0}, expected=[np.maximum(x, 0)])
    check_op("clip", [x], {"max": 0.0}, expected=[np.minimum(x, 0)])
    # min > max: every element becomes max (min applied first, as ONNX says)
    check_op("clip", [x], {"min": 2.0, "max": 1.0}, expected=[np.full(10, 1.0)])
    xi = np.array([-128, -5, 0, 5, 127], "int8")
    check_op("clip", [xi], {"min": -3, "max": 1000}, expected=[np.clip(xi, -3, 127)])
    (r,) = check_op("clip", [xi], {"min": None, "max": None}, expected=[xi])
    assert r.dtype == np.int8


# -- binary ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op,fn",
    [("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide),
     ("pow", np.power), ("maximum", np.maximum), ("minimum", np.minimum)],
)  # fmt: skip
def test_binary_float_broadcast(op, fn):
    a = np.abs(randn(2, 3, 4)) + 0.5
    b = randn(3, 1)
    check_op(op, [a, b], expected=[fn(a, b)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "int64", "uint64"])
def test_integer_arithmetic_wraps_like_c(dtype):
    info = np.iinfo(dtype)
    a = np.array([info.max, info.min, 7, 100, 3], dtype)
    b = np.array([1, 1, 2, 3, 5], dtype)
    with np.errstate(over="ignore"):
        check_op("add", [a, b], expected=[a + b])
        check_op("sub", [a, b], expected=[a - b])
        check_op("mul", [a, b], expected=[a * b])


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64"])
def test_integer_div_truncates_and_mod_follows_divisor(dtype):
    a = np.array([-7, 7, -7, 7, 9, -9, 0], dtype)
    b = np.array([2, 2, -2, -2, 3, 4, -5], dtype)
    check_op("div", [a, b], expected=[np.array([-3, 3, 3, -3, 3, -2, 0])])
    check_op("mod", [a, b], expected=[np.mod(a, b)])  # [1 1 -1 -1 0 3 0]
    check_op("mod", [a, b], {"fmod": True}, expected=[np.fmod(a, b)])


def test_unsigned_div_mod():
    a = np.array([250, 7, 0, 255], "uint8")
    b = np.array([7, 250, 3, 16], "uint8")
    check_op("div", [a, b], expected=[a // b])
    check_op("mod", [a, b], expected=[a % b])


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_float_mod_edge_cases(dtype):
    a = np.array([0.0, -0.0, -3.0, 3.0, -1.0, 1.0, 5.5, -5.5, 7, np.inf, 1], dtype)
    b = np.array([-2.0, 2.0, np.inf, np.inf, -np.inf, -np.inf, 2, 2, -3, 2, 0], dtype)
    with np.errstate(all="ignore"):
        expected = np.mod(a, b)
    (r,) = check_op("mod", [a, b], expected=[expected])
    np.testing.assert_array_equal(np.signbit(r[:2]), [True, False])
    check_op("mod", [a[2:9], b[2:9]], {"fmod": True}, expected=[np.fmod(a[2:9], b[2:9])])


def test_integer_pow_wraps_and_truncates_negative_exponents():
    a = np.array([2, -3, 5, 1, -1, -1, 0, 7, 3], "int32")
    b = np.array([10, 3, -1, -5, -5, 4, 0, 2, 40], "int32")
    with np.errstate(over="ignore"):
        wrapped = np.int32(3) ** np.int32(40)  # numpy wraps like C
    expected = np.array([1024, -27, 0, 1, -1, 1, 1, 49, wrapped], "int32")
    check_op("pow", [a, b], expected=[expected])
    # a constant exponent lowers with only as many squarings as it has bits
    check_op("pow", [a, np.array(3, "int32")], const_inputs=[1], expected=[a.astype("int64") ** 3])
    u = np.array([2, 3, 5], "uint8")
    check_op("pow", [u, np.array([7, 3, 2], "uint8")], expected=[np.array([128, 27, 25])])


@pytest.mark.parametrize("dtype", ["int8", "uint16", "int32", "uint64"])
def test_bit_shift_out_of_range_amounts(dtype):
    signed = np.dtype(dtype).kind == "i"
    bits = np.dtype(dtype).itemsize * 8
    a = np.array([1, 3, 100, 5, -8 if signed else 8, 1], dtype)
    b = np.array([0, 2, 3, bits, 1, bits - 1], dtype)
    if signed:
        a = np.append(a, np.array([-8, 5], dtype))
        b = np.append(b, np.array([-1, bits + 3], dtype))
    left, right = [], []
    for x, s in zip(a.tolist(), b.tolist()):
        ok = 0 <= s < bits
        left.append(((x << s) & ((1 << bits) - 1)) if ok else 0)
        right.append((x >> s) if ok else (-1 if x < 0 else 0))
    as_dtype = np.array(left, "uint64").astype(dtype) if not signed else None
    if signed:
        as_dtype = np.array([v - (1 << bits) if v >= 1 << (bits - 1) else v for v in left])
    check_op("bit_shift", [a, b], {"direction": "left"}, expected=[as_dtype.astype(dtype)])
    check_op("bit_shift", [a, b], {"direction": "right"}, expected=[np.array(right, dtype)])


@pytest.mark.parametrize("op", ["bitwise_and", "bitwise_or", "bitwise_xor"])
def test_bitwise(op):
    a = np.array([[0b1100, -1, 5]], "int16")
    b = np.array([[0b1010], [3]], "int16")
    fn = {"bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or}.get(op, np.bitwise_xor)
    check_op(op, [a, b], expected=[fn(a, b)])


@pytest.mark.parametrize(
    "op,fn",
    [("equal", np.equal), ("less", np.less), ("less_equal", np.less_equal),
     ("greater", np.greater), ("greater_equal", np.greater_equal)],
)  # fmt: skip
@pytest.mark.parametrize("dtype", ["float32", "int64", "uint8"])
def test_comparisons_give_bool(op, fn, dtype):
    a = np.array([[1, 2, 3], [4, 5, 6]], dtype)
    b = np.array([3, 2, 1], dtype)
    (r,) = check_op(op, [a, b], expected=[fn(a, b)])
    assert r.dtype == np.bool_


def test_logical_ops():
    a = np.array([[True, False, True, False]])
    b = np.array([[True], [False]])
    check_op("logical_and", [a, b], expected=[a & b])
    check_op("logical_or", [a, b], expected=[a | b])
    check_op("logical_xor", [a, b], expected=[a ^ b])
    check_op("equal", [a, b], expected=[a == b])


def test_prelu_one_way_broadcast():
    x = randn(2, 3, 4)
    slope = np.array([[0.1], [0.2], [0.3]], "float32")
    check_op("prelu", [x, slope], expected=[np.where(x < 0, x * slope, x)])
    with pytest.raises(IRTypeError):
        get_op("prelu").infer_types(
            [TensorType("float32", (3,)), TensorType("float32", (2, 3))], {}
        )


def test_where_broadcasts_three_ways():
    cond = np.array([[True], [False]])
    a = randn(1, 3)
    b = randn(2, 1)
    check_op("where", [cond, a, b], expected=[np.where(cond, a, b)])
    ai, bi = np.array([1, 2], "int64"), np.array([[5], [6], [7]], "int64")
    check_op("where", [np.array([True, False]), ai, bi], expected=[np.where([True, False], ai, bi)])


@pytest.mark.parametrize(
    "src,dst",
    [("float32", "int32"), ("float32", "bool"), ("bool", "float32"), ("int64", "float16"),
     ("float64", "uint8"), ("int32", "int8"), ("uint8", "int64"), ("float16", "float32")],
)  # fmt: skip
def test_cast(src, dst):
    x = np.array([0.0, -0.0, 1.0, 2.7, -2.7, 100.2, 0.5], "float64")
    if np.dtype(dst).kind == "u" or np.dtype(src).kind == "u":
        x = np.abs(x)
    if src == "int32" and dst == "int8":
        x = np.array([0, 127, 128, -129, 300, -1])
    x = x.astype(src)
    (r,) = check_op("cast", [x], {"to": dst}, expected=[x.astype(dst)])
    assert r.dtype == np.dtype(dst)


def test_binary_type_errors():
    f, i = TensorType("float32", (2,)), TensorType("int32", (2,))
    with pytest.raises(IRTypeError, match="dtypes differ"):
        get_op("add").infer_types([f, i], {})
    with pytest.raises(IRTypeError):
        get_op("bitwise_and").infer_types([f, f], {})
    with pytest.raises(IRTypeError):
        get_op("logical_and").infer_types([i, i], {})
    b = TensorType("bool", (2,))
    with pytest.raises(IRTypeError, match="condition"):
        get_op("where").infer_types([i, f, f], {})
    assert get_op("where").infer_types([b, f, f], {}) == [f]


def test_symbolic_dims_pass_through():
    g = Graph()
    x = g.add_input("x", TensorType("float32", ("n", 3)))
    y = g.add_input("y", TensorType("float32", (1, 3)))
    (s,) = get_op("add").infer_types([x.type, y.type], {})
    assert s.shape == ("n", 3)
    (c,) = get_op("less").infer_types([x.type, y.type], {})
    assert c == TensorType("bool", ("n", 3))


# -- bitcast ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("float32", "int32"),
        ("int32", "float32"),
        ("float64", "uint64"),
        ("uint16", "int16"),
        ("float16", "uint16"),
        ("int8", "uint8"),
    ],
)
def test_bitcast_reinterprets_bits(src, dst):
    x = (rng.standard_normal((3, 4)) * 1000).astype(src)
    (out,) = check_op("bitcast", [x], {"to": dst}, expected=[x.view(dst)], rtol=0, atol=0)
    np.testing.assert_array_equal(out.view(src), x)  # the bits round-trip


def test_bitcast_bool_is_bytes_and_widths_must_match():
    x = np.array([True, False, True])
    check_op("bitcast", [x], {"to": "uint8"}, expected=[np.array([1, 0, 1], "uint8")], atol=0)
    with pytest.raises(IRTypeError, match="bit widths differ"):
        get_op("bitcast").infer_types([TensorType("float32", (2,))], {"to": "int64"})


# -- casts to and from the narrow dtypes (ml_dtypes' and ONNX's semantics) ---------------

NARROW_FLOATS = ["float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"]
NARROW = [*NARROW_FLOATS, "float4_e2m1fn", "int4", "uint4", "int2", "uint2", "float8_e8m0fnu"]


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")


def _cast_both(x: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """The cast's reference and TVM results for x."""
    g = single_op_graph("cast", [x], attrs)
    feeds = {g.inputs[0].name: x}
    (ref,) = run_graph(g, feeds).values()
    (got,) = run_tvm(g, feeds)
    assert ref.dtype == got.dtype == dtype(attrs["to"]).np and ref.shape == got.shape
    return ref, got


def _hard_floats() -> np.ndarray:
    """Every float16 value (so every rounding boundary of the 8-bit formats, ties included),
    wide float32 values, and the specials."""
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    wide = rng.standard_normal(4000).astype(np.float32) * np.float32(2.0) ** rng.integers(
        -30, 30, 4000
    ).astype(np.float32)
    special = np.array([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0, 1e38, -3e38, 1e-45])
    return np.concatenate([halves, wide, special.astype(np.float32)])


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("to", [*NARROW_FLOATS, "float4_e2m1fn"])
def test_cast_float32_to_narrow_floats_rounds_and_saturates_like_onnx(to, saturate):
    x = _hard_floats()
    ref, got = _cast_both(x, {"to": to, "saturate": saturate})
    np.testing.assert_array_equal(_bits(got), _bits(ref))
    # the reference is ml_dtypes' rounding (non-saturating for float8), with ONNX's
    # saturation on top: clip to the finite range first
    d = dtype(to).np
    top = float(ml_dtypes.finfo(d).max)
    with np.errstate(invalid="ignore"):
        expect = (np.clip(x, -top, top) if saturate else x).astype(d)
    np.testing.assert_array_equal(_bits(ref), _bits(expect))
    big = np.abs(x) > 2 * top
    if saturate or to == "float4_e2m1fn":
        assert np.all(np.abs(ref[big].astype(np.float32)) == top)
    else:
        assert not np.any(np.isfinite(ref[big].astype(np.float32)))


@pytest.mark.parametrize("src", ["float16", "float64", "bfloat16"])
@pytest.mark.parametrize("to", ["float8_e4m3fn", "float8_e5m2", "float4_e2m1fn"])
def test_cast_other_floats_to_narrow_floats(src, to):
    with np.errstate(over="ignore", invalid="ignore"):
        x = _hard_floats()[::7].astype(dtype(src).np)
    ref, got = _cast_both(x, {"to": to})
    np.testing.assert_array_equal(_bits(got), _bits(ref))


@pytest.mark.parametrize("src", NARROW)
@pytest.mark.parametrize("to", ["float32", "float16", "bfloat16", "int8", "int32", "bool"])
def test_cast_every_narrow_code_out_matches_ml_dtypes(src, to):
    d = dtype(src)
    codes = np.arange(1 << d.bits, dtype=np.uint8).view(d.np)
    ref, got = _cast_both(codes, {"to": to})
    np.testing.assert_array_equal(_bits(got), _bits(ref))
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(_bits(ref), _bits(codes.astype(dtype(to).np)))


@pytest.mark.parametrize("to", ["int4", "uint4", "int2", "uint2"])
def test_cast_to_narrow_ints(to):
    # floats truncate, and out of range gives 0; ints wrap around (ml_dtypes)
    f = np.concatenate([np.arange(-20, 20, 0.25), [np.nan, np.inf, -np.inf]]).astype("float32")
    ref, got = _cast_both(f, {"to": to})
    np.testing.assert_array_equal(_bits(got), _bits(ref))
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(_bits(ref), _bits(f.astype(dtype(to).np)))
    i = np.arange(-40, 40, dtype="int32")
    ref, got = _cast_both(i, {"to": to})
    np.testing.assert_array_equal(_bits(got), _bits(ref))
    assert ref.astype(np.int32).tolist() == i.astype(dtype(to).np).astype(np.int32).tolist()


@pytest.mark.parametrize("mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [True, False])
def test_cast_to_e8m0_exponent_rounding(mode, saturate):
    x = np.array([1.0, 1.5, 1.25, 1.75, 3.0, 0.7, 2.0**-127, 2.0**-130, 0.0, -4.0, 3.3e38]
                 + [2.0**127 * 1.5, np.inf, np.nan], "float32")  # fmt: skip
    ref, got = _cast_both(x, {"to": "float8_e8m0fnu", "saturate": saturate, "round_mode": mode})
    np.testing.assert_array_equal(_bits(got), _bits(ref))
    codes = _bits(ref)
    assert codes[0] == 127 and codes[-1] == codes[-2] == 0xFF and codes[9] == 129  # |-4| = 2^2
    up = {"up": 128, "down": 127, "nearest": 128}[mode]
    assert codes[1] == up and codes[2] == (128 if mode == "up" else 127)
    assert codes[11] == (0xFE if saturate or mode == "down" else 0xFF)


@pytest.mark.parametrize("to", NARROW)
def test_narrow_round_trip_is_exact(to):
    # every code -> float32 -> the same code (NaNs to a NaN)
    d = dtype(to)
    codes = np.arange(1 << d.bits, dtype=np.uint8).view(d.np)
    wide = codes.astype(np.float32)
    back, got = _cast_both(wide, {"to": to})
    np.testing.assert_array_equal(_bits(got), _bits(back))
    keep = np.isfinite(wide)  # inf saturates (the default) to the largest finite value
    if to == "float8_e8m0fnu":
        keep[0] = False  # 2^-127 is a float32 subnormal: ONNX's "up" rounds it to 2^-126
    np.testing.assert_array_equal(back[keep].astype(np.float32), wide[keep])


def test_ops_on_narrow_floats_compute_in_float32():
    a = rng.standard_normal((3, 4)).astype(ml_dtypes.float8_e4m3fn)
    b = rng.standard_normal((3, 4)).astype(ml_dtypes.float8_e4m3fn)
    g = single_op_graph("add", [a, b])
    feeds = {g.inputs[0].name: a, g.inputs[1].name: b}
    (ref,) = run_graph(g, feeds).values()
    (got,) = run_tvm(g, feeds)
    expect = (a.astype(np.float32) + b.astype(np.float32)).astype(ml_dtypes.float8_e4m3fn)
    np.testing.assert_array_equal(_bits(got), _bits(expect))
    np.testing.assert_array_equal(_bits(ref), _bits(expect))
