"""MIL cond, while_loop, fixed-length lists and classify: regions against numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from coremltools.converters.mil.mil import Builder as mb
from coremlutil import check, ct, save_program

from compiler.errors import ConversionError
from compiler.frontends.coreml.importer import import_coreml


def _ops(graph) -> list[str]:
    return [n.op for n in graph.nodes]


def test_cond_on_data_becomes_an_if(tmp_path: Path) -> None:
    """Both branches read outer values (captures); one returns an outer value unchanged."""

    @mb.program(input_specs=[mb.TensorSpec((1,)), mb.TensorSpec((2, 3)), mb.TensorSpec((2, 3))])
    def prog(p, x, y):
        pred = mb.greater(x=p, y=0.0)
        return mb.cond(
            pred=pred,
            _true_fn=lambda: (mb.mul(x=x, y=y), x),
            _false_fn=lambda: (mb.sub(x=y, y=x), mb.relu(x=y)),
        )

    path = save_program(prog, tmp_path)
    graph, _ = import_coreml(path)
    assert "if" in _ops(graph)
    rng = np.random.default_rng(0)
    y = rng.standard_normal((2, 3)).astype(np.float32)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    for p in (1.0, -1.0):
        want = [x * y, x] if p > 0 else [y - x, np.maximum(y, 0)]
        check(path, {"p": np.array([p], np.float32), "x": x, "y": y}, want, tvm=p > 0)


def test_while_loop_with_a_data_dependent_count(tmp_path: Path) -> None:
    """Double x until it passes a limit; count the iterations."""

    @mb.program(input_specs=[mb.TensorSpec((1,)), mb.TensorSpec((1,))])
    def prog(x, limit):
        def cond(i, v):
            return mb.less(x=v, y=limit)

        def body(i, v):
            return mb.add(x=i, y=1), mb.mul(x=v, y=2.0)

        return mb.while_loop(_cond=cond, _body=body, loop_vars=(np.int32(0), x))

    path = save_program(prog, tmp_path)
    graph, _ = import_coreml(path)
    assert "loop" in _ops(graph)
    x = np.array([0.75], np.float32)
    for limit in (0.5, 20.0, 100.0):
        v, i = x.copy(), 0
        while v[0] < limit:
            v, i = v * 2, i + 1
        check(path, {"x": x, "limit": np.array([limit], np.float32)}, [np.int32(i), v])


def test_list_written_in_a_loop_and_stacked(tmp_path: Path) -> None:
    """A fixed-length list carried by a loop: write row i, then gather, scatter and read."""

    @mb.program(input_specs=[mb.TensorSpec((2,))])
    def prog(x):
        ls = mb.make_list(init_length=4, dynamic_length=False, elem_shape=(2,), dtype="fp32")

        def cond(i, ls, v):
            return mb.less(x=i, y=4)

        def body(i, ls, v):
            ls = mb.list_write(ls=ls, index=i, value=v)
            return mb.add(x=i, y=1), ls, mb.add(x=v, y=1.0)

        _, ls, _ = mb.while_loop(_cond=cond, _body=body, loop_vars=(np.int32(0), ls, x))
        rows = mb.list_gather(ls=ls, indices=np.array([3, 0], np.int32))
        ls = mb.list_scatter(
            ls=ls, indices=np.array([1], np.int32), value=np.zeros((1, 2), np.float32)
        )
        return rows, mb.list_read(ls=ls, index=1)

    path = save_program(prog, tmp_path)
    x = np.array([1.0, -2.0], np.float32)
    check(path, {"x": x}, [np.stack([x + 3, x]), np.zeros(2, np.float32)])


def test_growing_list_is_refused(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec((2,))])
    def prog(x):
        ls = mb.make_list(init_length=1, elem_shape=(2,), dtype="fp32")
        ls = mb.list_write(ls=ls, index=0, value=x)
        return mb.list_read(ls=ls, index=0)

    path = save_program(prog, tmp_path)
    with pytest.raises(ConversionError, match=r"make_list .*dynamic_length=True"):
        import_coreml(path)


@pytest.mark.parametrize("classes", [["cat", "dog", "emu"], [10, 20, 30]])
def test_classifier_program_labels(tmp_path: Path, classes: list) -> None:
    @mb.program(input_specs=[mb.TensorSpec((1, 3))])
    def prog(x):
        return mb.sigmoid(x=x)

    path = save_program(prog, tmp_path, classifier_config=ct.ClassifierConfig(classes))
    graph, _ = import_coreml(path)
    assert json.loads(graph.metadata["labels"]) == classes
    assert len(graph.outputs) == 1  # the probabilities; the label is the runtime's
    x = np.array([[1.0, 3.0, 2.0]], np.float32)
    check(path, {"x": x}, [(1 / (1 + np.exp(-x))).reshape(3)], tvm=False)


def test_cond_nested_in_a_loop_reads_outer_values(tmp_path: Path) -> None:
    """A cond in a loop body reads a function input: captured through both regions."""

    @mb.program(input_specs=[mb.TensorSpec((2,)), mb.TensorSpec((2,))])
    def prog(x, step):
        def cond(i, v):
            return mb.less(x=i, y=5)

        def body(i, v):
            late = mb.greater(x=i, y=2)
            v = mb.cond(
                pred=late,
                _true_fn=lambda: mb.sub(x=v, y=step),
                _false_fn=lambda: mb.add(x=v, y=step),
            )
            return mb.add(x=i, y=1), v

        return mb.while_loop(_cond=cond, _body=body, loop_vars=(np.int32(0), x))[1]

    path = save_program(prog, tmp_path)
    x, step = np.array([1.0, 2.0], np.float32), np.array([0.5, -1.0], np.float32)
    check(path, {"x": x, "step": step}, [x + 3 * step - 2 * step])


def test_an_output_folded_to_a_constant(tmp_path: Path) -> None:
    """ct.convert folds an output it can compute (a list's length here) into a const op."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(2,))])
    def prog(x):
        ls = mb.make_list(init_length=3, dynamic_length=False, elem_shape=(2,), dtype="fp32")
        return mb.relu(x=x), mb.list_length(ls=ls)

    path = save_program(prog, tmp_path)
    x = np.array([-1.0, 2.0], np.float32)
    check(path, {"x": x}, [np.maximum(x, 0), np.int32(3)])
