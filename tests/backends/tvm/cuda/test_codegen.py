"""A model built for two CUDA archs, end to end: the artifact holds SASS for both and the
newest's PTX, no CUDA source, records its target, and loads without compiling anything.
A build where TVM kept source is caught before it can be shipped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tvm
import tvm_ffi
from cudautil import conv_relu_model, requires_nvcc

import compiler
from backends.tvm import TargetError, TargetSpec, build, export, lower_graph, resolve_target
from backends.tvm.cuda import codegen
from backends.tvm.cuda.fatbin import read_cuda_contents
from compiler.artifact import read_metadata
from compiler.driver import import_model, optimize
from compiler.errors import NnxcError
from compiler.options import CompileOptions

pytestmark = requires_nvcc


@pytest.fixture(scope="module")
def two_arch_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TargetSpec]:
    path = tmp_path_factory.mktemp("cuda") / "conv.so"
    model = compiler.compile(conv_relu_model(), target="cuda:sm_90,sm_80")
    with pytest.raises(NnxcError, match=r"compiler\.load\(path, device='cuda'\)"):
        model.run({})
    model.export(path)
    return path, model.target


def test_artifact_holds_a_fatbin_for_each_arch(two_arch_artifact: tuple[Path, TargetSpec]) -> None:
    path, _ = two_arch_artifact
    found = read_cuda_contents(path)
    assert found.sass_archs == ("sm_80", "sm_90") and found.ptx_archs == ("compute_90",)
    assert not found.has_source


def test_metadata_round_trip(two_arch_artifact: tuple[Path, TargetSpec]) -> None:
    path, spec = two_arch_artifact
    meta = read_metadata(path)
    assert meta.target == {"kind": "cuda", "arch": "sm_80", "archs": ["sm_80", "sm_90"]}
    loaded = TargetSpec.from_json(meta.target)
    assert loaded == spec and loaded.kind == "cuda" and loaded.archs == ("sm_80", "sm_90")


def _lowered() -> tvm.IRModule:
    graph = import_model(conv_relu_model())[0]
    optimize(graph, CompileOptions())
    return lower_graph(graph)


@pytest.fixture
def refusing_callback() -> Iterator[None]:
    original = tvm_ffi.get_global_func(codegen.CALLBACK, allow_missing=True)

    def refuse(_code: str) -> bytearray:
        raise AssertionError("CUDA code was compiled at load")

    tvm_ffi.register_global_func(codegen.CALLBACK, refuse, override=True)
    yield
    if original is not None:
        tvm_ffi.register_global_func(codegen.CALLBACK, original, override=True)


def test_loads_without_compiling(
    two_arch_artifact: tuple[Path, TargetSpec], refusing_callback: None
) -> None:
    lib = tvm.runtime.load_module(str(two_arch_artifact[0]))
    kinds = set()
    stack = [lib]
    while stack:
        m = stack.pop()
        kinds.add(m.kind)
        stack.extend(m.imports)
    assert "cuda" in kinds


def test_callback_error_surfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """An nvcc failure inside TVM's build reaches the caller as the TargetError it was."""

    def fail(*_a: object) -> bytes:
        raise TargetError("nvcc 13.0 failed on the CUDA code TVM generated: boom")

    monkeypatch.setattr(codegen, "compile_fatbin", fail)
    with pytest.raises(TargetError, match="boom"):
        build(_lowered(), resolve_target("cuda:sm_90"))


def test_source_kept_by_tvm_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """TVM's fallback (kernels kept as source, compiled with NVRTC at every load) is what a
    build without its CUDA runtime gives: refused after building and after exporting."""
    spec = resolve_target("cuda:sm_90")
    monkeypatch.setenv("TVM_COMPILE_FORCE_FALLBACK", "1")
    with spec.tvm_target():
        executable = tvm.compile(_lowered(), target=spec.tvm_target())
    with pytest.raises(TargetError, match="kept the CUDA kernels as source"):
        codegen.check_executable(executable.mod)
    path = tmp_path / "source.so"
    with pytest.raises(TargetError, match="holds CUDA source"):
        export(executable, str(path), spec)
    assert read_cuda_contents(path).has_source


def test_library_lacking_an_arch(tmp_path: Path) -> None:
    from backends.tvm.cuda.toolchain import find_toolkit

    spec = TargetSpec.from_json({"kind": "cuda", "arch": "sm_80", "archs": ["sm_80", "sm_90"]})
    lib = tmp_path / "lib.so"
    kernel = 'extern "C" __global__ void k(float* x) { x[0] = 1.0f; }'
    lib.write_bytes(b"\x7fELF" + codegen.compile_fatbin(kernel, ("sm_80",), find_toolkit()))
    with pytest.raises(
        TargetError, match=r"lacks sm_90, compute_90 \(SASS sm_80; PTX compute_80\)"
    ):
        codegen.check_library(lib, spec)
    lib.write_bytes(b"\x7fELF")
    codegen.check_library(lib, spec, has_kernels=False)  # nothing for the GPU: no fatbin
    with pytest.raises(TargetError, match="lacks sm_80, sm_90, compute_90"):
        codegen.check_library(lib, spec)
