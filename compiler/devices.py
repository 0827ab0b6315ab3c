"""The devices an artifact runs on, and TVM's CUDA runtime loaded on demand.

``compiler.load(path, device=...)`` takes ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; by default an
artifact runs on its own kind of device (a CUDA artifact on ``cuda:0``).

TVM loads ``libtvm_runtime_cuda.so`` at import only when it is not in runtime-only mode and the
driver (``libcuda.so.1``) and CUDA runtime (``libcudart.so.13``) happen to be loadable; in
runtime-only mode (``TVM_USE_RUNTIME_LIB=1``, a deployment without TVM's compiler) it never
does. ``load_cuda_runtime`` loads it by hand, finding libcudart where CUDA toolkits and the
``nvidia-cuda-runtime`` wheel put it. A build machine may carry a stub ``libcuda.so.1`` (enough
to load TVM's CUDA runtime for compiling, useless for running): it is recognised and reported
as "no GPU", never used as a driver.

Nothing here imports TVM's compiler; TVM itself is imported only by the CUDA functions.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler.errors import InputError

CPU = "cpu"
CUDA = "cuda"
DRIVER = "libcuda.so.1"
CUDART = "libcudart.so.13"  # what the TVM 0.27 wheel's libtvm_runtime_cuda.so links against
CUDA_MAJOR = 13
TVM_CUDA_RUNTIME = "libtvm_runtime_cuda.so"
ENV_TVM_CUDA_RUNTIME = "NNXC_TVM_CUDA_RUNTIME"  # set by the GPU bundle's setup.sh

_ARTIFACT_KINDS = {"llvm": CPU, "cuda": CUDA}
_DEVICE = re.compile(r"(cpu|cuda)(?::(\d+))?")
_ARCH = re.compile(r"(sm|compute)_(\d+)([af]?)")


class DeviceError(Exception):
    """Why an artifact cannot run on a device; ``compiler.load`` names the artifact and device
    and raises it as an ArtifactError."""


@dataclass(frozen=True)
class DeviceSpec:
    """A device named by the user: its kind (``cpu`` | ``cuda``) and index."""

    kind: str
    index: int = 0

    def __str__(self) -> str:
        return self.kind if self.kind == CPU else f"{self.kind}:{self.index}"


def parse_device(text: str | None, default_kind: str) -> DeviceSpec:
    """``None`` (the artifact's kind, device 0), ``cpu``, ``cuda`` or ``cuda:N``."""
    if text is None:
        return DeviceSpec(default_kind)
    m = _DEVICE.fullmatch(str(text).strip().lower())
    if not m or (m[1] == CPU and m[2] not in (None, "0")):
        raise InputError(f"unknown device {text!r}; use cpu, cuda or cuda:N (N = 0, 1, ...)")
    return DeviceSpec(m[1], int(m[2] or 0))


def artifact_kind(target: dict[str, Any]) -> str | None:
    """The device kind an artifact's metadata target runs on (None: one this nnxc lacks)."""
    return _ARTIFACT_KINDS.get(str(target.get("kind")))


def artifact_archs(target: dict[str, Any]) -> tuple[str, ...]:
    """The CUDA archs a target records: its ``archs`` list, else its one ``arch``."""
    archs = target.get("archs")
    if isinstance(archs, list | tuple) and archs:
        return tuple(str(a) for a in archs)
    arch = target.get("arch")
    return (str(arch),) if arch else ()


def shipped_code(archs: tuple[str, ...]) -> tuple[str, ...]:
    """The code images a fatbin built for ``archs`` holds: SASS for each ``sm_XY`` and PTX for
    each ``compute_XY``; without any listed PTX, PTX of the newest sm (what ``--target cuda``
    ships so that GPUs newer than every listed arch JIT-compile it)."""
    parsed = [(a, _ARCH.fullmatch(a)) for a in archs]
    code = [a for a, m in parsed if m]
    sass = [m for _, m in parsed if m and m[1] == "sm"]
    if sass and not any(m[1] == "compute" for _, m in parsed if m):
        newest = max(sass, key=lambda m: int(m[2]))
        code.append(f"compute_{newest[2]}{newest[3]}")
    return tuple(code)


def arch_runs_on(code: str, capability: tuple[int, int]) -> bool:
    """Whether one code image runs on a GPU of compute capability (major, minor).

    SASS ``sm_XY`` runs on the same major with minor >= Y (``sm_90a`` only on 9.0 exactly,
    ``sm_100f`` on its family: major 10, minor >= 0); PTX ``compute_XY`` is JIT-compiled by the
    driver on any GPU of capability >= X.Y (``compute_90a`` only on 9.0).
    """
    m = _ARCH.fullmatch(code)
    if not m:
        return False
    number = int(m[2])
    major, minor = divmod(number, 10)
    if m[3] == "a":
        return capability == (major, minor)
    if m[1] == "sm" or m[3] == "f":
        return capability[0] == major and capability[1] >= minor
    return capability >= (major, minor)


def runnable_code(archs: tuple[str, ...], capability: tuple[int, int]) -> str | None:
    """The image of an artifact built for ``archs`` that the driver picks on the GPU (the
    newest SASS that runs, else the newest PTX), if any."""
    runs = [c for c in shipped_code(archs) if arch_runs_on(c, capability)]
    if not runs:
        return None
    return max(runs, key=lambda c: (c.startswith("sm_"), int(_ARCH.fullmatch(c)[2])))


# -- TVM's CUDA runtime ---------------------------------------------------------------------------
_cuda_ready = False


def load_cuda_runtime() -> None:
    """Make TVM able to load CUDA modules and use CUDA devices, or say why it cannot.

    Order: TVM's CUDA runtime library present (else this is a CPU-only TVM), the NVIDIA driver
    (a real one, not a stub), libcudart, then the library itself. Idempotent.
    """
    global _cuda_ready
    if _cuda_ready:
        return
    import tvm
    import tvm_ffi

    loaded = tvm_ffi.get_global_func("ffi.Module.load_from_bytes.cuda", allow_missing=True)
    library = None if loaded else _tvm_cuda_library(tvm)
    _check_driver()
    if not loaded:
        _load_cudart()
        attach_tvm_cuda_runtime(library)
    _cuda_ready = True


def attach_tvm_cuda_runtime(library: Path | None = None) -> None:
    """Load TVM's CUDA runtime library (``library``, else the first of
    ``tvm_cuda_candidates``), once libcuda and libcudart it links against are loaded: the
    run side loads them here, the build side (``backends.tvm.cuda.toolchain``) its own way."""
    import tvm
    import tvm_ffi

    library = library or _tvm_cuda_library(tvm)
    try:
        tvm.base._LOADED_LIBS["tvm_runtime_cuda"] = ctypes.CDLL(str(library), ctypes.RTLD_LOCAL)
    except OSError as e:
        raise DeviceError(f"TVM's CUDA runtime {library} does not load: {e}") from None
    if not tvm_ffi.get_global_func("ffi.Module.load_from_bytes.cuda", allow_missing=True):
        raise DeviceError(f"{library} loaded but registered no CUDA module loader")


def _tvm_cuda_library(tvm: Any) -> Path:
    found = next((p for p in tvm_cuda_candidates(tvm) if p.is_file()), None)
    if found is None:
        raise DeviceError(
            f"this TVM has no CUDA runtime ({TVM_CUDA_RUNTIME} not found: a CPU-only build "
            f"of TVM; set {ENV_TVM_CUDA_RUNTIME} to its path if it lives elsewhere)"
        )
    return found


def tvm_cuda_candidates(tvm: Any) -> list[Path]:
    """Where libtvm_runtime_cuda.so may be, in the order tried: the GPU bundle's variable,
    beside the loaded libtvm_runtime, TVM's library folders."""
    candidates = []
    if os.environ.get(ENV_TVM_CUDA_RUNTIME):
        candidates.append(Path(os.environ[ENV_TVM_CUDA_RUNTIME]))
    runtime = tvm.base._LOADED_LIBS.get("tvm_runtime")
    if runtime is not None:
        candidates.append(Path(runtime._name).resolve().parent / TVM_CUDA_RUNTIME)
    return candidates + [Path(d) / TVM_CUDA_RUNTIME for d in tvm.libinfo.package_lib_paths()]


def _check_driver() -> None:
    """The NVIDIA driver must load and be one: a build-time stub lacks ``cuInit``."""
    try:
        driver = ctypes.CDLL(DRIVER)
    except OSError:
        raise DeviceError(f"no NVIDIA driver ({DRIVER} not found)") from None
    if not hasattr(driver, "cuInit"):
        raise DeviceError(f"no NVIDIA GPU: the {DRIVER} found is a stub for building, not a driver")
    version = driver_cuda_version(driver)
    if version is not None and version < (CUDA_MAJOR, 0):
        raise DeviceError(
            f"the NVIDIA driver supports CUDA {version[0]}.{version[1]}; TVM's CUDA runtime "
            f"needs CUDA {CUDA_MAJOR} (a newer driver)"
        )


def driver_cuda_version(driver: Any) -> tuple[int, int] | None:
    """The CUDA version the driver supports (cuDriverGetVersion, which needs no cuInit)."""
    if not hasattr(driver, "cuDriverGetVersion"):
        return None
    value = ctypes.c_int(0)
    if driver.cuDriverGetVersion(ctypes.byref(value)) != 0:
        return None
    return value.value // 1000, value.value % 1000 // 10


def _load_cudart() -> None:
    """Load libcudart by path so that TVM's CUDA runtime finds it by soname: an already loaded
    one (PyTorch's), the GPU bundle's folder, CUDA_PATH, /usr/local/cuda*, the nvidia wheels,
    then the loader's own search."""
    try:
        ctypes.CDLL(CUDART, mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
        return
    except OSError:
        pass
    for path in cudart_candidates():
        if path.is_file():
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                return
            except OSError:
                continue
    try:
        ctypes.CDLL(CUDART, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        raise DeviceError(
            f"the CUDA runtime {CUDART} is not found (set CUDA_PATH to a CUDA 13 toolkit, or "
            "pip install nvidia-cuda-runtime)"
        ) from None


def cudart_candidates() -> list[Path]:
    """Where libcudart may be, in the order tried."""
    dirs = []
    if os.environ.get(ENV_TVM_CUDA_RUNTIME):
        dirs.append(Path(os.environ[ENV_TVM_CUDA_RUNTIME]).parent)
    if os.environ.get("CUDA_PATH"):
        dirs.append(Path(os.environ["CUDA_PATH"]) / "lib64")
    dirs += [Path(p) for p in sorted(glob.glob("/usr/local/cuda*/lib64"))]
    for site in sys.path:
        dirs += [Path(site) / "nvidia" / "cu13" / "lib", Path(site) / "nvidia/cuda_runtime/lib"]
    return [d / CUDART for d in dirs]


def open_gpu(index: int, archs: tuple[str, ...]) -> Any:
    """The TVM device ``cuda:index`` after checking that it exists and that the artifact's
    code (built for ``archs``; none recorded: not checked) runs on it."""
    import tvm

    load_cuda_runtime()
    dev = tvm.cuda(index)
    if not dev.exist:
        count = gpu_count()
        if count == 0:
            raise DeviceError("no NVIDIA GPU found")
        raise DeviceError(
            f"this machine has {count} GPU{'s' if count > 1 else ''} (cuda:0 to cuda:{count - 1})"
        )
    if archs:
        capability = tuple(int(v) for v in dev.compute_version.split("."))
        if runnable_code(archs, capability) is None:  # type: ignore[arg-type]
            sm = f"sm_{capability[0]}{capability[1]}"
            raise DeviceError(
                f"the artifact has code for {', '.join(shipped_code(archs))}; cuda:{index} is "
                f"{dev.device_name} ({sm}, compute capability {dev.compute_version}): "
                f"compile with --target cuda:{sm}"
            )
    return dev


def gpu_count(limit: int = 64) -> int:
    """CUDA devices TVM sees (TVM has no count query: probe until one is missing)."""
    import tvm

    return next((i for i in range(limit) if not tvm.cuda(i).exist), limit)
