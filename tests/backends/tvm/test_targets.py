"""resolve_target: every form ``--target`` accepts, what TargetSpec records, and the errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cudautil import requires_nvcc

from backends.tvm.cuda import toolchain
from backends.tvm.targets import (
    DEFAULT_CUDA_ARCHS,
    TargetError,
    TargetSpec,
    host_triple,
    resolve_target,
)


def test_llvm_targets_run_no_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving a CPU target never asks nvcc (or anything else) a thing."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("resolve_target ran a tool for an LLVM target")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(toolchain, "find_toolkit", refuse)
    cpu = resolve_target("cpu")
    assert cpu.kind == "llvm" and cpu.device_type == "cpu" and cpu.is_host
    assert cpu.archs == () and cpu.to_json() == cpu.config and "mcpu" in cpu.config
    arm = resolve_target("aarch64")
    assert arm.config == {"kind": "llvm", "mtriple": "aarch64-linux-gnu"} and not arm.is_host
    same = resolve_target(json.dumps({"kind": "llvm", "mtriple": host_triple()}))
    assert same.is_host and same.device_type == "cpu"


@requires_nvcc
@pytest.mark.parametrize(
    ("target", "archs"),
    [
        ("cuda", DEFAULT_CUDA_ARCHS),
        ("cuda:sm_90,sm_80", ("sm_80", "sm_90")),
        ("cuda: sm_90 , sm_90", ("sm_90",)),
        ("cuda:sm_100,sm_90", ("sm_90", "sm_100")),  # by number, not as text
        ({"kind": "cuda", "arch": "sm_90"}, ("sm_90",)),
        ('{"kind": "cuda", "arch": "sm_86"}', ("sm_86",)),
        ({"kind": "cuda"}, DEFAULT_CUDA_ARCHS),
        ({"kind": "cuda", "archs": ["sm_90", "sm_86"]}, ("sm_86", "sm_90")),
        ({"kind": "cuda", "arch": "sm_80", "archs": ["sm_90", "sm_80"]}, ("sm_80", "sm_90")),
    ],
)
def test_cuda_forms(target: str | dict, archs: tuple[str, ...]) -> None:
    spec = resolve_target(target)
    assert spec.archs == archs
    assert spec.config == {"kind": "cuda", "arch": archs[0]}  # code for the lowest arch
    assert spec.kind == "cuda" and spec.device_type == "cuda" and not spec.is_host
    assert spec.tvm_target().arch == archs[0]
    assert spec.to_json() == {"kind": "cuda", "arch": archs[0], "archs": list(archs)}


def test_default_archs_are_sorted_and_end_with_hopper() -> None:
    numbers = [int(a.split("_")[1]) for a in DEFAULT_CUDA_ARCHS]
    assert numbers == sorted(numbers) and DEFAULT_CUDA_ARCHS[-1] == "sm_90"


@requires_nvcc
def test_json_round_trip() -> None:
    """What the artifact records is read back without any tool, and resolves to itself."""
    spec = resolve_target("cuda:sm_80,sm_90")
    text = json.dumps(spec.to_json())
    assert TargetSpec.from_json(json.loads(text)) == spec
    assert resolve_target(text) == spec and resolve_target(spec.to_json()) == spec
    cpu = resolve_target("cpu")
    assert TargetSpec.from_json(cpu.to_json()) == cpu


def test_from_json_needs_no_toolkit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_toolkit(monkeypatch, tmp_path)
    spec = TargetSpec.from_json({"kind": "cuda", "arch": "sm_90", "archs": ["sm_90"]})
    assert spec.archs == ("sm_90",) and spec.device_type == "cuda"
    assert str(spec) == '{"arch": "sm_90", "archs": ["sm_90"], "kind": "cuda"}'


@pytest.mark.parametrize(
    ("target", "needles"),
    [
        ("tpu", ["unknown target 'tpu'", "cuda:sm_80,sm_90"]),
        ("cuda:sm_8x", ["unknown CUDA arch 'sm_8x'", "sm_NN"]),
        ("cuda:80", ["unknown CUDA arch '80'"]),
        ("cuda:", ["unknown CUDA arch ''"]),
        ("cuda:compute_90", ["unknown CUDA arch 'compute_90'", "ship sm_90"]),
        ({"kind": "cuda", "arch": "ampere"}, ["unknown CUDA arch 'ampere'"]),
        ({"kind": "cuda", "archs": []}, ["non-empty list"]),
        ({"kind": "cuda", "archs": "sm_80"}, ["non-empty list"]),
        ({"kind": "cuda", "arch": "sm_90", "archs": ["sm_80", "sm_90"]}, ["lowest", "sm_80"]),
        ({"kind": "llvm", "archs": ["sm_80"]}, ["CUDA targets only"]),
        ({"kind": "rocm"}, ["'rocm' is not supported", "llvm, cuda"]),
        ({"arch": "sm_80"}, ["needs a 'kind'"]),
        ('{"kind": "cuda"', ["does not parse"]),
    ],
)
def test_bad_targets(target: str | dict, needles: list[str]) -> None:
    with pytest.raises(TargetError) as e:
        resolve_target(target)
    for needle in needles:
        assert needle in str(e.value)


@requires_nvcc
@pytest.mark.parametrize("archs", ["sm_50", "sm_70,sm_80", "sm_35"])
def test_arch_nvcc_cannot_build(archs: str) -> None:
    """CUDA 13 dropped Maxwell, Pascal and Volta (sm_75 is its oldest)."""
    with pytest.raises(TargetError, match=rf"cannot build {archs.split(',')[0]}; it builds sm_75"):
        resolve_target(f"cuda:{archs}")


def _no_toolkit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without CUDA: nothing on PATH, no CUDA_PATH, no /usr/local/cuda."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(toolchain, "FALLBACK_ROOT", tmp_path / "no-cuda")
    toolchain._find_toolkit.cache_clear()


def test_no_nvcc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_toolkit(monkeypatch, tmp_path)
    with pytest.raises(TargetError) as e:
        resolve_target("cuda")
    text = str(e.value)
    assert "need nvcc" in text and "CUDA_PATH" in text and "install" in text
    assert resolve_target("cpu").kind == "llvm"  # CPU targets do not care


def test_cuda_path_not_a_toolkit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CUDA_PATH", str(tmp_path))
    with pytest.raises(TargetError, match=r"CUDA_PATH=.* is not a CUDA toolkit"):
        resolve_target("cuda:sm_90")
