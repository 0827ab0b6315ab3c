"""Building CUDA kernels ahead of time into one fatbin for several archs.

TVM 0.27 turns each CUDA PrimFunc module's source into binary code by calling the global
``tvm_callback_cuda_compile(source)`` while it builds, but only when its CUDA runtime is
loaded (``toolchain.load_cuda_runtime``); otherwise the library silently keeps the source.
TVM's own callback builds with NVRTC (an extra package, one arch) or nvcc for the arch of
``Target.current()``, which is unset during codegen unless the build runs inside
``with target:`` (then it asks the local GPU, which a build machine may lack). ``cuda_codegen``
sets all of this up for one build and puts the previous callback back afterwards.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..targets import TargetError, TargetSpec, arch_number
from .toolchain import CudaToolkit, find_toolkit, load_cuda_runtime

CALLBACK = "tvm_callback_cuda_compile"

# TVM's nvcc flags (tvm.support.nvcc), so kernels behave as TVM's own build would make them;
# TVM_CUDA_NVCC_NO_FAST_MATH turns fast math off there and here.
_NVCC_FLAGS = [
    "-O3",
    "-U__CUDA_NO_HALF_OPERATORS__",
    "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__",
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__",
    "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
    "--expt-relaxed-constexpr",
    "--expt-extended-lambda",
]


def gencode_flags(archs: tuple[str, ...]) -> list[str]:
    """SASS for each arch, plus PTX of the newest for GPUs newer than all of them.

    All SASS comes from one front-end pass for the lowest arch's virtual arch (compute_80
    for sm_80..sm_90): the source is generated for the lowest arch anyway, and nvcc's front
    end, not ptxas, takes the time (squeezenet: 11 s per pass, under 1 s per extra SASS, so
    4 archs cost 43 s with a pass each and 14 s with one). The newest arch's PTX needs its
    own pass."""
    numbers = sorted({arch_number(a) for a in archs})
    low, new = numbers[0], numbers[-1]
    codes = [f"sm_{n}" for n in numbers] + ([f"compute_{low}"] if low == new else [])
    flags = ["-gencode", f"arch=compute_{low},code=[{','.join(codes)}]"]
    if new != low:
        flags += ["-gencode", f"arch=compute_{new},code=compute_{new}"]
    return flags


def compile_fatbin(code: str, archs: tuple[str, ...], toolkit: CudaToolkit) -> bytes:
    """nvcc's fatbin for ``code`` (TVM's generated CUDA source)."""
    fast_math = [] if os.environ.get("TVM_CUDA_NVCC_NO_FAST_MATH") else ["--use_fast_math"]
    with tempfile.TemporaryDirectory(prefix="nnxc-cuda-") as tmp:
        source, out = Path(tmp) / "kernels.cu", Path(tmp) / "kernels.fatbin"
        source.write_text(code)
        cmd = [str(toolkit.nvcc), "--fatbin", "--threads", "0", *gencode_flags(archs)]
        cmd += [*_NVCC_FLAGS, *fast_math, "-o", str(out), str(source)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
            errors = [line for line in lines if "error" in line.lower()] or lines[-5:]
            raise TargetError(
                f"nvcc {toolkit.version} failed on the CUDA code TVM generated: "
                + " | ".join(errors[:5])
            )
        return out.read_bytes()


@dataclass
class CodegenLog:
    """What the callback did during one build: fatbins made, or the error it met."""

    fatbins: list[int] = field(default_factory=list)  # sizes in bytes
    error: BaseException | None = None


@contextlib.contextmanager
def cuda_codegen(spec: TargetSpec) -> Iterator[CodegenLog]:
    """Run a ``tvm.compile`` for the CUDA target ``spec`` inside this: TVM's CUDA runtime is
    loaded, kernels are built by nvcc into one fatbin holding ``spec.archs``, the target is
    current, and CUDA_PATH names the toolkit (TVM's own CUDA helpers read it)."""
    import tvm_ffi

    toolkit = find_toolkit()
    load_cuda_runtime(toolkit)
    log = CodegenLog()

    def _compile(code: str) -> bytearray:
        try:
            fatbin = compile_fatbin(code, spec.archs, toolkit)
        except BaseException as e:
            log.error = e  # TVM's C++ frames in between would turn it into a plain RuntimeError
            raise
        log.fatbins.append(len(fatbin))
        return bytearray(fatbin)

    previous = tvm_ffi.get_global_func(CALLBACK, allow_missing=True)
    saved_env = {k: os.environ.get(k) for k in ("CUDA_PATH", "TVM_COMPILE_FORCE_FALLBACK")}
    os.environ["CUDA_PATH"] = str(toolkit.root)
    os.environ.pop("TVM_COMPILE_FORCE_FALLBACK", None)  # it would keep source in the library
    tvm_ffi.register_global_func(CALLBACK, _compile, override=True)
    try:
        with spec.tvm_target():
            yield log
    except Exception:
        if log.error is not None:
            raise log.error from None
        raise
    finally:
        if previous is not None:
            tvm_ffi.register_global_func(CALLBACK, previous, override=True)
        else:
            tvm_ffi.remove_global_func(CALLBACK)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def cuda_modules(module: Any) -> list[Any]:
    """The CUDA modules in a built executable's import tree (one per device code unit)."""
    found, stack = [], [module]
    while stack:
        m = stack.pop()
        stack.extend(m.imports)
        if m.kind == "cuda":
            found.append(m)
    return found


def check_executable(module: Any) -> None:
    """Every CUDA module in the built executable holds binary code: TVM's fallback module,
    which keeps source for NVRTC at load, is not runnable as built."""
    if any(not m.is_runnable() for m in cuda_modules(module)):
        raise TargetError(
            "TVM kept the CUDA kernels as source (its CUDA runtime was not loaded when it "
            "built them): the artifact would need a CUDA compiler at load"
        )


def check_library(path: str | os.PathLike, spec: TargetSpec, has_kernels: bool = True) -> None:
    """The exported library holds SASS for every arch of ``spec``, the newest arch's PTX,
    and no CUDA source; a TargetError otherwise (the artifact would need a compiler at load).
    ``has_kernels``: False for a model without GPU kernels, which has no fatbin."""
    from .fatbin import read_cuda_contents

    found = read_cuda_contents(path)
    if found.has_source:
        raise TargetError(
            f"{path} holds CUDA source instead of binary code: TVM's CUDA runtime was not "
            "loaded when it built the kernels"
        )
    if not found.entries and not has_kernels:
        return
    newest = f"compute_{arch_number(spec.archs[-1])}"
    missing = [a for a in spec.archs if a not in found.sass_archs]
    missing += [] if newest in found.ptx_archs else [newest]
    if missing:
        raise TargetError(f"{path}: the fatbin lacks {', '.join(missing)} ({found.describe()})")
