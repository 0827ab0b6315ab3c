"""Tensor types of the nnxc IR: a dtype and a shape whose entries are ints or named dims.

Element types are ``DType`` objects: interned ``str`` subclasses named as numpy names the type
(``"float32"``, ``"bfloat16"``, ``"float8_e4m3fn"``, ``"int4"``), so a dtype compares equal to
its name and every place that handles dtypes as strings keeps working, while ``.bits``,
``.is_float``, ``.np``, ``.tvm`` say what the type is. Look one up with ``dtype(x)`` (a name,
an alias such as ``"float8e4m3fn"``, or a numpy dtype).

The types numpy lacks (bfloat16, the float8 variants, float4_e2m1fn, int4/uint4, int2/uint2,
float8_e8m0fnu) are ml_dtypes' types. In the IR a value of a sub-byte type holds **one element
per numpy item** (an ml_dtypes array, one byte per element, as ``onnx.numpy_helper.to_array``
returns it); the packing of two 4-bit or four 2-bit elements per byte is a file format's
business and stays in its loader. References compute on these arrays through ml_dtypes (numpy
casts and ufuncs).

Backends that cannot compute with a type store it in ``DType.storage``, an integer type of the
same width (uint8 for one byte holding the element's bit pattern), and convert explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

Dim = int | str
"""One shape entry: a known size, or the name of a symbolic dimension (``"batch"``)."""


class IRTypeError(ValueError):
    """A value has a type that an op or the verifier cannot accept."""


_KIND_CLASSES = ("float", "int", "uint", "bool")


class DType(str):
    """One element type; equal (and hashing equal) to its name. Build them only via
    ``dtype()``: each name has exactly one object."""

    bits: int
    """Width of one element in bits (bool: 8, as numpy stores it)."""
    kind: str
    """``"float"``, ``"int"`` (signed), ``"uint"`` or ``"bool"``."""
    np: np.dtype
    """The numpy dtype of arrays of this type (an ml_dtypes type for the narrow ones)."""
    tvm: str | None
    """TVM's name of the type when TVM's LLVM backend computes with it, else None."""
    storage: str
    """The TVM dtype that holds it: ``tvm`` itself, or an unsigned int of the same byte width
    holding the bit pattern (uint8 for float8, 4-bit and 2-bit types)."""

    def __new__(cls, name: str, bits: int, kind: str, np_type: Any, tvm: str | None) -> DType:
        self = super().__new__(cls, name)
        self.bits = bits
        self.kind = kind
        self.np = np.dtype(np_type)
        self.tvm = tvm
        self.storage = tvm or f"uint{8 * self.np.itemsize}"
        return self

    @property
    def name(self) -> str:
        return str.__str__(self)

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        """Any integer type, signed or not (not bool)."""
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        """Holds negative numbers: signed ints and floats (except the unsigned float8_e8m0fnu)."""
        return self.kind == "int" or (self.kind == "float" and self.name != "float8_e8m0fnu")

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"

    @property
    def is_native(self) -> bool:
        """TVM computes with it directly (no storage container)."""
        return self.tvm is not None

    def __repr__(self) -> str:
        return f"DType({self.name!r})"

    def __reduce__(self) -> tuple:
        return (dtype, (self.name,))


def _table() -> dict[str, DType]:
    m = ml_dtypes
    rows: list[tuple[str, int, str, Any, str | None]] = [
        ("bool", 8, "bool", np.bool_, "bool"),
        ("int8", 8, "int", np.int8, "int8"),
        ("int16", 16, "int", np.int16, "int16"),
        ("int32", 32, "int", np.int32, "int32"),
        ("int64", 64, "int", np.int64, "int64"),
        ("uint8", 8, "uint", np.uint8, "uint8"),
        ("uint16", 16, "uint", np.uint16, "uint16"),
        ("uint32", 32, "uint", np.uint32, "uint32"),
        ("uint64", 64, "uint", np.uint64, "uint64"),
        ("float16", 16, "float", np.float16, "float16"),
        ("float32", 32, "float", np.float32, "float32"),
        ("float64", 64, "float", np.float64, "float64"),
        # TVM 0.27's LLVM backend computes with bfloat16 (probed: casts and arithmetic round
        # to nearest even); its float8/float4 casts are wrong (NaN and overflow give garbage,
        # float4 and 4-bit ints crash codegen), so those live in uint8 containers.
        ("bfloat16", 16, "float", m.bfloat16, "bfloat16"),
        ("float8_e4m3fn", 8, "float", m.float8_e4m3fn, None),
        ("float8_e4m3fnuz", 8, "float", m.float8_e4m3fnuz, None),
        ("float8_e5m2", 8, "float", m.float8_e5m2, None),
        ("float8_e5m2fnuz", 8, "float", m.float8_e5m2fnuz, None),
        ("float8_e8m0fnu", 8, "float", m.float8_e8m0fnu, None),
        ("float4_e2m1fn", 4, "float", m.float4_e2m1fn, None),
        ("int4", 4, "int", m.int4, None),
        ("uint4", 4, "uint", m.uint4, None),
        ("int2", 2, "int", m.int2, None),
        ("uint2", 2, "uint", m.uint2, None),
    ]
    return {r[0]: DType(*r) for r in rows}


_BY_NAME = _table()
_ALIASES = {
    "float8e4m3fn": "float8_e4m3fn",
    "float8e4m3fnuz": "float8_e4m3fnuz",
    "float8e5m2": "float8_e5m2",
    "float8e5m2fnuz": "float8_e5m2fnuz",
    "float8e8m0": "float8_e8m0fnu",
    "float8_e8m0": "float8_e8m0fnu",
    "float4e2m1": "float4_e2m1fn",
    "float4_e2m1": "float4_e2m1fn",
}

DTYPES: tuple[DType, ...] = tuple(_BY_NAME.values())
"""The element types the IR knows; names are numpy's (ml_dtypes' for the narrow ones)."""

FLOAT_DTYPES = frozenset(d for d in DTYPES if d.is_float)
INT_DTYPES = frozenset(d for d in DTYPES if d.is_int)


def dtype(x: str | np.dtype | type) -> DType:
    """The DType of a name (or alias), a numpy dtype or a numpy scalar type."""
    if isinstance(x, DType):
        return x
    if isinstance(x, str):
        found = _BY_NAME.get(_ALIASES.get(x, x))
        if found is None:
            raise IRTypeError(f"unknown dtype {x!r}; known: {', '.join(DTYPES)}")
        return found
    try:
        name = np.dtype(x).name
    except TypeError:
        raise IRTypeError(f"{x!r} is not a dtype") from None
    found = _BY_NAME.get(name)
    if found is None:
        raise IRTypeError(f"numpy dtype {name} has no IR dtype; known: {', '.join(DTYPES)}")
    return found


def check_dtype(name: str) -> DType:
    """The DType of an exact IR name (aliases refused: the IR spells each type one way)."""
    found = _BY_NAME.get(name) if isinstance(name, str) else None
    if found is None:
        raise IRTypeError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}")
    return found


@dataclass(frozen=True, slots=True)
class TensorType:
    """The static type of a value; rank is always known, sizes may be symbolic."""

    dtype: DType
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        shape = tuple(self.shape)
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, int | str):
                raise IRTypeError(f"shape entry {d!r} must be an int or a dim name")
            if isinstance(d, int) and d < 0:
                raise IRTypeError(f"negative dimension {d} in shape {shape}")
            if isinstance(d, str) and not d.isidentifier():
                raise IRTypeError(f"dimension name {d!r} is not an identifier")
        object.__setattr__(self, "shape", shape)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def size(self) -> int | None:
        """Number of elements, or None when a dimension is symbolic."""
        if not self.is_static:
            return None
        return math.prod(self.shape)  # Python ints: numpy's int64 product wraps around

    @property
    def np_dtype(self) -> np.dtype:
        return self.dtype.np

    def with_shape(self, shape: tuple[Dim, ...] | list[Dim]) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

    @staticmethod
    def of(array: np.ndarray) -> TensorType:
        return TensorType(dtype_name(array.dtype), tuple(int(d) for d in array.shape))


def dtype_name(x: np.dtype | type | str) -> DType:
    """The IR dtype of a numpy dtype, refusing those the IR does not know."""
    return dtype(np.dtype(x) if not isinstance(x, str) else x)


def to_storage(array: np.ndarray, name: str) -> np.ndarray:
    """A C-contiguous array as a backend holds IR dtype ``name`` (a uint view of the bits for
    the types without native support)."""
    d = dtype(name)
    array = np.require(np.asarray(array), requirements="C")
    return array if d.is_native else array.view(np.dtype(d.storage))


def from_storage(array: np.ndarray, name: str) -> np.ndarray:
    """The inverse of ``to_storage``: a backend's result seen as IR dtype ``name``."""
    d = dtype(name)
    return array if d.is_native or array.dtype == d.np else array.view(d.np)


@dataclass(frozen=True, slots=True)
class SequenceType:
    """An ONNX-style sequence whose length and element types are known at compile time.

    Elements may differ in shape (a split into unequal parts); ``dtype`` is the element type
    shared by all of them, kept so that an empty sequence is still typed. Sequences whose
    length depends on run-time data have no IR type: frontends refuse them clearly.
    """

    dtype: str
    elements: tuple[TensorType, ...]

    def __post_init__(self) -> None:
        check_dtype(self.dtype)
        elements = tuple(self.elements)
        for t in elements:
            if not isinstance(t, TensorType):
                raise IRTypeError(f"sequence element {t!r} is not a tensor type")
            if t.dtype != self.dtype:
                raise IRTypeError(f"sequence of {self.dtype} holds a {t.dtype} element")
        object.__setattr__(self, "elements", elements)

    def __len__(self) -> int:
        return len(self.elements)

    def __str__(self) -> str:
        return f"seq<{self.dtype}; {', '.join(map(str, self.elements))}>"


@dataclass(frozen=True, slots=True)
class OptionalType:
    """An ONNX optional whose presence is known at compile time: ``element`` is the type it
    holds, or None for an empty optional (``of`` then says what it would hold)."""

    of: TensorType | SequenceType
    present: bool

    def __post_init__(self) -> None:
        if not isinstance(self.of, TensorType | SequenceType):
            raise IRTypeError(f"an optional holds a tensor or a sequence, not {self.of!r}")

    @property
    def element(self) -> TensorType | SequenceType | None:
        return self.of if self.present else None

    def __str__(self) -> str:
        return f"opt<{self.of}{'' if self.present else ', empty'}>"


Type = TensorType | SequenceType | OptionalType
"""The type of any IR value. Tensors are what ops compute with; sequences and optionals only
flow between the ops made for them (and through control flow)."""
