"""The cost of nnxc's run-time checks (indices in range, integer divisors non-zero) on the CPU.

Each model is compiled twice in this process, with the checks (the default) and without
(``runtime_checks=False``, ``nnxc compile --no-runtime-checks``), and the two are timed
interleaved (``benchmarks/cpu.py``'s ``interleaved``: alternating blocks of runs). The table
gives, per model, the number of check kernels in the checked build, whether the two Relax
modules are the same text (then the builds are the same code, and any difference in time is
the machine's noise), both medians and their ratio (checked / unchecked), the ratio of the
fastest runs (less moved by other load on the machine), and the geomeans of both ratios over
the CPU benchmark's models.

The CPU benchmark's models take float inputs and index only with constants, so their builds
hold no check kernels; ``embedding`` (built here, not part of the geomean) is where checks
do run: token and position ids gathered from two tables, as a transformer's input layer.

    python benchmarks/runtime_checks.py                          # the CPU benchmark's models
    python benchmarks/runtime_checks.py --models transformer,mobilenet,resnet50,embedding
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.cpu import LIGHT, ZOO, geomean, interleaved, prepare  # noqa: E402

EMBEDDING = "embedding"
VOCAB, SEQ, WIDTH = 8000, 128, 256


def embedding_model(seed: int = 0):
    """ids, positions [1, SEQ] -> Gather from [VOCAB, WIDTH] and [SEQ, WIDTH] tables, Add,
    MatMul, Relu: the input layer of a transformer, where every gather is checked."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    tables = {
        "tok": rng.standard_normal((VOCAB, WIDTH)).astype(np.float32),
        "pos": rng.standard_normal((SEQ, WIDTH)).astype(np.float32),
        "w": (rng.standard_normal((WIDTH, WIDTH)) / 16).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["tok", "ids"], ["t"], name="tok_gather"),
        helper.make_node("Gather", ["pos", "positions"], ["p"], name="pos_gather"),
        helper.make_node("Add", ["t", "p"], ["e"]),
        helper.make_node("MatMul", ["e", "w"], ["m"]),
        helper.make_node("Relu", ["m"], ["y"]),
    ]
    ins = [
        helper.make_tensor_value_info(n, TensorProto.INT64, [1, SEQ]) for n in ("ids", "positions")
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, WIDTH])
    inits = [numpy_helper.from_array(a, n) for n, a in tables.items()]
    graph = helper.make_graph(nodes, "embedding", ins, [out], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _model_and_feeds(name: str, workdir: Path, seed: int):
    import onnx

    if name == EMBEDDING:
        rng = np.random.default_rng(1)
        feeds = {
            "ids": rng.integers(0, VOCAB, (1, SEQ)).astype(np.int64),
            "positions": np.arange(SEQ, dtype=np.int64)[None],
        }
        return embedding_model(seed), feeds
    from benchmarks.models import example_input

    model = onnx.load(str(prepare(name, workdir, seed)))
    return model, example_input(model, seed=1)


def _check_kernels(compiled) -> tuple[int, bool]:
    """The number of check kernels in the checked build, and whether the Relax modules with
    and without checks are the same text (then any timing difference is noise)."""
    from backends.tvm import lower_graph

    on = lower_graph(compiled.graph, runtime_checks=True).script()
    off = lower_graph(compiled.graph, runtime_checks=False).script()
    return on.count("def runtime_check"), on == off


def bench(name: str, args: argparse.Namespace) -> dict:
    import compiler
    from compiler.runtime import Runtime

    model, feeds = _model_and_feeds(name, args.workdir, args.seed)
    runtimes = []
    kernels, same_code = 0, False
    for checks in (True, False):
        c = compiler.compile(model, runtime_checks=checks)
        if checks:
            kernels, same_code = _check_kernels(c)
        runtimes.append(Runtime.from_executable(c.executable, c.metadata))
    on, off = runtimes
    a, b = on.run(feeds), off.run(feeds)
    same = all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    ta, tb = interleaved(
        lambda: on.run(feeds), lambda: off.run(feeds), args.blocks, args.warmup, args.budget
    )
    checked, unchecked = 1e3 * float(np.median(ta)), 1e3 * float(np.median(tb))
    return {
        "model": name,
        "check_kernels": kernels,
        "same_code": same_code,
        "checked_ms": checked,
        "unchecked_ms": unchecked,
        "ratio": checked / unchecked,
        "min_ratio": min(ta) / min(tb),
        "same_outputs": same,
        "runs": len(ta),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default=",".join(LIGHT + ZOO),
        help=f"comma-separated names: the CPU benchmark's and {EMBEDDING!r} (default: the "
        "CPU benchmark's eight)",
    )
    parser.add_argument("--blocks", type=int, default=8, help="alternating blocks of 5 runs")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs of each first")
    parser.add_argument(
        "--budget", type=float, default=30.0, help="stop timing a model after this many seconds"
    )
    parser.add_argument("--threads", type=int, default=2, help="TVM threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument(
        "--workdir", type=Path, default=ROOT / "out" / "bench", help="model cache folder"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's pool starts
    rows = []
    print(
        f"{'model':<13} {'checks':>6} {'same code':>9} {'checked ms':>11} {'unchecked ms':>13} "
        f"{'ratio':>7} {'min ratio':>9}"
    )
    for name in args.models.split(","):
        row = bench(name, args)
        rows.append(row)
        print(
            f"{name:<13} {row['check_kernels']:>6} {'yes' if row['same_code'] else 'no':>9} "
            f"{row['checked_ms']:>11.3f} "
            f"{row['unchecked_ms']:>13.3f} {row['ratio']:>7.3f} {row['min_ratio']:>9.3f}"
            + ("" if row["same_outputs"] else "  OUTPUTS DIFFER"),
            flush=True,
        )
    ratios = [r["ratio"] for r in rows if r["model"] != EMBEDDING]
    if ratios:
        mins = [r["min_ratio"] for r in rows if r["model"] != EMBEDDING]
        print(
            f"geomean over {len(ratios)} CPU benchmark models: ratio of medians "
            f"{geomean(ratios):.3f}, of minima {geomean(mins):.3f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r["same_outputs"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
