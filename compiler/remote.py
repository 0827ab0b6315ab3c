"""Remote devices over TVM RPC: run an artifact on another machine, and tune on it.

A remote is either one RPC server (``rpc="HOST:PORT"``) or a tracker handing out the servers
registered under a key (``tracker="HOST:PORT", key="KEY"``). ``load_remote`` uploads the
artifact to the server, which loads it with TVM's runtime; ``RemoteRuntime`` has the interface
of ``compiler.runtime.Runtime`` (it is one: the input checks are the same code) and moves
inputs and outputs as arrays over the connection. Failures on the way come back as one line
(``RemoteError``) naming the remote and the step that failed.

RPC servers run whatever code they are sent: use them on trusted networks only.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from compiler.artifact import Metadata, verify_library
from compiler.devices import CPU
from compiler.errors import InputError, NnxcError
from compiler.runtime import Runtime, artifact_device, load

WAIT_S = 60.0  # for a free server under a tracker's key
PROBE_S = 5.0  # for a TCP connection to the server or tracker


class RemoteError(NnxcError):
    """A remote that cannot be reached, has no free server, or failed a step of a run."""


def parse_address(text: str, flag: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` as (host, port); an IPv6 host goes in brackets (``[::1]:9190``)."""
    host, sep, port = str(text).strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RemoteError(f"{flag} {text!r} is not HOST:PORT (e.g. 127.0.0.1:9190)")
    return host, int(port)


@dataclass(frozen=True)
class Remote:
    """Where to run: one RPC server, or a tracker and the key its servers registered under."""

    host: str
    port: int
    key: str | None = None  # None: a server, not a tracker

    def __str__(self) -> str:
        if self.key is None:
            return f"RPC server {self.host}:{self.port}"
        return f"RPC tracker {self.host}:{self.port} (key {self.key!r})"

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Any failure but nnxc's own as one RemoteError line naming the remote and ``what``."""
        try:
            yield
        except NnxcError:
            raise
        except Exception as e:  # noqa: BLE001 - TVM's RPCError, TVMError, OSError, ...
            raise RemoteError(f"{self}: {what} failed: {_last_line(e)}") from e


def remote_for(
    rpc: str | None = None, tracker: str | None = None, key: str | None = None
) -> Remote | None:
    """The remote that these settings name (None: none, run here), checked for consistency."""
    if rpc and tracker:
        raise RemoteError("give either an RPC server (rpc) or a tracker (tracker), not both")
    if key and not tracker:
        raise RemoteError("an RPC key goes with a tracker (--rpc-tracker HOST:PORT)")
    if tracker:
        if not key:
            raise RemoteError("a tracker needs the key of its servers (--rpc-key KEY)")
        return Remote(*parse_address(tracker, "--rpc-tracker"), key=key)
    if rpc:
        return Remote(*parse_address(rpc, "--rpc"))
    return None


def _probe(remote: Remote) -> None:
    """A plain TCP connection first: TVM's tracker client retries a refused one for 60 s."""
    try:
        with socket.create_connection((remote.host, remote.port), timeout=PROBE_S):
            pass
    except ConnectionRefusedError:
        raise RemoteError(f"{remote}: connection refused (is it running?)") from None
    except socket.gaierror as e:
        raise RemoteError(f"{remote}: unknown host ({e.strerror})") from None
    except TimeoutError:
        raise RemoteError(f"{remote}: no answer within {PROBE_S:.0f} s") from None
    except OSError as e:
        raise RemoteError(f"{remote}: cannot connect ({e.strerror or e})") from None


def connect(remote: Remote, timeout: float = WAIT_S) -> Any:
    """An RPC session (``tvm.rpc.RPCSession``) with the server, or with a free server under the
    tracker's key, waiting up to ``timeout`` seconds for one."""
    from tvm import rpc

    _probe(remote)
    if remote.key is None:
        # A server serves one session at a time: a second client waits, unanswered.
        with remote.step("connecting"):
            return _within(
                timeout,
                lambda: rpc.connect(remote.host, remote.port, session_timeout=0),
                f"{remote}: no answer within {timeout:.0f} s (a server serves one session "
                "at a time: is another client using it?)",
            )
    deadline = time.monotonic() + timeout
    with remote.step("asking the tracker"):
        tracker = rpc.connect_tracker(remote.host, remote.port)
    try:
        while not _servers(remote, tracker):
            if time.monotonic() > deadline:
                raise RemoteError(
                    f"{remote}: no server registered under the key within {timeout:.0f} s "
                    f"(start one with python -m tvm.exec.rpc_server --tracker "
                    f"{remote.host}:{remote.port} --key {remote.key})"
                )
            time.sleep(0.5)
        # The tracker answers a request once a server is free: bound the wait on its socket
        # (TVM's client has no timeout of its own).
        tracker._sock.settimeout(max(1.0, deadline - time.monotonic()))
        try:
            return tracker.request(remote.key, priority=1, session_timeout=0, max_retry=1)
        except Exception as e:  # noqa: BLE001 - a timeout comes back as RuntimeError
            if "timed out" in str(e):
                raise RemoteError(
                    f"{remote}: no free server under the key within {timeout:.0f} s"
                ) from None
            raise RemoteError(f"{remote}: requesting a server failed: {_last_line(e)}") from e
    finally:
        tracker.close()


def _within(timeout: float, fn: Callable[[], Any], message: str) -> Any:
    """``fn()``, or a RemoteError after ``timeout`` seconds: TVM's C++ connect has no timeout.
    A call still waiting is left to finish in its daemon thread; its session is then dropped."""
    done: list[Any] = []
    failed: list[BaseException] = []

    def call() -> None:
        try:
            done.append(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            failed.append(e)

    thread = threading.Thread(target=call, daemon=True, name="nnxc-rpc-connect")
    thread.start()
    thread.join(timeout)
    if failed:
        raise failed[0]
    if not done:
        raise RemoteError(message)
    return done[0]


def server_count(remote: Remote) -> int:
    """Servers registered under the tracker's key (busy or free)."""
    from tvm import rpc

    _probe(remote)
    with remote.step("asking the tracker"):
        tracker = rpc.connect_tracker(remote.host, remote.port)
        try:
            return _servers(remote, tracker)
        finally:
            tracker.close()


def _servers(remote: Remote, tracker: Any) -> int:
    with remote.step("asking the tracker for its servers"):
        info = tracker.summary()["server_info"]
    return sum(1 for s in info if s.get("key") == f"server:{remote.key}")


class RemoteRuntime(Runtime):
    """A model loaded on a remote device: ``Runtime``'s interface and input checks; inputs are
    copied to the remote before the run, outputs back after it (``as_numpy=False``: outputs
    left on the remote device, as ``tvm.runtime.Tensor``)."""

    def __init__(self, vm: Any, metadata: Metadata, module: Any, device: Any, remote: Remote):
        super().__init__(vm, metadata, module, device)
        self.remote = remote

    def close(self) -> None:
        """End the session (a server serves one session at a time), unless output tensors
        left on the remote (``as_numpy=False``) still hold it."""
        with self._lock:
            self._vm = self._module = self._main = self.device = None
        gc.collect()  # TVM's objects hold the session in reference cycles too

    def _run(self, feeds: Mapping[str, Any], as_numpy: bool) -> dict[str, Any]:
        if self._vm is None:
            raise RemoteError(f"{self.remote}: this runtime was closed")
        with self.remote.step("sending the inputs"):
            args = self.check_inputs(feeds)  # InputError as locally
        with self.remote.step("running the model"):
            self._vm.set_input("main", *args)
            self._vm.invoke_stateful("main")
            result = self._vm.get_outputs("main")
        outs = result if isinstance(result, tuple) else (result,)
        if not as_numpy:
            return {p.name: t for p, t in zip(self._outs, outs)}
        with self.remote.step("reading the outputs"):
            return {p.name: self._to_numpy(t, p) for p, t in zip(self._outs, outs)}


def load_remote(
    path: str | os.PathLike,
    session: Any,
    device: str | None = None,
    threads: int | None = None,
    remote: Remote | None = None,
) -> RemoteRuntime:
    """Upload the artifact at ``path`` to the RPC ``session`` (from ``connect``) and load it
    there, on ``device`` of the remote (``None``: the artifact's kind, device 0).

    The checksum is verified here first, as ``compiler.load`` does. ``threads``: threads of
    the remote's CPU thread pool for this session (``runtime.config_threadpool``); it cannot
    exceed the pool the server started with (set ``TVM_NUM_THREADS`` where the server starts).
    """
    remote = remote or Remote("remote", 0)
    meta = verify_library(path)
    dev = artifact_device(path, meta, device)
    if threads is not None and threads < 1:
        raise InputError(f"threads must be at least 1, not {threads}")
    from tvm.runtime.vm import VirtualMachine

    # A fresh name each time: writing over a library the session has loaded crashes it.
    name = f"nnxc-{(meta.library_sha256 or 'artifact')[:16]}-{uuid.uuid4().hex[:8]}.so"
    with remote.step(f"uploading {path}"):
        session.upload(str(path), name)
    with remote.step(f"loading {path}"):
        module = session.load_module(name)
    with remote.step(f"opening {dev}"):
        tvm_device = session.cpu(0) if dev.kind == CPU else session.cuda(dev.index)
        if not tvm_device.exist:
            raise RemoteError(f"{remote}: has no {dev}")
    if threads is not None:
        _set_remote_threads(session, remote, threads)
    with remote.step(f"loading {path}"):
        vm = VirtualMachine(module, tvm_device)
    return RemoteRuntime(vm, meta, module, tvm_device, remote)


def _set_remote_threads(session: Any, remote: Remote, threads: int) -> None:
    with remote.step("setting the threads"):
        session.get_function("runtime.config_threadpool")(1, threads)  # 1: the big cores
        got = int(session.get_function("runtime.NumThreads")())
    if got != threads:
        raise RemoteError(
            f"{remote}: runs at most {got} threads; start its server with "
            f"TVM_NUM_THREADS={threads} for more"
        )


def add_rpc_arguments(parser: argparse.ArgumentParser, *, server: bool = True) -> None:
    """The flags naming a remote: ``--rpc-tracker`` and ``--rpc-key``; with ``server`` (for
    running, not tuning, which measures through a tracker) also ``--rpc`` and ``--rpc-timeout``."""
    group = parser.add_argument_group("remote devices (TVM RPC; trusted networks only)")
    where = group.add_mutually_exclusive_group()
    if server:
        where.add_argument(
            "--rpc",
            metavar="HOST:PORT",
            help="run on the RPC server at HOST:PORT (python -m tvm.exec.rpc_server)",
        )
    where.add_argument(
        "--rpc-tracker",
        metavar="HOST:PORT",
        help="use a free server under --rpc-key of the RPC tracker at HOST:PORT "
        "(python -m tvm.exec.rpc_tracker)",
    )
    group.add_argument(
        "--rpc-key", metavar="KEY", help="the key the tracker's servers registered under"
    )
    if not server:
        return
    group.add_argument(
        "--rpc-timeout",
        type=float,
        default=WAIT_S,
        metavar="S",
        help=f"seconds to wait for a free server under the key (default {WAIT_S:.0f})",
    )


def remote_from_args(args: argparse.Namespace) -> Remote | None:
    """The remote named by ``add_rpc_arguments``' flags, or None."""
    return remote_for(getattr(args, "rpc", None), args.rpc_tracker, args.rpc_key)


def open_runtime(
    artifact: str | os.PathLike,
    remote: Remote | None,
    threads: int | None = None,
    device: str | None = None,
    timeout: float = WAIT_S,
) -> Runtime:
    """The artifact loaded here (``remote`` None: ``compiler.load``) or on the remote."""
    if remote is None:
        return load(artifact, threads=threads, device=device)
    verify_library(artifact)  # before waiting for a server
    return load_remote(artifact, connect(remote, timeout), device, threads, remote)


def open_runtime_from_args(
    artifact: str | os.PathLike, args: argparse.Namespace, threads: int | None, device: str | None
) -> Runtime:
    """``open_runtime`` for a command with ``add_rpc_arguments``' flags."""
    return open_runtime(artifact, remote_from_args(args), threads, device, args.rpc_timeout)


def _last_line(e: BaseException) -> str:
    """TVM's errors carry a traceback (also the remote's); the cause is its last line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]
