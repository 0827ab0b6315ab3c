"""The CUDA toolkit on this machine, and TVM's CUDA runtime in this process, for building.

Finding the toolkit: ``CUDA_PATH`` when set, else the ``nvcc`` on PATH, else
/usr/local/cuda (``FALLBACK_ROOT``). The ``nvcc`` on PATH may be a wrapper script (``exec
/usr/local/cuda-13.0/bin/nvcc "$@"``), so its folder is not the toolkit's: we ask nvcc
itself (``nvcc --dryrun`` prints ``TOP=``, the toolkit it runs from).

TVM builds CUDA kernels into binary code only when ``libtvm_runtime_cuda.so`` is loaded
(otherwise it silently keeps CUDA source), and that library needs ``libcuda.so.1`` (the
driver) and ``libcudart.so.13``. ``import tvm`` tries to load it and gives up quietly where
no driver is installed; ``load_cuda_runtime`` loads the real driver library when there is
one, else a stub built from ``libcuda_stub.c``, then the toolkit's libcudart, then TVM's
library. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..targets import TargetError

# The CUDA runtime libtvm_runtime_cuda.so was linked against (its DT_NEEDED entry).
STUB_SOURCE = Path(__file__).with_name("libcuda_stub.c")
FALLBACK_ROOT = Path("/usr/local/cuda")  # where NVIDIA's installers put it

_INSTALL_HINT = (
    "install NVIDIA's CUDA toolkit 13 (https://developer.nvidia.com/cuda-downloads, or e.g. "
    "apt-get install cuda-toolkit-13-0) and put its bin/ on PATH, or set CUDA_PATH to its "
    "folder (the one holding bin/nvcc and nvvm/libdevice, e.g. /usr/local/cuda-13.0)"
)


@dataclass(frozen=True)
class CudaToolkit:
    """A CUDA toolkit: its folder, its nvcc, and nvcc's release (e.g. "13.0")."""

    root: Path
    nvcc: Path
    version: str

    @property
    def lib_dir(self) -> Path:
        return self.root / "lib64" if (self.root / "lib64").is_dir() else self.root / "lib"


def find_toolkit() -> CudaToolkit:
    """The toolkit to build with, or a TargetError saying how to install or point at one."""
    return _find_toolkit(os.environ.get("CUDA_PATH") or None, os.environ.get("PATH", ""))


@functools.lru_cache(maxsize=8)
def _find_toolkit(cuda_path: str | None, path: str) -> CudaToolkit:
    if cuda_path is not None:
        root = Path(cuda_path)
        if not _is_toolkit(root):
            raise TargetError(
                f"CUDA_PATH={cuda_path} is not a CUDA toolkit (no bin/nvcc and nvvm/libdevice "
                f"there); {_INSTALL_HINT}"
            )
        return _toolkit(root)
    nvcc = shutil.which("nvcc", path=path)
    if nvcc is not None:
        root = _root_of(Path(nvcc))
        if root is None:
            raise TargetError(
                f"cannot tell which CUDA toolkit {nvcc} belongs to (no nvvm/libdevice next to "
                f"it, and nvcc --dryrun names none); set CUDA_PATH to the toolkit's folder"
            )
        return _toolkit(root)
    if _is_toolkit(FALLBACK_ROOT):
        return _toolkit(FALLBACK_ROOT.resolve())
    raise TargetError(
        f"CUDA targets need nvcc, found neither on PATH nor in CUDA_PATH; {_INSTALL_HINT}"
    )


def _is_toolkit(root: Path) -> bool:
    return (root / "bin" / "nvcc").is_file() and (root / "nvvm" / "libdevice").is_dir()


def _root_of(nvcc: Path) -> Path | None:
    """The toolkit folder of an nvcc that may be a symlink or a wrapper script."""
    root = nvcc.resolve().parent.parent
    if _is_toolkit(root):
        return root
    try:
        proc = subprocess.run(
            [str(nvcc), "--dryrun", "-E", "-x", "cu", os.devnull],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"^#\$ TOP=(.+)$", proc.stdout + proc.stderr, re.MULTILINE)
    if match is None:
        return None
    root = Path(match.group(1).strip()).resolve()
    return root if _is_toolkit(root) else None


def _toolkit(root: Path) -> CudaToolkit:
    nvcc = root / "bin" / "nvcc"
    out = _run([str(nvcc), "--version"])
    match = re.search(r"release (\d+\.\d+)", out)
    if match is None:
        raise TargetError(f"{nvcc} --version does not name a release: {out.strip()[-200:]}")
    return CudaToolkit(root, nvcc, match.group(1))


def buildable_archs(toolkit: CudaToolkit) -> frozenset[str]:
    """The SASS archs (sm_NN) this toolkit's nvcc can build, as nvcc lists them."""
    return _buildable_archs(toolkit.nvcc)


@functools.lru_cache(maxsize=8)
def _buildable_archs(nvcc: Path) -> frozenset[str]:
    out = _run([str(nvcc), "--list-gpu-code"])
    return frozenset(re.findall(r"^(sm_\d+)$", out, re.MULTILINE))


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TargetError(f"{shlex.join(cmd)} failed: {e}") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise TargetError(f"{shlex.join(cmd)} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


# -- TVM's CUDA runtime in this process ---------------------------------------------------------
def cuda_runtime_loaded() -> bool:
    """Whether TVM can make CUDA modules here (else its codegen keeps CUDA source)."""
    import tvm_ffi

    return tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is not None


def load_cuda_runtime(toolkit: CudaToolkit) -> None:
    """Load libtvm_runtime_cuda.so into this process if ``import tvm`` did not (no driver),
    with its two dependencies: the driver library (real, else the stub) and libcudart."""
    if cuda_runtime_loaded():
        return
    from compiler.devices import CUDART, DeviceError, attach_tvm_cuda_runtime

    _load_driver()
    cudart = toolkit.lib_dir / CUDART
    try:
        ctypes.CDLL(str(cudart), mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise TargetError(
            f"TVM's CUDA runtime needs {CUDART}, which the toolkit at {toolkit.root} "
            f"(CUDA {toolkit.version}) does not provide ({e}); {_INSTALL_HINT}"
        ) from None
    try:
        attach_tvm_cuda_runtime()
    except DeviceError as e:
        raise TargetError(f"cannot load TVM's CUDA runtime: {e}") from None
    if not cuda_runtime_loaded():
        raise TargetError(
            "TVM's CUDA runtime loaded but registered no CUDA module factory "
            "(ffi.Module.create.cuda); this TVM build cannot make CUDA artifacts"
        )


def _load_driver() -> None:
    """The real libcuda.so.1 if this machine has one, else the stub (by soname, so that
    the dynamic loader takes it for libtvm_runtime_cuda's DT_NEEDED entry)."""
    try:
        ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        ctypes.CDLL(str(stub_library()), mode=ctypes.RTLD_GLOBAL)


def cache_dir() -> Path:
    """nnxc's per-user cache: $XDG_CACHE_HOME/nnxc, else ~/.cache/nnxc."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nnxc"


def stub_library() -> Path:
    """The driver stub, built with the system C compiler on first use and kept in the cache
    under a hash of its source (an edited source builds anew)."""
    source = STUB_SOURCE.read_bytes()
    key = hashlib.sha256(source).hexdigest()[:16]
    out = cache_dir() / f"cuda-stub-{key}" / "libcuda.so.1"
    if out.is_file():
        return out
    cc = shlex.split(os.environ.get("CC", "")) or [shutil.which("gcc") or shutil.which("cc") or ""]
    if not cc[0] or shutil.which(cc[0]) is None:
        raise TargetError(
            "building CUDA code without an NVIDIA driver needs a stand-in libcuda.so.1, built "
            "with a C compiler: install gcc (or set CC), or install the NVIDIA driver"
        )
    tmp = out.with_name(f".libcuda.so.1.{os.getpid()}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            *cc,
            "-shared",
            "-fPIC",
            "-Wl,-soname,libcuda.so.1",
            "-o",
            str(tmp),
            str(STUB_SOURCE),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise TargetError(
                f"building the libcuda stub failed: {shlex.join(cmd)}: {proc.stderr.strip()}"
            )
        os.replace(tmp, out)  # atomic: concurrent builds each write their own file
    except OSError as e:
        raise TargetError(
            f"cannot write the libcuda stub into {out.parent} ({e}); set XDG_CACHE_HOME to a "
            "writable folder"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return out
