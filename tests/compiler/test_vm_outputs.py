"""Outputs handed to numpy without a copy only where each call allocates them: reading the
bytecode (``compiler.vm_outputs``) and what ``Runtime.run`` then returns for fresh outputs,
inputs passed through and constants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import ModelProto, TensorProto, helper, numpy_helper

import compiler
from compiler.vm_outputs import fresh_in_text, fresh_outputs

HEAD = """@main:
  call  vm.builtin.check_tensor_info in: %0, i2, c[0], c[1] dst: %void
  call  vm.builtin.alloc_storage in: %vm, c[2], i0, c[3], c[4] dst: %1
  call  vm.builtin.alloc_tensor in: %1, i0, c[5], c[0] dst: %2
  call  vm.builtin.null_value in:              dst: %1
  call  relu             in: %0, %2       dst: %void
"""


def _text(body: str) -> str:
    return HEAD + body + "\n@relu packed_func;\n"


@pytest.mark.parametrize(
    ("body", "count", "expected"),
    [
        ("  call  vm.builtin.make_tuple in: %2 dst: %3\n  ret   %3\n", 1, [True]),
        # an input passed through, a constant
        (
            "  call  vm.builtin.make_tuple in: %2, %0, c[6] dst: %3\n  ret   %3\n",
            3,
            [True, False, False],
        ),
        # the same tensor twice: the second is copied
        ("  call  vm.builtin.make_tuple in: %2, %2 dst: %3\n  ret   %3\n", 2, [True, False]),
        # a view made by a builtin, not an allocation
        (
            "  call  vm.builtin.reshape in: %2, c[7] dst: %4\n"
            "  call  vm.builtin.make_tuple in: %4 dst: %3\n  ret   %3\n",
            1,
            [False],
        ),
        # control flow: not read
        ("  goto  2\n  call  vm.builtin.make_tuple in: %2 dst: %3\n  ret   %3\n", 1, [False]),
        # a count that does not match the tuple
        ("  call  vm.builtin.make_tuple in: %2 dst: %3\n  ret   %3\n", 2, [False, False]),
    ],
)
def test_fresh_in_text(body: str, count: int, expected: list[bool]) -> None:
    assert fresh_in_text(_text(body), count) == expected


def test_two_tensors_in_one_storage_are_not_fresh() -> None:
    text = """@main:
  call  vm.builtin.alloc_storage in: %vm, c[2], i0, c[3], c[4] dst: %1
  call  vm.builtin.alloc_tensor in: %1, i0, c[5], c[0] dst: %2
  call  vm.builtin.alloc_tensor in: %1, i0, c[5], c[0] dst: %3
  call  vm.builtin.make_tuple in: %2, %3 dst: %4
  ret   %4
"""
    assert fresh_in_text(text, 2) == [False, False]
    assert fresh_in_text(text.replace("%1, i0, c[5], c[0] dst: %3", "%9, i0 dst: %3"), 2) == [
        True,
        False,  # %9 was never allocated here
    ]


def test_unreadable_executable_copies_everything() -> None:
    assert fresh_outputs({}, 2) == [False, False]
    assert fresh_in_text("no main here", 1) == [False]


def _model(nodes: list, outputs: list[str], inits: list | None = None) -> ModelProto:
    graph = helper.make_graph(
        nodes,
        "outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 16]) for n in outputs],
        inits or [],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


CONST = np.arange(16, dtype=np.float32).reshape(1, 16)


@pytest.fixture(scope="module")
def aliasing_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outputs: y fresh (Relu), i the input itself (Identity), c a constant."""
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Identity", ["x"], ["i"])],
        ["y", "i", "c"],
        [numpy_helper.from_array(CONST, "c")],
    )
    path = tmp_path_factory.mktemp("aliasing") / "m.so"
    compiler.compile(model).export(path)
    return path


def _aligned(values: np.ndarray) -> np.ndarray:
    """A copy 64-byte aligned: the runtime uses it in place, so an alias would show."""
    buf = np.empty(values.size + 16, values.dtype)
    at = (-buf.ctypes.data % 64) // values.itemsize
    out = buf[at : at + values.size].reshape(values.shape)
    out[...] = values
    return out


def test_fresh_output_is_not_copied_and_aliases_are(aliasing_so: Path) -> None:
    rt = compiler.load(aliasing_so, threads=1)
    assert [p.fresh for p in rt._outs] == [True, False, False]
    x = _aligned(np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16))
    out = rt.run({"x": x})
    assert not out["y"].flags.owndata  # numpy's view of the VM's tensor: no copy
    assert out["i"].flags.owndata and out["c"].flags.owndata
    assert not np.shares_memory(out["i"], x)
    out["i"][...] = 7  # the caller's own arrays: writing them changes neither input nor weight
    out["c"][...] = 7
    assert np.array_equal(x, np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16))
    assert np.array_equal(rt.run({"x": x})["c"], CONST)


def test_later_runs_leave_earlier_outputs_alone(aliasing_so: Path) -> None:
    rt = compiler.load(aliasing_so, threads=1)
    x = _aligned(np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16))
    first = rt.run({"x": x})
    kept = {k: v.copy() for k, v in first.items()}
    later = [rt.run({"x": _aligned(-x * (k + 1))}) for k in range(5)]
    for name, value in first.items():
        np.testing.assert_array_equal(value, kept[name])
        assert not any(np.shares_memory(value, o[name]) for o in later)
    del first, kept
    again = rt.run({"x": x})  # memory freed by dropped outputs is reused, and right
    np.testing.assert_array_equal(again["y"], np.maximum(x, 0))


def test_compiled_model_reads_its_executable_too() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], ["y"])
    out = compiler.compile(model).run({"x": np.ones((1, 16), np.float32)})
    assert not out["y"].flags.owndata
    np.testing.assert_array_equal(out["y"], np.ones((1, 16), np.float32))
