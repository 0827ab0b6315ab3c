"""NNEF's converter table and node context.

NNEF ops come from the Khronos parser as ``nnef.Operation`` tuples whose inputs and attributes
are keyed by the fragment's parameter names. ``@converter("conv")`` registers a function for
one op (NNEF 1.0.x has no op versions); it gets an ``NnefContext`` and returns the outputs in
the fragment's result order (one Value, or a list where a tensor-array result is itself a list
of Values).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.ir.builder import Builder
from compiler.ir.graph import Value
from compiler.ir.types import DType, dtype

from ..converters import ConverterTable, NodeContext

CONVERTERS: ConverterTable[NnefContext] = ConverterTable("NNEF")
converter = CONVERTERS.register

NNEF_DTYPES = {"scalar": dtype("float32"), "integer": dtype("int64"), "logical": dtype("bool")}
"""IR dtypes of NNEF's three element types (``integer``: int64, as ONNX and PyTorch index)."""


class NnefContext(NodeContext):
    """One NNEF operation: tensor inputs by parameter name (literals become constants),
    attributes with their defaults filled in, and the shapes NNEF inferred for its outputs."""

    def __init__(
        self,
        op: Any,
        env: dict[str, Value],
        builder: Builder,
        shapes: dict[str, list[int] | None],
    ) -> None:
        super().__init__(op.name, first_output(op), [], builder)
        self.operation = op
        self._env = env
        self._shapes = shapes

    # -- inputs ----------------------------------------------------------------------------
    def has(self, param: str) -> bool:
        return param in self.operation.inputs

    def x(self, param: str, dtype: str | None = None) -> Value:
        """The tensor given for ``param``: a value of the graph, or a literal as a constant
        (of ``dtype`` when given, else float32 / int64 / bool by the literal's type)."""
        return self._value(self.operation.inputs[param], dtype)

    def xs(self, param: str, dtype: str | None = None) -> list[Value]:
        """The tensors of a tensor-array parameter (``concat(values = [a, b])``)."""
        return [self._value(v, dtype) for v in self.operation.inputs[param]]

    def literal(self, param: str) -> Any:
        """A parameter given as a literal (``bias = 0.0``), else None."""
        v = self.operation.inputs[param]
        return None if _is_name(v) else v

    def _value(self, v: Any, dtype: str | None) -> Value:
        if _is_name(v):
            return self._env[str(v)]
        array = np.asarray(v)
        if dtype is None:
            dtype = {"b": "bool", "i": "int64", "u": "int64"}.get(array.dtype.kind, "float32")
        return self.builder.const(array.astype(dtype))

    # -- attributes ------------------------------------------------------------------------
    def attr(self, name: str) -> Any:
        return self.operation.attribs[name]

    @property
    def generic_dtype(self) -> DType | None:
        """The IR dtype of the op's generic argument (``cast<integer>``), if any."""
        return NNEF_DTYPES.get(self.operation.dtype) if self.operation.dtype else None

    def out_shape(self, index: int = 0) -> list[int] | None:
        """The shape NNEF's shape inference gave output ``index``."""
        name = list(self.operation.outputs.values())[index]
        return None if isinstance(name, list) else self._shapes.get(str(name))

    @property
    def num_outputs(self) -> int:
        return len(self.operation.outputs)


def first_output(op: Any) -> str:
    """The name an NNEF operation goes by in messages (NNEF ops have no names of their own):
    its first result tensor."""
    outs = list(op.outputs.values())
    first = outs[0] if outs else op.name
    return str(first[0] if isinstance(first, list) and first else first)


def _is_name(v: Any) -> bool:
    import nnef

    return isinstance(v, nnef.Identifier)


def to_rank(ctx: NodeContext, v: Value, rank: int) -> Value:
    """``v`` with trailing size-1 dims added up to ``rank``: NNEF broadcasting aligns leading
    axes (``[1, C]`` against ``[N, C, H, W]`` is per channel), numpy's trailing ones."""
    if len(v.shape) >= rank:
        return v
    return ctx.emit("reshape", v, shape=[*v.shape, *([1] * (rank - len(v.shape)))])


def aligned(ctx: NodeContext, *values: Value) -> list[Value]:
    """The operands of an elementwise op, brought to one rank the NNEF way (see ``to_rank``)."""
    rank = max(len(v.shape) for v in values)
    return [to_rank(ctx, v, rank) for v in values]


REFUSED: dict[str, str] = {}
"""Standard ops nnxc refuses whole, with the reason (listed in the unsupported-ops error)."""
