"""Core ML as an nnxc frontend: a ``.mlmodel`` file, an ``.mlpackage`` folder, or a
``coremltools.models.MLModel`` / ``Model`` spec in memory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compiler.ir.graph import Graph

from ..base import Frontend, Source, register

_OBJECTS = {("MLModel", "model"), ("Model", "Model_pb2")}
"""In-memory models, by class and module name (so that asking costs no coremltools import)."""


class CoreMLFrontend(Frontend):
    name = "coreml"
    title = "Core ML"
    suffixes = (".mlmodel", ".mlpackage")
    folders = True
    functions = True
    accepts_text = "an .mlmodel file or an .mlpackage folder"
    objects = ("coremltools.models.MLModel", "coremltools Model spec")

    def accepts(self, model: Any) -> bool:
        kind = type(model)
        if (kind.__name__, kind.__module__.split(".")[-1]) in _OBJECTS:
            return True
        return super().accepts(model)

    def accepts_folder(self, path: Path) -> bool:
        return path.name.lower().endswith(".mlpackage")

    def import_model(
        self,
        model: Any,
        input_shapes: Mapping[str, Any] | None = None,
        input_values: Mapping[str, np.ndarray] | None = None,
        function: str | None = None,
    ) -> tuple[Graph, Source]:
        from .importer import import_coreml

        graph, files = import_coreml(model, input_shapes, input_values, function)
        return graph, Source(self.name, files.name, files.sha256())


register(CoreMLFrontend())
