"""Core ML model -> nnxc IR graph: the model type decides the converter (``nn.importer`` for
NeuralNetworks and pipelines of them, ``mil.importer`` for ML Programs); the inputs, image
preprocessing and classifier labels are shared (``features``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from compiler.errors import ModelLoadError, UnsupportedOpsError
from compiler.ir.graph import Graph

from .files import CoreMLFiles, open_model

NEURAL_NETWORKS = ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor")
PIPELINES = ("pipeline", "pipelineClassifier", "pipelineRegressor")


def import_coreml(
    model: Any,
    input_shapes: Mapping[str, Any] | None = None,
    input_values: Mapping[str, np.ndarray] | None = None,
    function: str | None = None,
) -> tuple[Graph, CoreMLFiles]:
    files = open_model(model)
    kind = files.kind
    if function is not None and kind != "mlProgram":
        raise ModelLoadError(
            f"{files.name}: --function names a function of an ML Program; this model is a {kind}"
        )
    if kind == "mlProgram":
        from .mil.importer import import_program

        graph = import_program(files, input_shapes, input_values, function)
    elif kind in NEURAL_NETWORKS or kind in PIPELINES:
        from .nn.importer import import_network

        graph = import_network(files, input_shapes, input_values)
    else:
        raise UnsupportedOpsError(
            f"{files.name}: a {kind} model; nnxc compiles Core ML neural networks "
            f"({', '.join(NEURAL_NETWORKS)}), ML Programs, and pipelines of neural networks"
        )
    graph.metadata["source_format"] = "coreml"
    graph.metadata["coreml_type"] = kind
    graph.metadata["coreml_spec_version"] = str(files.spec.specificationVersion)
    return graph, files
