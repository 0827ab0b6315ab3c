"""Sequences and optionals: values whose structure is known at compile time.

A ``SequenceType`` knows its length and each element's type, an ``OptionalType`` whether it
holds a value, so every op here is a static rearrangement: positions are attributes, not
tensors, and backends lower sequences to tuples. Inserting, erasing and the like need no op
of their own: a frontend reads the elements (``sequence_at``) and builds a new ``sequence``.
References work on Python lists (a sequence) and None (an empty optional).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..types import IRTypeError, OptionalType, SequenceType, TensorType, Type
from .registry import Attr, define


def _seq(t: Type | None, what: str = "the input") -> SequenceType:
    if not isinstance(t, SequenceType):
        raise IRTypeError(f"{what} must be a sequence, got {t}")
    return t


def _tensor(t: Type | None, what: str) -> TensorType:
    if not isinstance(t, TensorType):
        raise IRTypeError(f"{what} must be a tensor, got {t}")
    return t


def position_in(position: int | None, length: int, *, inserting: bool) -> int:
    """A non-negative position (None: the end); ``inserting`` allows ``length`` itself."""
    end = length if inserting else length - 1
    if position is None:
        return end
    p = position + length if position < 0 else position
    if not 0 <= p <= end:
        raise IRTypeError(f"position {position} is out of range for a sequence of {length}")
    return p


def _at_normalize(in_types: Sequence[Type | None], attrs: dict[str, Any]) -> dict[str, Any]:
    seq = _seq(in_types[0])
    return {**attrs, "position": position_in(attrs["position"], len(seq), inserting=False)}


# -- construction --------------------------------------------------------------------------
def _construct_infer(in_types: Sequence[Type | None], attrs: dict[str, Any]) -> SequenceType:
    elements = [_tensor(t, f"element {i}") for i, t in enumerate(in_types)]
    dtypes = {t.dtype for t in elements}
    if len(dtypes) > 1:
        raise IRTypeError(f"sequence elements have different dtypes: {sorted(map(str, dtypes))}")
    dtype = elements[0].dtype if elements else attrs["dtype"]
    return SequenceType(dtype, tuple(elements))


def _construct_normalize(in_types: Sequence[Type | None], attrs: dict[str, Any]) -> dict:
    if in_types and isinstance(in_types[0], TensorType):
        return {**attrs, "dtype": in_types[0].dtype}
    return attrs


define(
    "sequence",
    inputs=["elements..."],
    attrs={"dtype": Attr("dtype", "float32", doc="the element dtype (of an empty sequence)")},
    normalize=_construct_normalize,
    infer=_construct_infer,
    reference=lambda xs, attrs: [list(xs)],
    foldable=False,
    doc="a sequence of the given tensors, in order (none: an empty one of ``dtype``)",
)


# -- reading and rearranging ---------------------------------------------------------------
def _at_infer(in_types: Sequence[Type | None], attrs: dict[str, Any]) -> TensorType:
    seq = _seq(in_types[0])
    return seq.elements[position_in(attrs["position"], len(seq), inserting=False)]


define(
    "sequence_at",
    inputs=["sequence"],
    attrs={"position": Attr("int", doc="which element; negative counts from the end")},
    normalize=_at_normalize,
    infer=_at_infer,
    foldable=False,
    reference=lambda xs, attrs: xs[0][attrs["position"]],
    doc="one element of a sequence",
)


# -- optionals -----------------------------------------------------------------------------
def _optional_infer(in_types: Sequence[Type | None], attrs: dict[str, Any]) -> OptionalType:
    x = in_types[0] if in_types else None
    if x is not None:
        if isinstance(x, OptionalType):
            raise IRTypeError("an optional cannot hold an optional")
        return OptionalType(x, True)
    tensor = TensorType(attrs["dtype"], tuple(attrs["shape"]))
    return OptionalType(SequenceType(attrs["dtype"], ()) if attrs["sequence"] else tensor, False)


define(
    "optional",
    inputs=["value?"],
    attrs={
        "dtype": Attr("dtype", "float32", doc="element dtype of an empty optional"),
        "shape": Attr("dims", [], doc="tensor shape of an empty optional"),
        "sequence": Attr("bool", False, doc="an empty optional of a sequence"),
    },
    infer=_optional_infer,
    foldable=False,
    reference=lambda xs, attrs: [xs[0] if xs else None],
    doc="an optional holding the value, or (no input) an empty one of the given type",
)


def _get_infer(in_types: Sequence[Type | None], attrs: dict[str, Any]) -> Type:
    t = in_types[0]
    if isinstance(t, TensorType | SequenceType):
        return t  # ONNX lets OptionalGetElement read a plain value
    if not isinstance(t, OptionalType):
        raise IRTypeError(f"the input must be an optional, got {t}")
    if not t.present:
        raise IRTypeError("the optional is empty: there is no element to get")
    return t.of


define(
    "optional_get",
    inputs=["optional"],
    infer=_get_infer,
    foldable=False,
    reference=lambda xs, attrs: [xs[0]],
    doc="the value an optional holds (an error at compile time when it is empty)",
)
