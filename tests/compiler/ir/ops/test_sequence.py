"""Sequences and optionals: static types, positions, references, TVM lowering to tuples."""

from __future__ import annotations

import numpy as np
import pytest
from oputil import run_tvm

from backends.reference import run_graph
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.ops.sequence import position_in
from compiler.ir.types import IRTypeError, OptionalType, SequenceType, TensorType
from compiler.ir.verify import verify

F3 = TensorType("float32", (3,))
F23 = TensorType("float32", (2, 3))
I3 = TensorType("int64", (3,))


def new() -> tuple[Graph, Builder]:
    g = Graph()
    return g, Builder(g, fold=False)


# -- types ----------------------------------------------------------------------------------
def test_sequence_type_keeps_each_element_type_in_order():
    g, b = new()
    x, y = g.add_input("x", F3), g.add_input("y", F23)
    s = b.emit("sequence", x, y, x)
    assert s.type == SequenceType("float32", (F3, F23, F3)) and len(s.type) == 3
    assert b.op("sequence", [x, y])[0].producer.attrs["dtype"] == "float32"


def test_empty_sequence_is_typed_by_its_dtype():
    g, b = new()
    s = b.emit("sequence", dtype="int64")
    assert s.type == SequenceType("int64", ()) and len(s.type) == 0


def test_sequence_refuses_mixed_dtypes_and_non_tensors():
    g, b = new()
    x, i = g.add_input("x", F3), g.add_input("i", I3)
    with pytest.raises(IRTypeError, match=r"different dtypes: \['float32', 'int64'\]"):
        b.emit("sequence", x, i)
    s = b.emit("sequence", x)
    with pytest.raises(IRTypeError, match="element 1 must be a tensor"):
        b.emit("sequence", x, s)
    with pytest.raises(IRTypeError, match="holds a int64 element"):
        SequenceType("float32", (I3,))


def test_sequence_at_types_and_normalizes_negative_positions():
    g, b = new()
    x, y = g.add_input("x", F3), g.add_input("y", F23)
    s = b.emit("sequence", x, y)
    last = b.emit("sequence_at", s, position=-1)
    assert last.type == F23 and last.producer.attrs["position"] == 1
    assert b.emit("sequence_at", s, position=-2).type == F3
    assert b.emit("sequence_at", s, position=0).producer.attrs["position"] == 0


@pytest.mark.parametrize("position", [2, -3, 7])
def test_sequence_at_out_of_range_is_a_clear_error(position):
    g, b = new()
    x = g.add_input("x", F3)
    s = b.emit("sequence", x, x)
    with pytest.raises(
        IRTypeError, match=f"position {position} is out of range for a sequence of 2"
    ):
        b.emit("sequence_at", s, position=position)


def test_sequence_at_of_an_empty_sequence_and_of_a_tensor():
    g, b = new()
    x = g.add_input("x", F3)
    with pytest.raises(IRTypeError, match="out of range for a sequence of 0"):
        b.emit("sequence_at", b.emit("sequence"), position=0)
    with pytest.raises(IRTypeError, match=r"must be a sequence, got float32\[3\]"):
        b.emit("sequence_at", x, position=0)


def test_position_in_allows_the_end_only_when_inserting():
    assert position_in(None, 3, inserting=False) == 2
    assert position_in(None, 3, inserting=True) == 3
    assert position_in(3, 3, inserting=True) == 3
    assert position_in(-3, 3, inserting=True) == 0
    with pytest.raises(IRTypeError, match="out of range"):
        position_in(3, 3, inserting=False)
    with pytest.raises(IRTypeError, match="out of range"):
        position_in(-4, 3, inserting=True)


def test_optional_types():
    g, b = new()
    x = g.add_input("x", F3)
    full = b.emit("optional", x)
    assert full.type == OptionalType(F3, True) and full.type.element == F3
    empty = b.emit("optional", None, dtype="int64", shape=[2, 4])
    assert empty.type == OptionalType(TensorType("int64", (2, 4)), False)
    assert empty.type.element is None
    seq = b.emit("optional", None, dtype="float16", sequence=True)
    assert seq.type == OptionalType(SequenceType("float16", ()), False)
    s = b.emit("sequence", x)
    assert b.emit("optional", s).type == OptionalType(s.type, True)
    with pytest.raises(IRTypeError, match="an optional cannot hold an optional"):
        b.emit("optional", full)


def test_optional_get_types_and_refuses_an_empty_optional():
    g, b = new()
    x = g.add_input("x", F3)
    assert b.emit("optional_get", b.emit("optional", x)).type == F3
    assert b.emit("optional_get", x).type == F3  # a plain value passes through (as in ONNX)
    empty = b.emit("optional", None, dtype="float32", shape=[3])
    with pytest.raises(IRTypeError, match="the optional is empty"):
        b.emit("optional_get", empty)


# -- references ----------------------------------------------------------------------------
def test_references_build_lists_and_pick_elements():
    g, b = new()
    x, y = g.add_input("x", F3), g.add_input("y", F23)
    s = b.emit("sequence", x, y)
    picked = b.emit("sequence_at", s, position=-1)
    opt = b.emit("optional", b.emit("sequence_at", s, position=0))
    got = b.emit("optional_get", opt)
    g.set_outputs([s, picked, got], ["s", "picked", "got"])
    verify(g)
    x0 = np.arange(3, dtype=np.float32)
    y0 = np.arange(6, dtype=np.float32).reshape(2, 3)
    r = run_graph(g, {"x": x0, "y": y0})
    assert isinstance(r["s"], list) and len(r["s"]) == 2
    np.testing.assert_array_equal(r["s"][0], x0)
    np.testing.assert_array_equal(r["s"][1], y0)
    np.testing.assert_array_equal(r["picked"], y0)
    np.testing.assert_array_equal(r["got"], x0)


def test_reference_of_an_empty_optional_is_none():
    g, b = new()
    e = b.emit("optional", None, dtype="float32", shape=[3])
    g.set_outputs([e], ["e"])
    assert run_graph(g, {})["e"] is None


# -- TVM -----------------------------------------------------------------------------------
def test_tvm_lowers_sequences_and_optionals_to_tuples():
    g, b = new()
    x, y = g.add_input("x", F3), g.add_input("y", F23)
    s = b.emit("sequence", b.emit("relu", x), y, x)
    a = b.emit("sequence_at", s, position=0)
    c = b.emit("sequence_at", s, position=-2)
    opt = b.emit("optional", b.emit("sequence_at", s, position=2))
    d = b.emit("add", c, b.emit("optional_get", opt))
    nested = b.emit("optional", s)
    e = b.emit("sequence_at", b.emit("optional_get", nested), position=1)
    g.set_outputs([a, d, e])
    verify(g)
    x0 = np.array([-1.0, 2.0, -3.0], np.float32)
    y0 = np.arange(6, dtype=np.float32).reshape(2, 3)
    feeds = {"x": x0, "y": y0}
    ref = list(run_graph(g, feeds).values())
    got = run_tvm(g, feeds)
    want = [np.maximum(x0, 0), y0 + x0, y0]
    for r, t, w in zip(ref, got, want, strict=True):
        np.testing.assert_array_equal(r, w)
        np.testing.assert_array_equal(t, w)
        assert t.dtype == w.dtype
