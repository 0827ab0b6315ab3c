"""ONNX's converter table and node context, on the shared machinery of
``compiler.frontends.converters``: converters are chosen by the model's opset.

``@converter("Relu", since=6)`` registers a function for opsets >= 6; for a model of opset N
the converter with the largest ``since`` <= N is used. A converter gets a ``NodeContext`` and
returns the node's outputs (one Value, or a list with None for unused optional outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import onnx
from onnx import helper, numpy_helper

from compiler.errors import ConversionError
from compiler.ir.builder import Builder
from compiler.ir.graph import Region, Value
from compiler.ir.types import DType, Type, dtype_name

from ..converters import ConverterTable
from ..converters import NodeContext as BaseNodeContext
from .loader import check_declared

CONVERTERS: ConverterTable[NodeContext] = ConverterTable("ONNX")
converter = CONVERTERS.register


def find_converter(domain: str, op_type: str, opset: int) -> Callable | None:
    return CONVERTERS.find("" if domain == "ai.onnx" else domain, op_type, opset)


def onnx_dtype(elem_type: int) -> DType:
    """IR dtype of an ONNX TensorProto element type (raises for string, complex...)."""
    if elem_type == onnx.TensorProto.STRING:
        raise ConversionError("string tensors are not supported (element type STRING)")
    try:
        np_type = helper.tensor_dtype_to_np_dtype(elem_type)
        return dtype_name(np_type)
    except Exception:  # noqa: BLE001 - onnx raises KeyError/ValueError/TypeError
        names = {number: name for name, number in onnx.TensorProto.DataType.items()}
        name = names.get(elem_type, f"{elem_type} (no ONNX type)") if elem_type else "UNDEFINED"
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


class NodeContext(BaseNodeContext):
    """One ONNX node being converted: its inputs as IR values, its attributes, a builder."""

    def __init__(
        self,
        node: onnx.NodeProto,
        inputs: list[Value | None],
        builder: Builder,
        opset: int,
        subgraphs: SubgraphConverter | None = None,
    ) -> None:
        name = node.name or (node.output[0] if node.output else node.op_type)
        super().__init__(node.op_type, name, inputs, builder)
        self.node = node
        self.opset = opset
        self.subgraphs = subgraphs
        """How this node's graph attributes (If branches, Loop and Scan bodies) convert."""
        self._attrs = {a.name: a for a in node.attribute}

    @property
    def num_outputs(self) -> int:
        return len(self.node.output)

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
            check_declared(v, f"tensor attribute {name!r}")
            return numpy_helper.to_array(v)
        if isinstance(v, list) and v and isinstance(v[0], bytes):
            return [x.decode() for x in v]
        return v
