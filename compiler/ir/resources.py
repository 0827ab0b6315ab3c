"""The memory check over a whole graph: every static tensor a node makes, every graph input,
and the constants in all, against the compile's memory limit (``compiler.limits``).

Frontends refuse oversized tensors as they build them; this check, run once after the
passes, holds for every format and for what the passes made (one walk over the values).
"""

from __future__ import annotations

from compiler.errors import ResourceLimitError
from compiler.limits import format_size, max_memory

from .graph import Graph, walk
from .types import TensorType, Type


def _nbytes(t: Type) -> int | None:
    if isinstance(t, TensorType) and t.is_static:
        return t.size * t.np_dtype.itemsize
    return None


def check_memory(graph: Graph) -> None:
    """Raise ``ResourceLimitError`` naming the first value over the limit (its node and op,
    type and size), or the constants when together they exceed it."""
    limit = max_memory()

    def over(what: str, t: Type) -> None:
        n = _nbytes(t)
        if n is not None and n > limit:
            raise ResourceLimitError(
                f"{what}: {t} needs {format_size(n)}, over the memory limit of "
                f"{format_size(limit)} (--max-memory)"
            )

    for v in graph.inputs:
        over(f"input {v.name!r}", v.type)
    constants: dict[int, int] = {}
    for node in walk(graph):
        for v in node.inputs:
            if v is not None and v.const is not None:
                constants[id(v)] = v.const.nbytes
        for v in node.outputs:
            over(f"value %{v.name} of {node.op} node {node.name or v.name!r}", v.type)
    for v in graph.outputs:
        if v.const is not None:
            constants[id(v)] = v.const.nbytes
    total = sum(constants.values())
    if total > limit:
        raise ResourceLimitError(
            f"the model's {len(constants)} constants need {format_size(total)} in all, over "
            f"the memory limit of {format_size(limit)} (--max-memory)"
        )
