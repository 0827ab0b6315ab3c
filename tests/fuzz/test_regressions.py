"""Every crash the fuzzer found, as a minimal input built in code: each now ends in one clear
``NnxcError`` line. Inputs run in the fuzz harness's child process, so that a regression to a
segfault fails the test instead of killing the test run."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from fuzz_harness import Outcome, Worker
from fuzz_seeds import tar_folder

NNEF_HEAD = "version 1.0;\nextension KHR_enable_fragment_definitions;\n"
NNEF_BODY = "graph G( x ) -> ( y )\n{{\n  x = external<scalar>(shape = [1, 2]);\n  {}\n}}\n"


@pytest.fixture(scope="module")
def worker():
    with Worker("import", timeout_s=60.0, memory_mb=4096, light=True) as w:
        yield w


def _refused(out: Outcome, kind: str, *words: str) -> None:
    assert (out.status, out.type) == ("error", kind), f"{out.summary()}\n{out.detail}"
    for word in words:
        assert word in out.message, out.message


def _nnef(folder: Path, body: str, head: str = NNEF_HEAD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "graph.nnef").write_text(head + body)
    return folder


# -- NNEF --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "statement",
    [
        "y ( relu(x);",  # the fuzzer's find: '=' replaced by '('
        "relu(x);",
        "y = relu(x); z(x);",
        "y, z ( x );",
        "[y, b(x)] = x;",
        "y(x) = x;",
    ],
)
def test_nnef_invocation_left_of_assignment(worker: Worker, tmp_path: Path, statement: str):
    """The Khronos parser segfaulted on these statements."""
    model = _nnef(tmp_path / "m.nnef", NNEF_BODY.format(statement))
    _refused(worker.run(model), "ModelLoadError", "graph.nnef line 6", "left of '='")


def test_nnef_invocation_left_of_assignment_in_fragment(worker: Worker, tmp_path: Path):
    fragment = "fragment f( a: tensor<scalar> ) -> ( b: tensor<scalar> )\n{\n  b ( a );\n}\n"
    model = _nnef(tmp_path / "m.nnef", fragment + NNEF_BODY.format("y = f(x);"))
    _refused(worker.run(model), "ModelLoadError", "graph.nnef line 5", "'b'")


def test_nnef_sound_statements_still_parse(worker: Worker, tmp_path: Path) -> None:
    body = "[a, b] = split(x, axis = 1, ratios = [1, 1]);  # c(x);\n  y = max(a, b);"
    out = worker.run(_nnef(tmp_path / "m.nnef", NNEF_BODY.format(body)))
    assert out.status == "ok", out.summary()


def test_nnef_archive_huge_pax_header(worker: Worker, tmp_path: Path) -> None:
    """tarfile read a pax header's declared size into memory whole (a MemoryError)."""
    folder = _nnef(tmp_path / "m", NNEF_BODY.format("y = relu(x);"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(folder / "graph.nnef", arcname="graph.nnef")
        info.pax_headers = {"comment": "x"}
        tar.addfile(info, open(folder / "graph.nnef", "rb"))
    raw = bytearray(buf.getvalue())
    assert raw[156:157] == b"x"  # the first header is the pax header
    raw[124:136] = bytes([0x80]) + (2**62).to_bytes(11, "big")  # its size, base-256
    raw[148:156] = b" " * 8
    raw[148:156] = f"{sum(raw[:512]):06o}".encode() + b"\0 "
    archive = tmp_path / "m.nnef.tgz"
    archive.write_bytes(gzip.compress(bytes(raw)))
    _refused(worker.run(archive), "ModelLoadError", "extended header", str(2**62))


def test_nnef_archive_still_unpacks(worker: Worker, tmp_path: Path) -> None:
    folder = _nnef(tmp_path / "m", NNEF_BODY.format("y = relu(x);"))
    archive = tmp_path / "m.nnef.tgz"
    archive.write_bytes(tar_folder(folder))
    assert worker.run(archive).status == "ok"


# -- Core ML -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coreml_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from coremltools.converters.mil import Builder as mb
    from coremlutil import save_program

    w = np.arange(12, dtype=np.float32).reshape(3, 4)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 4))])
    def prog(x):
        return mb.relu(x=mb.matmul(x=x, y=w.T))

    return save_program(prog, tmp_path_factory.mktemp("prog"))


def _spec_path(package: Path) -> Path:
    return package / "Data" / "com.apple.CoreML" / "model.mlmodel"


def test_coreml_const_op_with_two_outputs(worker: Worker, coreml_program: Path, tmp_path: Path):
    """coremltools' loader raised an AssertionError for it."""
    import shutil

    from coremltools.proto import Model_pb2

    package = tmp_path / "m.mlpackage"
    shutil.copytree(coreml_program, package)
    spec = Model_pb2.Model.FromString(_spec_path(package).read_bytes())
    (fn,) = spec.mlProgram.functions.values()
    (block,) = fn.block_specializations.values()
    const = next(op for op in block.operations if op.type == "const")
    const.outputs.add().CopyFrom(const.outputs[0])
    _spec_path(package).write_bytes(spec.SerializeToString())
    _refused(worker.run(package), "ModelLoadError", "does not load", "number of outputs")


def _mlmodel(tmp_path: Path, edit) -> Path:
    from coremlutil import nn_builder, save_nn

    b = nn_builder([("x", (2, 3))], [("y", None)])
    b.add_activation("relu", "RELU", "x", "y")
    spec = b.spec
    edit(spec.description.input[0].type.multiArrayType)
    return save_nn(spec, tmp_path)


def test_coreml_negative_input_size(worker: Worker, tmp_path: Path) -> None:
    """An IRTypeError (another exception) escaped from the IR's TensorType."""

    def edit(array) -> None:
        array.shape[0] = -1

    out = worker.run(_mlmodel(tmp_path, edit))
    _refused(out, "ModelLoadError", "input 'x'", "negative size -1")


@pytest.mark.parametrize("lo, hi", [(5, 3), (1, -7)])
def test_coreml_invalid_size_range(worker: Worker, tmp_path: Path, lo: int, hi: int) -> None:
    def edit(array) -> None:
        for d in array.shape:
            r = array.shapeRange.sizeRanges.add()
            r.lowerBound, r.upperBound = d, d
        array.shapeRange.sizeRanges[0].lowerBound = lo
        array.shapeRange.sizeRanges[0].upperBound = hi

    out = worker.run(_mlmodel(tmp_path, edit))
    _refused(out, "ModelLoadError", "input 'x'", f"invalid size range [{lo}, {hi}]")


# -- ONNX --------------------------------------------------------------------------------------
def _onnx_relu(tmp_path: Path, elem_type: int, where: str) -> Path:
    import onnx
    from onnx import helper, numpy_helper

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    b = numpy_helper.from_array(np.ones(2, np.float32), "b")
    g = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"])], "g", [x], [y], [b])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    if where == "input":
        model.graph.input[0].type.tensor_type.elem_type = elem_type
    else:
        model.graph.initializer[0].data_type = elem_type
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("where", ["input", "initializer"])
def test_onnx_element_type_of_no_onnx_type(worker: Worker, tmp_path: Path, where: str) -> None:
    """Naming the unknown type raised a ValueError (protobuf's enum lookup)."""
    out = worker.run(_onnx_relu(tmp_path, 805, where))
    assert out.status == "error", f"{out.summary()}\n{out.detail}"
    if where == "input":
        assert "element type 805 (no ONNX type) is not supported" in out.message


def test_onnx_negative_input_size(worker: Worker, tmp_path: Path) -> None:
    """An IRTypeError (another exception) escaped from the IR's TensorType."""
    import onnx

    path = _onnx_relu(tmp_path, onnx.TensorProto.FLOAT, "input")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    path.write_bytes(model.SerializeToString())
    out = worker.run(path)
    _refused(out, "ModelLoadError", "input 'x'", "negative size -1")


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
def test_onnx_conv_bias_of_another_length(worker: Worker, tmp_path: Path, op: str) -> None:
    """The bias length was not checked against the output channels: the TVM lowering failed
    later with a ValueError from Relax's broadcast check."""
    import onnx
    from onnx import helper, numpy_helper

    w = np.ones((4, 4, 3, 3), np.float32)
    b = np.zeros(16, np.float32)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    node = helper.make_node(op, ["x", "w", "b"], ["y"], name="c", pads=[1, 1, 1, 1])
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    g = helper.make_graph([node], "g", [x], [y], inits)
    path = tmp_path / "m.onnx"
    path.write_bytes(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    out = worker.run(path)
    _refused(out, "ConversionError", f"{op} node 'c'", "bias float32[16] for 4 output channels")


def test_coreml_program_without_functions(worker: Worker, coreml_program: Path, tmp_path: Path):
    """An IndexError escaped when picking the default function of an empty program."""
    import shutil

    from coremltools.proto import Model_pb2

    package = tmp_path / "m.mlpackage"
    shutil.copytree(coreml_program, package)
    spec = Model_pb2.Model.FromString(_spec_path(package).read_bytes())
    spec.mlProgram.functions.clear()
    _spec_path(package).write_bytes(spec.SerializeToString())
    _refused(worker.run(package), "ModelLoadError", "holds no function")


def test_onnx_lstm_of_a_huge_declared_length(worker: Worker, tmp_path: Path) -> None:
    """An LSTM over a declared 488,614,455 steps was unrolled step by step: the import ran
    for hours (a hang past the bound). It now becomes a loop and imports at once. (A million
    steps here: the fuzzer's length now meets --max-memory, its input projection alone being
    29 GiB, which is another clean refusal.)"""
    import onnx
    from onnx import helper, numpy_helper

    hidden = 4
    w = np.ones((1, 4 * hidden, 3), np.float32)
    r = np.ones((1, 4 * hidden, hidden), np.float32)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1_000_000, 1, 3])
    y = helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT, None)
    node = helper.make_node("LSTM", ["x", "W", "R"], ["", "h"], name="lstm", hidden_size=hidden)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R")]
    g = helper.make_graph([node], "g", [x], [y], inits)
    path = tmp_path / "m.onnx"
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    out = worker.run(path, timeout_s=20.0)
    assert out.status == "ok", f"{out.summary()}\n{out.detail}"
    assert out.seconds < 20


def test_onnx_name_that_is_not_utf8(worker: Worker, tmp_path: Path) -> None:
    """protobuf hands invalid UTF-8 over as bytes: a TypeError escaped from the importer."""
    path = _onnx_relu(tmp_path, 1, "input")
    data = path.read_bytes()
    assert data.count(b"\x12\x01g") == 1  # GraphProto.name = "g": field 2, length 1
    path.write_bytes(data.replace(b"\x12\x01g", b"\x12\x01\xd9"))
    _refused(worker.run(path), "ModelLoadError", "onnx.GraphProto.name", "not UTF-8")


def test_onnx_unsupported_op_type_with_a_newline(worker: Worker, tmp_path: Path) -> None:
    """The op type went into the error as it was: a message of several lines."""
    import onnx

    path = _onnx_relu(tmp_path, onnx.TensorProto.FLOAT, "input")
    model = onnx.load(str(path))
    model.graph.node[0].op_type = "\nMB"
    path.write_bytes(model.SerializeToString())
    _refused(worker.run(path), "UnsupportedOpsError", "'\\nMB' x1")


def test_nnef_negative_input_size(worker: Worker, tmp_path: Path) -> None:
    """An IRTypeError (another exception) escaped from the IR's TensorType."""
    body = (
        "graph G( x ) -> ( y )\n{\n  x = external<scalar>(shape = [2, -1417062441, 4]);\n"
        "  y = relu(x);\n}\n"
    )
    model = _nnef(tmp_path / "m.nnef", body)
    _refused(worker.run(model), "ModelLoadError", "input 'x'", "negative sizes")


def test_onnx_required_input_missing(worker: Worker, tmp_path: Path) -> None:
    """An Identity without its input: the converter returned None and a TypeError escaped."""
    import onnx
    from onnx import helper

    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    node = helper.make_node("Identity", [], ["y"], name="ident")
    g = helper.make_graph([node], "g", [], [y])
    path = tmp_path / "m.onnx"
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    out = worker.run(path)
    _refused(out, "ConversionError", "Identity node 'ident'", "required input 0 (input)")


def test_coreml_op_type_unknown_to_the_loader(
    worker: Worker, coreml_program: Path, tmp_path: Path
) -> None:
    """coremltools' loader raised an AttributeError for an op type its builder lacks."""
    import shutil

    from coremltools.proto import Model_pb2

    package = tmp_path / "m.mlpackage"
    shutil.copytree(coreml_program, package)
    spec = Model_pb2.Model.FromString(_spec_path(package).read_bytes())
    (fn,) = spec.mlProgram.functions.values()
    (block,) = fn.block_specializations.values()
    next(op for op in block.operations if op.type == "relu").type = "no_such_op"
    _spec_path(package).write_bytes(spec.SerializeToString())
    out = worker.run(package)
    assert out.status == "error", f"{out.summary()}\n{out.detail}"
    assert "no_such_op" in out.message
