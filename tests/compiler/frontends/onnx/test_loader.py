"""The ONNX loader: external data stays memory-mapped and is checked against its file."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from compiler.errors import ModelLoadError
from compiler.frontends.onnx import import_onnx


def _model_with_external_weight(folder: Path) -> Path:
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    (folder / "w.bin").write_bytes(b"\0" * 16 + w.tobytes())
    tensor = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[3, 4])
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", "16"), ("length", "48")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 4])],
        initializer=[tensor],
    )
    path = folder / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_external_data_is_memory_mapped(tmp_path: Path) -> None:
    graph = import_onnx(_model_with_external_weight(tmp_path))
    (w,) = [v for v in graph.constants() if v.name == "w"]
    assert isinstance(w.const, np.memmap)
    np.testing.assert_array_equal(w.const, np.arange(12, dtype=np.float32).reshape(3, 4))


def test_external_data_too_short_is_refused(tmp_path: Path) -> None:
    path = _model_with_external_weight(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"\0" * 20)
    with pytest.raises(ModelLoadError, match="too short"):
        import_onnx(path)
