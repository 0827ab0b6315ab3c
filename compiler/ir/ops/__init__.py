"""The core op set. Importing this package registers every op family."""

from . import (  # noqa: F401  (registration)
    control,
    elementwise,
    indexing,
    nn,
    random,
    reduce,
    sequence,
    tensor,
    vision,
)
from .registry import OPS, REQUIRED, Attr, AttrError, OpDef, RegionRunner, define, get_op

__all__ = ["OPS", "REQUIRED", "Attr", "AttrError", "OpDef", "RegionRunner", "define", "get_op"]
