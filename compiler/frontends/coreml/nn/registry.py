"""The NeuralNetwork layer table and the context a layer converter gets.

``@layer("convolution")`` registers the converter of one ``NeuralNetworkLayer`` kind (the name
of the ``layer`` oneof field). It gets an ``NnContext``: the layer's input blobs as IR values,
its parameter message (``ctx.params``, e.g. ``ConvolutionLayerParams``) and decoded weights,
and returns its output blobs (one Value, or a list in ``layer.output`` order).

Axis conventions. With ``arrayInputShapeMapping`` RANK5 (the proto default, every model before
2019) the importer gives every array blob rank 5, ``[Seq, Batch, C, H, W]``; with EXACT
(spec >= 4) blobs keep their declared ranks. The legacy layers (spec <= 3) are defined on the
trailing ``[C, H, W]`` axes in both mappings (channel axis -3), with every leading axis a batch
axis; the ND layers of spec >= 4 use true ranks and their own ``axis`` fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compiler.ir.builder import Builder
from compiler.ir.graph import Value

from ...converters import ConverterTable, NodeContext
from . import weights as _weights

LAYERS: ConverterTable[NnContext] = ConverterTable("Core ML NeuralNetwork")
layer = LAYERS.register

REFUSED: dict[str, str] = {
    "custom": "a custom layer runs code that is not in the model",
    "loopBreak": "nnxc's structured loop has no early exit from within its body",
    "loopContinue": "nnxc's structured loop has no early exit from within its body",
}
"""Layer kinds nnxc refuses whole, with the reason (listed in the unsupported-layers error)."""


class NnContext(NodeContext):
    """One NeuralNetwork layer being converted."""

    def __init__(
        self,
        layer_proto: Any,
        inputs: list[Value | None],
        builder: Builder,
        rank5: bool,
        spec_version: int,
        network: Any = None,
    ) -> None:
        kind = layer_proto.WhichOneof("layer")
        super().__init__(kind, layer_proto.name, inputs, builder)
        self.layer = layer_proto
        self.params = getattr(layer_proto, kind)
        self.rank5 = rank5
        """Whether blobs follow the rank-5 mapping (``[Seq, Batch, C, H, W]``)."""
        self.spec_version = spec_version
        self.network = network
        """The importer converting this network (``convert_layers``, for branch and loop)."""

    def x(self, i: int = 0) -> Value:
        """Input blob i, which the layer needs."""
        v = self.input(i)
        if v is None:
            raise self.error(f"needs input {i + 1}, the layer has {len(self.inputs)}")
        return v

    @property
    def num_outputs(self) -> int:
        return len(self.layer.output)

    def weights(self, wp: Any, shape: Sequence[int], what: str, axis: int = 0) -> np.ndarray:
        """The float32 array ``wp`` (a ``WeightParams``) holds, as ``shape``."""
        return _weights.decode(wp, shape, f"{self.op_type} layer {self.name!r}: {what}", axis)

    def weights_const(
        self, wp: Any, shape: Sequence[int], what: str, axis: int = 0, dtype: str | None = None
    ) -> Value:
        return self.const(self.weights(wp, shape, what, axis), dtype)

    @staticmethod
    def has_weights(wp: Any) -> bool:
        return _weights.present(wp)


def nested_layers(layer_proto: Any) -> list[Any]:
    """The layers of the networks a control-flow layer holds (branch, loop)."""
    kind = layer_proto.WhichOneof("layer")
    params = getattr(layer_proto, kind)
    nets: list[Any] = []
    if kind == "branch":
        nets = [params.ifBranch, params.elseBranch]
    elif kind == "loop":
        nets = [params.conditionNetwork, params.bodyNetwork]
    return [sub for net in nets for sub in net.layers]


Converter = Callable[[NnContext], Value | Sequence[Value | None]]
