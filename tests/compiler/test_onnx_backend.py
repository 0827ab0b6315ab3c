"""ONNX's node conformance cases (``collect_testcases()``, kind "node") through nnxc's backend.

One test loops over all ~1,900 cases, each compiled and run by ``compiler.onnx_backend`` and
compared like onnx's own backend runner (same output count, shape and dtype; values with
the case's rtol/atol). Expected failures live in ``onnx_conformance_xfail.txt``
(``case_name  # reason``); the test fails on a regression (an unlisted case fails) and on a
stale entry (a listed case passes), so the list stays honest.

The cases run in a worker subprocess that reports one line per case, so a crash in native
code (or a hang) costs one case, not the whole run: the worker is restarted after it.

    python tests/compiler/test_onnx_backend.py                  # run all, print the summary
    python tests/compiler/test_onnx_backend.py REGEX -v         # some cases, with tracebacks
    python tests/compiler/test_onnx_backend.py --update-xfail   # rewrite the xfail file
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

XFAIL_PATH = Path(__file__).with_name("onnx_conformance_xfail.txt")
MIN_PASSED = 800
CASE_TIMEOUT_S = 120.0
_TAG = "@@nnxc-case "  # worker protocol lines; anything else on stdout is ignored


@dataclass
class Outcome:
    name: str
    error: str | None  # one line, None when the case passed
    seconds: float


# -- one case ---------------------------------------------------------------------------------
def _as_array(x: Any) -> Any:
    import onnx
    from onnx import numpy_helper

    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else x


def compare(expected: list[Any], got: list[Any], rtol: float, atol: float) -> None:
    """onnx's ``assert_similar_outputs``, with one-line messages."""
    if len(got) != len(expected):
        raise AssertionError(f"output count {len(got)} != {len(expected)}")
    for i, (e, g) in enumerate(zip(expected, got)):
        if e is None or isinstance(e, list):  # an optional or a sequence: like onnx's runner
            if (g is None) != (e is None) or (e is not None and not isinstance(g, list)):
                raise AssertionError(
                    f"output {i} is {type(g).__name__}, expected {type(e).__name__}"
                )
            if e is not None:
                try:
                    compare(e, g, rtol, atol)
                except AssertionError as err:
                    raise AssertionError(f"output {i} (sequence): {err}") from None
            continue
        e, g = np.asarray(e), np.asarray(g)
        if g.shape != e.shape:
            raise AssertionError(f"output {i} shape {g.shape} != expected {e.shape}")
        if e.dtype == object:
            if not np.array_equal(g, e):
                raise AssertionError(f"output {i} (strings) differs")
            continue
        if g.dtype != e.dtype:
            raise AssertionError(f"output {i} dtype {g.dtype} != expected {e.dtype}")
        tol = rtol
        if e.dtype.name == "bfloat16":
            tol, e, g = max(rtol, 2**-6), e.astype(np.float32), g.astype(np.float32)
        try:
            np.testing.assert_allclose(g, e, rtol=tol, atol=atol)
        except AssertionError:
            raise AssertionError(f"output {i} {_mismatch(e, g, tol, atol)}") from None


def _mismatch(e: np.ndarray, g: np.ndarray, rtol: float, atol: float) -> str:
    e64, g64 = e.astype(np.float64), g.astype(np.float64)
    bad = ~np.isclose(g64, e64, rtol=rtol, atol=atol, equal_nan=True)
    with np.errstate(invalid="ignore"):
        err = np.abs(g64 - e64)[bad]
    worst = float(np.nanmax(err)) if err.size and not np.all(np.isnan(err)) else float("nan")
    return f"mismatch: max abs err {worst:.3g}, {int(bad.sum())} of {e.size} elements"


def run_case(case: Any) -> None:
    """Prepare, run and compare one case; raises on any failure."""
    from compiler.onnx_backend import prepare

    rep = prepare(case.model, "CPU")
    for inputs, outputs in case.data_sets:
        got = rep.run([_as_array(x) for x in inputs])
        compare([_as_array(x) for x in outputs], list(got), case.rtol, case.atol)


def describe(exc: BaseException) -> str:
    """The error as one line: type, and the message's first line (unsupported ops listed)."""
    text = str(exc).strip()
    lines = text.splitlines()
    ops = ", ".join(re.findall(r"([\w.]+) x\d+ \(e\.g\.", text))
    if type(exc).__name__ == "UnsupportedOpsError" and ops:
        return f"UnsupportedOpsError: {ops}"
    if type(exc).__name__ == "LoweringError" and "cannot lower these ops" in text and ops:
        return f"LoweringError: cannot lower {ops}"
    if isinstance(exc, AssertionError):
        return text.splitlines()[0] if text else "AssertionError"
    first = lines[0] if lines else ""
    # TVM errors put the useful line last, after a traceback
    if "Traceback" in first or not first:
        first = next((ln for ln in reversed(lines) if ln.strip()), "")
    return f"{type(exc).__name__}: {first.strip()}"[:240]


def category(reason: str) -> str:
    """Coarse cause of a failure, for the summary table."""
    if reason.startswith("UnsupportedOpsError"):
        return "unsupported op (frontend)"
    if reason.startswith("LoweringError: cannot lower"):
        return "unsupported op (TVM lowering)"
    if re.search(r"uses ONNX opset \d+; nnxc supports", reason):
        return "opset too old"
    if "no version of the default ONNX domain" in reason:
        return "other domain only (ai.onnx.ml, training)"
    if "element type" in reason or re.search(
        r"unsupported.*dtype|dtype.*not supported", reason, re.I
    ):
        return "unsupported dtype"
    if reason.startswith("InputError: only tensor inputs"):
        return "non-tensor inputs (sequence/optional)"
    if "mismatch" in reason:
        return "wrong values"
    if re.match(r"output \d+ (dtype|shape)|output count", reason):
        return "wrong dtype/shape"
    if reason.startswith(("crash", "timeout")):
        return "crash/timeout"
    if reason.startswith("NeedsValueError"):
        return "needs compile-time value"
    if reason.startswith("LoweringError"):
        return "lowering failed"
    if reason.startswith(("TVMError", "InternalError", "ValueError: Traceback")):
        return "TVM build/run error"
    if reason.startswith("ConversionError"):
        return "conversion error"
    return "other error"


# -- many cases, in a worker process ------------------------------------------------------
def node_cases(pattern: str = ".") -> list[Any]:
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    regex = re.compile(pattern)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return [c for c in collect_testcases() if c.kind == "node" and regex.search(c.name)]


def _worker(pattern: str, start: int, verbose: bool) -> None:
    """Run cases[start:], one protocol line when a case starts and one when it ends."""
    import warnings

    warnings.simplefilter("ignore")
    cases = node_cases(pattern)
    print(_TAG + json.dumps({"total": len(cases)}), flush=True)
    for index in range(start, len(cases)):
        case = cases[index]
        print(_TAG + json.dumps({"start": index, "name": case.name}), flush=True)
        t0 = time.perf_counter()
        error = None
        try:
            with np.errstate(all="ignore"):
                run_case(case)
        except Exception as e:  # noqa: BLE001 - every failure is a result
            error = describe(e)
            if verbose:
                traceback.print_exc(limit=4, file=sys.stderr)
        seconds = time.perf_counter() - t0
        print(_TAG + json.dumps({"index": index, "error": error, "s": seconds}), flush=True)


def run_cases(
    pattern: str = ".", verbose: bool = False, report: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    """All matching cases; a crashed or hung worker marks its case and restarts after it."""
    outcomes: list[Outcome] = []
    total, start = None, 0
    while total is None or start < total:
        current: tuple[int, str, float] | None = None
        died = None
        for msg in _worker_messages(pattern, start, verbose):
            if "total" in msg:
                total = msg["total"]
            elif "start" in msg:
                current = (msg["start"], msg["name"], time.perf_counter())
            elif "index" in msg and current is not None:
                outcomes.append(Outcome(current[1], msg["error"], msg["s"]))
                if report:
                    report(outcomes[-1])
                start, current = msg["index"] + 1, None
            elif "died" in msg:
                died = msg["died"]
        if died is not None and current is not None:
            outcomes.append(Outcome(current[1], died, time.perf_counter() - current[2]))
            if report:
                report(outcomes[-1])
            start = current[0] + 1
        elif total is None or start < total:
            raise RuntimeError(f"conformance worker stopped early ({died or 'no reason'})")
    return outcomes


def _worker_messages(pattern: str, start: int, verbose: bool) -> Iterator[dict[str, Any]]:
    cmd = [sys.executable, __file__, "--worker", str(start), pattern]
    if verbose:
        cmd.append("-v")
    root = Path(__file__).resolve().parents[2]
    path = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    stderr = None if verbose else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        last = time.monotonic()
        while True:
            if not sel.select(timeout=5.0):
                if time.monotonic() - last > CASE_TIMEOUT_S:
                    proc.kill()
                    proc.wait()
                    yield {"died": f"timeout: no result after {CASE_TIMEOUT_S:.0f} s"}
                    return
                continue
            line = proc.stdout.readline()
            if not line:
                code = proc.wait()
                if code != 0:
                    sig = signal.Signals(-code).name if code < 0 else f"exit code {code}"
                    yield {"died": f"crash: worker died ({sig})"}
                return
            last = time.monotonic()
            if _TAG in line:  # native code may have printed on the same line before it
                yield json.loads(line[line.index(_TAG) + len(_TAG) :])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# -- expected failures ----------------------------------------------------------------------
def read_xfail(path: Path = XFAIL_PATH) -> dict[str, str]:
    entries: dict[str, str] = {}
    if not path.exists():
        return entries
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, reason = line.partition("#")
        entries[name.strip()] = reason.strip()
    return entries


def write_xfail(outcomes: list[Outcome], path: Path = XFAIL_PATH) -> None:
    failing = sorted((o for o in outcomes if o.error), key=lambda o: o.name)
    width = max((len(o.name) for o in failing), default=0)
    header = [
        "# ONNX node conformance cases nnxc is expected to fail, with the reason (first line).",
        "# Regenerate: python tests/compiler/test_onnx_backend.py --update-xfail",
        f"# {len(outcomes) - len(failing)} of {len(outcomes)} cases pass.",
    ]
    body = [f"{o.name.ljust(width)}  # {o.error}" for o in failing]
    path.write_text("\n".join(header + body) + "\n")


def summary(outcomes: list[Outcome], xfail: dict[str, str]) -> str:
    passed = sum(o.error is None for o in outcomes)
    lines = [
        f"{passed} passed of {len(outcomes)}; {len(xfail)} expected failures listed",
        f"total {sum(o.seconds for o in outcomes):.0f} s, "
        f"{np.mean([o.seconds for o in outcomes if not o.error] or [0]):.2f} s per passing case",
    ]
    cats = Counter(category(o.error) for o in outcomes if o.error)
    lines += ["failures by cause:"] + [f"  {n:5d}  {c}" for c, n in cats.most_common()]
    ops = Counter()
    for o in outcomes:
        if o.error and category(o.error).startswith("unsupported op"):
            listed = o.error.split(": ", 1)[1]
            suffix = " (lowering)" if listed.startswith("cannot lower ") else ""
            ops.update(op + suffix for op in listed.removeprefix("cannot lower ").split(", "))
    top = ", ".join(f"{op} {n}" for op, n in ops.most_common(25))
    lines.append(f"missing ops (cases): {top}")
    slow = sorted(outcomes, key=lambda o: -o.seconds)[:5]
    lines.append("slowest: " + ", ".join(f"{o.name} {o.seconds:.1f}s" for o in slow))
    return "\n".join(lines)


# -- the backend's own behaviour ------------------------------------------------------------
def _model(nodes: list[Any], inputs: list[tuple[str, int, list[Any]]], outputs: list[str]) -> Any:
    from onnx import helper

    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_specializes_per_input_shape() -> None:
    from onnx import TensorProto, helper

    from compiler.onnx_backend import prepare

    f = TensorProto.FLOAT
    node = helper.make_node("Add", ["a", "b"], ["y"])
    rep = prepare(_model([node], [("a", f, ["n", 3]), ("b", f, [3])], ["y"]))
    for n in (2, 5, 2):
        a, b = np.random.rand(n, 3).astype(np.float32), np.random.rand(3).astype(np.float32)
        (y,) = rep.run([a, b])
        np.testing.assert_allclose(y, a + b, rtol=1e-6)
        assert y.dtype == np.float32
    assert len(rep.cache) == 2 and not rep.bound_names


def test_binds_shape_operand_fed_as_input() -> None:
    from onnx import TensorProto, helper

    from compiler.onnx_backend import prepare

    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    model = _model(
        [node], [("x", TensorProto.FLOAT, [2, 6]), ("shape", TensorProto.INT64, [2])], ["y"]
    )
    rep = prepare(model)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    for shape in ([3, 4], [4, -1], [3, 4]):
        out = rep.run({"x": x, "shape": np.array(shape, np.int64)})
        np.testing.assert_array_equal(out["y"], x.reshape(shape))
    assert rep.bound_names == {"shape"}
    assert len(rep.cache) == 2  # one executable per bound value


def test_binds_inputs_a_shape_operand_is_computed_from() -> None:
    from onnx import TensorProto, helper

    from compiler.onnx_backend import prepare

    nodes = [
        helper.make_node("Add", ["n", "n"], ["limit"]),
        helper.make_node("Range", ["start", "limit", "delta"], ["y"]),
    ]
    i64 = TensorProto.INT64
    rep = prepare(_model(nodes, [("start", i64, []), ("n", i64, []), ("delta", i64, [])], ["y"]))
    for n in (3, 5):
        (y,) = rep.run([np.int64(1), np.int64(n), np.int64(2)])
        np.testing.assert_array_equal(y, np.arange(1, 2 * n, 2))
    assert rep.bound_names == {"start", "n", "delta"}


def test_run_node_and_devices() -> None:
    from onnx import helper

    from compiler.errors import InputError
    from compiler.onnx_backend import NnxcBackend, prepare, run_node, supports_device

    a = np.random.rand(2, 3).astype(np.float32)
    b = np.random.rand(2, 3).astype(np.float32)
    (y,) = run_node(helper.make_node("Add", ["a", "b"], ["y"]), [a, b])
    np.testing.assert_allclose(y, a + b, rtol=1e-6)
    assert supports_device("CPU") and not supports_device("CUDA")
    assert NnxcBackend.supports_device("CPU:0")
    model = _model([helper.make_node("Relu", ["a"], ["y"])], [("a", 1, [2, 3])], ["y"])
    with pytest.raises(ValueError, match="CUDA"):
        prepare(model, "CUDA")
    rep = prepare(model)
    with pytest.raises(InputError, match="1 input"):
        rep.run([a, b])
    with pytest.raises(InputError, match="dtype"):
        rep.run([a.astype(np.float64)])


# -- the conformance test -------------------------------------------------------------------
def test_node_conformance(capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = run_cases()
    xfail = read_xfail()
    with capsys.disabled():  # the counts belong in every run's log, not only on failure
        print("\n" + summary(outcomes, xfail))
    names = {o.name for o in outcomes}
    regressions = [f"{o.name}: {o.error}" for o in outcomes if o.error and o.name not in xfail]
    stale = [o.name for o in outcomes if not o.error and o.name in xfail]
    stale += [n for n in xfail if n not in names]
    problems = []
    if regressions:
        problems.append(f"{len(regressions)} unexpected failure(s):\n  " + "\n  ".join(regressions))
    if stale:
        problems.append(
            f"{len(stale)} stale xfail entr(ies) (the case passes or does not exist; remove them "
            "or run --update-xfail):\n  " + "\n  ".join(stale)
        )
    assert not problems, "\n".join(problems)
    passed = sum(o.error is None for o in outcomes)
    assert passed >= MIN_PASSED, f"only {passed} cases pass, at least {MIN_PASSED} must"


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        _worker(argv[2], int(argv[1]), "-v" in argv)
        return
    verbose = "-v" in argv
    update = "--update-xfail" in argv
    rest = [a for a in argv if not a.startswith("-")]
    pattern = rest[0] if rest else "."
    if update and pattern != ".":
        raise SystemExit("--update-xfail runs every case; give no pattern")

    def report(o: Outcome) -> None:
        print(f"{'FAIL' if o.error else 'PASS'} {o.name}" + (f": {o.error}" if o.error else ""))
        sys.stdout.flush()

    outcomes = run_cases(pattern, verbose, report)
    print(summary(outcomes, read_xfail()))
    if update:
        write_xfail(outcomes)
        print(f"wrote {XFAIL_PATH}")


if __name__ == "__main__":
    # run as a script: its folder (tests/compiler) must not shadow the packages
    sys.path[:] = [
        p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent
    ]
    main(sys.argv[1:])
