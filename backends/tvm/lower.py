"""IR graph -> Relax IRModule: ``main`` returns a tuple of the outputs; regions become
private functions.

Nodes without regions are lowered by their op's rule (``lowering/``) inside dataflow blocks,
where TVM fuses them. A control-flow node ends the current dataflow block: Relax's ``If`` and
calls of functions that hold one live outside dataflow blocks.

- ``if``: each region is a function of the captures; ``main`` calls one through ``R.If``.
- ``loop``: the body is a function ``(i, cond, carried..., captures...) -> (cond, carried...,
  scans...)``. The iteration is recursion, but not one call deeper per iteration (the VM
  recurses on the native stack: about 3,000 nested calls crash it). ``step_0`` runs one
  iteration when the loop goes on; ``step_j`` calls ``step_{j-1}`` twice, so ``step_j`` runs up
  to 2^j iterations at call depth j. ``main`` calls ``step_40``. Scan outputs grow by one
  row per iteration (concatenation), so a loop may run any data-dependent number of times.

Sequences and optionals are Relax tuples (an optional: zero or one element), built and read
outside dataflow blocks.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tvm
from tvm import relax, tirx

from compiler.errors import NnxcError
from compiler.ir.graph import Block, Graph, Node, Region, Value, walk
from compiler.ir.types import Dim, DType, OptionalType, SequenceType, TensorType, Type

from .lowering import RULES, LowerContext
from .lowering.dtypes import compute_dtype, convert, storage_const, widened


class LoweringError(NnxcError):
    """The graph holds ops the TVM backend has no rule for, or a rule failed on a node."""


_IDENT = re.compile(r"[^A-Za-z0-9_]")
_CONTROL_FLOW = ("if", "loop")
_STRUCTURAL = ("sequence", "sequence_at", "optional", "optional_get")
"""Ops that only build or pick tuple items: bound outside dataflow blocks, where TVM's
fusion would make functions without kernels of them (which FuseTIR refuses)."""
LOOP_LEVELS = 40
"""``step_40`` runs up to 2^40 iterations: no loop that finishes is cut short."""
_NO_LIMIT = np.iinfo(np.int64).max


def sanitize(name: str, taken: set[str]) -> str:
    """A C identifier close to ``name`` (``gpu_0/data_0`` -> ``gpu_0_data_0``), not in taken."""
    base = _IDENT.sub("_", name) or "v"
    if not (base[0].isalpha() or base[0] == "_"):
        base = "v_" + base
    ident, n = base, 0
    while ident in taken:
        n += 1
        ident = f"{base}_{n}"
    taken.add(ident)
    return ident


def _label(node: Node) -> str:
    return node.name or (node.outputs[0].name if node.outputs else node.op)


def _reason(e: Exception) -> str:
    """An exception as one line: TVM's carry a C++ traceback and a ``Check failed: (cond) is
    false:`` prefix before the reason, which is all a user can act on."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[-1] if lines else type(e).__name__
    return text.split(" is false: ", 1)[-1] if "Check failed" in text else text


def check_supported(graph: Graph) -> None:
    """Raise one error naming every op without a lowering rule, with counts and nodes."""
    nodes = list(walk(graph))
    missing = Counter(n.op for n in nodes if n.op not in RULES and n.op not in _CONTROL_FLOW)
    if missing:
        parts = []
        for op, count in missing.most_common():
            names = [_label(n) for n in nodes if n.op == op][:3]
            parts.append(f"{op} x{count} (e.g. {', '.join(names)})")
        raise LoweringError("the TVM backend cannot lower these ops: " + "; ".join(parts))


class _Function:
    """The state of one Relax function being built: its symbolic dims and value bindings."""

    def __init__(self, lowering: _Lowering) -> None:
        self.low = lowering
        self.dim_vars: dict[str, tirx.Var] = {}
        self.env: dict[int, relax.Expr] = {}
        self.consts: dict[int, relax.Expr] = {}

    def shape_of(self, shape: Sequence[Dim]) -> list[Any]:
        out: list[Any] = []
        for d in shape:
            if isinstance(d, str):
                if d not in self.dim_vars:
                    self.dim_vars[d] = tirx.Var(sanitize(d, self.low.taken), "int64")
                out.append(self.dim_vars[d])
            else:
                out.append(int(d))
        return out

    def relax_type(self, t: Type) -> relax.Type:
        if isinstance(t, TensorType):
            return relax.TensorType(self.shape_of(t.shape), t.dtype.storage)
        if isinstance(t, SequenceType):
            return relax.TupleType([self.relax_type(e) for e in t.elements])
        if isinstance(t, OptionalType):
            return relax.TupleType([self.relax_type(t.of)] if t.present else [])
        raise LoweringError(f"no Relax type for {t!r}")

    def params(self, values: Sequence[Value]) -> list[relax.Var]:
        params = []
        for v in values:
            p = relax.Var(sanitize(v.name, self.low.taken), self.relax_type(v.type))
            self.env[id(v)] = p
            params.append(p)
        return params

    def read(self, v: Value | None) -> relax.Expr | None:
        if v is None:
            return None
        if v.const is not None:
            if id(v) not in self.consts:
                self.consts[id(v)] = storage_const(v.const, v.type.dtype)
            return self.consts[id(v)]
        return self.env[id(v)]

    # -- blocks ----------------------------------------------------------------------------
    def block(self, block: Block) -> list[relax.Expr]:
        """Emit ``block``'s nodes; dataflow segments between control-flow nodes. Returns the
        block's outputs as expressions usable after it."""
        bb = self.low.bb
        last_use: dict[int, int] = {}
        for i, node in enumerate(block.nodes):
            for v in node.inputs:
                if v is not None:
                    last_use[id(v)] = i
        for v in block.outputs:
            last_use[id(v)] = len(block.nodes)
        segment: list[Node] = []

        def flush(end: int) -> None:
            if not segment:
                return
            with bb.dataflow():
                for node in segment:
                    self.node(node)
                for node in segment:
                    for v in node.outputs:
                        if last_use.get(id(v), -1) >= end:
                            self.env[id(v)] = bb.emit_output(self.env[id(v)])
            segment.clear()

        for i, node in enumerate(block.nodes):
            if node.op in _CONTROL_FLOW:
                flush(i)
                self.control(node)
            elif node.op in _STRUCTURAL:
                flush(i)
                self.node(node)
            else:
                segment.append(node)
        flush(len(block.nodes))
        return [self.read(v) for v in block.outputs]

    def node(self, node: Node) -> None:
        bb = self.low.bb
        try:
            if node.op != "cast" and _emulated(node):
                result = _lower_widened(bb, node, self.shape_of, self.read, self.low.checks)
            else:
                ctx = LowerContext(bb, node, self.shape_of, self.low.checks)
                result = RULES[node.op](ctx, [self.read(v) for v in node.inputs])
            results = result if isinstance(result, list | tuple) else [result]
            if len(results) != len(node.outputs):
                raise LoweringError(f"rule for {node.op} gave {len(results)} results")
            # Emitting runs Relax's type inference, which refuses what TVM cannot represent
            # (an attribute past int32, a shape whose product overflows): the node's error too.
            for out, expr in zip(node.outputs, results):
                self.env[id(out)] = bb.emit(expr, name_hint=sanitize(out.name, self.low.taken))
        except Exception as e:  # noqa: BLE001 - re-raised with the node named
            raise LoweringError(f"lowering {node.op} node {_label(node)!r}: {_reason(e)}") from e

    def typed(self, expr: relax.Expr, t: Type, name: str) -> relax.Expr:
        """``expr`` cast to the IR type (defining the symbolic dims it introduces): what a
        function call returns has shapes only as precise as Relax can derive."""
        bb = self.low.bb
        if isinstance(t, TensorType):
            return bb.match_cast(expr, self.relax_type(t), name_hint=name)
        return bb.emit(expr, name_hint=name)

    def outputs_of(self, node: Node, result: relax.Expr, picks: Sequence[int] = ()) -> None:
        """Bind the node's outputs to the items ``picks`` (default: all, in order) of the
        tuple ``result``."""
        for i, out in zip(picks or range(len(node.outputs)), node.outputs, strict=True):
            item = self.low.bb.emit(relax.TupleGetItem(result, i))
            self.env[id(out)] = self.typed(item, out.type, sanitize(out.name, self.low.taken))

    def control(self, node: Node) -> None:
        try:
            if node.op == "if":
                self._if(node)
            else:
                self._loop(node)
        except LoweringError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised with the node named
            raise LoweringError(f"lowering {node.op} node {_label(node)!r}: {_reason(e)}") from e

    def _if(self, node: Node) -> None:
        bb = self.low.bb
        then_gv, else_gv = (self.low.functions[id(r)] for r in node.regions)
        cond = bb.emit(relax.op.reshape(self.read(node.inputs[0]), []))
        captures = [self.read(v) for v in node.inputs[1:] if v is not None]

        def branch(gv: relax.GlobalVar) -> relax.SeqExpr:
            return self.low.seq(lambda: bb.emit(relax.Call(gv, captures)))

        self.outputs_of(node, bb.emit(relax.If(cond, branch(then_gv), branch(else_gv))))

    def _loop(self, node: Node) -> None:
        bb = self.low.bb
        driver = self.low.functions[id(node)]
        max_trip, cond = node.inputs[0], node.inputs[1]
        k = node.attrs["num_carried"]
        trip = (
            relax.const(_NO_LIMIT, "int64")
            if max_trip is None
            else bb.emit(relax.op.reshape(self.read(max_trip), []))
        )
        go = (
            relax.const(True, "bool")
            if cond is None
            else bb.emit(relax.op.reshape(self.read(cond), []))
        )
        accs = []
        for out in node.outputs[k:]:
            assert isinstance(out.type, TensorType)
            shape = self.shape_of(out.type.shape[1:])
            zeros = relax.op.zeros(relax.ShapeExpr([0, *shape]), out.type.dtype.storage)
            accs.append(bb.emit(zeros))
        operands = [self.read(v) for v in node.inputs[2:]]
        state = bb.emit(relax.Call(driver, [relax.const(0, "int64"), trip, go, *operands, *accs]))
        # The final state is (i, limit, go, carried..., captures..., scans...).
        picks = [3 + j for j in range(k)] + [3 + len(operands) + j for j in range(len(accs))]
        self.outputs_of(node, state, picks)


class _Lowering:
    """The module being built: the block builder, names taken, functions made for regions."""

    def __init__(self, checks: bool = True) -> None:
        self.bb = relax.BlockBuilder()
        self.checks = checks
        """Whether rules emit run-time checks (``lowering/checks.py``)."""
        self.taken: set[str] = {"main"}
        self.functions: dict[int, relax.GlobalVar] = {}
        """id of an ``if``'s region -> its function; id of a ``loop`` node -> its driver."""

    def seq(self, build: Callable[[], relax.Expr]) -> relax.SeqExpr:
        """A nested sequence of bindings (an ``If`` branch) built by ``build``."""
        self.bb.begin_scope()
        self.bb._begin_binding_block()
        result = build()
        block = self.bb._end_block()
        self.bb.end_scope()
        return relax.SeqExpr([block], result)

    def region_function(self, region: Region, hint: str) -> relax.GlobalVar:
        """A private function computing ``region``: block arguments -> tuple of yields."""
        self.regions_of(region)
        fn = _Function(self)
        name = sanitize(hint, self.taken)
        with self.bb.function(name, fn.params(region.inputs), private=True):
            outs = fn.block(region)
            # The builder hands back the function it already has when this one is equal to
            # it (two branches computing the same): its name, not ``name``, is the one bound.
            gv = self.bb.emit_func_output(relax.Tuple(outs))
        return gv

    def regions_of(self, block: Block) -> None:
        """Functions for every region nested in ``block``, innermost first (a function cannot
        be begun while another is being built)."""
        for node in block.nodes:
            if node.op == "if":
                for name, region in zip(("then", "else"), node.regions):
                    hint = f"{_label(node)}_{name}"
                    self.functions[id(region)] = self.region_function(region, hint)
            elif node.op == "loop":
                body = self.region_function(node.regions[0], f"{_label(node)}_body")
                self.functions[id(node)] = self.loop_driver(node, body)

    def loop_driver(self, node: Node, body: relax.GlobalVar) -> relax.GlobalVar:
        """``step_40`` of the loop (see the module docstring), built from ``step_0`` up."""
        k = node.attrs["num_carried"]
        operands = list(node.inputs[2:])
        scans = [v.type for v in node.outputs[k:]]
        base = sanitize(f"{_label(node)}_step", self.taken)
        has_cond = node.inputs[1] is not None

        def signature(fn: _Function) -> list[relax.Var]:
            """(i, limit, go, carried..., captures..., scan accumulators...)"""
            scalar = {"i": "int64", "limit": "int64", "go": "bool"}
            head = [relax.Var(n, relax.TensorType([], d)) for n, d in scalar.items()]
            accs = [
                relax.Var(f"acc{j}", relax.TensorType(ndim=len(t.shape), dtype=t.dtype.storage))
                for j, t in enumerate(scans)
            ]
            return head + fn.params(operands) + accs

        n_state = 3 + len(operands) + len(scans)
        step = None
        for level in range(LOOP_LEVELS + 1):
            fn = _Function(self)
            params = signature(fn)
            i, limit, go = params[:3]
            name = f"{base}_{level}"
            self.taken.add(name)
            with self.bb.function(name, params, private=True):
                running = self.bb.emit(relax.op.logical_and(relax.op.less(i, limit), go))
                if step is None:
                    iteration = (body, has_cond, k, scans, fn, params)
                    go_on = self.seq(lambda it=iteration: self._one_iteration(*it))
                else:
                    twice = (step, params, n_state)
                    go_on = self.seq(lambda tw=twice: self._twice(*tw))
                done = self.seq(lambda ps=params: self.bb.emit(relax.Tuple(ps)))
                step = self.bb.emit_func_output(self.bb.emit(relax.If(running, go_on, done)))
        assert step is not None
        return step

    def _twice(self, step: relax.GlobalVar, params: list[relax.Var], n: int) -> relax.Expr:
        first = self.bb.emit(relax.Call(step, params))
        return self.bb.emit(
            relax.Call(step, [self.bb.emit(relax.TupleGetItem(first, j)) for j in range(n)])
        )

    def _one_iteration(
        self,
        body: relax.GlobalVar,
        has_cond: bool,
        k: int,
        scans: list[Type],
        fn: _Function,
        params: list[relax.Var],
    ) -> relax.Expr:
        """The state after one iteration: the body's results, scan rows appended."""
        bb = self.bb
        i, limit, go = params[:3]
        state = params[3 : len(params) - len(scans)]
        accs = params[len(params) - len(scans) :]
        out = bb.emit(relax.Call(body, [i, go, *state]))
        ys = [bb.emit(relax.TupleGetItem(out, j)) for j in range(1 + k + len(scans))]
        next_go = bb.emit(relax.op.reshape(ys[0], [])) if has_cond else go
        grown = []
        for acc, y, t in zip(accs, ys[1 + k :], scans):
            assert isinstance(t, TensorType)
            rows = tirx.Var(sanitize("rows", self.taken), "int64")
            shape = [rows, *fn.shape_of(t.shape[1:])]
            known = bb.match_cast(acc, relax.TensorType(shape, t.dtype.storage))
            grown.append(bb.emit(relax.op.concat([known, relax.op.expand_dims(y, [0])], axis=0)))
        nxt = bb.emit(relax.op.add(i, relax.const(1, "int64")))
        return bb.emit(relax.Tuple([nxt, limit, next_go, *ys[1 : 1 + k], *state[k:], *grown]))


def lower_graph(graph: Graph, runtime_checks: bool = True) -> tvm.IRModule:
    """``runtime_checks``: guard indices and integer divisors known only at run time
    (``lowering/checks.py``); off for targets whose kernels cannot run them (CUDA)."""
    check_supported(graph)
    low = _Lowering(runtime_checks)
    low.regions_of(graph)
    fn = _Function(low)
    with low.bb.function("main", fn.params(graph.inputs)):
        outs = fn.block(graph)
        low.bb.emit_func_output(relax.Tuple(outs))
    return low.bb.get()


def _emulated(node: Node) -> bool:
    """The node reads or makes a dtype TVM cannot compute with (see ``widened``)."""
    values = [v for v in node.inputs if v is not None] + node.outputs
    return any(isinstance(v.type, TensorType) and widened(v.type.dtype) for v in values)


def _lower_widened(
    bb: relax.BlockBuilder,
    node: Node,
    shape_of: Any,
    read: Any,
    checks: bool = True,
) -> list[relax.Expr]:
    """Lower ``node`` as if its emulated dtypes were float32 (int32 for ints): operands are
    decoded, the op's own rule runs on a copy of the node retyped that way, and each result
    is encoded back (rounding to nearest even, saturating)."""

    def widen(v: Value) -> Value:
        d = v.type.dtype
        if not widened(d):
            return v
        wide = compute_dtype(d)
        const = None if v.const is None else v.const.astype(wide)
        return Value(v.name, v.type.with_dtype(wide), const=const)

    inputs = [None if v is None else widen(v) for v in node.inputs]
    outputs = [widen(v) for v in node.outputs]
    attrs = {
        k: compute_dtype(a) if isinstance(a, DType) and widened(a) else a
        for k, a in node.attrs.items()
    }
    shadow = Node(node.op, inputs, outputs, attrs, node.name)
    args = []
    for v, w in zip(node.inputs, inputs):
        if v is None or w is None:
            args.append(None)
        elif w is v or w.const is not None:
            args.append(read(v) if w is v else relax.const(np.require(w.const, requirements="C")))
        else:
            args.append(bb.emit(convert(bb, read(v), v.dtype, w.dtype)))
    result = RULES[node.op](LowerContext(bb, shadow, shape_of, checks), args)
    results = list(result) if isinstance(result, list | tuple) else [result]
    if len(results) != len(node.outputs):
        raise LoweringError(f"rule for {node.op} gave {len(results)} results")
    return [
        r if not widened(o.type.dtype) else convert(bb, bb.emit(r), w.dtype, o.dtype)
        for r, o, w in zip(results, node.outputs, outputs)
    ]
