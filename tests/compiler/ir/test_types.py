"""DType: one interned object per IR element type, its facts, and the lookups."""

import pickle

import ml_dtypes
import numpy as np
import pytest

from compiler.ir.types import (
    DTYPES,
    DType,
    IRTypeError,
    TensorType,
    check_dtype,
    dtype,
    dtype_name,
    from_storage,
    to_storage,
)

FACTS = [
    # name, bits, kind, numpy type, TVM computes with it
    ("bool", 8, "bool", np.bool_, True),
    ("int8", 8, "int", np.int8, True),
    ("uint64", 64, "uint", np.uint64, True),
    ("float16", 16, "float", np.float16, True),
    ("float64", 64, "float", np.float64, True),
    ("bfloat16", 16, "float", ml_dtypes.bfloat16, True),
    ("float8_e4m3fn", 8, "float", ml_dtypes.float8_e4m3fn, False),
    ("float8_e4m3fnuz", 8, "float", ml_dtypes.float8_e4m3fnuz, False),
    ("float8_e5m2", 8, "float", ml_dtypes.float8_e5m2, False),
    ("float8_e5m2fnuz", 8, "float", ml_dtypes.float8_e5m2fnuz, False),
    ("float8_e8m0fnu", 8, "float", ml_dtypes.float8_e8m0fnu, False),
    ("float4_e2m1fn", 4, "float", ml_dtypes.float4_e2m1fn, False),
    ("int4", 4, "int", ml_dtypes.int4, False),
    ("uint4", 4, "uint", ml_dtypes.uint4, False),
    ("int2", 2, "int", ml_dtypes.int2, False),
    ("uint2", 2, "uint", ml_dtypes.uint2, False),
]


@pytest.mark.parametrize("name,bits,kind,np_type,native", FACTS)
def test_facts(name, bits, kind, np_type, native):
    d = dtype(name)
    assert isinstance(d, DType) and d == name and hash(d) == hash(name)
    assert d.bits == bits and d.kind == kind and d.np == np.dtype(np_type)
    assert d.is_float == (kind == "float") and d.is_bool == (kind == "bool")
    assert d.is_int == (kind in ("int", "uint"))
    assert d.is_native == native and (d.tvm == name) == native
    # what holds it in TVM: itself, or an unsigned int as wide as numpy's item
    assert d.storage == (name if native else f"uint{8 * d.np.itemsize}")
    assert d in DTYPES


def test_signedness():
    assert dtype("int4").is_signed and dtype("float8_e5m2").is_signed
    assert not dtype("uint2").is_signed and not dtype("bool").is_signed
    assert not dtype("float8_e8m0fnu").is_signed  # exponent only, no sign bit


def test_one_object_per_name_and_pickle_keeps_it():
    d = dtype("float8_e4m3fn")
    assert dtype(d) is d and dtype(np.dtype(ml_dtypes.float8_e4m3fn)) is d
    assert dtype(ml_dtypes.float8_e4m3fn) is d and check_dtype("float8_e4m3fn") is d
    assert pickle.loads(pickle.dumps(d)) is d
    assert dtype(np.float32) is dtype("float32") is dtype_name(np.dtype("float32"))


def test_aliases_only_through_dtype():
    assert dtype("float8e4m3fn") == "float8_e4m3fn"
    assert dtype("float4e2m1") == "float4_e2m1fn" and dtype("float8e8m0") == "float8_e8m0fnu"
    with pytest.raises(IRTypeError, match="unknown dtype 'float8e4m3fn'"):
        check_dtype("float8e4m3fn")  # the IR spells each type one way


def test_unknown_dtypes_are_refused():
    with pytest.raises(IRTypeError, match="unknown dtype 'float128'"):
        dtype("float128")
    with pytest.raises(IRTypeError, match="numpy dtype complex64 has no IR dtype"):
        dtype(np.complex64)
    with pytest.raises(IRTypeError, match="has no IR dtype"):
        dtype_name(np.dtype(object))  # string tensors
    with pytest.raises(IRTypeError, match="unknown dtype"):
        TensorType("str", (1,))


def test_tensor_type_holds_the_dtype_object():
    t = TensorType("bfloat16", (2, 3))
    assert t.dtype is dtype("bfloat16") and t.np_dtype == np.dtype(ml_dtypes.bfloat16)
    a = np.zeros((4,), ml_dtypes.int4)
    assert TensorType.of(a) == TensorType("int4", (4,))
    assert str(TensorType("float8_e5m2", (1,))) == "float8_e5m2[1]"


def test_storage_views_are_the_bit_patterns():
    x = np.array([-3, 7, -8], ml_dtypes.int4)
    s = to_storage(x, "int4")
    assert s.dtype == np.uint8 and s.tolist() == [13, 7, 8]  # low nibble, not sign-extended
    assert from_storage(s, "int4").tolist() == x.tolist()
    f = np.array([1.5, -2.0], ml_dtypes.float8_e4m3fn)
    assert to_storage(f, "float8_e4m3fn").tolist() == [0x3C, 0xC0]
    b = np.array([1.5], ml_dtypes.bfloat16)
    assert to_storage(b, "bfloat16") is b or to_storage(b, "bfloat16").dtype == b.dtype


def test_size_does_not_wrap_around() -> None:
    # numpy's int64 product of these dims is 0: folding took such a tensor for an empty one.
    assert TensorType("float32", (1 << 40, 1 << 40)).size == 1 << 80
    assert TensorType("float32", ()).size == 1
    assert TensorType("float32", ("n", 2)).size is None
