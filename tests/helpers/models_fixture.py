"""Shared fixtures and helpers of the end-to-end, CLI, runtime and driver tests.

Test modules import the fixtures they use by name (``from models_fixture import tiny_onnx``).
Pytest makes one fixture definition per importing module, so the costly products (randomized
light models, compiled artifacts) are cached on disk under the session's base temp folder:
whichever module asks first builds them, the others reuse the files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# The weight of the tiny models: fixed, so expected outputs are plain numpy.
TINY_W = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


# -- running the command line -------------------------------------------------------------------
def nnxc(
    *args: str | os.PathLike,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> subprocess.CompletedProcess[str]:
    """``python -m compiler.cli ARGS`` in a fresh process: exit status, stdout, stderr."""
    return subprocess.run(
        [PYTHON, "-m", "compiler.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A failed command: non-zero exit, no traceback, and exactly one ``nnxc: error:`` line,
    the last one on stderr (progress lines may come before it), holding every needle."""
    assert result.returncode != 0, f"expected a failure, got:\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("nnxc: error:")]
    assert len(errors) == 1, f"expected one 'nnxc: error:' line, stderr was:\n{result.stderr}"
    assert lines[-1] == errors[0], result.stderr
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


# -- small models -------------------------------------------------------------------------------
def tiny_model(batch: int | str = "N", opset: int = 17) -> onnx.ModelProto:
    """``y = relu(x @ W)``, x: float32[batch, 4]; a string batch is a symbolic dim."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        [numpy_helper.from_array(TINY_W, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_expected(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ TINY_W, 0)


def two_input_model() -> onnx.ModelProto:
    """``z = a + b`` (float32[N, 2]) and ``c = cast(k, float32)`` from int64 ``k[3]``: several
    inputs sharing a symbolic dim, and an integer input."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["z"]),
            helper.make_node("Cast", ["k"], ["c"], to=TensorProto.FLOAT),
        ],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [3]),
        ],
        [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _session_dir(factory: pytest.TempPathFactory, name: str) -> Path:
    path = factory.getbasetemp() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _compile_once(src: Path, out: Path, *flags: str) -> Path:
    """Compile ``src`` to ``out`` with the API unless an earlier test module did."""
    if not out.exists():
        import compiler

        compiler.compile(str(src), **_api_flags(flags)).export(out)
    return out


def _api_flags(flags: tuple[str, ...]) -> dict:
    shapes = {}
    for f in flags:
        name, _, dims = f.partition("=")
        shapes[name] = [int(d) if d.isdigit() else d for d in dims.split(",")]
    return {"input_shapes": shapes} if shapes else {}


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a symbolic batch dim, saved as a file."""
    path = _session_dir(tmp_path_factory, "tiny") / "tiny.onnx"
    if not path.exists():
        onnx.save(tiny_model(), path)
    return path


@pytest.fixture(scope="session")
def tiny_so(tiny_onnx: Path) -> Path:
    """The tiny model compiled for the host, batch dim kept symbolic."""
    return _compile_once(tiny_onnx, tiny_onnx.with_name("tiny.so"))


@pytest.fixture(scope="session")
def tiny_so_static(tiny_onnx: Path) -> Path:
    """The tiny model compiled with its batch bound to 3."""
    return _compile_once(tiny_onnx, tiny_onnx.with_name("tiny_b3.so"), "x=3,4")


@pytest.fixture(scope="session")
def two_input_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = _session_dir(tmp_path_factory, "two")
    src = folder / "two.onnx"
    if not src.exists():
        onnx.save(two_input_model(), src)
    return _compile_once(src, folder / "two.so")


# -- the light model-zoo models, with random weights ---------------------------------------------
def ort_run(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the zoo files carry unused *_SHAPE initializers
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


class LightModels:
    """Randomized light models, made on first use and kept as files for the whole session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        from benchmarks.models import light_path, randomized

        out = self.folder / f"{name}.onnx"
        if not out.exists():
            model = randomized(onnx.load(str(light_path(name))), seed=0)
            tmp = out.with_suffix(".tmp")
            onnx.save(model, tmp)
            tmp.replace(out)
        return out


@pytest.fixture(scope="session")
def light_models(tmp_path_factory: pytest.TempPathFactory) -> LightModels:
    return LightModels(_session_dir(tmp_path_factory, "light"))


def relabel(artifact: Path, meta, out: Path) -> Path:  # noqa: ANN001 - compiler.artifact.Metadata
    """A copy of ``artifact`` at ``out`` with the metadata ``meta`` (and a checksum that holds):
    for tests of what a loader makes of metadata the compiler would not write."""
    from compiler.artifact import write_artifact

    data = artifact.read_bytes()
    library = data[: len(data) - 16 - int.from_bytes(data[-16:-8], "little")]
    write_artifact(out, lambda tmp: Path(tmp).write_bytes(library), meta)
    return out
