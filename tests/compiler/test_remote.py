"""``compiler.remote``: artifacts run on TVM RPC servers (direct and through a tracker), their
errors, and tuning measured on a tracker's servers, against real servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from backends.tvm.tuning import RECORD_FILES, RUN_TIMEOUT_S, _device_names
from compiler.errors import InputError
from compiler.remote import (
    Remote,
    RemoteError,
    connect,
    load_remote,
    open_runtime,
    parse_address,
    remote_for,
    server_count,
)

pytest.register_assert_rewrite("models_fixture")

from models_fixture import assert_one_error_line, nnxc, tiny_expected  # noqa: E402

import compiler  # noqa: E402

pytest_plugins = ["models_fixture"]  # fixtures: tiny_so, tiny_so_static, two_input_so

KEY = "nnxc-test"
START_S = 90.0  # for the tracker to list both servers (TVM's imports take seconds each)


@dataclass
class Servers:
    tracker: Remote  # two servers registered under KEY
    direct: Remote  # one server of its own, with a pool of two threads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A TVM RPC process in a session of its own: its server loop runs in a child process
    (tvm.exec.popen_worker), so ending it means ending the whole process group."""
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def _stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            if sig == signal.SIGTERM:
                time.sleep(0.2)  # the group's children may outlive the leader by a moment
        except subprocess.TimeoutExpired:
            pass


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """A tracker with two servers under KEY and one direct server, all ended afterwards."""
    logs = tmp_path_factory.mktemp("rpc")
    t_port, d_port = _free_port(), _free_port()
    procs = []
    try:
        procs.append(
            _start(
                ["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(t_port),
                 "--port-end", str(t_port + 1)],
                logs / "tracker.log",
            )
        )  # fmt: skip
        for i in range(2):
            port = _free_port()
            procs.append(
                _start(
                    ["tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{t_port}", "--key", KEY,
                     "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)],
                    logs / f"server{i}.log",
                )
            )  # fmt: skip
        procs.append(
            _start(
                ["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(d_port),
                 "--port-end", str(d_port + 1)],
                logs / "direct.log",
                env={"TVM_NUM_THREADS": "2"},
            )
        )  # fmt: skip
        tracker = Remote("127.0.0.1", t_port, KEY)
        deadline = time.monotonic() + START_S
        while not (_accepts(t_port) and server_count(tracker) == 2 and _accepts(d_port)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                text = "\n".join(f.read_text()[-500:] for f in sorted(logs.iterdir()))
                pytest.fail(f"the RPC servers did not start within {START_S:.0f} s:\n{text}")
            time.sleep(0.5)
        yield Servers(tracker, Remote("127.0.0.1", d_port))
    finally:
        for p in procs:
            _stop(p)


# -- addresses --------------------------------------------------------------------------------
def test_parse_address() -> None:
    assert parse_address("127.0.0.1:9190") == ("127.0.0.1", 9190)
    assert parse_address(" host.lan:80 ") == ("host.lan", 80)
    assert parse_address("[::1]:9190") == ("::1", 9190)
    for bad in ("127.0.0.1", ":9190", "host:", "host:port", "host:0", "host:70000"):
        with pytest.raises(RemoteError, match="is not HOST:PORT"):
            parse_address(bad, "--rpc")


def test_remote_for_checks_the_flags() -> None:
    assert remote_for() is None
    assert remote_for(rpc="h:1") == Remote("h", 1)
    assert remote_for(tracker="h:2", key="k") == Remote("h", 2, "k")
    with pytest.raises(RemoteError, match="not both"):
        remote_for(rpc="h:1", tracker="h:2", key="k")
    with pytest.raises(RemoteError, match="--rpc-key"):
        remote_for(tracker="h:2")
    with pytest.raises(RemoteError, match="--rpc-tracker"):
        remote_for(rpc="h:1", key="k")


# -- running ----------------------------------------------------------------------------------
def test_remote_run_matches_local(servers: Servers, tiny_so: Path, two_input_so: Path) -> None:
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    rt = open_runtime(tiny_so, servers.direct)
    assert rt.inputs == compiler.load(tiny_so).inputs and rt.outputs[0].name == "y"
    assert "remote" in str(rt.device)
    for batch in (5, 2):  # the symbolic batch: shapes may change between runs
        out = rt.run({"x": x[:batch]})
        np.testing.assert_allclose(out["y"], tiny_expected(x[:batch]), rtol=1e-5, atol=1e-6)
    rt.close()  # a server serves one session at a time
    feeds = {
        "a": np.ones((3, 2), np.float32),
        "b": np.arange(6, dtype=np.float32).reshape(3, 2),
        "k": np.array([4, -1, 7], np.int64),
    }
    rt = open_runtime(two_input_so, servers.direct)
    remote = rt.run(feeds)
    rt.close()
    local = compiler.load(two_input_so).run(feeds)
    assert list(remote) == list(local) == ["z", "c"]
    for name in local:
        np.testing.assert_array_equal(remote[name], local[name])


def test_remote_run_through_tracker_cli(servers: Servers, tiny_so: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    t = servers.tracker
    r = nnxc(
        "run", tiny_so, "--inputs", tmp_path / "in.npz", "--outputs", tmp_path / "out.npz",
        "--rpc-tracker", f"{t.host}:{t.port}", "--rpc-key", KEY, "--repeat", "2",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_allclose(out["y"], tiny_expected(x), rtol=1e-5, atol=1e-6)
    assert "latency: median" in r.stdout


def test_remote_bench_through_tracker_cli(servers: Servers, tiny_so: Path, tmp_path: Path) -> None:
    """nnxc bench times the artifact on a server: figures positive and ordered, the remote
    named in the JSON; --compare (onnxruntime runs here) and a model are refused."""
    t = servers.tracker
    where = ("--rpc-tracker", f"{t.host}:{t.port}", "--rpc-key", KEY)
    out = tmp_path / "bench.json"
    r = nnxc("bench", tiny_so, "--batch", "3", "--runs", "20", "--json", out, "-q", *where)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    figures = report["nnxc"]
    assert report["settings"]["remote"] == f"RPC tracker {t.host}:{t.port} (key {KEY!r})"
    assert 0 < figures["min_ms"] <= figures["median_ms"] <= figures["p90_ms"] <= figures["max_ms"]
    r = nnxc("bench", tiny_so, "--compare", "onnxruntime", *where)
    assert r.returncode == 1 and "not with --rpc" in r.stderr, r.stderr
    r = nnxc("bench", tmp_path / "model.onnx", *where)
    assert r.returncode == 1 and "a remote runs artifacts" in r.stderr, r.stderr


def test_wrong_input_is_input_error_as_locally(servers: Servers, tiny_so_static: Path) -> None:
    rt = open_runtime(tiny_so_static, servers.direct)
    for feeds in ({"x": np.zeros((3, 5), np.float32)}, {"x": np.zeros((3, 4), np.float64)}, {}):
        with pytest.raises(InputError) as remote:
            rt.run(feeds)
        with pytest.raises(InputError) as local:
            compiler.load(tiny_so_static).run(feeds)
        assert str(remote.value) == str(local.value)
    rt.close()


def test_remote_threads(servers: Servers, tiny_so: Path) -> None:
    """The session's thread pool is set on the server, and no larger than the server's."""
    session = connect(servers.direct)
    threads = session.get_function("runtime.NumThreads")
    for n in (1, 2):
        load_remote(tiny_so, session, threads=n, remote=servers.direct)
        assert threads() == n
    with pytest.raises(RemoteError, match="runs at most 2 threads.*TVM_NUM_THREADS=8"):
        load_remote(tiny_so, session, threads=8, remote=servers.direct)
    with pytest.raises(InputError, match="at least 1"):
        load_remote(tiny_so, session, threads=0, remote=servers.direct)
    del session, threads  # ends the session


def test_busy_server_is_an_error_after_the_timeout(servers: Servers, tiny_so: Path) -> None:
    rt = open_runtime(tiny_so, servers.direct)
    with pytest.raises(RemoteError, match="no answer within 1 s.*one session at a time"):
        open_runtime(tiny_so, servers.direct, timeout=1)
    rt.close()
    with pytest.raises(RemoteError, match="closed"):
        rt.run({"x": np.zeros((1, 4), np.float32)})


# -- errors -----------------------------------------------------------------------------------
def test_connection_refused_is_one_line(tiny_so: Path) -> None:
    port = _free_port()  # nobody listens there
    r = nnxc("run", tiny_so, "--rpc", f"127.0.0.1:{port}", timeout=120)
    assert_one_error_line(r, f"RPC server 127.0.0.1:{port}", "connection refused")
    with pytest.raises(RemoteError, match=rf"tracker 127.0.0.1:{port} \(key 'k'\): connection ref"):
        open_runtime(tiny_so, Remote("127.0.0.1", port, "k"))  # at once: TVM retries for 60 s


def test_no_server_under_the_key(servers: Servers, tiny_so: Path) -> None:
    absent = Remote(servers.tracker.host, servers.tracker.port, "absent")
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="key 'absent'.*no server registered.*within 1 s"):
        open_runtime(tiny_so, absent, timeout=1)
    assert time.monotonic() - t0 < 10


def test_no_free_server_under_the_key(servers: Servers, tiny_so: Path) -> None:
    """Both servers busy: the tracker's answer is waited for up to the timeout, no longer; the
    servers serve again once their sessions end."""
    busy = [open_runtime(tiny_so, servers.tracker) for _ in range(2)]
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="key 'nnxc-test'.*no free server.*within 2 s"):
        open_runtime(tiny_so, servers.tracker, timeout=2)
    assert time.monotonic() - t0 < 10
    for rt in busy:
        rt.close()
    rt = open_runtime(tiny_so, servers.tracker)
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(rt.run({"x": x})["y"], tiny_expected(x), rtol=1e-6)
    rt.close()


def test_remote_failure_names_the_remote_and_the_step(servers: Servers) -> None:
    """A failure on the server comes back as one line naming the remote and what failed."""
    session = connect(servers.direct)
    with pytest.raises(RemoteError) as info:
        with servers.direct.step("loading x.so"):
            session.load_module("missing.so")
    del session
    message = str(info.value)
    assert message.startswith(f"RPC server 127.0.0.1:{servers.direct.port}: loading x.so failed")
    assert "missing.so" in message and "\n" not in message


# -- tuning -----------------------------------------------------------------------------------
def test_tune_through_tracker_writes_usable_records(servers: Servers, tmp_path: Path) -> None:
    """A few trials measured on the tracker's servers; nnxc compile --records builds with them
    and the result still computes the model."""
    x = np.random.default_rng(2).standard_normal((1, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 32])],
    )
    model = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    records = tmp_path / "records"
    t = servers.tracker
    r = nnxc(
        "tune", model, "--trials", "2", "--records", records, "--seed", "0",
        "--rpc-tracker", f"{t.host}:{t.port}", "--rpc-key", KEY,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"measuring on 2 server(s) of {t}" in r.stderr
    assert "2 trials (2 new), best" in r.stderr
    runs = [json.loads(line)[1][1] for line in (records / RECORD_FILES[1]).read_text().splitlines()]
    assert len(runs) == 3  # our schedule and 2 trials, all measured (a failed run has no time)
    assert all(secs and max(secs) < 1 for secs in runs), runs
    out = tmp_path / "relu.so"
    r = nnxc("compile", model, "--records", records, "-o", out)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(compiler.load(out).run({"x": x})["y"], np.maximum(x, 0))


def test_runner_names_the_device_as_tvm_does(servers: Servers, tmp_path: Path) -> None:
    """MetaSchedule's task scheduler may name the device by the target's kind ("llvm"); our
    runner passes "cpu" on to RPCRunner, which fails on "llvm" itself."""
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    a = te.placeholder((64,), name="a")
    func = te.create_prim_func([a, te.compute((64,), lambda i: a[i] * 2.0, name="b")])
    path = tmp_path / "double.so"
    tvm.compile(tvm.IRModule({"main": func}), target="llvm").export_library(str(path))
    args = ms.arg_info.ArgInfo.from_prim_func(func)
    t = servers.tracker
    config = ms.runner.RPCConfig(t.host, t.port, t.key, 1, int(RUN_TIMEOUT_S))
    rpc = ms.runner.RPCRunner(config, ms.runner.EvaluatorConfig(number=1, repeat=1))
    [bare, named] = [
        runner.run([ms.runner.RunnerInput(str(path), "llvm", args)])[0].result()
        for runner in (rpc, _device_names()(rpc))
    ]
    assert "Unknown device: llvm" in str(bare.error_msg)
    assert named.error_msg is None and 0 < float(named.run_secs[0]) < 1
