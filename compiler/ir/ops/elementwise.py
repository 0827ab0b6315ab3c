"""Elementwise ops: unary math and activations, broadcasting binary ops, where, cast."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..types import IRTypeError, TensorType
from .registry import define
from .shapes import broadcast_shapes


def _same_type(in_types, attrs) -> TensorType:
    return in_types[0]


def unary(name: str, fn: Callable[[np.ndarray], np.ndarray], doc: str = "") -> None:
    """An op mapping each element through ``fn``; output type = input type."""
    define(name, inputs=["x"], infer=_same_type, reference=lambda xs, a: fn(xs[0]), doc=doc)


def _broadcast(in_types, attrs) -> TensorType:
    a, b = in_types
    if a.dtype != b.dtype:
        raise IRTypeError(f"operand dtypes differ: {a.dtype} and {b.dtype}")
    return TensorType(a.dtype, broadcast_shapes(a.shape, b.shape))


def binary(name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], doc: str = "") -> None:
    """A numpy-broadcasting op over two operands of one dtype; output keeps that dtype."""
    define(name, inputs=["a", "b"], infer=_broadcast, reference=lambda xs, a: fn(*xs), doc=doc)


unary("relu", lambda x: np.maximum(x, np.zeros((), x.dtype)))
binary("add", np.add)
