"""What running through TVM RPC adds to a run: local ``Runtime.run`` vs ``RemoteRuntime.run``.

Each model is compiled once (cached under ``--workdir``), loaded here and on an RPC server,
and both are timed in this one process, interleaved (one run each in turn, after a warm-up):
the difference of the medians is the cost of the connection (inputs sent, outputs read back,
a few round trips per run). Without ``--rpc`` a server is started on 127.0.0.1 and ended
afterwards (loopback: no network, only the protocol and the copies).

    python benchmarks/rpc_overhead.py                              # tiny matmul, squeezenet
    python benchmarks/rpc_overhead.py --models squeezenet,resnet50 --runs 50
    python benchmarks/rpc_overhead.py --rpc HOST:9090              # a server elsewhere

Both sides use one thread (the loopback server shares this machine's cores).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import compiler  # noqa: E402
from benchmarks.models import LIGHT_MODELS, example_input, light_path, randomized  # noqa: E402
from compiler.remote import Remote, open_runtime, parse_address  # noqa: E402


def _tiny() -> onnx.ModelProto:
    """``y = relu(x @ w)``, x: float32[1, 64]: the run itself costs next to nothing."""
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _artifact(name: str, workdir: Path) -> tuple[Path, dict[str, np.ndarray]]:
    model = _tiny() if name == "tiny" else randomized(onnx.load(str(light_path(name))), seed=0)
    src, out = workdir / f"{name}.onnx", workdir / f"{name}.so"
    if not out.exists():
        onnx.save(model, src)
        print(f"compiling {name}...", file=sys.stderr, flush=True)
        compiler.compile(str(src)).export(out)
    feeds = {"x": np.ones((1, 64), np.float32)} if name == "tiny" else example_input(model)
    return out, feeds


def _loopback_server() -> tuple[subprocess.Popen, Remote]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
         "--port", str(port), "--port-end", str(port + 1)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its server loop runs in a child: end the whole group
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, Remote("127.0.0.1", port)
        except OSError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("the RPC server did not start within 60 s")


def _medians(local, remote, feeds: dict, runs: int) -> tuple[float, float]:  # noqa: ANN001
    for _ in range(3):
        local.run(feeds)
        remote.run(feeds)
    times: dict[str, list[float]] = {"local": [], "remote": []}
    for i in range(runs):
        order = [("local", local), ("remote", remote)]
        for key, rt in order if i % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            rt.run(feeds)
            times[key].append(time.perf_counter() - t)
    return float(np.median(times["local"])), float(np.median(times["remote"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default="tiny,squeezenet",
        help=f"comma-separated: tiny, {', '.join(LIGHT_MODELS)} (default tiny,squeezenet)",
    )
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each (default 30)")
    parser.add_argument("--rpc", metavar="HOST:PORT", help="a running RPC server to use")
    parser.add_argument("--workdir", default="out/rpc_overhead", help="where artifacts go")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    proc = None
    if args.rpc:
        remote = Remote(*parse_address(args.rpc, "--rpc"))
    else:
        proc, remote = _loopback_server()
    try:
        print(f"{'model':12s} {'local ms':>9s} {'remote ms':>10s} {'overhead ms':>12s}")
        for name in args.models.split(","):
            path, feeds = _artifact(name, workdir)
            local = compiler.load(path, threads=1)
            rt = open_runtime(path, remote, threads=1)
            here, there = _medians(local, rt, feeds, args.runs)
            rt.close()
            print(f"{name:12s} {here * 1e3:9.3f} {there * 1e3:10.3f} {(there - here) * 1e3:12.3f}")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
