"""Targets: what ``--target`` names, resolved to a TVM target plus the CUDA archs to ship.

Kept apart from building, the pipeline and tuning, which all need it, so that none of them
imports another for it.

CUDA targets are built ahead of time into one fatbin holding SASS for every arch in
``archs`` and PTX of the newest (so GPUs newer than any listed one JIT-compile that PTX once
at load). ``cuda`` alone ships ``DEFAULT_CUDA_ARCHS``: sm_80 (A100), sm_86 (RTX 30xx, A10),
sm_89 (RTX 40xx, L4, L40) and sm_90 (H100, H200), plus PTX for compute_90 (Blackwell and
later). TVM specialises its TIR to ``target.arch`` (dlight's tensor-core gating, intrinsics),
so the code is generated for the lowest arch shipped and nvcc builds that source for each;
ship ``cuda:sm_90`` alone to get code tuned for Hopper only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import tvm

from compiler.errors import NnxcError


class TargetError(NnxcError):
    """A target name or JSON the backend does not understand, or cannot build for."""


TARGET_ALIASES: dict[str, dict[str, Any]] = {
    "aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu"},
}

DEFAULT_CUDA_ARCHS: tuple[str, ...] = ("sm_80", "sm_86", "sm_89", "sm_90")

KINDS = ("llvm", "cuda")
_ARCH = re.compile(r"sm_(\d{2,3})")


@dataclass(frozen=True)
class TargetSpec:
    """The TVM target as a JSON-able dict, and for CUDA the archs the fatbin holds."""

    config: dict[str, Any]
    archs: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return str(self.config["kind"])

    @property
    def device_type(self) -> str:
        """The runtime's device kind for this target's code: "cpu" or "cuda"."""
        return "cuda" if self.kind == "cuda" else "cpu"

    @property
    def is_host(self) -> bool:
        """Whether the code runs on this process's CPU (never for CUDA targets)."""
        triple = self.config.get("mtriple")
        return self.kind == "llvm" and (triple is None or triple == host_triple())

    def tvm_target(self) -> tvm.target.Target:
        return tvm.target.Target(self.config)

    def to_json(self) -> dict[str, Any]:
        """What the artifact's metadata records: the TVM config, plus ``archs`` for CUDA."""
        return {**self.config, "archs": list(self.archs)} if self.archs else dict(self.config)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TargetSpec:
        """The inverse of ``to_json``; checks nothing, so it needs no compiler (loading)."""
        config = dict(data)
        archs = tuple(config.pop("archs", ()))
        return cls(config, archs)

    def __str__(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def host_triple() -> str:
    return str(tvm.target.codegen.llvm_get_system_triple())


def host_cpu() -> str:
    return str(tvm.target.codegen.llvm_get_system_cpu())


def resolve_target(target: str | dict[str, Any] = "cpu") -> TargetSpec:
    """``cpu`` (LLVM for this host, mcpu detected), an alias (``aarch64``), ``cuda`` (the
    default arch set), ``cuda:sm_80,sm_90``, or a TVM target JSON dict (or its text), where
    a CUDA dict may list its archs under ``archs``. CUDA targets ask nvcc which archs it can
    build (once per process); LLVM targets run no tool."""
    if isinstance(target, dict):
        config = dict(target)
    elif target == "cpu":
        config = {"kind": "llvm", "mcpu": host_cpu()}
    elif target in TARGET_ALIASES:
        config = dict(TARGET_ALIASES[target])
    elif target == "cuda" or target.startswith("cuda:"):
        _, colon, names = target.partition(":")
        config = {"kind": "cuda", "archs": names.split(",")} if colon else {"kind": "cuda"}
    elif target.lstrip().startswith("{"):
        try:
            config = json.loads(target)
        except json.JSONDecodeError as e:
            raise TargetError(f"target JSON does not parse: {e}") from None
    else:
        choices = ", ".join(
            [
                "cpu",
                *TARGET_ALIASES,
                "cuda",
                "cuda:sm_80,sm_90",
                'a JSON dict such as {"kind": "llvm"}',
            ]
        )
        raise TargetError(f"unknown target {target!r}; use one of: {choices}")
    if not isinstance(config, dict) or "kind" not in config:
        raise TargetError(f"target {config!r} needs a 'kind'")
    if config["kind"] not in KINDS:
        raise TargetError(
            f"target kind {config['kind']!r} is not supported; use one of: {', '.join(KINDS)}"
        )
    archs: tuple[str, ...] = ()
    if config["kind"] == "cuda":
        config, archs = _cuda_config(config)
    elif "archs" in config:
        raise TargetError(f"'archs' applies to CUDA targets only, not {config['kind']}")
    try:
        tvm.target.Target(config)
    except Exception as e:  # noqa: BLE001 - TVM raises several kinds
        raise TargetError(f"TVM refuses target {config}: {e}") from None
    return TargetSpec(config, archs)


def _cuda_config(config: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The TVM config (``arch`` = the lowest arch shipped) and the sorted archs, checked
    against what this machine's nvcc can build."""
    config = dict(config)
    listed = config.pop("archs", None)
    if listed is None:
        names = [config["arch"]] if "arch" in config else list(DEFAULT_CUDA_ARCHS)
    elif isinstance(listed, list | tuple) and listed and all(isinstance(a, str) for a in listed):
        names = list(listed)
    else:
        raise TargetError(
            f"'archs' must be a non-empty list of names such as sm_80, not {listed!r}"
        )
    archs = tuple(sorted(set(map(_check_arch_name, names)), key=arch_number))
    if "arch" in config and config["arch"] != archs[0]:
        raise TargetError(
            f"CUDA code is generated for the lowest arch shipped, {archs[0]}, not "
            f"arch {config['arch']!r}: leave 'arch' out or make it {archs[0]}"
        )
    config["arch"] = archs[0]
    from .cuda.toolchain import buildable_archs, find_toolkit

    toolkit = find_toolkit()
    buildable = buildable_archs(toolkit)
    missing = [a for a in archs if a not in buildable]
    if missing:
        raise TargetError(
            f"nvcc {toolkit.version} ({toolkit.nvcc}) cannot build {', '.join(missing)}; it "
            f"builds {', '.join(sorted(buildable, key=arch_number))}"
        )
    return config, archs


def _check_arch_name(name: Any) -> str:
    if not isinstance(name, str) or not _ARCH.fullmatch(name.strip()):
        hint = ""
        if isinstance(name, str) and name.startswith("compute_"):
            hint = f" (ship {name.replace('compute_', 'sm_')}: the newest arch's PTX is added)"
        raise TargetError(
            f"unknown CUDA arch {name!r}: expected sm_NN such as sm_80 or sm_90{hint}"
        )
    return name.strip()


def arch_number(arch: str) -> int:
    """``sm_90`` -> 90: archs compare by number, not as text (sm_100 > sm_90)."""
    return int(arch.split("_")[1])
