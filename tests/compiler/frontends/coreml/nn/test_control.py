"""NeuralNetwork control flow: branch and loop onto the IR's ``if`` and ``loop`` (blobs written
inside a nested network stay visible after it), copy, and the refused loopBreak/continue.

The networks count with ``linear`` activations (``a x + b``) and ``copy`` layers writing a
blob back, as coremltools' own MIL-to-NN lowering of ``while_loop`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from coremlutil import NeuralNetworkBuilder, check, nn_builder, save_nn

from compiler.errors import ConversionError, UnsupportedOpsError
from compiler.frontends.coreml.importer import import_coreml
from compiler.ir.graph import walk


def _nested(net: Any) -> NeuralNetworkBuilder:
    return NeuralNetworkBuilder(nn_spec=net, disable_rank5_shape_mapping=True)


def _affine(b: NeuralNetworkBuilder, name: str, x: str, y: str, a: float, c: float) -> None:
    b.add_activation(name, "LINEAR", x, y, params=[a, c])


def _step(b: NeuralNetworkBuilder, tag: str, blob: str, a: float, c: float) -> None:
    """``blob = a * blob + c`` through a temporary and a copy back."""
    _affine(b, f"{tag}_affine", blob, f"{tag}_t", a, c)
    b.add_copy(f"{tag}_copy", f"{tag}_t", blob)


def _ops(path: Path) -> set[str]:
    graph, _ = import_coreml(path)
    return {n.op for n in walk(graph)}


# -- branch ---------------------------------------------------------------------------------


def _branch_model(tmp_path: Path, with_else: bool) -> Path:
    """y = relu(x) if c else 2x + 1 (or x, kept from before, without an else branch)."""
    b = nn_builder([("x", (3,)), ("c", (1,))], [("y", (3,))])
    b.add_copy("init", "x", "y")
    layer = b.add_branch("br", "c")
    then = _nested(layer.branch.ifBranch)
    then.add_activation("relu", "RELU", "x", "r")
    then.add_copy("r_copy", "r", "y")
    if with_else:
        _step(_nested(layer.branch.elseBranch), "e", "y", 2.0, 1.0)
    return save_nn(b, tmp_path)


@pytest.mark.parametrize("c", [1.0, -0.5, 0.0, 1e-7])
def test_branch_runs_the_arm_the_condition_picks(tmp_path: Path, c: float) -> None:
    path = _branch_model(tmp_path, with_else=True)
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    want = np.maximum(x, 0) if abs(c) > 1e-6 else 2 * x + 1
    feeds = {"x": x, "c": np.array([c], np.float32)}
    check(path, feeds, [want], tvm=c == 1.0)


def test_branch_without_else_keeps_the_blob(tmp_path: Path) -> None:
    path = _branch_model(tmp_path, with_else=False)
    assert "if" in _ops(path)
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    for c, want in ((0.0, x), (3.0, np.maximum(x, 0))):
        check(path, {"x": x, "c": np.array([c], np.float32)}, [want], tvm=False)


def test_branch_with_known_condition_is_converted_in_place(tmp_path: Path) -> None:
    path = _branch_model(tmp_path, with_else=True)
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    graph, _ = import_coreml(path, input_values={"c": np.array([0.0], np.float32)})
    assert "if" not in {n.op for n in walk(graph)}
    check(path, {"x": x}, [2 * x + 1], tvm=False, input_values={"c": np.zeros(1, np.float32)})


def test_branch_writing_a_new_blob_in_one_arm_only_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (3,)), ("c", (1,))], [("y", (3,))])
    layer = b.add_branch("br", "c")
    _nested(layer.branch.ifBranch).add_copy("only", "x", "y")
    with pytest.raises(ConversionError, match="branch node 'br': blob 'y' is written by only"):
        import_coreml(save_nn(b, tmp_path))


# -- loop -----------------------------------------------------------------------------------


def _loop_model(
    tmp_path: Path, max_iterations: int, condition: bool, trip_input: bool = False
) -> Path:
    """acc = x; while (acc[0] != 10) and i < max: acc += 1 (without ``condition``: a for
    loop of max iterations)."""
    inputs = [("x", (2,))] + ([("n", (1,))] if trip_input else [])
    b = nn_builder(inputs, [("acc", (2,))])
    b.add_copy("init", "x", "acc")
    layer = b.add_loop(
        "loop",
        input_name="n" if trip_input else None,
        condition="left" if condition else None,
        max_iterations=max_iterations,
    )
    if condition:
        _affine(_nested(layer.loop.conditionNetwork), "ten_minus", "acc", "left", -1.0, 10.0)
    _step(_nested(layer.loop.bodyNetwork), "inc", "acc", 1.0, 1.0)
    return save_nn(b, tmp_path)


@pytest.mark.parametrize(
    "max_iterations, condition, runs",
    [(5, False, 5), (0, False, 0), (0, True, 7), (4, True, 4), (20, True, 7)],
)
def test_loop_cases(tmp_path: Path, max_iterations: int, condition: bool, runs: int) -> None:
    path = _loop_model(tmp_path, max_iterations, condition)
    x = np.array([3.0, 0.5], np.float32)
    check(path, {"x": x}, [x + runs], tvm=(max_iterations, condition) == (0, True))


def test_loop_count_from_its_input(tmp_path: Path) -> None:
    path = _loop_model(tmp_path, 100, False, trip_input=True)
    x = np.array([3.0, 0.5], np.float32)
    check(path, {"x": x, "n": np.array([2.0], np.float32)}, [x + 2], tvm=False)


def test_branch_inside_a_loop_body(tmp_path: Path) -> None:
    """Four times: acc += 1 if acc[0] != 5 else acc += 10."""
    b = nn_builder([("x", (2,))], [("acc", (2,))])
    b.add_copy("init", "x", "acc")
    layer = b.add_loop("loop", max_iterations=4)
    body = _nested(layer.loop.bodyNetwork)
    _affine(body, "minus_five", "acc", "c", 1.0, -5.0)
    br = body.add_branch("br", "c")
    _step(_nested(br.branch.ifBranch), "one", "acc", 1.0, 1.0)
    _step(_nested(br.branch.elseBranch), "ten", "acc", 1.0, 10.0)
    path = save_nn(b, tmp_path)
    assert {"loop", "if"} <= _ops(path)
    x = np.array([3.0, 0.5], np.float32)
    check(path, {"x": x}, [x + 13])


def test_loop_blob_first_written_inside_and_read_after_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (2,))], [("t", (2,))])
    layer = b.add_loop("loop", max_iterations=2)
    _affine(_nested(layer.loop.bodyNetwork), "inc", "x", "t", 1.0, 1.0)
    with pytest.raises(ConversionError, match="loop node 'loop': blob 't' is first written"):
        import_coreml(save_nn(b, tmp_path))


@pytest.mark.parametrize("kind", ["loopBreak", "loopContinue"])
def test_break_and_continue_are_refused(tmp_path: Path, kind: str) -> None:
    b = nn_builder([("x", (2,))], [("acc", (2,))])
    b.add_copy("init", "x", "acc")
    layer = b.add_loop("loop", max_iterations=3)
    body = _nested(layer.loop.bodyNetwork)
    _step(body, "inc", "acc", 1.0, 1.0)
    getattr(body, "add_loop_break" if kind == "loopBreak" else "add_loop_continue")("stop")
    with pytest.raises(UnsupportedOpsError, match=f"{kind} x1 .*no early exit"):
        import_coreml(save_nn(b, tmp_path))
