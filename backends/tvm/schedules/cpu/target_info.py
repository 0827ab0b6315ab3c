"""What schedule rules need to know about a CPU target: its vector registers and threads."""

from __future__ import annotations

import functools
import os

from tvm.target import Target, codegen


def vector_bits(target: Target) -> int:
    """Width of the target's SIMD registers in bits.

    TVM 0.27's ``llvm_get_vector_width`` answers 512 for every x86 CPU (znver3, haswell, plain
    x86-64), so on x86 the CPU features decide; elsewhere LLVM's answer is used.
    """
    return _vector_bits(str(target))


@functools.lru_cache(maxsize=16)
def _vector_bits(target_json: str) -> int:
    target = Target(target_json)
    triple = str(target.attrs.get("mtriple", "") or "") or str(codegen.llvm_get_system_triple())
    try:
        if triple.startswith(("x86_64", "i386", "i686")):
            if codegen.target_has_features("avx512f", target):
                return 512
            return 256 if codegen.target_has_features("avx", target) else 128
        width = int(codegen.llvm_get_vector_width(target))
    except Exception:  # noqa: BLE001 - targets LLVM does not describe
        width = -1
    return width if width > 0 else 128


def vector_lanes(target: Target, dtype_bits: int = 32) -> int:
    """Lanes of one vector register for elements of ``dtype_bits`` (8 float32 with AVX2)."""
    return max(1, vector_bits(target) // max(dtype_bits, 1))


def thread_count(target: Target) -> int:
    """Threads the compiled kernels will most likely run on, decided at compile time.

    The target's ``num-cores`` when it names one (cross-compiling: the device's count);
    otherwise what nnxc's runtime would take on this machine (``compiler.runtime``):
    TVM_NUM_THREADS or OMP_NUM_THREADS when set, else every core this process may run on. A
    run with another ``--threads`` still works; only the work split was chosen for this count.
    """
    cores = target.attrs.get("num-cores")
    if cores is not None and int(cores) > 0:
        return int(cores)
    for name in ("TVM_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
