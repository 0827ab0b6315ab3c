"""Running fuzzed models in a persistent, resource-limited child process, and judging outcomes.

The property every input must satisfy: ``nnxc compile`` either succeeds or raises an
``NnxcError`` whose message is one non-empty line. Anything else is a finding: another
exception (an "internal error" in the CLI), a MemoryError (the address-space bound was hit),
the child dying (a signal: segfault, abort), or no answer within the time bound (a hang).

One child compiles many inputs (importing TVM takes seconds); it is restarted after it dies or
hangs, and the input that did it is the finding.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

WORKER = Path(__file__).with_name("fuzz_worker.py")
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300.0
WALL_FACTOR = 10
"""A compile is a hang past its CPU-time bound, or past this many times it in wall time."""
FINDINGS = ("exception", "multiline", "memory", "signal", "hang")


@dataclass
class Outcome:
    """What compiling one input did. ``status`` is ok, error (a proper NnxcError), or one of
    ``FINDINGS``."""

    status: str
    type: str = ""
    message: str = ""
    detail: str = ""
    """The traceback, or the child's last stderr lines (a signal's stack from faulthandler)."""
    seconds: float = 0.0

    @property
    def is_finding(self) -> bool:
        return self.status in FINDINGS

    def signature(self) -> str:
        """What tells two findings apart: status, exception type, and the innermost frame of
        nnxc's own code (or of any code, for a crash in a library)."""
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)', self.detail)
        ours = [f for f in frames if f"{os.sep}compiler{os.sep}" in f[0] or "backends" in f[0]]
        where = ours[-1] if ours else (frames[-1] if frames else ("", "", ""))
        place = f"{Path(where[0]).name}:{where[2]}" if where[0] else ""
        return f"{self.status}:{self.type}:{place}"

    def summary(self) -> str:
        first = (self.message.splitlines() or [""])[0][:200]
        return f"{self.status} {self.type}: {first}"


class Worker:
    """A child process (``fuzz_worker.py``) compiling one input after another.

    ``memory_mb`` bounds its address space; ``timeout_s`` bounds the CPU time of each
    compile."""

    def __init__(
        self,
        mode: str = "lower",
        timeout_s: float = 30.0,
        memory_mb: int = 4096,
        target: str = "cpu",
        light: bool = False,
    ) -> None:
        self.mode = mode
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.target = target
        self.light = light
        """Skip preloading TVM in the child (tests of the harness itself)."""
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._log = tempfile.NamedTemporaryFile(prefix="nnxc-fuzz-", suffix=".log", delete=False)
        self._log_path = Path(self._log.name)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONFAULTHANDLER="1")
        self._log.truncate(0)
        self._log.seek(0)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "--mode",
                self.mode,
                "--target",
                self.target,
                "--memory-mb",
                str(self.memory_mb),
                *(["--light"] if self.light else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env=env,
            text=True,
        )
        line = self._read_line(START_TIMEOUT_S)
        if not line or json.loads(line).get("status") != "ready":
            tail = self._log_tail(0)
            self._kill()
            raise RuntimeError(f"the fuzz worker did not start:\n{tail}")

    def _read_line(self, timeout: float) -> str | None:
        """The child's next line; "" when it closed the pipe (died), None on timeout."""
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline()

    def _wait_answer(self, timeout: float) -> str | None:
        """The answer; None once the child has spent ``timeout`` seconds of CPU time on it
        (or ``WALL_FACTOR`` times that of wall-clock time: a hang that sleeps). CPU time,
        because a loaded machine slows a sound compile down many times over."""
        assert self.proc is not None
        cpu0 = _cpu_seconds(self.proc.pid)
        wall_end = time.monotonic() + WALL_FACTOR * timeout
        while True:
            line = self._read_line(min(1.0, timeout))
            if line is not None:
                return line
            if _cpu_seconds(self.proc.pid) - cpu0 > timeout or time.monotonic() > wall_end:
                return None

    def _log_tail(self, offset: int, limit: int = 6000) -> str:
        with open(self._log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")[-limit:]

    def _kill(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait()
        self.proc = None
        return rc

    def run(
        self, path: Path, selftest: str | None = None, timeout_s: float | None = None
    ) -> Outcome:
        """Compile ``path`` in the child; a dead or hung child is a finding, and restarted.
        ``selftest`` makes the child misbehave that way instead (signal, hang, memory,
        exception, multiline), to test this harness; ``timeout_s`` replaces the bound."""
        timeout = timeout_s or self.timeout_s
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.restarts += 1
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        offset = self._log_path.stat().st_size
        start = time.perf_counter()
        try:
            request = {"path": str(path)}
            if selftest:
                request["selftest"] = selftest
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._wait_answer(timeout)
        seconds = time.perf_counter() - start
        if line is None:  # no answer in time: a hang
            self.proc.send_signal(signal.SIGUSR1)  # the child's faulthandler dumps its stacks
            time.sleep(1.0)
            self._kill()
            self.restarts += 1
            detail = self._log_tail(offset)
            return Outcome(
                "hang", "timeout", f"no answer after {timeout:g} s of CPU time", detail, seconds
            )
        if not line:  # the pipe closed: the child died
            try:
                rc = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                rc = None
            self._kill()
            self.restarts += 1
            return _died(rc, self._log_tail(offset), seconds)
        answer = json.loads(line)
        out = Outcome(
            answer["status"],
            answer.get("type", ""),
            answer.get("message", ""),
            answer.get("traceback", ""),
            seconds,
        )
        if out.status == "error" and not _one_line(out.message):
            out.status = "multiline"
        if out.status == "memory":
            self._kill()  # what is left after a failed allocation is not to be trusted
        return out

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill()
            self.proc = None
        self._log.close()
        self._log_path.unlink(missing_ok=True)


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process, all its threads and its waited-for children (0 once gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _died(rc: int | None, detail: str, seconds: float) -> Outcome:
    if rc is not None and rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
        return Outcome("signal", name, f"the compiler died of {name}", detail, seconds)
    return Outcome("signal", f"exit {rc}", f"the compiler exited with status {rc}", detail, seconds)


def _one_line(message: str) -> bool:
    text = message.strip()
    return bool(text) and "\n" not in text


def input_digest(path: Path) -> str:
    """A short hash of a file's or folder's bytes (names of findings' inputs)."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(path).as_posix().encode())
                h.update(p.read_bytes())
    elif path.exists():
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


@dataclass
class Tally:
    """Executions and findings per frontend (unique by ``Outcome.signature``)."""

    executions: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    findings: dict[str, tuple[str, Outcome]] = field(default_factory=dict)

    def add(self, frontend: str, outcome: Outcome) -> bool:
        """Count ``outcome``; True when it is a finding not seen before."""
        self.executions[frontend] = self.executions.get(frontend, 0) + 1
        counts = self.statuses.setdefault(frontend, {})
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        if not outcome.is_finding:
            return False
        sig = f"{frontend}:{outcome.signature()}"
        if sig in self.findings:
            return False
        self.findings[sig] = (frontend, outcome)
        return True
