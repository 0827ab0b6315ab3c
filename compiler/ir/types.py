"""Tensor types of the nnxc IR: a dtype and a shape whose entries are ints or named dims."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Dim = int | str
"""One shape entry: a known size, or the name of a symbolic dimension (``"batch"``)."""

DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)
"""The element types the IR knows; names are numpy's."""

FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
INT_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})


class IRTypeError(ValueError):
    """A value has a type that an op or the verifier cannot accept."""


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise IRTypeError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return dtype


@dataclass(frozen=True, slots=True)
class TensorType:
    """The static type of a value; rank is always known, sizes may be symbolic."""

    dtype: str
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        check_dtype(self.dtype)
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
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def with_shape(self, shape: tuple[Dim, ...] | list[Dim]) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

    @staticmethod
    def of(array: np.ndarray) -> TensorType:
        return TensorType(dtype_name(array.dtype), tuple(int(d) for d in array.shape))


def dtype_name(dtype: np.dtype | type | str) -> str:
    """The IR name of a numpy dtype, refusing those the IR does not know."""
    name = np.dtype(dtype).name
    return check_dtype(name)


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
