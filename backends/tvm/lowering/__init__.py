"""Lowering rules from core ops to Relax, one module per op family."""

from . import elementwise, indexing, nn, reduce, tensor, vision  # noqa: F401  (registration)
from .registry import RULES, LowerContext, lowers

__all__ = ["RULES", "LowerContext", "lowers"]
