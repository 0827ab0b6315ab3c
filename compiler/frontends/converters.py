"""Machinery every frontend shares: a converter table with versions, the context a converter
gets, the call that turns a converter's failure into an error naming the node, and the one
report that lists every unsupported op at once.

A format keeps one ``ConverterTable``. ``@table.register("Relu", since=6)`` adds a function for
format versions (ONNX opsets) >= 6; for version N the converter with the largest ``since``
<= N is used. A converter gets a ``NodeContext`` (or a format's subclass) and returns the
node's outputs: one Value, or a list with None for unused optional outputs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Literal, TypeVar

import numpy as np

from compiler.errors import (
    ConversionError,
    NeedsValueError,
    ResourceLimitError,
    UnsupportedOpsError,
)
from compiler.ir.builder import Builder
from compiler.ir.graph import Value
from compiler.ir.types import Dim

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


def product_dim(ctx: NodeContext, dims: Sequence[Dim]) -> Dim:
    """The product of dims as one dim: an int, or a lone name times static ones."""
    names = [d for d in dims if isinstance(d, str)]
    size = math.prod(d for d in dims if isinstance(d, int))
    if not names:
        return size
    if len(names) == 1 and size == 1:
        return names[0]
    raise ctx.error(
        f"the dim {' * '.join(map(str, dims))} is a product of symbolic dims; "
        "bind the input shapes (--input-shape) to convert it"
    )


ZeroMeans = Literal["size", "copy", "copy_right"]


def resolve_reshape(
    ctx: NodeContext, in_shape: Sequence[Dim], spec: Sequence[int], zero: ZeroMeans
) -> list[Dim]:
    """A reshape target with its 0 and -1 entries resolved against the input shape, as every
    format's reshape reads them. A 0 is a size (``"size"``: ONNX ``allowzero``, Core ML's
    reshapeStatic), copies the input dim at its position (``"copy"``), or at the same
    distance from the right, 1 where the input has none (``"copy_right"``: MIL from iOS17).
    One -1 takes the rest, a symbolic dim when one name is left over."""
    rank, k = len(in_shape), len(spec)
    out: list[Dim | None] = []
    for i, s in enumerate(spec):
        if s == 0 and zero != "size":
            j = i - (k - rank) if zero == "copy_right" else i
            if not 0 <= j < rank and zero == "copy":
                raise ctx.error(f"shape {list(spec)} copies dim {i} of a rank-{rank} input")
            out.append(in_shape[j] if 0 <= j < rank else 1)
        elif s == -1:
            out.append(None)
        elif s < 0:
            raise ctx.error(f"shape {list(spec)} has a negative entry other than -1")
        else:
            out.append(s)
    if out.count(None) > 1:
        raise ctx.error(f"shape {list(spec)} has more than one -1")
    if None not in out:
        return out  # type: ignore[return-value]
    known = [d for d in out if d is not None]
    rest = Counter(d for d in in_shape if isinstance(d, str))
    rest.subtract(d for d in known if isinstance(d, str))
    if any(c < 0 for c in rest.values()):
        raise ctx.error(f"cannot infer the -1 of shape {list(spec)} from input {list(in_shape)}")
    in_size = math.prod(d for d in in_shape if isinstance(d, int))
    out_size = math.prod(d for d in known if isinstance(d, int))
    if out_size == 0 or in_size % out_size:
        raise ctx.error(f"cannot reshape {list(in_shape)} to {list(spec)}")
    inferred = product_dim(ctx, [*rest.elements(), in_size // out_size])
    return [inferred if d is None else d for d in out]


def run_converter(ctx: Ctx, fn: Callable[[Ctx], Result]) -> list[Value | None]:
    """``fn(ctx)`` as a list of results; a failure that is not already one of nnxc's errors
    becomes a ``ConversionError`` naming the node and its op."""
    try:
        result = fn(ctx)
    except ConversionError:
        raise
    except ResourceLimitError as e:  # named after the node, kept of its own type
        raise ResourceLimitError(f"{ctx.op_type} node {ctx.name!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - shape/attr errors become node-named errors
        raise ctx.error(f"{type(e).__name__}: {e}") from e
    return [result] if isinstance(result, Value) else list(result)


def _shown(name: str) -> str:
    """A name as the one-line error shows it: quoted where it holds a newline or another
    unprintable character."""
    return name if name.isprintable() else repr(name)


def report_unsupported(
    nodes: Iterable[tuple[str, str]], where: str, hint: str = "", reasons: dict | None = None
) -> None:
    """Raise one error listing every op type among ``nodes`` ((op type, node name) pairs of
    the ops without a converter): count and first node names of each, and the reason where
    one is known (``reasons``: op type -> why)."""
    missing: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for op, name in nodes:
        op, name = _shown(op), _shown(name)
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
