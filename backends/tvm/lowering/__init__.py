"""Lowering rules from core ops to Relax, one module per op family."""

from . import (  # noqa: F401  (registration)
    elementwise,
    indexing,
    nn,
    random,
    reduce,
    sequence,
    tensor,
    vision,
)
from .registry import RULES, LowerContext, lowers

__all__ = ["RULES", "LowerContext", "lowers"]
