"""What one call costs beyond the kernels: ``Runtime.run`` vs onnxruntime's
``InferenceSession.run`` on one-op models, where the op itself takes next to nothing.

Each model is compiled by nnxc (loaded from its artifact, 1 thread) and opened in onnxruntime
(``compiler.benchmark.ort_session``, 1 thread); both are timed in this process with
``compiler.benchmark.interleaved``. A single call lasts microseconds, shorter than the timer
resolves well, so each timed sample is ``--calls`` calls in a row, divided. Feeds are numpy
arrays as a user makes them (16-byte aligned: nnxc copies them to the 64 bytes TVM's kernels
assume) and, when PyTorch is installed, CPU tensors (64-byte aligned: used in place).

    python benchmarks/call_overhead.py                      # the table
    python benchmarks/call_overhead.py --models relu16 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import compiler  # noqa: E402
from compiler.benchmark import interleaved, ort_session  # noqa: E402


def one_op(op: str, shape: list[int], inputs: int = 1, **attrs: Any) -> onnx.ModelProto:
    """A model of one ``op`` on ``inputs`` float32 tensors of ``shape``."""
    names = [f"x{i}" for i in range(inputs)]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"], **attrs)],
        op.lower(),
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# name -> (model, how many times fewer calls per sample than --calls: its run is longer)
MODELS: dict[str, tuple[Callable[[], onnx.ModelProto], int]] = {
    "relu16": (lambda: one_op("Relu", [1, 16]), 1),
    "add16": (lambda: one_op("Add", [1, 16], inputs=2), 1),
    "softmax1000": (lambda: one_op("Softmax", [1, 1000], axis=-1), 1),
    "relu4mb": (lambda: one_op("Relu", [1024, 1024]), 100),  # a 4 MB output
}


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(
            np.float32
        )
        for i in model.graph.input
    }


def _per_call_us(times: Sequence[float], calls: int) -> float:
    return float(np.median(times)) / calls * 1e6


def _repeat(run: Callable[[Any], Any], feeds: Any, calls: int) -> Callable[[], None]:
    def many() -> None:
        for _ in range(calls):
            run(feeds)

    return many


def measure(
    name: str, workdir: Path, calls: int, blocks: int, budget_s: float
) -> list[dict[str, Any]]:
    """Rows of the table for one model: one per kind of feed."""
    build, fewer = MODELS[name]
    model = build()
    calls = max(1, calls // fewer)
    artifact = workdir / f"{name}.so"
    compiler.compile(model).export(artifact)
    rt = compiler.load(artifact, threads=1)
    session = ort_session(model, 1)
    feeds = _feeds(model)
    ort_run = _repeat(lambda f: session.run(None, f), feeds, calls)
    expected = session.run(None, feeds)[0]
    kinds: list[tuple[str, Any]] = [("numpy", feeds)]
    try:
        import torch

        kinds.append(("torch", {k: torch.tensor(v) for k, v in feeds.items()}))
    except ImportError:
        pass
    rows = []
    for kind, feed in kinds:
        np.testing.assert_allclose(rt.run(feed)["y"], expected, rtol=1e-5, atol=1e-6)
        t_nnxc, t_ort = interleaved(
            _repeat(rt.run, feed, calls), ort_run, blocks, warmup=1, budget_s=budget_s, block=1
        )
        nnxc_us, ort_us = _per_call_us(t_nnxc, calls), _per_call_us(t_ort, calls)
        rows.append(
            {
                "model": name,
                "feed": kind,
                "calls_per_sample": calls,
                "samples": len(t_nnxc),
                "nnxc_us": nnxc_us,
                "ort_us": ort_us,
                "ratio": nnxc_us / ort_us,
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated, of: {', '.join(MODELS)} (default all)",
    )
    parser.add_argument(
        "--calls", type=int, default=1000, help="calls per timed sample (default 1000)"
    )
    parser.add_argument(
        "--blocks", type=int, default=20, help="timed samples of each runtime (default 20)"
    )
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds of timing per row, at most (after 3)"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows += measure(name, Path(tmp), args.calls, args.blocks, args.budget)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'model':12s} {'feed':6s} {'nnxc us':>9s} {'ort us':>9s} {'nnxc/ort':>9s}")
    for r in rows:
        print(
            f"{r['model']:12s} {r['feed']:6s} {r['nnxc_us']:9.2f} {r['ort_us']:9.2f} "
            f"{r['ratio']:9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
