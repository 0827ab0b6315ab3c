"""Finding the CUDA toolkit (also behind a wrapper script), the libcuda stub, TVM's CUDA
runtime in this process, and the codegen context that builds fatbins."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import tvm
import tvm_ffi
from cudautil import requires_nvcc

from backends.tvm.cuda import codegen, toolchain
from backends.tvm.cuda.fatbin import fatbin_entries
from backends.tvm.targets import TargetError, resolve_target

KERNEL = 'extern "C" __global__ void add_one(float* x) { x[threadIdx.x] += 1.0f; }\n'


@pytest.fixture
def fresh_toolkit_cache() -> Iterator[None]:
    toolchain._find_toolkit.cache_clear()
    yield
    toolchain._find_toolkit.cache_clear()


@requires_nvcc
def test_toolkit_behind_a_wrapper_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_toolkit_cache: None
) -> None:
    """An ``nvcc`` on PATH that is a script exec'ing the real one: the toolkit is the real
    one's folder (nvcc --dryrun says), not the script's."""
    real = toolchain.find_toolkit()
    assert (real.root / "nvvm" / "libdevice").is_dir() and real.nvcc == real.root / "bin/nvcc"
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec {real.nvcc} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin:/bin")
    monkeypatch.delenv("CUDA_PATH", raising=False)
    found = toolchain.find_toolkit()
    assert found.root == real.root and found.version == real.version


@requires_nvcc
def test_cuda_path_wins(monkeypatch: pytest.MonkeyPatch, fresh_toolkit_cache: None) -> None:
    root = toolchain.find_toolkit().root
    monkeypatch.setenv("CUDA_PATH", str(root))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert toolchain.find_toolkit().root == root


@requires_nvcc
def test_buildable_archs() -> None:
    archs = toolchain.buildable_archs(toolchain.find_toolkit())
    assert {"sm_80", "sm_86", "sm_89", "sm_90"} <= archs
    assert "sm_50" not in archs and all(a.startswith("sm_") for a in archs)


def test_stub_builds_once_and_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = toolchain.stub_library()
    assert path.name == "libcuda.so.1" and path.parent.parent == tmp_path / "nnxc"
    assert list(path.parent.iterdir()) == [path]  # no partial file left
    built = path.stat().st_mtime_ns
    assert toolchain.stub_library() == path and path.stat().st_mtime_ns == built
    lib = ctypes.CDLL(str(path))
    for name in ("cuModuleLoadData", "cuLaunchKernelEx", "cuTensorMapEncodeTiled"):
        assert getattr(lib, name)() == 34  # CUDA_ERROR_STUB_LIBRARY
    assert b"libcuda.so.1" in path.read_bytes()  # the soname the loader matches


def test_stub_without_a_c_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(TargetError, match="built with a C compiler: install gcc"):
        toolchain.stub_library()
    assert not (tmp_path / "nnxc").exists() or not any((tmp_path / "nnxc").rglob("*.so*"))


def test_stub_cache_not_writable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(TargetError, match="XDG_CACHE_HOME"):
        toolchain.stub_library()


@requires_nvcc
def test_cuda_runtime_loads() -> None:
    """libtvm_runtime_cuda (with the driver library or the stub) registers the CUDA module
    factory TVM's codegen needs to make binary modules."""
    toolchain.load_cuda_runtime(toolchain.find_toolkit())
    assert toolchain.cuda_runtime_loaded()
    assert "tvm_runtime_cuda" in tvm.base._LOADED_LIBS


def test_gencode_flags() -> None:
    """One front-end pass for all SASS (at the lowest arch), one more for the newest's PTX."""
    assert codegen.gencode_flags(("sm_90", "sm_80", "sm_86")) == [
        "-gencode",
        "arch=compute_80,code=[sm_80,sm_86,sm_90]",
        "-gencode",
        "arch=compute_90,code=compute_90",
    ]
    assert codegen.gencode_flags(("sm_90",)) == [
        "-gencode",
        "arch=compute_90,code=[sm_90,compute_90]",
    ]


@pytest.fixture
def sentinel_callback() -> Iterator[None]:
    """A known ``tvm_callback_cuda_compile`` in place of TVM's, put back afterwards."""
    original = tvm_ffi.get_global_func(codegen.CALLBACK, allow_missing=True)
    tvm_ffi.register_global_func(codegen.CALLBACK, lambda _code: bytearray(b"prev"), override=True)
    yield
    if original is not None:
        tvm_ffi.register_global_func(codegen.CALLBACK, original, override=True)


@requires_nvcc
def test_codegen_context_sets_up_and_restores(
    monkeypatch: pytest.MonkeyPatch, sentinel_callback: None
) -> None:
    spec = resolve_target("cuda:sm_80,sm_90")
    monkeypatch.setenv("CUDA_PATH", str(toolchain.find_toolkit().root))
    toolchain._find_toolkit.cache_clear()
    monkeypatch.setenv("TVM_COMPILE_FORCE_FALLBACK", "1")
    with codegen.cuda_codegen(spec) as log:
        assert tvm.target.Target.current().arch == "sm_80"  # the `with target:` trap
        assert "TVM_COMPILE_FORCE_FALLBACK" not in os.environ
        fatbin = bytes(tvm_ffi.get_global_func(codegen.CALLBACK)(KERNEL))
    toolchain._find_toolkit.cache_clear()
    names = [e.name for e in fatbin_entries(fatbin)]
    assert sorted(names) == ["compute_90", "sm_80", "sm_90"] and log.fatbins == [len(fatbin)]
    assert bytes(tvm_ffi.get_global_func(codegen.CALLBACK)("x")) == b"prev"
    assert tvm.target.Target.current(allow_none=True) is None
    assert os.environ["TVM_COMPILE_FORCE_FALLBACK"] == "1"


@requires_nvcc
def test_nvcc_failure_is_a_clear_error() -> None:
    with pytest.raises(TargetError, match=r"nvcc \d+\.\d+ failed on the CUDA code.*error"):
        codegen.compile_fatbin("this is not CUDA", ("sm_90",), toolchain.find_toolkit())
