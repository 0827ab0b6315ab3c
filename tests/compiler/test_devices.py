"""``compiler.devices``: device names, the archs an artifact's code runs on, finding TVM's CUDA
runtime. Pure functions here; loading CUDA artifacts without a GPU is in test_runtime_cuda.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compiler.devices import (
    CUDART,
    DeviceSpec,
    arch_runs_on,
    artifact_archs,
    artifact_kind,
    cudart_candidates,
    parse_device,
    runnable_code,
    shipped_code,
)
from compiler.errors import InputError

REPO = Path(__file__).resolve().parents[2]

pytest_plugins = ["models_fixture", "cuda_artifacts"]  # tiny_cuda_so


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        (None, "cpu", DeviceSpec("cpu", 0)),
        (None, "cuda", DeviceSpec("cuda", 0)),
        ("cpu", "cuda", DeviceSpec("cpu", 0)),
        ("cpu:0", "cuda", DeviceSpec("cpu", 0)),
        ("cuda", "cpu", DeviceSpec("cuda", 0)),
        ("cuda:0", "cpu", DeviceSpec("cuda", 0)),
        (" CUDA:3 ", "cpu", DeviceSpec("cuda", 3)),
    ],
)
def test_parse_device(text: str | None, default: str, expected: DeviceSpec) -> None:
    assert parse_device(text, default) == expected


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:-1", "cuda:x", "cpu:1", "rocm", ""])
def test_parse_device_refuses(text: str) -> None:
    with pytest.raises(InputError, match="cpu, cuda or cuda:N"):
        parse_device(text, "cpu")


def test_device_names() -> None:
    assert str(DeviceSpec("cpu")) == "cpu"
    assert str(DeviceSpec("cuda", 2)) == "cuda:2"


def test_artifact_kind_and_archs() -> None:
    assert artifact_kind({"kind": "llvm", "mcpu": "skylake"}) == "cpu"
    assert artifact_kind({"kind": "cuda", "arch": "sm_90"}) == "cuda"
    assert artifact_kind({"kind": "vulkan"}) is None
    assert artifact_archs({"kind": "llvm"}) == ()
    assert artifact_archs({"kind": "cuda", "arch": "sm_80"}) == ("sm_80",)
    both = {"kind": "cuda", "arch": "sm_80", "archs": ["sm_80", "sm_90"]}
    assert artifact_archs(both) == ("sm_80", "sm_90")


def test_shipped_code_adds_ptx_of_the_newest() -> None:
    """What ``--target cuda`` ships: SASS for each listed arch, PTX of the newest, unless the
    list names its PTX itself."""
    assert shipped_code(("sm_80", "sm_100", "sm_90")) == ("sm_80", "sm_100", "sm_90", "compute_100")
    assert shipped_code(("sm_90",)) == ("sm_90", "compute_90")
    assert shipped_code(("sm_80", "compute_80")) == ("sm_80", "compute_80")
    assert shipped_code(("sm_90a",)) == ("sm_90a", "compute_90a")
    assert shipped_code(()) == ()


@pytest.mark.parametrize(
    ("code", "capability", "runs"),
    [
        ("sm_90", (9, 0), True),
        ("sm_80", (8, 6), True),  # same major, newer minor: SASS runs
        ("sm_86", (8, 0), False),  # older minor: no
        ("sm_80", (9, 0), False),  # SASS never crosses a major version
        ("sm_90", (8, 0), False),
        ("sm_90", (10, 0), False),
        ("sm_100", (10, 3), True),
        ("sm_90a", (9, 0), True),
        ("sm_90a", (9, 1), False),  # arch-specific: that GPU only
        ("sm_100f", (10, 3), True),  # family: same major
        ("sm_100f", (12, 0), False),
        ("compute_90", (10, 0), True),  # PTX JIT-compiles on newer GPUs
        ("compute_90", (12, 0), True),
        ("compute_90", (9, 0), True),
        ("compute_90", (8, 9), False),
        ("compute_90a", (10, 0), False),
        ("compute_90a", (9, 0), True),
        ("sm_x", (9, 0), False),
    ],
)
def test_arch_runs_on(code: str, capability: tuple[int, int], runs: bool) -> None:
    assert arch_runs_on(code, capability) is runs


def test_runnable_code() -> None:
    default = ("sm_80", "sm_86", "sm_89", "sm_90")
    assert runnable_code(default, (9, 0)) == "sm_90"
    assert runnable_code(default, (8, 7)) == "sm_86"  # Jetson Orin runs the sm_86 SASS
    assert runnable_code(default, (10, 0)) == "compute_90"  # Blackwell JITs the PTX
    assert runnable_code(default, (7, 5)) is None  # Turing: nothing
    assert runnable_code(("sm_90",), (8, 0)) is None  # an sm_90 artifact on an A100
    assert runnable_code(("sm_90",), (12, 0)) == "compute_90"
    assert runnable_code(("sm_80", "compute_80"), (9, 0)) == "compute_80"


def test_cudart_candidates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NNXC_TVM_CUDA_RUNTIME", str(tmp_path / "tvm/lib/libtvm_runtime_cuda.so"))
    monkeypatch.setenv("CUDA_PATH", str(tmp_path / "cuda"))
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site")])
    found = cudart_candidates()
    assert found[:2] == [tmp_path / "tvm/lib" / CUDART, tmp_path / "cuda/lib64" / CUDART]
    assert found[-2:] == [
        tmp_path / "site/nvidia/cu13/lib" / CUDART,
        tmp_path / "site/nvidia/cuda_runtime/lib" / CUDART,
    ]
    assert all(p.name == CUDART for p in found)


CPU_ONLY_TVM = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import compiler.devices as d
    from compiler.errors import NnxcError

    d.tvm_cuda_candidates = lambda tvm: [Path(sys.argv[1])]
    try:
        d.load_cuda_runtime()
        print("loaded")
    except d.DeviceError as e:
        print("DeviceError:", e)
    """
)


@pytest.mark.parametrize("runtime_only", [False, True])
def test_cpu_only_tvm(tmp_path: Path, runtime_only: bool) -> None:
    """Without libtvm_runtime_cuda.so (a CPU-only TVM) the reason says so. In a fresh process:
    this one may have TVM's CUDA runtime loaded already (the CUDA compile tests load it)."""
    # No backend autoload: on a machine with a driver, TVM would load its CUDA runtime itself.
    env = {**os.environ, "PYTHONPATH": str(REPO), "TVM_DEVICE_BACKEND_AUTOLOAD": "0"}
    env.pop("NNXC_TVM_CUDA_RUNTIME", None)
    if runtime_only:
        env["TVM_USE_RUNTIME_LIB"] = "1"
    r = subprocess.run(
        [sys.executable, "-c", CPU_ONLY_TVM, str(tmp_path / "none.so")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("DeviceError: this TVM has no CUDA runtime"), r.stdout
    assert "CPU-only build of TVM" in line


class FakeGPU:
    """What ``open_gpu`` reads of ``tvm.cuda(i)``."""

    def __init__(self, index: int, count: int, capability: str = "9.0") -> None:
        self.exist = index < count
        self.compute_version = capability
        self.device_name = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - a setter
    """``fake_gpus(count, capability)``: TVM sees that many GPUs; nothing CUDA is loaded."""
    import tvm

    import compiler.devices as devices

    monkeypatch.setattr(devices, "load_cuda_runtime", lambda: None)

    def install(count: int, capability: str = "9.0") -> None:
        monkeypatch.setattr(tvm, "cuda", lambda index=0: FakeGPU(index, count, capability))

    return install


def test_open_gpu_checks_index_and_arch(fake_gpus) -> None:  # noqa: ANN001
    from compiler.devices import DeviceError, open_gpu

    fake_gpus(0)
    with pytest.raises(DeviceError, match="^no NVIDIA GPU found$"):
        open_gpu(0, ("sm_90",))
    fake_gpus(2)
    assert open_gpu(1, ("sm_90",)).exist
    with pytest.raises(DeviceError, match=r"^this machine has 2 GPUs \(cuda:0 to cuda:1\)$"):
        open_gpu(2, ("sm_90",))
    fake_gpus(1)
    with pytest.raises(DeviceError, match=r"^this machine has 1 GPU \(cuda:0 to cuda:0\)$"):
        open_gpu(3, ())
    fake_gpus(1, "8.0")
    with pytest.raises(DeviceError) as e:
        open_gpu(0, ("sm_90",))
    assert str(e.value) == (
        "the artifact has code for sm_90, compute_90; cuda:0 is NVIDIA H100 80GB HBM3 "
        "(sm_80, compute capability 8.0): compile with --target cuda:sm_80"
    )
    assert open_gpu(0, ("sm_80", "sm_90")).exist  # SASS sm_80
    assert open_gpu(0, ()).exist  # no archs recorded: not checked
    fake_gpus(1, "12.0")
    assert open_gpu(0, ("sm_80", "sm_90")).exist  # PTX compute_90


def test_load_names_artifact_and_device(fake_gpus, tiny_cuda_so: Path) -> None:  # noqa: ANN001
    """compiler.load wraps the reason: artifact, device, reason on one line."""
    import compiler
    from compiler.errors import ArtifactError

    fake_gpus(1, "7.5")
    with pytest.raises(ArtifactError) as e:
        compiler.load(tiny_cuda_so)
    assert str(e.value).startswith(f"{tiny_cuda_so}: cannot run on cuda:0: the artifact has code")
    assert "sm_75" in str(e.value) and "\n" not in str(e.value)


def test_driver_cuda_version() -> None:
    from compiler.devices import driver_cuda_version

    class Driver:
        def __init__(self, value: int, status: int = 0) -> None:
            self.value, self.status = value, status

        def cuDriverGetVersion(self, out: object) -> int:  # noqa: N802 - the driver's name
            out._obj.value = self.value  # type: ignore[attr-defined]
            return self.status

    assert driver_cuda_version(Driver(13000)) == (13, 0)
    assert driver_cuda_version(Driver(12080)) == (12, 8)
    assert driver_cuda_version(Driver(13000, status=3)) is None
    assert driver_cuda_version(object()) is None  # a stub without the function
