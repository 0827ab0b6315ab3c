"""CUDA artifacts for the runtime tests, built in ONE place (``build_cuda_artifact``).

Until the CUDA target lands in the compiler (``backends/tvm/targets.py``), the artifact is built
with TVM's own CUDA pipeline: without a driver TVM keeps the CUDA source in the library instead
of a fatbin, which is enough for the tests of loading without a GPU (they fail before any code
runs). Once ``compiler.compile(..., target="cuda:sm_90")`` exists, it is used instead and the
artifact holds a fatbin that runs on an sm_90 GPU (the GPU tests need that).

The GPU machine has neither TVM's compiler nor onnxruntime: prepare the GPU tests' artifacts
and references here with ``python tests/helpers/cuda_artifacts.py DIR``, carry DIR, and run
``NNXC_GPU_TEST_DIR=DIR python -m pytest -m gpu tests/compiler/test_runtime_gpu.py`` there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

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


# -- artifacts for the GPU tests, built here and carried to the GPU machine ----------------------
def small_cnn(seed: int = 0) -> onnx.ModelProto:
    """conv 3x3 -> relu -> max pool -> global average pool -> gemm -> softmax, batch symbolic:
    the kernels a CNN needs, small enough to build in seconds."""
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [weight("w", 8, 3, 3, 3), weight("b", 8), weight("fc", 10, 8), weight("fb", 10)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def prepare_gpu_checks(folder: str | os.PathLike) -> Path:
    """Everything the GPU tests need where TVM's compiler and onnxruntime are absent: the
    tiny model and a small CNN compiled for ``CUDA_ARCH``, the tiny model for a generic CPU,
    and the CNN's input and onnxruntime output (``small_cnn_ref.npz``). Point the tests at it
    with NNXC_GPU_TEST_DIR."""
    from models_fixture import ort_run, tiny_model

    import compiler

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, model in (("tiny", tiny_model()), ("small_cnn", small_cnn())):
        src = out / f"{name}.onnx"
        if not src.exists():
            onnx.save(model, src)
        so = out / f"{name}_cuda.so"
        if not so.exists():
            build_cuda_artifact(src, so)
    cpu = out / "tiny_cpu.so"  # generic x86-64/AArch64: runs on the GPU machine's CPU too
    if not cpu.exists():
        compiler.compile(str(out / "tiny.onnx"), target={"kind": "llvm"}).export(str(cpu))
    ref = out / "small_cnn_ref.npz"
    if not ref.exists():
        x = np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)
        (y,) = ort_run(small_cnn(), {"x": x})
        np.savez(ref, x=x, y=y)
    return out


@pytest.fixture(scope="session")
def gpu_checks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of ``prepare_gpu_checks``: $NNXC_GPU_TEST_DIR (prepared elsewhere), else
    built here, which needs the compiler's CUDA target."""
    if os.environ.get("NNXC_GPU_TEST_DIR"):
        return Path(os.environ["NNXC_GPU_TEST_DIR"])
    if not compiler_has_cuda_target():
        pytest.skip("building CUDA fatbins needs the compiler's CUDA target")
    return prepare_gpu_checks(tmp_path_factory.getbasetemp() / "gpu_checks")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's packages
    print(prepare_gpu_checks(sys.argv[1] if len(sys.argv) > 1 else "gpu_checks"))
