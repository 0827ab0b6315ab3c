"""The MIL op table and the context an op converter gets.

An ML Program arrives as a pymil ``Program`` (coremltools' MIL proto loader), whose ops have
named inputs (``conv(x=..., weight=..., strides=..., pad_type=...)``); parameters such as
strides or ``pad_type`` are ``const`` ops. ``@mil_op("conv")`` registers a converter for opsets
from the first (``since=`` an ``ct.target`` spec version, e.g. 8 for iOS17, for a revision
whose meaning changed); it gets a ``MilContext`` and returns the op's outputs in order (one
Value, or a list).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.ir.builder import Builder
from compiler.ir.graph import Value

from ...converters import ConverterTable, NodeContext

OPS: ConverterTable[MilContext] = ConverterTable("MIL")
mil_op = OPS.register

REFUSED: dict[str, str] = {
    "read_state": "stateful programs (read_state/coreml_update_state) have no mapping in nnxc",
    "coreml_update_state": "stateful programs (read_state/coreml_update_state) have no mapping "
    "in nnxc",
    "conv_quantized": "experimental in coremltools; the meaning of its look-up table is not "
    "documented",
}
"""MIL ops nnxc refuses whole, with the reason (listed in the unsupported-ops error)."""


def ir_dtype(var: Any) -> str:
    """The IR dtype of a pymil tensor or scalar variable."""
    from coremltools.converters.mil.mil import types

    dt = var.dtype
    if types.is_tensor(var.sym_type) or types.is_scalar(var.sym_type):
        return np.dtype(types.nptype_from_builtin(dt)).name
    raise TypeError(f"{var.name} is a {types.builtin_to_string(var.sym_type)}, not a tensor")


class MilContext(NodeContext):
    """One MIL op: inputs by parameter name, constants' values, the output types pymil
    inferred, and the importer (``convert_block``, for control flow)."""

    def __init__(self, op: Any, env: dict[str, Value], builder: Builder, importer: Any) -> None:
        super().__init__(op.op_type, op.name, [], builder)
        self.mil = op
        self._env = env
        self.importer = importer

    # -- inputs ----------------------------------------------------------------------------
    def has(self, param: str) -> bool:
        return self.mil.inputs.get(param) is not None

    def var(self, param: str) -> Any:
        v = self.mil.inputs.get(param)
        if v is None:
            raise self.error(f"needs input {param!r}")
        return v

    def x(self, param: str) -> Value:
        """The tensor given for ``param`` (a constant for a ``const``)."""
        return self.lookup(self.var(param))

    def xs(self, param: str) -> list[Value]:
        """The tensors of a variadic parameter (``concat(values=(a, b))``)."""
        vs = self.var(param)
        return [self.lookup(v) for v in (vs if isinstance(vs, tuple | list) else [vs])]

    def lookup(self, var: Any) -> Value:
        return self.importer.lookup(var, self._env)

    def known(self, param: str) -> Any:
        """The value of ``param`` when it is known at compile time (numpy array or scalar),
        else None; None also when the op has no such input."""
        v = self.mil.inputs.get(param)
        return None if v is None else v.val

    def attr(self, param: str, default: Any = None) -> Any:
        """A parameter that must be a compile-time constant, as plain Python (ints, floats,
        strings, bools, lists of them); ``default`` when the op omits it."""
        v = self.mil.inputs.get(param)
        if v is None:
            return default
        if v.val is None:
            raise self.error(f"input {param!r} must be known at compile time")
        val = v.val
        if isinstance(val, np.ndarray):
            return val.tolist()
        if isinstance(val, np.generic):
            return val.item()
        return val

    # -- outputs ---------------------------------------------------------------------------
    def out_dtype(self, index: int = 0) -> str:
        return ir_dtype(self.mil.outputs[index])

    def out_shape(self, index: int = 0) -> list[Any]:
        """The shape pymil inferred for output ``index`` (symbols for unknown sizes)."""
        return list(self.mil.outputs[index].shape)

    @property
    def num_outputs(self) -> int:
        return len(self.mil.outputs)


def static_dims(shape: Sequence[Any]) -> bool:
    return all(isinstance(d, int | np.integer) for d in shape)
