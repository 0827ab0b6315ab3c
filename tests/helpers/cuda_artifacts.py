"""CUDA artifacts for the runtime tests, built in ONE place (``build_cuda_artifact``).

Until the CUDA target lands in the compiler (``backends/tvm/targets.py``), the artifact is built
with TVM's own CUDA pipeline: without a driver TVM keeps the CUDA source in the library instead
of a fatbin, which is enough for the tests of loading without a GPU (they fail before any code
runs). Once ``compiler.compile(..., target="cuda:sm_90")`` exists, it is used instead and the
artifact holds a fatbin that runs on an sm_90 GPU (the GPU tests need that).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CUDA_ARCH = "sm_90"  # the GPU machine's (H100/H200)


def compiler_has_cuda_target() -> bool:
    return importlib.util.find_spec("backends.tvm.targets") is not None


def build_cuda_artifact(
    model: str | os.PathLike, out: str | os.PathLike, arch: str = CUDA_ARCH
) -> Path:
    """Compile an ONNX model for CUDA ``arch`` into the artifact ``out``."""
    import compiler

    if compiler_has_cuda_target():
        compiler.compile(str(model), target=f"cuda:{arch}").export(str(out))
        return Path(out)
    return _build_with_tvm(model, out, arch)


def _build_with_tvm(model: str | os.PathLike, out: str | os.PathLike, arch: str) -> Path:
    """TVM's default CUDA pipeline on nnxc's lowered module; the metadata as the CUDA target
    will write it (``TargetSpec.to_json()``: the TVM config plus ``archs``)."""
    from types import SimpleNamespace

    import tvm

    from compiler.artifact import write_artifact
    from compiler.driver import CompiledModel, _import_and_lower, _stages
    from compiler.options import CompileOptions

    graph, source, mod = _import_and_lower(
        str(model), CompileOptions.from_kwargs(), _stages(None)[0]
    )
    target = tvm.target.Target({"kind": "cuda", "arch": arch})
    with target:  # TVM's CUDA codegen reads the arch from the current target
        executable = tvm.compile(mod, target=target)
    spec = SimpleNamespace(config={"kind": "cuda", "arch": arch, "archs": [arch]})
    metadata = CompiledModel(graph, executable, spec, source).metadata
    write_artifact(out, executable.export_library, metadata)
    return Path(out)


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_cuda_so(tiny_onnx: Path) -> Path:
    """The tiny model (``models_fixture.tiny_model``) compiled for CUDA ``CUDA_ARCH``."""
    out = tiny_onnx.with_name(f"tiny_cuda_{CUDA_ARCH}.so")
    if not out.exists():
        build_cuda_artifact(tiny_onnx, out)
    return out


# The symbols TVM's CUDA runtime imports from the driver: a stub with them lets it load.
STUB_SYMBOLS = (
    "cuDeviceGetName cuFuncSetAttribute cuGetErrorName cuGetErrorString cuLaunchKernelEx "
    "cuModuleGetFunction cuModuleLoadData cuModuleUnload cuTensorMapEncodeTiled"
).split()


def build_stub(folder: Path, extra: tuple[str, ...] = ()) -> Path:
    """A stub ``libcuda.so.1`` in ``folder`` whose functions all return 34
    (CUDA_ERROR_STUB_LIBRARY), as a build machine without a driver may have."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "libcuda.so.1"
    if not out.exists():
        src = folder / "stub.c"
        src.write_text(
            "".join(f"int {name}(void) {{ return 34; }}\n" for name in (*STUB_SYMBOLS, *extra))
        )
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(out), str(src)],
            check=True,
            capture_output=True,
        )
    return out


@pytest.fixture(scope="session")
def cuda_stubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders holding a stub libcuda.so.1: ``build`` (the build-time stub's 9 symbols) and
    ``init`` (also a ``cuInit``, so that only asking the CUDA runtime for GPUs finds none)."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build a stub libcuda.so.1")
    base = tmp_path_factory.getbasetemp() / "cuda_stubs"
    return {
        "build": build_stub(base / "build").parent,
        "init": build_stub(base / "init", ("cuInit",)).parent,
    }
