"""The core op set. Importing this package registers every op family."""

from . import control, elementwise, indexing, nn, reduce, tensor  # noqa: F401  (registration)
from .registry import OPS, REQUIRED, Attr, AttrError, OpDef, RegionRunner, define, get_op

__all__ = ["OPS", "REQUIRED", "Attr", "AttrError", "OpDef", "RegionRunner", "define", "get_op"]
