"""Loading CUDA artifacts where there is no GPU (developer machines, CI): one clear error line
naming the artifact and the device, with TVM's full install and with its runtime alone, with no
driver and with a stub ``libcuda.so.1`` (a build machine's). Each case runs in a fresh process so
that a stub never leaks into other tests. Running on a GPU: test_runtime_gpu.py."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compiler.artifact import read_metadata
from compiler.errors import ArtifactError, InputError

pytest.register_assert_rewrite("models_fixture")

from models_fixture import REPO, assert_one_error_line, nnxc  # noqa: E402

import compiler  # noqa: E402

pytest_plugins = ["models_fixture", "cuda_artifacts"]  # tiny_so*, tiny_cuda_so, cuda_stubs


def _has_driver() -> bool:
    try:
        return hasattr(ctypes.CDLL("libcuda.so.1"), "cuInit")
    except OSError:
        return False


no_driver = pytest.mark.skipif(_has_driver(), reason="an NVIDIA driver is installed here")


def test_metadata_records_cuda(tiny_cuda_so: Path) -> None:
    target = read_metadata(tiny_cuda_so).target
    assert target["kind"] == "cuda" and "sm_90" in target["archs"]


def test_device_kind_mismatch(tiny_so: Path, tiny_cuda_so: Path) -> None:
    """Refused from the metadata, before TVM or CUDA is touched."""
    with pytest.raises(ArtifactError, match=r"compiled for cpu, it cannot run on cuda:1") as e:
        compiler.load(tiny_so, device="cuda:1")
    assert str(tiny_so) in str(e.value)
    with pytest.raises(ArtifactError, match=r"compiled for cuda, it cannot run on cpu") as e:
        compiler.load(tiny_cuda_so, device="cpu")
    assert str(tiny_cuda_so) in str(e.value) and "device='cuda'" in str(e.value)


def test_bad_device_name(tiny_so: Path) -> None:
    with pytest.raises(InputError, match=r"unknown device 'gpu0'; use cpu, cuda or cuda:N"):
        compiler.load(tiny_so, device="gpu0")


def test_cpu_artifact_device_cpu(tiny_so: Path) -> None:
    import numpy as np

    rt = compiler.load(tiny_so, device="cpu")
    assert rt.device.dlpack_device_type() == 1
    assert rt.run({"x": np.ones((2, 4), np.float32)})["y"].shape == (2, 3)


LOAD_SCRIPT = textwrap.dedent(
    """
    import ctypes, json, sys
    artifact, preload = sys.argv[1], sys.argv[2]
    if preload:
        # What a process that compiled CUDA code holds: TVM imported, then the stub and TVM's
        # CUDA runtime loaded by hand (the targets' codegen does this).
        import tvm
        from pathlib import Path
        ctypes.CDLL(preload, ctypes.RTLD_GLOBAL)
        ctypes.CDLL("/usr/local/cuda/lib64/libcudart.so.13", ctypes.RTLD_GLOBAL)
        lib = Path(tvm.base._LOADED_LIBS["tvm_runtime"]._name).parent / "libtvm_runtime_cuda.so"
        tvm.base._LOADED_LIBS["tvm_runtime_cuda"] = ctypes.CDLL(str(lib), ctypes.RTLD_LOCAL)
    import compiler
    from compiler.errors import NnxcError
    errors = []
    for device in (None, "cuda:1"):
        try:
            compiler.load(artifact, device=device)
            errors.append(None)
        except NnxcError as e:
            errors.append([type(e).__name__, str(e)])
    import tvm.base
    print(json.dumps({"errors": errors, "runtime_only": bool(tvm.base._RUNTIME_ONLY)}))
    """
)


def _load_in_fresh_process(artifact: Path, env: dict[str, str], preload: str = "") -> dict:
    r = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(artifact), preload],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr  # no crash, no traceback
    return json.loads(r.stdout.strip().splitlines()[-1])


@no_driver
@pytest.mark.parametrize(
    ("stub", "runtime_only"),
    [
        ("none", False),
        ("none", True),
        ("build", True),
        ("init", True),
        ("preloaded", False),
    ],
    ids=lambda v: {False: "full-tvm", True: "runtime-only"}.get(v, v),
)
def test_load_without_gpu(
    tiny_cuda_so: Path, cuda_stubs: dict[str, Path], stub: str, runtime_only: bool
) -> None:
    """none: no libcuda.so.1 at all; build: the build-time stub on LD_LIBRARY_PATH (recognised:
    no cuInit); init: a stub with cuInit (the CUDA runtime itself reports no GPU); preloaded: the
    stub and TVM's CUDA runtime already loaded in the process, as after compiling CUDA code."""
    if stub == "preloaded" and not Path("/usr/local/cuda/lib64/libcudart.so.13").exists():
        pytest.skip("no CUDA 13 toolkit at /usr/local/cuda to preload libcudart from")
    env = {"TVM_USE_RUNTIME_LIB": "1"} if runtime_only else {}
    preload = ""
    if stub in ("build", "init"):
        env["LD_LIBRARY_PATH"] = str(cuda_stubs[stub])
    elif stub == "preloaded":
        preload = str(cuda_stubs["build"] / "libcuda.so.1")
    report = _load_in_fresh_process(tiny_cuda_so, env, preload)
    assert report["runtime_only"] is runtime_only
    reason = {
        "none": "no NVIDIA driver (libcuda.so.1 not found)",
        "build": "no NVIDIA GPU: the libcuda.so.1 found is a stub for building, not a driver",
        "init": "no NVIDIA GPU found",
        "preloaded": "no NVIDIA GPU: the libcuda.so.1 found is a stub for building, not a driver",
    }[stub]
    for (kind, message), device in zip(report["errors"], ["cuda:0", "cuda:1"]):
        assert kind == "ArtifactError"
        assert message == f"{tiny_cuda_so}: cannot run on {device}: {reason}"


@no_driver
def test_nnxc_run_device(tiny_so_static: Path, tiny_cuda_so: Path) -> None:
    """``nnxc run``: the artifact's kind by default, --device to choose; one error line."""
    r = nnxc("run", tiny_cuda_so)
    assert_one_error_line(r, str(tiny_cuda_so), "cannot run on cuda:0", "no NVIDIA driver")
    r = nnxc("run", tiny_so_static, "--device", "cuda")
    assert_one_error_line(r, str(tiny_so_static), "compiled for cpu, it cannot run on cuda:0")
    r = nnxc("run", tiny_so_static, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("y: float32[")


def test_nnxc_run_help_names_device() -> None:
    r = nnxc("run", "--help")
    assert r.returncode == 0 and "--device DEV" in r.stdout and "cuda:N" in r.stdout
