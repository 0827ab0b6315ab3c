"""ML Programs as a whole: multi-function programs (the default function, or one named with
``function=`` / ``--function``), and the errors naming the functions there are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from coremltools.converters.mil.mil import Builder as mb
from coremlutil import check, save_program

import compiler
from compiler.cli import main
from compiler.errors import ModelLoadError, NnxcError


@pytest.fixture(scope="module")
def two_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package with functions ``relu`` (the default) and ``tanh``."""
    from coremltools.models.utils import MultiFunctionDescriptor, save_multifunction

    folder = tmp_path_factory.mktemp("multi")

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))])
    def relu(x):
        return mb.relu(x=x)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))])
    def tanh(x):
        return mb.tanh(x=x)

    desc = MultiFunctionDescriptor()
    for name, prog in (("relu", relu), ("tanh", tanh)):
        desc.add_function(str(save_program(prog, folder, name=name)), "main", name)
    desc.default_function_name = "relu"
    path = folder / "two.mlpackage"
    save_multifunction(desc, str(path))
    return path


X = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)


def test_default_function(two_functions: Path) -> None:
    check(two_functions, {"x": X}, [np.maximum(X, 0)])


def test_named_function(two_functions: Path) -> None:
    check(two_functions, {"x": X}, [np.tanh(X)], function="tanh", tvm=False)
    cm = compiler.compile(two_functions, function="tanh")
    assert cm.metadata.extra["mil_function"] == "tanh"
    np.testing.assert_allclose(cm.run({"x": X})[cm.metadata.outputs[0].name], np.tanh(X), 1e-6)


def test_unknown_function_names_the_others(two_functions: Path) -> None:
    with pytest.raises(ModelLoadError, match="no function 'sigmoid'; the program holds relu, tanh"):
        compiler.compile(two_functions, function="sigmoid")


def test_cli_function_flag(two_functions: Path, tmp_path: Path) -> None:
    out = tmp_path / "tanh.so"
    assert main(["compile", str(two_functions), "--function", "tanh", "-o", str(out)]) == 0
    rt = compiler.load(out)
    (got,) = rt.run({"x": X}).values()
    np.testing.assert_allclose(got, np.tanh(X), 1e-6)


def test_function_of_a_format_without_functions(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(NnxcError, match="ONNX models have no functions"):
        compiler.compile(path, function="f")
