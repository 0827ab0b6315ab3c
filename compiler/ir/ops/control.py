"""Structured control flow: ``if`` (two regions) and ``loop`` (one body region).

Regions are isolated (see ``compiler.ir.graph``): whatever a region reads from outside comes
in as an operand of the node, and each region receives those operands as block arguments.

``if(cond, captures...)``: ``then`` and ``else`` both take the captures as arguments and must
yield the same number of values of the same types; the node's outputs are those values.

``loop(max_trip?, cond?, carried..., captures...) {num_carried = K, iterations = N}`` runs
while ``i < max_trip`` (when given) and ``cond`` holds (when given; the body's yielded
condition is ignored when no ``cond`` operand is given, as in ONNX). The body takes
``(i: int64[], cond: bool[], carried..., captures...)`` and yields
``(cond: bool[], carried..., scans...)``; the node's outputs are the final carried values
and every scan value stacked over the iterations along a new leading axis of size
``iterations`` (a size the frontend knows, or a dim name for a data-dependent count).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..types import IRTypeError, TensorType, Type
from .registry import Attr, RegionRunner, define

BOOL = TensorType("bool", ())
INDEX = TensorType("int64", ())


def _one_element(t: Type | None, dtype: str, what: str) -> None:
    """A scalar-like operand: one element of ``dtype`` (ONNX allows [] and [1])."""
    if not isinstance(t, TensorType) or t.dtype != dtype or t.shape not in ((), (1,)):
        raise IRTypeError(f"{what} must be a {dtype} scalar (or [1]), got {t}")


def _types(values: Sequence[Type]) -> str:
    return "(" + ", ".join(map(str, values)) + ")"


# -- if ------------------------------------------------------------------------------------
def _if_args(in_types: Sequence[Type | None], attrs: dict[str, Any]) -> list[list[Type]]:
    captures = [t for t in in_types[1:] if t is not None]
    return [captures, captures]


def _if_infer(
    in_types: Sequence[Type | None], attrs: dict[str, Any], yields: list[list[Type]]
) -> list[Type]:
    _one_element(in_types[0], "bool", "the condition")
    then, other = yields
    if then != other:
        raise IRTypeError(
            f"the branches yield different types: then {_types(then)}, else {_types(other)}"
        )
    return then


def _if_reference(arrays: Sequence[Any], attrs: dict[str, Any], regions: list[RegionRunner]):
    cond = bool(np.asarray(arrays[0]).reshape(-1)[0])
    return regions[0 if cond else 1].run(list(arrays[1:]))


define(
    "if",
    inputs=["cond", "captures..."],
    regions=["then", "else"],
    region_args=_if_args,
    infer=_if_infer,
    reference=_if_reference,
    foldable=False,
    num_outputs=None,
    doc="run one of two regions; constant folding inlines it when the condition is known",
)


# -- loop ----------------------------------------------------------------------------------
def _loop_parts(in_types: Sequence[Any], attrs: dict[str, Any]) -> tuple[list, list]:
    """(carried, captures) out of the operands after ``max_trip`` and ``cond``."""
    rest = list(in_types[2:])
    k = attrs["num_carried"]
    if not 0 <= k <= len(rest):
        raise IRTypeError(f"num_carried={k} but the loop has {len(rest)} operands after cond")
    return rest[:k], rest[k:]


def _loop_args(in_types: Sequence[Type | None], attrs: dict[str, Any]) -> list[list[Type]]:
    carried, captures = _loop_parts(in_types, attrs)
    return [[INDEX, BOOL, *carried, *captures]]


def _loop_infer(
    in_types: Sequence[Type | None], attrs: dict[str, Any], yields: list[list[Type]]
) -> list[Type]:
    max_trip, cond = in_types[0], in_types[1]
    if max_trip is None and cond is None:
        raise IRTypeError("a loop needs a trip count, a condition, or both")
    if max_trip is not None:
        _one_element(max_trip, "int64", "the trip count")
    if cond is not None:
        _one_element(cond, "bool", "the condition")
    carried, _ = _loop_parts(in_types, attrs)
    (body,) = yields
    if len(body) < 1 + len(carried):
        raise IRTypeError(
            f"the body yields {len(body)} values; it must yield the condition and "
            f"{len(carried)} carried value(s) first"
        )
    _one_element(body[0], "bool", "the body's first yielded value (the condition)")
    for i, (got, want) in enumerate(zip(body[1 : 1 + len(carried)], carried)):
        if got != want:
            raise IRTypeError(
                f"loop-carried value {i} enters as {want} but the body yields {got} "
                "(a carried value must keep its type across iterations)"
            )
    scans = body[1 + len(carried) :]
    if scans and attrs["iterations"] is None:
        raise IRTypeError("a loop with scan outputs needs the 'iterations' attribute")
    stacked = []
    for t in scans:
        if not isinstance(t, TensorType):
            raise IRTypeError(f"a scan output must be a tensor, got {t}")
        stacked.append(t.with_shape([attrs["iterations"], *t.shape]))
    return [*carried, *stacked]


def _loop_reference(arrays: Sequence[Any], attrs: dict[str, Any], regions: list[RegionRunner]):
    max_trip, cond = arrays[0], arrays[1]
    limit = None if max_trip is None else int(np.asarray(max_trip).reshape(-1)[0])
    go = True if cond is None else bool(np.asarray(cond).reshape(-1)[0])
    carried, captures = _loop_parts(arrays, attrs)
    body = regions[0]
    scan_types = body.yield_types[1 + len(carried) :]
    scans: list[list[np.ndarray]] = [[] for _ in scan_types]
    i = 0
    while (limit is None or i < limit) and go:
        out = body.run([np.array(i, np.int64), np.array(go), *carried, *captures])
        if cond is not None:
            go = bool(np.asarray(out[0]).reshape(-1)[0])
        carried = out[1 : 1 + len(carried)]
        for acc, y in zip(scans, out[1 + len(carried) :]):
            acc.append(y)
        i += 1
    stacked = [
        np.stack(acc) if acc else np.zeros((0, *t.shape), t.np_dtype)
        for acc, t in zip(scans, scan_types)
    ]
    return [*carried, *stacked]


define(
    "loop",
    inputs=["max_trip?", "cond?", "operands..."],
    attrs={
        "num_carried": Attr("int", 0, doc="operands after cond that are loop-carried"),
        "iterations": Attr("dim?", None, doc="leading dim of the stacked scan outputs"),
    },
    regions=["body"],
    region_args=_loop_args,
    infer=_loop_infer,
    reference=_loop_reference,
    foldable=False,
    num_outputs=None,
    doc="run the body while i < max_trip and cond; unrolled by folding when short and known",
)
