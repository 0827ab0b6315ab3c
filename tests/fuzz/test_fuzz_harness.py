"""The fuzz harness sees every kind of finding, survives it, and goes on: a child that
segfaults, hangs, exceeds its memory bound, raises another exception, or raises an NnxcError
of several lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_harness import Outcome, Tally, Worker


@pytest.fixture(scope="module")
def worker():
    with Worker(timeout_s=120.0, memory_mb=4096, light=True) as w:
        yield w


@pytest.mark.parametrize(
    "selftest, status, kind",
    [
        ("signal", "signal", "SIGSEGV"),
        ("hang", "hang", "timeout"),
        ("memory", "memory", "MemoryError"),
        ("exception", "exception", "KeyError"),
        ("multiline", "multiline", "NnxcError"),
    ],
)
def test_each_kind_of_finding_is_seen(worker: Worker, selftest: str, status: str, kind: str):
    restarts = worker.restarts
    out = worker.run(Path("unused"), selftest=selftest, timeout_s=1.0 if status == "hang" else None)
    assert (out.status, out.type) == (status, kind), out
    assert out.is_finding
    if status in ("signal", "hang"):
        assert worker.restarts == restarts + 1
        # faulthandler's stack dump names the function that misbehaved
        assert "_selftest" in out.detail, out.detail
    if status == "exception":
        assert "_selftest" in out.signature()


def test_the_worker_goes_on_after_a_crash(worker: Worker, tmp_path: Path) -> None:
    worker.run(Path("unused"), selftest="signal")
    missing = worker.run(tmp_path / "absent.onnx")
    assert missing.status == "error" and missing.type == "ModelLoadError", missing
    assert not missing.is_finding


def test_tally_keeps_one_finding_per_signature() -> None:
    tally = Tally()
    crash = Outcome("exception", "KeyError", "k", 'File "/x/compiler/a.py", line 3, in f\n')
    assert tally.add("onnx", crash)
    assert not tally.add("onnx", crash)
    assert tally.add("nnef", crash)
    assert not tally.add("onnx", Outcome("error", "ModelLoadError", "bad"))
    assert tally.executions == {"onnx": 3, "nnef": 1}
    assert tally.statuses["onnx"] == {"exception": 2, "error": 1}
    assert crash.signature() == "exception:KeyError:a.py:f"
