"""The TVM backend: IR -> Relax (one rule per op) -> LLVM or CUDA code in one shared library."""

from .build import build, export
from .lower import LoweringError, check_supported, lower_graph
from .targets import TargetError, TargetSpec, resolve_target

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
