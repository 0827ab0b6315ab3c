"""The control-flow ops ``if`` and ``loop``: type inference and its errors, reference semantics,
and the TVM lowering (branch functions, log-depth recursive loop steps) against the reference."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from oputil import run_tvm

from backends.reference import run_graph
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph, Region, Value
from compiler.ir.ops.control import BOOL, INDEX
from compiler.ir.types import IRTypeError, TensorType, Type
from compiler.ir.verify import verify

F3 = TensorType("float32", (3,))
F2 = TensorType("float32", (2,))
I64 = TensorType("int64", ())

Body = Callable[[Builder, list[Value]], list[Value]]


def region(g: Graph, b: Builder, types: Sequence[Type], body: Body) -> Region:
    """A region taking ``types`` whose nodes and yields ``body`` emits."""
    r = g.region(list(types))
    r.outputs = body(b.nested(r), list(r.inputs))
    return r


def if_node(g: Graph, b: Builder, cond: Value, captures: list[Value], then: Body, other: Body):
    types = [v.type for v in captures]
    regions = [region(g, b, types, then), region(g, b, types, other)]
    return b.op("if", [cond, *captures], regions=regions)


def loop_node(
    g: Graph,
    b: Builder,
    max_trip: Value | None,
    cond: Value | None,
    carried: list[Value],
    captures: list[Value],
    body: Body,
    iterations: int | str | None = None,
) -> list[Value]:
    types = [INDEX, BOOL, *(v.type for v in carried), *(v.type for v in captures)]
    attrs = {"num_carried": len(carried), "iterations": iterations}
    r = region(g, b, types, body)
    return b.op("loop", [max_trip, cond, *carried, *captures], attrs, regions=[r])


def check(g: Graph, feeds: dict[str, np.ndarray], expected: Sequence[np.ndarray] | None = None):
    """verify; reference == expected (when given) with the inferred types; TVM == reference."""
    verify(g)
    ref = list(run_graph(g, feeds).values())
    for r, v in zip(ref, g.outputs, strict=True):
        assert r.dtype == v.type.np_dtype, (r.dtype, v.type)
        if v.type.is_static:
            assert r.shape == v.type.shape, (r.shape, v.type)
    if expected is not None:
        for r, e in zip(ref, expected, strict=True):
            np.testing.assert_allclose(r, e, rtol=1e-5, atol=1e-6)
    got = run_tvm(g, feeds)
    for r, t in zip(ref, got, strict=True):
        assert t.dtype == r.dtype and t.shape == r.shape, (t.dtype, t.shape, r.dtype, r.shape)
        np.testing.assert_allclose(t, r, rtol=1e-5, atol=1e-6)
    return ref


def new() -> tuple[Graph, Builder]:
    g = Graph()
    return g, Builder(g, fold=False)


# -- type inference -------------------------------------------------------------------------
def test_if_outputs_take_the_branch_types():
    g, b = new()
    c = g.add_input("c", BOOL)
    x = g.add_input("x", F3)
    out = if_node(
        g, b, c, [x], lambda rb, a: [rb.emit("neg", a[0]), a[0]], lambda rb, a: [a[0], a[0]]
    )
    assert [v.type for v in out] == [F3, F3]
    g.set_outputs(out)
    verify(g)


def test_if_branches_of_different_types_are_refused():
    g, b = new()
    c = g.add_input("c", BOOL)
    x = g.add_input("x", F3)
    with pytest.raises(IRTypeError, match=r"different types: then \(float32\[3\]\), else \(\)"):
        if_node(g, b, c, [x], lambda rb, a: [a[0]], lambda rb, a: [])
    with pytest.raises(IRTypeError, match="different types"):
        if_node(
            g,
            b,
            c,
            [x],
            lambda rb, a: [a[0]],
            lambda rb, a: [rb.emit("cast", a[0], to="float64")],
        )


def test_if_condition_must_be_a_bool_scalar():
    g, b = new()
    c = g.add_input("c", TensorType("bool", (2,)))
    with pytest.raises(IRTypeError, match="the condition must be a bool scalar"):
        if_node(g, b, c, [], lambda rb, a: [], lambda rb, a: [])


def test_loop_outputs_are_carried_values_then_stacked_scans():
    g, b = new()
    n = g.add_input("n", I64)
    x = g.add_input("x", F3)
    y = g.add_input("y", F2)
    out = loop_node(
        g, b, n, None, [x], [y], lambda rb, a: [a[1], rb.emit("neg", a[2]), a[3]], iterations="k"
    )
    assert [v.type for v in out] == [F3, TensorType("float32", ("k", 2))]


def test_loop_carried_value_must_keep_its_type():
    g, b = new()
    n = g.add_input("n", I64)
    x = g.add_input("x", F3)
    with pytest.raises(IRTypeError, match=r"carried value 0 enters as float32\[3\] but the body"):
        loop_node(g, b, n, None, [x], [], lambda rb, a: [a[1], rb.emit("cast", a[2], to="int32")])


def test_loop_needs_a_trip_count_or_a_condition():
    g, b = new()
    x = g.add_input("x", F3)
    with pytest.raises(IRTypeError, match="needs a trip count, a condition, or both"):
        loop_node(g, b, None, None, [x], [], lambda rb, a: [a[1], a[2]])


def test_loop_scans_need_iterations():
    g, b = new()
    n = g.add_input("n", I64)
    x = g.add_input("x", F3)
    with pytest.raises(IRTypeError, match="needs the 'iterations' attribute"):
        loop_node(g, b, n, None, [], [x], lambda rb, a: [a[1], a[2]])


def test_loop_body_must_yield_cond_and_carried_first():
    g, b = new()
    n = g.add_input("n", I64)
    x = g.add_input("x", F3)
    with pytest.raises(IRTypeError, match="yields 1 values"):
        loop_node(g, b, n, None, [x], [], lambda rb, a: [a[1]])
    with pytest.raises(IRTypeError, match="first yielded value"):
        loop_node(g, b, n, None, [x], [], lambda rb, a: [a[2], a[2]])


def test_builder_refuses_region_arguments_that_do_not_match_the_operands():
    g, b = new()
    n = g.add_input("n", I64)
    x = g.add_input("x", F3)
    wrong = region(g, b, [INDEX, BOOL, F2], lambda rb, a: [a[1], a[2]])
    with pytest.raises(IRTypeError, match=r"region 'body' takes \(.*float32\[2\]\), the operands"):
        b.op("loop", [n, None, x], {"num_carried": 1}, regions=[wrong])
    c = g.add_input("c", BOOL)
    then = region(g, b, [F3], lambda rb, a: [a[0]])
    other = region(g, b, [], lambda rb, a: [])
    with pytest.raises(IRTypeError, match="region 'else' takes \\(\\), the operands give"):
        b.op("if", [c, x], regions=[then, other])
    with pytest.raises(IRTypeError, match="owns 2 region"):
        b.op("if", [c, x], regions=[then])


# -- reference semantics --------------------------------------------------------------------
def counting_loop(max_trip: int | None, cond: bool | None, stop_at: float, iterations=None):
    """Carries (count, x): x doubles each iteration, count adds i; the body's condition is
    ``x < stop_at``; a scan output stacks i."""
    g, b = new()
    x = g.add_input("x", TensorType("float32", ()))
    trip = None if max_trip is None else b.const(np.array(max_trip, np.int64))
    go = None if cond is None else b.const(np.array(cond))
    zero = b.const(np.array(0, np.int64))
    limit = b.const(np.array(stop_at, np.float32))

    def body(rb: Builder, a: list[Value]) -> list[Value]:
        i, _, count, v, lim = a
        doubled = rb.emit("add", v, v)
        return [rb.emit("less", doubled, lim), rb.emit("add", count, i), doubled, i]

    out = loop_node(g, b, trip, go, [zero, x], [limit], body, iterations=iterations)
    g.set_outputs(out, ["count", "x", "scan"])
    return g


def run(g: Graph, **feeds):
    return run_graph(g, {k: np.asarray(v) for k, v in feeds.items()})


def test_reference_trip_count_only_ignores_the_yielded_condition():
    r = run(counting_loop(5, None, 0.0, iterations=5), x=np.float32(1))  # body yields false
    assert int(r["count"]) == 0 + 1 + 2 + 3 + 4
    assert float(r["x"]) == 32.0
    np.testing.assert_array_equal(r["scan"], np.arange(5))


def test_reference_condition_only_runs_while_the_body_says_so():
    g = counting_loop(None, True, 100.0, iterations="k")
    r = run(g, x=np.float32(1))
    # 1 -> 2 -> ... -> 128: the 7th iteration yields x = 128 >= 100 and stops the loop.
    assert float(r["x"]) == 128.0 and int(r["count"]) == sum(range(7))
    np.testing.assert_array_equal(r["scan"], np.arange(7))
    r = run(g, x=np.float32(1000))
    assert float(r["x"]) == 2000.0 and r["scan"].shape == (1,)  # the body runs once at least


def test_reference_both_stops_at_whichever_comes_first():
    r = run(counting_loop(3, True, 100.0, iterations="k"), x=np.float32(1))
    assert float(r["x"]) == 8.0 and int(r["count"]) == 3
    r = run(counting_loop(50, True, 10.0, iterations="k"), x=np.float32(1))
    assert float(r["x"]) == 16.0 and int(r["count"]) == 6


def test_reference_zero_iterations_keeps_inputs_and_gives_empty_scans():
    for g in (counting_loop(0, None, 0.0, iterations=0), counting_loop(5, False, 1e9, "k")):
        r = run(g, x=np.float32(3))
        assert float(r["x"]) == 3.0 and int(r["count"]) == 0
        assert r["scan"].shape == (0,) and r["scan"].dtype == np.int64


def test_reference_if_runs_the_taken_branch_only():
    g, b = new()
    c = g.add_input("c", BOOL)
    x = g.add_input("x", F3)
    out = if_node(
        g, b, c, [x], lambda rb, a: [rb.emit("neg", a[0])], lambda rb, a: [rb.emit("exp", a[0])]
    )
    g.set_outputs(out)
    x0 = np.array([0.0, 1.0, -2.0], np.float32)
    np.testing.assert_allclose(run(g, c=True, x=x0)[out[0].name], -x0)
    np.testing.assert_allclose(run(g, c=False, x=x0)[out[0].name], np.exp(x0), rtol=1e-6)


# -- TVM lowering against the reference -----------------------------------------------------
def test_tvm_if_with_captures_and_a_data_dependent_condition():
    g, b = new()
    c = g.add_input("c", BOOL)
    x = g.add_input("x", F3)
    y = g.add_input("y", F3)
    out = if_node(
        g,
        b,
        c,
        [x, y],
        lambda rb, a: [rb.emit("mul", a[0], a[1]), a[1]],
        lambda rb, a: [rb.emit("sub", a[0], a[1]), rb.emit("neg", a[0])],
    )
    g.set_outputs(out)
    x0 = np.array([1.0, 2.0, 3.0], np.float32)
    y0 = np.array([4.0, -5.0, 6.0], np.float32)
    check(g, {"c": np.array(True), "x": x0, "y": y0}, [x0 * y0, y0])
    check(g, {"c": np.array(False), "x": x0, "y": y0}, [x0 - y0, -x0])


def test_tvm_nested_if_inside_a_loop_body():
    """Even iterations add the capture, odd ones subtract it: the if reads the loop's carried
    value and capture through its own operands."""
    g, b = new()
    n = g.add_input("n", I64)
    x = g.add_input("x", F3)
    d = g.add_input("d", F3)
    two = b.const(np.array(2, np.int64))
    zero = b.const(np.array(0, np.int64))

    def body(rb: Builder, a: list[Value]) -> list[Value]:
        i, go, v, delta = a
        even = rb.emit("equal", rb.emit("mod", i, two), zero)
        (w,) = if_node(
            g,
            rb,
            even,
            [v, delta],
            lambda r2, p: [r2.emit("add", p[0], p[1])],
            lambda r2, p: [r2.emit("sub", p[0], p[1])],
        )
        return [go, w, rb.emit("mul", w, w)]

    out = loop_node(g, b, n, None, [x], [d], body, iterations="k")
    g.set_outputs(out)
    x0 = np.array([0.5, -1.0, 2.0], np.float32)
    d0 = np.array([1.0, 0.25, -0.5], np.float32)
    for trips in (0, 1, 4, 5):
        v, rows = x0.copy(), []
        for i in range(trips):
            v = v + d0 if i % 2 == 0 else v - d0
            rows.append(v * v)
        scans = np.stack(rows) if rows else np.zeros((0, 3), np.float32)
        check(g, {"n": np.array(trips), "x": x0, "d": d0}, [v, scans])


def test_tvm_loop_with_a_graph_input_trip_count_stacks_scans():
    g, b = new()
    n = g.add_input("n", I64)
    x = g.add_input("x", F3)

    def body(rb: Builder, a: list[Value]) -> list[Value]:
        i, go, v = a
        fi = rb.emit("cast", i, to="float32")
        w = rb.emit("add", v, fi)
        return [go, w, w, rb.emit("mul", fi, fi)]

    out = loop_node(g, b, n, None, [x], [], body, iterations="k")
    assert out[1].type == TensorType("float32", ("k", 3))
    g.set_outputs(out)
    x0 = np.array([1.0, 2.0, 3.0], np.float32)
    for trips in (0, 1, 6):
        rows = [x0 + sum(range(i + 1)) for i in range(trips)]
        want = [
            x0 + sum(range(trips)),
            np.stack(rows) if rows else np.zeros((0, 3), np.float32),
            np.arange(trips, dtype=np.float32) ** 2,
        ]
        check(g, {"n": np.array(trips), "x": x0}, want)


def test_tvm_loop_with_a_condition_computed_in_the_body():
    g = counting_loop(None, True, 0.0, iterations="k")
    limit = g.add_input("limit", TensorType("float32", ()))
    (node,) = g.nodes
    # read the limit from the graph input rather than the constant: a data-dependent stop
    node.inputs[-1] = limit
    verify(g)
    for stop, x0 in ((100.0, 1.0), (5.0, 3.0), (1e6, 0.5)):
        steps, v = 0, x0
        while True:
            v *= 2
            steps += 1
            if not v < stop:
                break
        want = [np.int64(sum(range(steps))), np.float32(v), np.arange(steps)]
        check(g, {"x": np.float32(x0), "limit": np.float32(stop)}, want)


def test_tvm_loop_with_both_limits_and_a_false_initial_condition():
    g = counting_loop(None, True, 0.0, iterations="k")
    (node,) = g.nodes
    node.inputs[0] = g.add_input("n", I64)
    node.inputs[1] = g.add_input("go", BOOL)
    node.inputs[-1] = g.add_input("limit", TensorType("float32", ()))
    verify(g)
    feeds = {"x": np.float32(1), "limit": np.float32(100)}
    r = check(g, {**feeds, "n": np.array(3), "go": np.array(True)})
    assert float(r[1]) == 8.0
    r = check(g, {**feeds, "n": np.array(30), "go": np.array(True)})
    assert float(r[1]) == 128.0
    r = check(g, {**feeds, "n": np.array(30), "go": np.array(False)})
    assert float(r[1]) == 1.0 and r[2].shape == (0,)


def test_tvm_loop_of_5000_iterations_does_not_overflow_the_stack():
    g, b = new()
    n = g.add_input("n", I64)
    acc = g.add_input("acc", I64)
    out = loop_node(g, b, n, None, [acc], [], lambda rb, a: [a[1], rb.emit("add", a[2], a[0])])
    g.set_outputs(out)
    (got,) = check(g, {"n": np.array(5000), "acc": np.array(7)})
    assert int(got) == 7 + 4999 * 5000 // 2


def test_tvm_loop_whose_body_holds_a_sequence():
    g, b = new()
    n = g.add_input("n", I64)
    x = g.add_input("x", F3)
    y = g.add_input("y", F3)

    def body(rb: Builder, a: list[Value]) -> list[Value]:
        _, go, v, w = a
        seq = rb.emit("sequence", rb.emit("add", v, w), v, rb.emit("neg", w))
        first = rb.emit("sequence_at", seq, position=0)
        last = rb.emit("sequence_at", seq, position=-1)
        return [go, rb.emit("add", first, last), rb.emit("sequence_at", seq, position=1)]

    out = loop_node(g, b, n, None, [x], [y], body, iterations="k")
    g.set_outputs(out)
    x0 = np.array([1.0, 2.0, 3.0], np.float32)
    y0 = np.array([0.5, 0.5, -1.0], np.float32)
    # (v + w) + (-w) == v: the carried value stays, each row is it
    check(g, {"n": np.array(3), "x": x0, "y": y0}, [x0, np.stack([x0] * 3)])


def test_tvm_loop_carrying_a_sequence():
    g, b = new()
    n = g.add_input("n", I64)
    x = g.add_input("x", F3)
    y = g.add_input("y", F2)
    seq = b.emit("sequence", x, y)

    def body(rb: Builder, a: list[Value]) -> list[Value]:
        _, go, s = a
        u = rb.emit("sequence_at", s, position=0)
        v = rb.emit("sequence_at", s, position=1)
        return [go, rb.emit("sequence", rb.emit("add", u, u), rb.emit("neg", v))]

    (final,) = loop_node(g, b, n, None, [seq], [], body)
    g.set_outputs(
        [b.emit("sequence_at", final, position=0), b.emit("sequence_at", final, position=1)]
    )
    x0 = np.array([1.0, 2.0, 3.0], np.float32)
    y0 = np.array([0.5, -0.5], np.float32)
    check(g, {"n": np.array(3), "x": x0, "y": y0}, [x0 * 8, -y0])


def test_tvm_if_yielding_a_sequence():
    g, b = new()
    c = g.add_input("c", BOOL)
    x, y = g.add_input("x", F3), g.add_input("y", F3)
    (s,) = if_node(
        g,
        b,
        c,
        [x, y],
        lambda rb, a: [rb.emit("sequence", a[0], a[1])],
        lambda rb, a: [rb.emit("sequence", a[1], rb.emit("neg", a[0]))],
    )
    g.set_outputs([b.emit("sequence_at", s, position=0), b.emit("sequence_at", s, position=1)])
    x0 = np.array([1.0, 2.0, 3.0], np.float32)
    y0 = x0 + 10
    check(g, {"c": np.array(True), "x": x0, "y": y0}, [x0, y0])
    check(g, {"c": np.array(False), "x": x0, "y": y0}, [y0, -x0])


def test_tvm_loop_with_scans_only():
    g, b = new()
    n = g.add_input("n", I64)
    out = loop_node(
        g, b, n, None, [], [], lambda rb, a: [a[1], rb.emit("mul", a[0], a[0])], iterations="k"
    )
    g.set_outputs(out)
    check(g, {"n": np.array(4)}, [np.arange(4) ** 2])
    check(g, {"n": np.array(0)}, [np.zeros(0, np.int64)])


def test_tvm_loop_nested_in_a_loop_body_with_the_outer_index_as_trip_count():
    g, b = new()
    n, x = g.add_input("n", I64), g.add_input("x", I64)

    def outer(rb: Builder, a: list[Value]) -> list[Value]:
        i, go, acc = a
        (inner,) = loop_node(
            g, rb, i, None, [acc], [], lambda r2, q: [q[1], r2.emit("add", q[2], q[0])]
        )
        return [go, inner]

    g.set_outputs(loop_node(g, b, n, None, [x], [], outer))
    for k in (0, 1, 5):
        want = sum(j for i in range(k) for j in range(i))
        check(g, {"n": np.array(k), "x": np.array(3)}, [np.array(3 + want)])
