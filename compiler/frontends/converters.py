"""Machinery every frontend shares: a converter table with versions, the context a converter
gets, the call that turns a converter's failure into an error naming the node, and the one
report that lists every unsupported op at once.

A format keeps one ``ConverterTable``. ``@table.register("Relu", since=6)`` adds a function for
format versions (ONNX opsets) >= 6; for version N the converter with the largest ``since``
<= N is used. A converter gets a ``NodeContext`` (or a format's subclass) and returns the
node's outputs: one Value, or a list with None for unused optional outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from compiler.errors import ConversionError, NeedsValueError, UnsupportedOpsError
from compiler.ir.builder import Builder
from compiler.ir.graph import Value

Ctx = TypeVar("Ctx", bound="NodeContext")
Result = Value | Sequence[Value | None]


class ConverterTable(Generic[Ctx]):
    """Converters of one format, keyed by (domain, op type), each with the version it
    applies from."""

    def __init__(self, format_title: str) -> None:
        self.format_title = format_title
        self._versions: dict[tuple[str, str], list[tuple[int, Callable[[Ctx], Result]]]] = {}

    def register(
        self, op_type: str, since: int = 1, domain: str = ""
    ) -> Callable[[Callable[[Ctx], Result]], Callable[[Ctx], Result]]:
        def add(fn: Callable[[Ctx], Result]) -> Callable[[Ctx], Result]:
            versions = self._versions.setdefault((domain, op_type), [])
            if any(s == since for s, _ in versions):
                raise ValueError(f"converter for {op_type} since {since} registered twice")
            versions.append((since, fn))
            versions.sort(key=lambda p: p[0])
            return fn

        return add

    def find(self, domain: str, op_type: str, version: int) -> Callable[[Ctx], Result] | None:
        chosen = None
        for since, fn in self._versions.get((domain, op_type), []):
            if since <= version:
                chosen = fn
        return chosen

    def op_types(self, domain: str = "") -> list[str]:
        """The op types of ``domain`` that have a converter (at some version)."""
        return sorted(op for d, op in self._versions if d == domain)


class NodeContext:
    """One source node being converted: its inputs as IR values, a builder, and the error
    that names it. Formats subclass it for their attributes."""

    def __init__(self, op_type: str, name: str, inputs: list[Value | None], builder: Builder):
        self.op_type = op_type
        self.name = name
        self.inputs = inputs
        self.builder = builder

    def error(self, message: str) -> ConversionError:
        return ConversionError(f"{self.op_type} node {self.name!r}: {message}")

    # -- inputs ----------------------------------------------------------------------------
    def input(self, i: int) -> Value | None:
        """Input i, or None when it is absent."""
        return self.inputs[i] if i < len(self.inputs) else None

    def value(self, i: int) -> np.ndarray | None:
        """The data of input i when it is a constant (after folding), else None."""
        v = self.input(i)
        return None if v is None else v.const

    def require_value(self, i: int, what: str, why: str | None = None) -> np.ndarray:
        """The data of input i, which must be known at compile time: shapes, axes, pads; or,
        with ``why`` (what of the output it decides), inputs deciding an output's shape."""
        v = self.input(i)
        if v is None:
            raise self.error(f"input {what} is missing")
        if v.const is None:
            if why is None:
                because = (
                    f"input {what} must be known at compile time; it is computed from values "
                    "that are not (bind symbolic dims with --input-shape)"
                )
            else:
                because = (
                    f"{why}, so input {what} must be known at compile time; nnxc compiles "
                    "static output shapes only"
                )
            raise NeedsValueError(f"{self.op_type} node {self.name!r}: {because}", v.name)
        return v.const

    # -- emitting --------------------------------------------------------------------------
    def op(self, name: str, inputs: Sequence[Value | None], **attrs: Any) -> list[Value]:
        return self.builder.op(name, inputs, attrs, node_name=self.name)

    def emit(self, name: str, *inputs: Value | None, **attrs: Any) -> Value:
        (out,) = self.builder.op(name, inputs, attrs, node_name=self.name)
        return out

    def const(self, array: Any, dtype: str | None = None) -> Value:
        return self.builder.const(array, dtype)


def run_converter(ctx: Ctx, fn: Callable[[Ctx], Result]) -> list[Value | None]:
    """``fn(ctx)`` as a list of results; a failure that is not already one of nnxc's errors
    becomes a ``ConversionError`` naming the node and its op."""
    try:
        result = fn(ctx)
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - shape/attr errors become node-named errors
        raise ctx.error(f"{type(e).__name__}: {e}") from e
    return [result] if isinstance(result, Value) else list(result)


def report_unsupported(
    nodes: Iterable[tuple[str, str]], where: str, hint: str = "", reasons: dict | None = None
) -> None:
    """Raise one error listing every op type among ``nodes`` ((op type, node name) pairs of
    the ops without a converter): count and first node names of each, and the reason where
    one is known (``reasons``: op type -> why)."""
    missing: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for op, name in nodes:
        missing[op] += 1
        examples.setdefault(op, []).append(name)
    if not missing:
        return
    reasons = reasons or {}
    parts = []
    for op, n in missing.most_common():
        why = f": {reasons[op]}" if op in reasons else ""
        parts.append(f"{op} x{n} (e.g. {', '.join(examples[op][:3])}){why}")
    raise UnsupportedOpsError(
        f"{len(missing)} unsupported op type(s) {where}: " + "; ".join(parts) + hint
    )
