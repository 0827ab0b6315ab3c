"""The format registry (compiler.frontends.base): which frontend reads which model, the formats
text of help and errors, model stems for default artifact names, and the source hash."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from models_fixture import tiny_model

from compiler.cli import default_artifact
from compiler.errors import ModelLoadError, NnxcError
from compiler.frontends.base import (
    file_sha256,
    formats_text,
    frontend_for,
    frontends,
    register,
)

GRAPH = "version 1.0;\ngraph G( x ) -> ( y )\n{\n  x = external(shape = [1]);\n  y = copy(x);\n}\n"


def test_registry_order_and_formats_text() -> None:
    assert [f.name for f in frontends()] == ["onnx", "nnef", "coreml"]
    text = formats_text()
    assert text.startswith("ONNX: ") and "; NNEF: " in text and "; Core ML: " in text
    for f in frontends():
        assert f.accepts_text in text


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register(frontends()[1])


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("m.onnx", "onnx"),
        ("M.ONNX", "onnx"),
        ("m.nnef", "nnef"),
        ("graph.nnef", "nnef"),
        ("m.nnef.tgz", "nnef"),
        ("m.tgz", "nnef"),
        ("m.tar.gz", "nnef"),
        ("m.tar", "nnef"),
        ("m.mlmodel", "coreml"),
        ("m.mlpackage", "coreml"),
    ],
)
def test_by_suffix(tmp_path: Path, name: str, fmt: str) -> None:
    """Also for paths that do not exist: the format's own loader then says so."""
    assert frontend_for(tmp_path / name).name == fmt
    assert frontend_for(str(tmp_path / name)).name == fmt


def test_folders(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "graph.nnef").write_text(GRAPH)
    assert frontend_for(model).name == "nnef"
    (tmp_path / "empty.nnef").mkdir()  # named as NNEF: NNEF's loader says what is missing
    assert frontend_for(tmp_path / "empty.nnef").name == "nnef"
    (tmp_path / "m.mlpackage").mkdir()
    assert frontend_for(tmp_path / "m.mlpackage").name == "coreml"
    (tmp_path / "plain").mkdir()
    with pytest.raises(NnxcError, match=r"plain: not a model nnxc can read \(a folder") as e:
        frontend_for(tmp_path / "plain")
    assert formats_text() in str(e.value)


def test_unclaimed_suffix_sniffed_as_nnef_text(tmp_path: Path) -> None:
    path = tmp_path / "model.txt"
    path.write_text("# a comment\n\n" + GRAPH)
    assert frontend_for(path).name == "nnef"


@pytest.mark.parametrize("mode", ["w:gz", "w"])
def test_unclaimed_suffix_sniffed_as_nnef_archive(tmp_path: Path, mode: str) -> None:
    """A gzipped or plain tar under another name is NNEF's (no ONNX file starts so)."""
    (tmp_path / "graph.nnef").write_text(GRAPH)
    path = tmp_path / "model.bin"
    with tarfile.open(path, mode) as tar:
        tar.add(tmp_path / "graph.nnef", "graph.nnef")
    frontend = frontend_for(path)
    assert frontend.name == "nnef"
    graph, source = frontend.import_model(path)
    assert source.name == "model.bin" and [v.name for v in graph.inputs] == ["x"]
    assert source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_unclaimed_suffix_falls_back_to_onnx(tmp_path: Path) -> None:
    path = tmp_path / "model.pb"
    onnx.save(tiny_model(), path)
    frontend = frontend_for(path)
    assert frontend.name == "onnx"
    graph, source = frontend.import_model(path)
    assert source.format == "onnx" and [v.name for v in graph.inputs] == ["x"]


def test_unknown_file_type_error_lists_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "model.xyz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(ModelLoadError) as e:
        frontend_for(path).import_model(path)
    msg = str(e.value)
    assert "not an ONNX model" in msg and "no format claims the file's name" in msg
    assert formats_text() in msg and "\n" not in msg


def test_missing_path_of_no_format(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="none: no such file or folder"):
        frontend_for(tmp_path / "none")


def test_objects() -> None:
    assert frontend_for(tiny_model()).name == "onnx"
    from coremltools.proto import Model_pb2

    assert frontend_for(Model_pb2.Model()).name == "coreml"
    with pytest.raises(NnxcError, match="cannot compile an object of type int") as e:
        frontend_for(42)
    assert formats_text() in str(e.value)


@pytest.mark.parametrize(
    ("name", "artifact"),
    [
        ("m.onnx", "m.so"),
        ("m.nnef.tgz", "m.so"),
        ("m.tgz", "m.so"),
        ("m.tar.gz", "m.so"),
        ("x.nnef", "x.so"),
        ("graph.nnef", "graph.so"),
        ("m.pb", "m.so"),
        ("m.mlmodel", "m.so"),
        ("m.mlpackage", "m.so"),
    ],
)
def test_default_artifact(tmp_path: Path, name: str, artifact: str) -> None:
    assert default_artifact(str(tmp_path / name)) == tmp_path / artifact


def test_default_artifact_of_a_folder_is_beside_it(tmp_path: Path) -> None:
    model = tmp_path / "resnet"
    model.mkdir()
    (model / "graph.nnef").write_text(GRAPH)
    assert default_artifact(str(model)) == tmp_path / "resnet.so"
    assert default_artifact(str(model) + "/") == tmp_path / "resnet.so"


def test_file_sha256(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"12")
    (tmp_path / "b").write_bytes(b"3")
    files = [tmp_path / "a", tmp_path / "b"]
    assert file_sha256(files) == hashlib.sha256(b"123").hexdigest()
    named = hashlib.sha256(b"a\x0012b\x003").hexdigest()
    assert file_sha256(files, tmp_path) == named


def test_function_only_for_formats_with_functions() -> None:
    from compiler.driver import import_model

    with pytest.raises(NnxcError, match="--function: ONNX models have no functions"):
        import_model(tiny_model(), function="main")
