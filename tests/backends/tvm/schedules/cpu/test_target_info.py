"""What the CPU rules read of a target: the thread count they split work for."""

from __future__ import annotations

import os

import tvm

from backends.tvm.schedules.cpu.target_info import thread_count


def _llvm(**attrs):
    return tvm.target.Target({"kind": "llvm", **attrs})


def test_num_cores_of_the_target_wins(monkeypatch):
    monkeypatch.setenv("TVM_NUM_THREADS", "3")
    assert thread_count(_llvm(**{"num-cores": 12})) == 12


def test_runtime_environment_next(monkeypatch):
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert thread_count(_llvm()) == 5
    monkeypatch.setenv("TVM_NUM_THREADS", "3")
    assert thread_count(_llvm()) == 3


def test_else_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")  # not a count: ignored
    assert thread_count(_llvm()) == len(os.sched_getaffinity(0))
