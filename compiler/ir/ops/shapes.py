"""Shape arithmetic shared by op definitions: broadcasting, axes, symbolic dims."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Dim, IRTypeError


def broadcast_shapes(*shapes: Sequence[Dim]) -> tuple[Dim, ...]:
    """Numpy-style broadcast of shapes whose entries may be dim names.

    A named dim broadcasts against 1 and against itself; two different names, or a name
    against a size other than 1, are taken to be equal at run time (the name wins).
    """
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        result: Dim = 1
        for d in dims:
            if d == 1:
                continue
            if result == 1:
                result = d
            elif isinstance(result, int) and isinstance(d, int) and result != d:
                raise IRTypeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
            elif isinstance(result, str) and isinstance(d, int):
                result = d
        out.append(result)
    return tuple(out)


def normalize_axis(axis: int, rank: int) -> int:
    """A non-negative axis, checked against the rank."""
    if not -rank <= axis < max(rank, 1):
        raise IRTypeError(f"axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def normalize_axes(axes: Sequence[int], rank: int) -> list[int]:
    out = [normalize_axis(a, rank) for a in axes]
    if len(set(out)) != len(out):
        raise IRTypeError(f"repeated axis in {list(axes)}")
    return out
