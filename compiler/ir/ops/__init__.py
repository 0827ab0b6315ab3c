"""The core op set. Importing this package registers every op family."""

from . import elementwise, indexing, nn, reduce, tensor, vision  # noqa: F401  (registration)
from .registry import OPS, REQUIRED, Attr, AttrError, OpDef, define, get_op

__all__ = ["OPS", "REQUIRED", "Attr", "AttrError", "OpDef", "define", "get_op"]
