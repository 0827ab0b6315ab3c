"""Run ONNX node conformance cases whose name matches a pattern through nnxc (dev tool).

    python tools/node_cases.py 'test_reduce_sum'      # regex on the case name
    python tools/node_cases.py relu -v                 # show each failure's error

Each case: import (binding graph inputs that must be compile-time values), lower to TVM,
build for the CPU, run, compare with the case's expected outputs (rtol 1e-3, atol 1e-5).
"""

from __future__ import annotations

import re
import sys
import traceback

import numpy as np
import tvm
from onnx.backend.test.case.node import collect_testcases
from tvm import relax

from backends.tvm import lower_graph, resolve_target
from compiler.errors import NeedsValueError
from compiler.frontends.onnx import import_onnx


def run_case(case) -> None:
    model = case.model
    inputs, outputs = case.data_sets[0]
    names = [
        i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}
    ]
    feeds = dict(zip(names, inputs))
    bound: dict[str, np.ndarray] = {}
    for _ in range(8):
        try:
            shapes = {n: list(np.shape(x)) for n, x in feeds.items() if n not in bound}
            graph = import_onnx(model, input_shapes=shapes, input_values=bound)
            break
        except NeedsValueError as e:
            if e.value_name not in feeds or e.value_name in bound:
                raise
            bound[e.value_name] = feeds[e.value_name]
    ex = tvm.compile(lower_graph(graph), target=resolve_target("cpu").tvm_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[v.name])) for v in graph.inputs]
    res = vm["main"](*args)
    for i, expected in enumerate(outputs):
        got = res[i].numpy()
        assert got.shape == np.shape(expected), f"shape {got.shape} != {np.shape(expected)}"
        assert got.dtype == np.asarray(expected).dtype, f"dtype {got.dtype} != {expected.dtype}"
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)


def main() -> None:
    pattern = re.compile(sys.argv[1] if len(sys.argv) > 1 else ".")
    verbose = "-v" in sys.argv
    cases = [c for c in collect_testcases() if c.kind == "node" and pattern.search(c.name)]
    passed = 0
    for case in cases:
        try:
            run_case(case)
            passed += 1
            print(f"PASS {case.name}")
        except Exception as e:  # noqa: BLE001 - a dev tool reports everything
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            print(f"FAIL {case.name}: {type(e).__name__}: {first}")
            if verbose:
                traceback.print_exc(limit=3)
    print(f"{passed} passed, {len(cases) - passed} failed")


if __name__ == "__main__":
    main()
