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


@pytest.mark.parametrize(
    "elem,np_type,values",
    [
        (onnx.TensorProto.INT4, "int4", [-8, -3, 0, 7, 5]),
        (onnx.TensorProto.UINT2, "uint2", [0, 3, 1, 2, 3]),
        (onnx.TensorProto.FLOAT4E2M1, "float4_e2m1fn", [0.5, -6.0, 1.5, 0.0, 3.0]),
    ],
)
def test_packed_external_data_is_unpacked_one_element_per_byte(
    tmp_path: Path, elem: int, np_type: str, values: list
) -> None:
    import ml_dtypes

    x = np.array(values, getattr(ml_dtypes, np_type))
    inline = onnx.numpy_helper.from_array(x, "w")  # onnx packs the sub-byte types
    (tmp_path / "w.bin").write_bytes(b"\0" * 8 + inline.raw_data)
    tensor = onnx.TensorProto(name="w", data_type=elem, dims=[5])
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", "8")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", elem, [5])],
        initializer=[tensor],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), path)
    (w,) = [v for v in import_onnx(path).constants() if v.name == "w"]
    assert w.const.dtype == x.dtype and w.const.shape == (5,)
    np.testing.assert_array_equal(w.const.view(np.uint8), x.view(np.uint8))
    assert len(inline.raw_data) < 5  # really packed
