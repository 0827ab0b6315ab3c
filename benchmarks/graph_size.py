"""Compile time against graph size: a chain of Add/Relu/Mul nodes over a small tensor, at
1k, 10k and 100k nodes by default, each stage of ``compiler.compile`` timed on its own
(``CompiledModel.timings``: import, optimize, lower, build).

The chain is the shape that breaks recursive walkers (each node reads the one before) and
shows super-linear passes: every stage should grow about linearly with the node count, so
the last column (microseconds per node) should stay roughly flat.

    python benchmarks/graph_size.py                        # 1k, 10k, 100k nodes, all stages
    python benchmarks/graph_size.py --sizes 1000,10000 --no-build   # import, optimize, lower
    python benchmarks/graph_size.py --json out/graph_size.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = ("import", "optimize", "lower", "build")


def chain_model(nodes: int, width: int = 4) -> onnx.ModelProto:
    """``nodes`` ops in one chain over x: float32[1, width], cycling Add, Relu, Mul with two
    small constants, so no pass can drop or merge any of them."""
    b = numpy_helper.from_array(np.linspace(-1, 1, width, dtype=np.float32), "b")
    s = numpy_helper.from_array(np.full(width, 0.5, np.float32), "s")
    ops = []
    prev = "x"
    for i in range(nodes):
        out = "y" if i == nodes - 1 else f"t{i}"
        kind = i % 3
        if kind == 0:
            ops.append(helper.make_node("Add", [prev, "b"], [out], name=f"n{i}"))
        elif kind == 1:
            ops.append(helper.make_node("Relu", [prev], [out], name=f"n{i}"))
        else:
            ops.append(helper.make_node("Mul", [prev, "s"], [out], name=f"n{i}"))
        prev = out
    graph = helper.make_graph(
        ops,
        f"chain{nodes}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
        [b, s],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def chain_reference(nodes: int, x: np.ndarray) -> np.ndarray:
    """What the chain computes, in numpy."""
    b = np.linspace(-1, 1, x.shape[-1], dtype=np.float32)
    for i in range(nodes):
        x = (x + b, np.maximum(x, 0), x * np.float32(0.5))[i % 3]
    return x


def time_stages(model: onnx.ModelProto, build: bool) -> dict[str, float]:
    """Seconds per stage of compiling ``model`` for the CPU (without ``build``: up to lower)."""
    import compiler
    from compiler.driver import _import_and_lower, _stages
    from compiler.options import CompileOptions

    if build:
        return dict(compiler.compile(model).timings)
    stage, timings = _stages(None)
    _import_and_lower(model, CompileOptions(), stage)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="node counts, comma-separated")
    parser.add_argument("--no-build", action="store_true", help="stop after lowering (no TVM)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    sys.setrecursionlimit(1000)  # Python's default: what users run with
    rows = []
    stages = STAGES[:3] if args.no_build else STAGES
    time_stages(chain_model(3), build=not args.no_build)  # one-time costs (TVM, LLVM) first
    print(f"{'nodes':>8} " + " ".join(f"{s + ' s':>10}" for s in stages) + f" {'us/node':>9}")
    for n in (int(s) for s in args.sizes.split(",")):
        model = chain_model(n)
        timings = time_stages(model, build=not args.no_build)
        total = sum(timings[s] for s in stages)
        rows.append({"nodes": n, **timings, "total": total})
        cells = " ".join(f"{timings[s]:>10.2f}" for s in stages)
        print(f"{n:>8} {cells} {1e6 * total / n:>9.0f}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
