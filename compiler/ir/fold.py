"""Evaluating a node on constant inputs through its op's numpy reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.limits import fits

from .graph import Value
from .ops.registry import OpDef
from .types import TensorType

FOLD_LIMIT = 1 << 26
"""Largest result (in elements) constant folding will make: bigger tensors stay computed."""


def foldable_inputs(
    op: OpDef, inputs: Sequence[Value | None], attrs: dict[str, Any]
) -> list[np.ndarray | None] | None:
    """The arrays to evaluate ``op`` on, or None when some input is not known yet (or the
    node is not a function of its inputs)."""
    if not op.is_pure(attrs):
        return None
    arrays: list[np.ndarray | None] = []
    for v in inputs:
        if v is None:
            arrays.append(None)
        elif v.const is not None:
            arrays.append(v.const)
        elif not op.reads_values and v.type.is_static:
            arrays.append(np.broadcast_to(np.zeros((), v.type.np_dtype), v.type.shape))
        else:
            return None
    return arrays


def evaluate(
    op: OpDef,
    arrays: Sequence[np.ndarray | None],
    attrs: dict[str, Any],
    out_types: Sequence[TensorType],
) -> list[np.ndarray] | None:
    """The op's outputs cast to the inferred dtypes, or None when too large to fold."""
    if any(t.size is None or t.size > FOLD_LIMIT for t in out_types):
        return None
    if not fits(sum(t.size * t.np_dtype.itemsize for t in out_types)):
        return None  # kept computed; compiler.ir.resources refuses it if it stays
    results = op.evaluate(arrays, attrs)
    out = []
    for r, t in zip(results, out_types, strict=True):
        if tuple(r.shape) != t.shape:
            raise AssertionError(
                f"{op.name}: reference gave shape {r.shape}, inference said {t.shape}"
            )
        out.append(np.require(r.astype(t.np_dtype, copy=False), requirements="C"))
    return out
