"""Graph passes and the pass manager.

Importing this package registers the standard passes. ``run_passes`` runs a pipeline
(by default ``default_pipeline()``) through a ``PassManager``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compiler.ir.graph import Graph

from . import (  # noqa: F401  (registration)
    canonicalize,
    constant_folding,
    cse,
    dce,
    fold_batchnorm,
    shape_inference,
    simplify,
)
from .manager import (
    FunctionPass,
    Pass,
    PassError,
    PassManager,
    PassRecord,
    function_pass,
    get_pass,
    register,
    registered_passes,
)
from .shape_inference import ShapeInference

__all__ = [
    "FunctionPass",
    "Pass",
    "PassError",
    "PassManager",
    "PassRecord",
    "ShapeInference",
    "available_passes",
    "default_pipeline",
    "function_pass",
    "get_pass",
    "register",
    "run_passes",
]


def default_pipeline() -> list[str]:
    """The standard pipeline, in order.

    Types first (a frontend may have bound input shapes), then folding so that shape
    computations vanish, then simplification; dce before fold_batchnorm so that dead readers
    do not block a fold; canonicalize last, to a fixed point (cse sees the simplified graph).
    """
    return [
        "shape_inference",
        "constant_folding",
        "simplify",
        "dce",
        "fold_batchnorm",
        "canonicalize",
    ]


def available_passes() -> dict[str, str]:
    """Pass name -> one-line description, for every registered pass."""
    return {name: p.description for name, p in registered_passes().items()}


def run_passes(
    graph: Graph, names: Sequence[str | Pass] | None = None, **options: Any
) -> PassManager:
    """Run ``names`` (default: ``default_pipeline()``) over ``graph`` in place.

    ``options`` are those of ``PassManager`` (verify_each, print_after, time_passes, out);
    the manager is returned so callers can read its ``records`` or ``report()``.
    """
    pm = PassManager(list(names) if names is not None else default_pipeline(), **options)
    pm.run(graph)
    return pm
