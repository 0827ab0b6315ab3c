"""ONNX as an nnxc frontend: ``.onnx`` files and in-memory ``onnx.ModelProto``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import ModelLoadError
from compiler.ir.graph import Graph

from ..base import Frontend, Source, file_sha256, register


class OnnxFrontend(Frontend):
    name = "onnx"
    title = "ONNX"
    suffixes = (".onnx",)
    accepts_text = "an .onnx file"
    objects = ("onnx.ModelProto",)
    fallback = True

    def accepts(self, model: Any) -> bool:
        import onnx

        return isinstance(model, onnx.ModelProto) or super().accepts(model)

    def import_model(
        self,
        model: Any,
        input_shapes: Mapping[str, Any] | None = None,
        input_values: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[Graph, Source]:
        import hashlib

        import onnx

        from .importer import import_onnx

        if isinstance(model, onnx.ModelProto):
            sha = hashlib.sha256(model.SerializeToString()).hexdigest()
            name = model.graph.name or "model"
        else:
            path = Path(model)
            if not path.is_file():
                raise ModelLoadError(f"{path}: no such file")
            sha, name = file_sha256([path]), path.name
        graph = import_onnx(model, input_shapes=input_shapes, input_values=input_values)
        return graph, Source(self.name, name, sha)


register(OnnxFrontend())
