"""``nnxc verify`` and ``compiler.verify``: does the compiled code compute what the model says?

(Not ``compiler/verify.py``: a submodule of that name would replace the function
``compiler.verify`` on the package once imported.)

The model is compiled as ``nnxc compile`` would, run on given or seeded random inputs, and
each output is compared with a reference: onnxruntime on the original ONNX model (an
implementation independent of ours, so import bugs show too) when it is installed, else
nnxc's reference interpreter on the optimized IR (numpy, op by op).

Bisection finds the first IR node whose compiled value is wrong. It compiles the optimized
graph once more with every top-level tensor value made a graph output, runs it, and walks
the nodes in topological order: each node is evaluated alone by the interpreter on the
operand values the compiled code produced, and its compiled outputs are compared with that.
Both run the same IR, so values correspond by ``Value`` identity, with no name matching.
Judging each node on its own operands, not against the interpreter's values from the model's
inputs (the "drift", also reported), keeps rounding that accumulates over many nodes, or an
argmax flipped by a tie, from being blamed on a later correct node; and intermediate values
are held to ``atol + rtol * max|reference|`` (their scale), since a sum taken in another order
differs relative to its terms, not to a result that cancels to near zero.

One extra build instead of a binary search over graph prefixes: each step of that search
would need all values up to its midpoint as outputs anyway, and one build with all of them
costs less than log2(n) builds with half of them. Values inside control-flow regions,
constants and sequences/optionals are not compared (the owning node's tensor outputs are);
sequences and optionals reach the nodes that read them from the interpreter.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import NnxcError
from compiler.feeds import random_feeds
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType

Progress = Callable[[str], None]

REFERENCES = ("auto", "onnxruntime", "interpreter")
"""``auto``: onnxruntime for ONNX models when installed, the interpreter otherwise."""

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5
"""The tolerances the project's own tests hold nnxc to against onnxruntime (float32)."""


@dataclass
class Comparison:
    """One array against its reference: ``ok`` when every element is within
    ``atol + rtol * |reference|`` (NaN matching NaN, infinities matching themselves)."""

    name: str
    ok: bool
    max_abs: float
    max_rel: float
    """Over the elements whose reference is nonzero (0.0 when there are none)."""
    mismatched: int
    size: int
    note: str = ""
    """Why the arrays could not be compared element-wise (shape, dtype, missing)."""

    def metrics(self) -> str:
        if self.note:
            return self.note
        text = f"max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}"
        if self.mismatched:
            text += f" ({self.mismatched} of {self.size} elements outside tolerance)"
        return text

    def describe(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.metrics()}"


@dataclass
class Divergence:
    """The first top-level IR node with an output outside tolerance."""

    node: str
    """The node's name in the source model (empty when the model gave none)."""
    op: str
    attrs: dict[str, str]
    input_types: list[str]
    output_types: list[str]
    value: str
    """The IR value that diverges (one of the node's outputs)."""
    position: int
    """1-based position of that value among the values compared, in topological order."""
    error: Comparison
    """The node's output against the interpreter's evaluation of the node on the same
    compiled operands: the node's own error."""
    drift: Comparison
    """The same output against the interpreter run from the model's inputs: the error
    accumulated up to and including this node."""
    regions: int = 0
    """Regions the node owns (an ``if``/``loop``): the difference may lie inside them."""

    def lines(self) -> list[str]:
        name = repr(self.node) if self.node else "(no name in the model)"
        attrs = ", ".join(f"{k} = {v}" for k, v in self.attrs.items())
        lines = [
            f"bisect: first diverging node {name}: {self.op}, value %{self.value} "
            f"(value {self.position} in topological order)",
            f"  attrs:   {{{attrs}}}",
            f"  inputs:  {'; '.join(self.input_types) or '(none)'}",
            f"  outputs: {'; '.join(self.output_types)}",
            f"  error:   {self.error.metrics()} (on the same operands)",
            f"  drift:   {self.drift.metrics()} (from the model's inputs)",
        ]
        if self.regions:
            lines.append(
                f"  note:    the node owns {self.regions} region(s), whose values are not "
                "bisected: the difference may lie inside them"
            )
        return lines


@dataclass
class Bisection:
    """Where compiled code and the reference interpreter first part ways."""

    compared: int
    """Top-level tensor values compared."""
    divergence: Divergence | None
    note: str = ""

    def lines(self) -> list[str]:
        head = [f"bisect: compared {self.compared} top-level values with the interpreter"]
        if self.divergence is not None:
            return head + self.divergence.lines()
        return head + [f"bisect: {self.note}"]


@dataclass
class VerifyReport:
    """What ``verify`` found; ``ok`` when every output is within tolerance."""

    model: str
    target: str
    reference: str
    """The reference used, and why when it is not the one asked for."""
    rtol: float
    atol: float
    inputs: str
    """Where the inputs came from: a seed or a file."""
    outputs: list[Comparison]
    bisection: Bisection | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.outputs)

    @property
    def failed(self) -> list[Comparison]:
        return [c for c in self.outputs if not c.ok]

    def summary(self) -> str:
        m = len(self.outputs)
        if self.ok:
            return f"verify: PASS ({m} of {m} outputs within rtol {self.rtol:g} atol {self.atol:g})"
        return f"verify: FAIL ({len(self.failed)} of {m} outputs differ)"

    def lines(self) -> list[str]:
        out = [
            f"verify {self.model} on {self.target} against {self.reference} "
            f"(rtol {self.rtol:g}, atol {self.atol:g}; inputs: {self.inputs})"
        ]
        out += ["  " + c.describe() for c in self.outputs]
        if self.bisection is not None:
            out += self.bisection.lines()
        return out + [self.summary()]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return _finite(data)


def _finite(x: Any) -> Any:
    """JSON has no inf/nan: write them as strings."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


# -- comparing arrays -------------------------------------------------------------------------
def compare(
    name: str, got: Any, expected: Any, rtol: float, atol: float, scaled: bool = False
) -> Comparison:
    """``got`` against ``expected`` element-wise, as ``np.isclose(equal_nan=True)`` judges:
    within ``atol + rtol * |expected|``. ``scaled``: within ``atol + rtol * max|expected|``
    (the tensor's scale), for intermediate values, where summing in another order leaves an
    error relative to the terms, not to a result that cancels to near zero."""
    if expected is None:
        return Comparison(name, False, math.inf, math.inf, 0, 0, "the reference has no such output")
    g, e = np.asarray(got), np.asarray(expected)
    if g.shape != e.shape:
        note = f"shape {list(g.shape)}, the reference's {list(e.shape)}"
        return Comparison(name, False, math.inf, math.inf, 0, e.size, note)
    if g.dtype != e.dtype:
        note = f"dtype {g.dtype}, the reference's {e.dtype}"
        return Comparison(name, False, math.inf, math.inf, 0, e.size, note)
    if g.dtype.kind not in "biufc":
        same = np.array_equal(g, e)
        return Comparison(name, same, 0.0 if same else math.inf, 0.0, int(not same), e.size)
    g64, e64 = g.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        equal = (np.isnan(g64) & np.isnan(e64)) | (g64 == e64)
        diff = np.where(equal, 0.0, np.abs(g64 - e64))
        diff = np.where(np.isnan(diff), np.inf, diff)
        # A NaN or infinite reference allows no slack: only an equal value matches it.
        finite = np.isfinite(e64)
        size = np.abs(e64)
        if scaled:
            size = np.full_like(size, np.abs(e64[finite]).max() if finite.any() else 0.0)
        slack = np.where(finite, atol + rtol * size, 0.0)
        bad = ~(diff <= slack)
        nonzero = (e64 != 0) & np.isfinite(e64)
        rel = diff[nonzero] / np.abs(e64[nonzero])
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    n_bad = int(bad.sum())
    return Comparison(name, n_bad == 0, max_abs, max_rel, n_bad, int(e.size))


# -- references -------------------------------------------------------------------------------
def _onnxruntime_outputs(model: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
    import onnxruntime as ort

    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: not a warning per unused initializer
        sess = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's own errors, re-raised as ours
        raise NnxcError(f"onnxruntime cannot load the model: {_first_line(e)}") from e
    wanted = [i.name for i in sess.get_inputs()]
    missing = [n for n in wanted if n not in feeds]
    if missing:
        raise NnxcError(f"onnxruntime wants inputs the compiled model has not: {missing}")
    names = [o.name for o in sess.get_outputs()]
    try:
        results = sess.run(names, {n: feeds[n] for n in wanted})
    except Exception as e:  # noqa: BLE001
        raise NnxcError(f"onnxruntime failed to run the model: {_first_line(e)}") from e
    return dict(zip(names, results, strict=True))


def _interpreter_outputs(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
    from backends.reference import run_graph

    try:
        return run_graph(graph, {v.name: feeds[v.name] for v in graph.inputs})
    except KeyError as e:
        raise NnxcError(f"no value given for the model input {e}") from None
    except NnxcError:
        raise
    except Exception as e:  # noqa: BLE001 - an op's numpy reference failing: say so
        raise NnxcError(f"the reference interpreter failed: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _pick_reference(asked: str, source_format: str) -> tuple[str, str]:
    """(the reference to use, how to name it in the report)."""
    if asked not in REFERENCES:
        raise NnxcError(f"--reference {asked!r}: expected one of {', '.join(REFERENCES)}")
    if asked == "interpreter":
        return "interpreter", "the nnxc reference interpreter"
    if source_format != "onnx":
        if asked == "onnxruntime":
            raise NnxcError(f"--reference onnxruntime: the model is {source_format}, not ONNX")
        return "interpreter", "the nnxc reference interpreter"
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        if asked == "onnxruntime":
            raise NnxcError("--reference onnxruntime: onnxruntime is not installed")
        return "interpreter", "the nnxc reference interpreter (onnxruntime is not installed)"
    return "onnxruntime", "onnxruntime"


# -- running the compiled code ----------------------------------------------------------------
def _run_compiled(cm: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run in this process; CUDA code through an exported artifact loaded on cuda:0."""
    if cm.target.kind != "cuda":
        return cm.run(dict(feeds))
    from compiler.runtime import load

    with tempfile.TemporaryDirectory(prefix="nnxc-verify-") as tmp:
        path = Path(tmp) / "model.so"
        cm.export(path)
        return load(path, device="cuda").run(dict(feeds))


# -- bisection --------------------------------------------------------------------------------
def _top_level_values(graph: Graph, tensors_only: bool = True) -> list[Value]:
    """Outputs of the graph's own nodes (tensors only, or all), in topological order, once."""
    seen: set[int] = set()
    values = []
    for node in graph.nodes:
        for v in node.outputs:
            if (isinstance(v.type, TensorType) or not tensors_only) and id(v) not in seen:
                seen.add(id(v))
                values.append(v)
    return values


def _with_outputs(graph: Graph, values: list[Value]) -> Graph:
    """The same nodes (shared, not copied) with ``values`` as the outputs."""
    g = Graph(graph.name)
    g.inputs = list(graph.inputs)
    g.nodes = list(graph.nodes)
    g.metadata = dict(graph.metadata)
    g.set_outputs(values, [v.name for v in values])
    return g


def _evaluate_alone(node: Node, known: Mapping[int, Any]) -> dict[str, Any]:
    """The interpreter's outputs of ``node`` on the operand values in ``known`` (by value
    id): a one-node graph over the same values, regions included."""
    from backends.reference import run_graph

    g = Graph("node")
    seen: set[int] = set()
    for v in node.inputs:
        if v is not None and not v.is_constant and id(v) not in seen:
            seen.add(id(v))
            g.inputs.append(v)
    g.nodes = [node]
    g.set_outputs(node.outputs, [v.name for v in node.outputs])
    try:
        return run_graph(g, {v.name: known[id(v)] for v in g.inputs})
    except Exception as e:  # noqa: BLE001 - an op's numpy reference failing: say which
        raise NnxcError(
            f"the reference interpreter failed on {node.op} node {node.name!r}: {_first_line(e)}"
        ) from e


def _divergence(
    node: Node, value: Value, position: int, error: Comparison, drift: Comparison
) -> Divergence:
    from compiler.ir.text import format_attr, format_type

    def typed(v: Value | None) -> str:
        if v is None:
            return "_ (absent)"
        const = " (constant)" if v.is_constant else ""
        return f"%{v.name}: {format_type(v.type)}{const}"

    return Divergence(
        node=node.name,
        op=node.op,
        attrs={k: format_attr(node.attrs[k]) for k in sorted(node.attrs)},
        input_types=[typed(v) for v in node.inputs],
        output_types=[typed(v) for v in node.outputs],
        value=value.name,
        position=position,
        error=error,
        drift=drift,
        regions=len(node.regions),
    )


def find_divergence(
    cm: Any,
    feeds: Mapping[str, np.ndarray],
    rtol: float,
    atol: float,
    build_options: Mapping[str, Any],
    progress: Progress | None = None,
) -> Bisection:
    """The first top-level node of ``cm.graph`` whose compiled output differs from the
    interpreter's evaluation of the same node on the same (compiled) operands, beyond
    ``atol + rtol * max|reference|`` (see the module docstring for the method)."""
    from backends.tvm import build, lower_graph
    from compiler.driver import CompiledModel

    say = progress or (lambda _: None)
    values = _top_level_values(cm.graph)
    if not values:
        return Bisection(0, None, "the graph has no top-level tensor values to compare")
    probe = _with_outputs(cm.graph, values)
    say(f"bisect: building the graph with its {len(values)} top-level values as outputs...")
    exe = build(lower_graph(probe), cm.target, **build_options)
    probe_cm = CompiledModel(probe, exe, cm.target, cm.source, {}, cm.compute_precision)
    say("bisect: running it, and the interpreter node by node...")
    got = _run_compiled(probe_cm, feeds)
    # The interpreter from the model's inputs: the drift of each value, and the operands
    # compiled code cannot hand back (sequences, optionals).
    everything = _top_level_values(cm.graph, tensors_only=False)
    expected = _interpreter_outputs(_with_outputs(cm.graph, everything), feeds)
    known: dict[int, Any] = {id(v): feeds[v.name] for v in cm.graph.inputs}
    for v in everything:
        known[id(v)] = got[v.name] if v.name in got else expected[v.name]
    position = 0
    first_drift = ""
    for node in cm.graph.nodes:
        outs = [v for v in node.outputs if v.name in got]
        if not outs:
            continue
        alone = _evaluate_alone(node, known)
        for v in outs:
            position += 1
            own = compare(v.name, got[v.name], alone[v.name], rtol, atol, scaled=True)
            drift = compare(v.name, got[v.name], expected[v.name], rtol, atol, scaled=True)
            if not own.ok:
                return Bisection(len(values), _divergence(node, v, position, own, drift))
            if not drift.ok and not first_drift:
                label = repr(node.name) if node.name else "(no name)"
                first_drift = (
                    f"; the first value drifting out of tolerance from the model's inputs is "
                    f"%{v.name} of {node.op} node {label} ({drift.metrics()})"
                )
    return Bisection(
        len(values),
        None,
        "every top-level node computes what the interpreter does on the same operands: the "
        "difference lies outside the compiled code (the reference disagrees with the "
        "interpreter), in rounding that accumulates over many nodes, or appears only when "
        "values are fused rather than stored" + first_drift,
    )


# -- the command ------------------------------------------------------------------------------
def verify(
    model: Any,
    target: str = "cpu",
    input_shapes: dict | None = None,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    reference: str = "auto",
    bisect: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> VerifyReport:
    """Compile ``model`` (options as ``compiler.compile``), run it on ``inputs`` (default:
    random ones from ``seed``) and compare every output with ``reference`` (``auto``,
    ``onnxruntime`` or ``interpreter``). With ``bisect``, a failed comparison is
    followed by a search for the first diverging IR node (``VerifyReport.bisection``)."""
    from compiler.driver import compile as compile_model
    from compiler.frontends.base import frontend_for

    if not (rtol >= 0 and atol >= 0):
        raise NnxcError(f"tolerances must be >= 0 (rtol {rtol}, atol {atol})")
    # Before compiling: a reference that cannot be had fails in a moment, not after a build.
    kind, ref_text = _pick_reference(reference, frontend_for(model).name)
    say = progress or (lambda _: None)
    t0 = time.perf_counter()
    cm = compile_model(model, target, input_shapes, progress=progress, **options)
    timings = {"compile": time.perf_counter() - t0}
    if inputs is None:
        feeds = random_feeds(cm.metadata.inputs, seed)
        where = f"random, seed {seed}"
    else:
        feeds = {k: np.asarray(v) for k, v in inputs.items()}
        where = "given"
    say("run...")
    t = time.perf_counter()
    got = _run_compiled(cm, feeds)
    timings["run"] = time.perf_counter() - t
    say(f"reference ({ref_text})...")
    t = time.perf_counter()
    expected = None
    if kind == "onnxruntime":
        try:
            expected = _onnxruntime_outputs(model, feeds)
        except NnxcError as e:
            if reference == "onnxruntime":
                raise
            # auto: a model onnxruntime cannot take (an op or opset it lacks) is still
            # checked, against the interpreter, and the report says why.
            ref_text = f"the nnxc reference interpreter ({e})"
            say(f"reference ({ref_text})...")
    if expected is None:
        expected = _interpreter_outputs(cm.graph, feeds)
    timings["reference"] = time.perf_counter() - t
    report = VerifyReport(
        model=cm.source.name,
        target=str(target),
        reference=ref_text,
        rtol=rtol,
        atol=atol,
        inputs=where,
        outputs=[compare(n, x, expected.get(n), rtol, atol) for n, x in got.items()],
        timings=timings,
    )
    if bisect and not report.ok:
        from compiler.options import CompileOptions

        opts = CompileOptions.from_kwargs(target=target, **options)
        build_options = {
            "records": opts.records,
            "precision": opts.precision,
            "cuda_graph": opts.cuda_graph,
        }
        t = time.perf_counter()
        report.bisection = find_divergence(cm, feeds, rtol, atol, build_options, progress)
        timings["bisect"] = time.perf_counter() - t
    return report
