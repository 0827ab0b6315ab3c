"""Converters from ONNX ops to core ops, chosen by the model's opset.

``@converter("Relu", since=6)`` registers a function for opsets >= 6; for a model of opset N
the converter with the largest ``since`` <= N is used. A converter gets a ``NodeContext`` and
returns the node's outputs (one Value, or a list with None for unused optional outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.errors import ConversionError, NeedsValueError
from compiler.ir.builder import Builder
from compiler.ir.graph import Region, Value
from compiler.ir.types import DType, Type, dtype_name

ConverterFn = Callable[["NodeContext"], "Value | Sequence[Value | None]"]

CONVERTERS: dict[tuple[str, str], list[tuple[int, ConverterFn]]] = {}


def converter(
    op_type: str, since: int = 1, domain: str = ""
) -> Callable[[ConverterFn], ConverterFn]:
    def register(fn: ConverterFn) -> ConverterFn:
        versions = CONVERTERS.setdefault((domain, op_type), [])
        if any(s == since for s, _ in versions):
            raise ValueError(f"converter for {op_type} since {since} registered twice")
        versions.append((since, fn))
        versions.sort(key=lambda p: p[0])
        return fn

    return register


def find_converter(domain: str, op_type: str, opset: int) -> ConverterFn | None:
    domain = "" if domain == "ai.onnx" else domain
    chosen = None
    for since, fn in CONVERTERS.get((domain, op_type), []):
        if since <= opset:
            chosen = fn
    return chosen


def onnx_dtype(elem_type: int) -> DType:
    """IR dtype of an ONNX TensorProto element type (raises for string, complex...)."""
    if elem_type == onnx.TensorProto.STRING:
        raise ConversionError("string tensors are not supported (element type STRING)")
    try:
        np_type = helper.tensor_dtype_to_np_dtype(elem_type)
        return dtype_name(np_type)
    except Exception:  # noqa: BLE001 - onnx raises KeyError/ValueError/TypeError
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type else "UNDEFINED"
        raise ConversionError(f"element type {name} is not supported") from None


class SubgraphConverter(Protocol):
    """The importer's conversion of a node's graph attributes, as control-flow converters
    use it. ``bindings`` give values for the subgraph's own inputs, in order; the subgraph
    reads the enclosing scopes' values by name, as ONNX allows."""

    def inline(self, graph: onnx.GraphProto, bindings: Sequence[Value]) -> list[Value]:
        """Convert the subgraph's nodes into the current block; its outputs."""
        ...

    def region(
        self,
        graph: onnx.GraphProto,
        leading: Sequence[Type],
        prologue: Callable[[Builder, list[Value]], list[Value]] | None = None,
    ) -> tuple[Region, list[Value]]:
        """A region whose first arguments have the ``leading`` types, followed by one per
        captured outer value (the second result: the node's capture operands). ``prologue``
        turns the region's arguments into the subgraph's inputs (default: the leading ones)."""
        ...


class NodeContext:
    """One ONNX node being converted: its inputs as IR values, its attributes, a builder."""

    def __init__(
        self,
        node: onnx.NodeProto,
        inputs: list[Value | None],
        builder: Builder,
        opset: int,
        subgraphs: SubgraphConverter | None = None,
    ) -> None:
        self.node = node
        self.inputs = inputs
        self.builder = builder
        self.opset = opset
        self.subgraphs = subgraphs
        """How this node's graph attributes (If branches, Loop and Scan bodies) convert."""
        self._attrs = {a.name: a for a in node.attribute}

    @property
    def name(self) -> str:
        return self.node.name or (self.node.output[0] if self.node.output else self.node.op_type)

    @property
    def num_outputs(self) -> int:
        return len(self.node.output)

    def error(self, message: str) -> ConversionError:
        return ConversionError(f"{self.node.op_type} node {self.name!r}: {message}")

    # -- inputs ----------------------------------------------------------------------------
    def input(self, i: int) -> Value | None:
        """Input i, or None when it is absent (past the end, or an empty name)."""
        return self.inputs[i] if i < len(self.inputs) else None

    def value(self, i: int) -> np.ndarray | None:
        """The data of input i when it is a constant (after folding), else None."""
        v = self.input(i)
        return None if v is None else v.const

    def require_value(self, i: int, what: str) -> np.ndarray:
        """The data of input i, which must be known at compile time (shapes, axes, pads)."""
        v = self.input(i)
        if v is None:
            raise self.error(f"input {what} is missing")
        if v.const is None:
            raise NeedsValueError(
                f"{self.node.op_type} node {self.name!r}: input {what} must be known at "
                "compile time; it is computed from values that are not (bind symbolic dims "
                "with --input-shape)",
                v.name,
            )
        return v.const

    # -- attributes ------------------------------------------------------------------------
    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def attr(self, name: str, default: Any = None) -> Any:
        """A plain Python value: ints, floats, str, lists; tensors as numpy arrays."""
        a = self._attrs.get(name)
        if a is None:
            return default
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, onnx.TensorProto):
            return numpy_helper.to_array(v)
        if isinstance(v, list) and v and isinstance(v[0], bytes):
            return [x.decode() for x in v]
        return v

    # -- emitting --------------------------------------------------------------------------
    def op(self, name: str, inputs: Sequence[Value | None], **attrs: Any) -> list[Value]:
        return self.builder.op(name, inputs, attrs, node_name=self.name)

    def emit(self, name: str, *inputs: Value | None, **attrs: Any) -> Value:
        (out,) = self.builder.op(name, inputs, attrs, node_name=self.name)
        return out

    def const(self, array: Any, dtype: str | None = None) -> Value:
        return self.builder.const(array, dtype)
