"""Resource bounds of a compile: how much memory a model may declare, how deep its regions
may nest. Models come from strangers; a model that declares a 10^12-element tensor or nests
thousands of ``If``s must end in one clear error before anything is allocated or the Python
stack runs out, not in the kernel's OOM killer or a ``RecursionError``.

The memory limit holds for the duration of a compile (``memory_limit``), so that frontends,
the IR builder and constant folding read it without every signature carrying it.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from compiler.errors import NnxcError, ResourceLimitError

MAX_REGION_DEPTH = 64
"""Most levels of nested regions (If in If in ...) a model may have: real models nest a few
levels; each level costs the converters and passes a few Python frames."""

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``8G``, ``512M``, ``64K``, ``1.5G`` or plain bytes (powers of 1024; ``B``/``iB``
    suffixes allowed) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise NnxcError(f"--max-memory {text!r}: expected a size such as 8G, 512M or 1048576")
    size = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if size <= 0:
        raise NnxcError(f"--max-memory {text!r}: the limit must be positive")
    return size


def format_size(nbytes: int) -> str:
    """Bytes for people: ``4.0 TiB``, ``512.0 MiB``, ``100 B``."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


@functools.cache
def machine_memory() -> int:
    """This machine's physical memory in bytes (the default limit)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        import psutil

        return int(psutil.virtual_memory().total)


_limit: ContextVar[int | None] = ContextVar("nnxc_max_memory", default=None)


def max_memory() -> int:
    """The limit in force: the one ``memory_limit`` set, else the machine's memory."""
    limit = _limit.get()
    return machine_memory() if limit is None else limit


@contextmanager
def memory_limit(nbytes: int | None) -> Iterator[None]:
    """Hold ``nbytes`` as the limit inside the block (None: the machine's memory)."""
    token = _limit.set(nbytes)
    try:
        yield
    finally:
        _limit.reset(token)


def tensor_bytes(shape: Iterable[int], itemsize: int) -> int:
    """Bytes of a dense tensor, in Python ints (numpy's int64 product wraps around)."""
    return math.prod(int(d) for d in shape) * itemsize


def check_tensor(what: str, shape: Iterable[int], itemsize: int) -> None:
    """Refuse a tensor larger than the limit; ``what`` names it in the one-line message."""
    shape = tuple(shape)
    nbytes = tensor_bytes(shape, itemsize)
    limit = max_memory()
    if nbytes > limit:
        raise ResourceLimitError(
            f"{what} of shape {list(shape)} needs {format_size(nbytes)}, over the memory limit "
            f"of {format_size(limit)} (--max-memory)"
        )


def fits(nbytes: int) -> bool:
    """Whether a tensor of ``nbytes`` stays within the limit."""
    return nbytes <= max_memory()


def check_depth(depth: int, where: str) -> None:
    """Refuse regions nested deeper than ``MAX_REGION_DEPTH``."""
    if depth > MAX_REGION_DEPTH:
        raise ResourceLimitError(
            f"{where}: subgraphs nested more than {MAX_REGION_DEPTH} levels deep; refused"
        )
