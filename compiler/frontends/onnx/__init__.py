"""The ONNX frontend: opsets 7 up to the newest the installed onnx package knows."""

from .importer import import_onnx, model_opset
from .loader import load_model

__all__ = ["import_onnx", "load_model", "model_opset"]
