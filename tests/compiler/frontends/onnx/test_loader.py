"""The ONNX loader: external data stays memory-mapped and is checked against its file."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnxutil import nested_if_model

from compiler.errors import ModelLoadError, ResourceLimitError
from compiler.frontends.onnx import import_onnx
from compiler.limits import memory_limit


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


def _model(initializers: list[onnx.TensorProto], nodes: list, out: str = "y") -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [],
        [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_declared_huge_initializer_is_refused_before_reading() -> None:
    # 10^12 float32 elements declared, no data: refused by size, nothing allocated.
    w = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[10**6, 10**6])
    model = _model([w], [helper.make_node("Relu", ["w"], ["y"])])
    with pytest.raises(ResourceLimitError, match=r"initializer 'w' of shape \[1000000, 1000000\]"):
        import_onnx(model)


def test_wrapping_dims_of_external_data_are_refused(tmp_path: Path) -> None:
    # 2^40 x 2^40 elements: numpy's int64 count of them is 0, which used to read as empty.
    (tmp_path / "w.bin").write_bytes(b"")
    w = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[1 << 40, 1 << 40])
    w.data_location = onnx.TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", "w.bin"
    onnx.save(_model([w], [helper.make_node("Relu", ["w"], ["y"])]), tmp_path / "m.onnx")
    with pytest.raises(ResourceLimitError, match="initializer 'w'"):
        import_onnx(tmp_path / "m.onnx")


def test_data_shorter_than_dims_is_a_load_error() -> None:
    w = helper.make_tensor("w", onnx.TensorProto.FLOAT, [2], [1.0, 2.0])
    w.dims[:] = [10, 10]  # declares 100 elements, holds 2
    with pytest.raises(ModelLoadError, match="initializer 'w' is unreadable"):
        import_onnx(_model([w], [helper.make_node("Relu", ["w"], ["y"])]))


def test_max_memory_refuses_a_large_constant() -> None:
    w = numpy_helper.from_array(np.ones((512, 1024), np.float32), "w")  # 2 MiB
    model = _model([w], [helper.make_node("Relu", ["w"], ["y"])])
    with memory_limit(1 << 20), pytest.raises(ResourceLimitError, match="initializer 'w'.*2.0 MiB"):
        import_onnx(model)
    with memory_limit(4 << 20):
        import_onnx(model)


def test_max_memory_bounds_the_initializers_in_all() -> None:
    inits = [numpy_helper.from_array(np.ones(1 << 17, np.float32), n) for n in "abc"]  # 512K each
    model = _model(
        inits,
        [helper.make_node("Sum", ["a", "b", "c"], ["y"])],
    )
    with memory_limit(1 << 20), pytest.raises(ResourceLimitError, match="3 initializers need 1.5"):
        import_onnx(model)


def test_tensor_attribute_is_checked_before_reading() -> None:
    value = onnx.TensorProto(name="v", data_type=onnx.TensorProto.FLOAT, dims=[10**6, 10**6])
    model = _model([], [helper.make_node("Constant", [], ["y"], value=value)])
    with pytest.raises(ResourceLimitError, match="Constant node .*tensor attribute 'value'"):
        import_onnx(model)


def test_file_nested_deeper_than_protobuf_reads_is_a_clear_error(tmp_path: Path) -> None:
    onnx.save(nested_if_model(40), tmp_path / "deep.onnx")  # 120 message levels
    with pytest.raises(ModelLoadError, match="nested deeper than protobuf reads"):
        import_onnx(tmp_path / "deep.onnx")
