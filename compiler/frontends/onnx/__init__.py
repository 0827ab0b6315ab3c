"""The ONNX frontend: opsets 7 up to the newest the installed onnx package knows.

The names below load the importer (and onnx) on first use, so that listing formats is cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["import_onnx", "load_model", "model_opset"]


def __getattr__(name: str) -> Any:
    if name in ("import_onnx", "model_opset"):
        from . import importer

        return getattr(importer, name)
    if name == "load_model":
        from .loader import load_model

        return load_model
    raise AttributeError(name)
