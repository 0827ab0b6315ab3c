"""Targets and building: Relax module -> TVM executable, exported as one shared library."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import relax

from compiler.errors import NnxcError


class TargetError(NnxcError):
    """A target name or JSON the backend does not understand."""


TARGET_ALIASES: dict[str, dict[str, Any]] = {
    "aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu"},
}


@dataclass(frozen=True)
class TargetSpec:
    """The TVM target as a JSON-able dict, and whether code runs on this host."""

    config: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.config["kind"])

    @property
    def is_host(self) -> bool:
        triple = self.config.get("mtriple")
        return self.kind == "llvm" and (triple is None or triple == host_triple())

    def tvm_target(self) -> tvm.target.Target:
        return tvm.target.Target(self.config)

    def __str__(self) -> str:
        return json.dumps(self.config, sort_keys=True)


def host_triple() -> str:
    return str(tvm.target.codegen.llvm_get_system_triple())


def host_cpu() -> str:
    return str(tvm.target.codegen.llvm_get_system_cpu())


def resolve_target(target: str | dict[str, Any] = "cpu") -> TargetSpec:
    """``cpu`` (LLVM for this host, mcpu detected), an alias, or a TVM target JSON dict."""
    if isinstance(target, dict):
        config = dict(target)
    elif target == "cpu":
        config = {"kind": "llvm", "mcpu": host_cpu(), "num-cores": 1}
        config.pop("num-cores")
    elif target in TARGET_ALIASES:
        config = dict(TARGET_ALIASES[target])
    elif target.lstrip().startswith("{"):
        try:
            config = json.loads(target)
        except json.JSONDecodeError as e:
            raise TargetError(f"target JSON does not parse: {e}") from None
    else:
        choices = ", ".join(["cpu", *TARGET_ALIASES, 'a JSON dict such as {"kind": "llvm"}'])
        raise TargetError(f"unknown target {target!r}; use one of: {choices}")
    if not isinstance(config, dict) or "kind" not in config:
        raise TargetError(f"target {config!r} needs a 'kind'")
    if config["kind"] != "llvm":
        raise TargetError(f"target kind {config['kind']!r} is not supported yet (only llvm)")
    try:
        tvm.target.Target(config)
    except Exception as e:  # noqa: BLE001 - TVM raises several kinds
        raise TargetError(f"TVM refuses target {config}: {e}") from None
    return TargetSpec(config)


def build(
    mod: tvm.IRModule,
    target: TargetSpec,
    records: str | os.PathLike | None = None,
    precision: str = "fp32",
    cuda_graph: bool = True,
) -> relax.VMExecutable:
    """Compile with nnxc's Relax pipeline for the target (``pipeline.pipeline_for``), applying
    the tuning records in the folder ``records`` (written by ``nnxc tune``) when given, in
    ``precision`` ("fp32", or "fp16" for CUDA), CUDA graphs allowed by ``cuda_graph``."""
    from .pipeline import pipeline_for

    tvm_target = target.tvm_target()
    pipeline = pipeline_for(
        tvm_target, None if records is None else str(records), precision, cuda_graph
    )
    return tvm.compile(mod, target=tvm_target, relax_pipeline=pipeline)


def export(executable: relax.VMExecutable, path: str, target: TargetSpec) -> None:
    """Write the shared library; cross targets need a C compiler for their triple."""
    if target.is_host or platform.machine() in str(target.config.get("mtriple", "")):
        executable.export_library(path)
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
