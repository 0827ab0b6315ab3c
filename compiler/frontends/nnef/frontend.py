"""NNEF as an nnxc frontend: a model folder (``graph.nnef``, ``graph.quant``, ``.dat`` files), a
``.tgz`` archive of one, or a bare ``graph.nnef`` text (no weights)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compiler.ir.graph import Graph

from ..base import Frontend, Source, register


class NnefFrontend(Frontend):
    name = "nnef"
    title = "NNEF"
    suffixes = (".nnef.tgz", ".nnef.tar.gz", ".nnef.tar", ".tgz", ".tar.gz", ".tar", ".nnef")
    folders = True
    accepts_text = "a folder holding graph.nnef, a .tgz of one, or a graph.nnef text"

    def accepts(self, model: Any) -> bool:
        if isinstance(model, str | os.PathLike) and Path(model).name == "graph.nnef":
            return True
        return super().accepts(model)

    def accepts_folder(self, path: Path) -> bool:
        return (path / "graph.nnef").is_file() or path.name.lower().endswith(".nnef")

    def sniff(self, path: Path) -> bool:
        """An NNEF graph text (its first statement is ``version``), or a compressed file or
        tar (no ONNX file starts so: a protobuf's first byte is a field tag, 0x08)."""
        from .files import is_archive

        if is_archive(path):
            return True
        try:
            with open(path, "rb") as f:
                raw = f.read(4096)
        except OSError:
            return False
        head = raw.decode("utf-8", errors="replace")
        lines = [line.strip() for line in head.splitlines()]
        code = [line for line in lines if line and not line.startswith("#")]
        return bool(code) and code[0].startswith("version ")

    def import_model(
        self,
        model: Any,
        input_shapes: Mapping[str, Any] | None = None,
        input_values: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[Graph, Source]:
        from .importer import import_nnef

        graph, name, sha = import_nnef(model, input_shapes, input_values)
        return graph, Source(self.name, name, sha)


register(NnefFrontend())
