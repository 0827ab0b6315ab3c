"""Building: Relax module -> TVM executable, exported as one shared library."""

from __future__ import annotations

import os
import platform

import tvm
from tvm import relax

from .targets import TargetError, TargetSpec


def build(
    mod: tvm.IRModule,
    target: TargetSpec,
    records: str | os.PathLike | None = None,
    precision: str = "fp32",
    cuda_graph: bool = True,
) -> relax.VMExecutable:
    """Compile with nnxc's Relax pipeline for the target (``pipeline.pipeline_for``), applying
    the tuning records in the folder ``records`` (written by ``nnxc tune``) when given, in
    ``precision`` ("fp32", or "fp16" for CUDA), CUDA graphs allowed by ``cuda_graph``. CUDA
    kernels are built by nvcc into a fatbin for the target's archs (``cuda.codegen``)."""
    from .pipeline import pipeline_for

    tvm_target = target.tvm_target()
    pipeline = pipeline_for(
        tvm_target, None if records is None else str(records), precision, cuda_graph
    )
    if target.kind != "cuda":
        return tvm.compile(mod, target=tvm_target, relax_pipeline=pipeline)
    from .cuda.codegen import check_executable, cuda_codegen

    with cuda_codegen(target):
        executable = tvm.compile(mod, target=tvm_target, relax_pipeline=pipeline)
    check_executable(executable.mod)
    return executable


def export(executable: relax.VMExecutable, path: str, target: TargetSpec) -> None:
    """Write the shared library; cross targets need a C compiler for their triple. A CUDA
    library (host code built by the system C compiler) is checked to hold a fatbin with every
    arch of the target and no CUDA source."""
    if target.kind == "cuda":
        from .cuda.codegen import check_library, cuda_modules

        executable.export_library(path)
        check_library(path, target, has_kernels=bool(cuda_modules(executable.mod)))
        return
    if target.is_host or platform.machine() in str(target.config.get("mtriple", "")):
        from .packing import incbin_available, pack_imports

        packer = pack_imports if incbin_available() else None  # fewer copies of the weights
        executable.export_library(path, fpack_imports=packer)
        return
    triple = str(target.config["mtriple"])
    from tvm.support import cc

    compiler = f"{triple}-gcc"
    if not _which(compiler):
        raise TargetError(
            f"exporting for {triple} needs the cross compiler {compiler} on PATH "
            "(e.g. apt-get install gcc-aarch64-linux-gnu)"
        )
    try:
        executable.export_library(path, fcompile=cc.cross_compiler(compiler))
    except RuntimeError as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        detail = next(
            (line for line in lines if "error" in line.lower()), lines[-1] if lines else ""
        )
        raise TargetError(f"the cross compiler {compiler} failed: {detail.strip()}") from e


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None
