"""The TVM backend: IR -> Relax (one rule per op) -> LLVM code in one shared library."""

from .build import TargetError, TargetSpec, build, export, resolve_target
from .lower import LoweringError, check_supported, lower_graph

__all__ = [
    "LoweringError",
    "TargetError",
    "TargetSpec",
    "build",
    "check_supported",
    "export",
    "lower_graph",
    "resolve_target",
]
