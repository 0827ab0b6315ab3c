"""(being written)"""

from .registry import NodeContext, converter  # noqa: F401
