"""Which outputs of a Relax VM's ``main`` are fresh memory of each call, read from its bytecode.

``Runtime.run`` hands such an output to numpy without a copy: nothing else holds its memory
(TVM's pooled allocator takes it back only once the tensor, and so the numpy array, is freed).
Every other output is copied, since it may be a model input passed through, a constant of the
executable (the same memory every run) or a view of either. The bytecode says which is which
(``as_text`` of the executable, TVM's runtime alone); anything this reader does not recognise
counts as not fresh, so a change of TVM's format costs a copy, never an alias.
"""

from __future__ import annotations

import re
from typing import Any

_CALL = re.compile(r"^\s*call\s+(\S+)\s+in:\s*(.*?)\s*dst:\s*(\S+)\s*$")
_RET = re.compile(r"^\s*ret\s+(\S+)\s*$")
_ALLOC_STORAGE = "vm.builtin.alloc_storage"
_ALLOC_TENSOR = "vm.builtin.alloc_tensor"
_MAKE_TUPLE = "vm.builtin.make_tuple"


def fresh_outputs(module: Any, count: int) -> list[bool]:
    """For each of the ``count`` outputs of ``module``'s ``main`` (a loaded artifact or an
    executable), whether each call allocates it anew; all False where the bytecode cannot be
    read."""
    try:
        text = module["as_text"]()
    except Exception:  # noqa: BLE001 - no such function in this TVM: copy every output
        return [False] * count
    return fresh_in_text(str(text), count)


def fresh_in_text(text: str, count: int) -> list[bool]:
    """``fresh_outputs`` on the text of an executable (``VMExecutable.as_text``)."""
    body = _main_body(text)
    if body is None:
        return [False] * count
    calls: list[tuple[str, list[str], str]] = []
    ret = None
    for line in body:
        if (m := _CALL.match(line)) is not None:
            calls.append((m[1], [a.strip() for a in m[2].split(",") if a.strip()], m[3]))
        elif (m := _RET.match(line)) is not None and ret is None:
            ret = m[1]
        else:
            return [False] * count  # control flow (if, goto) or a format unknown here
    if ret is None or not calls or calls[-1][0] != _MAKE_TUPLE or calls[-1][2] != ret:
        return [False] * count
    returned = calls[-1][1]
    if len(returned) != count:
        return [False] * count
    fresh, seen = [], set()
    for reg in returned:
        fresh.append(reg not in seen and _allocated_here(calls, len(calls) - 1, reg))
        seen.add(reg)
    return fresh


def _main_body(text: str) -> list[str] | None:
    lines = text.splitlines()
    try:
        start = lines.index("@main:") + 1
    except ValueError:
        return None
    end = start
    while end < len(lines) and lines[end].strip():
        end += 1
    return lines[start:end]


def _writer(calls: list[tuple[str, list[str], str]], before: int, reg: str) -> int | None:
    """The index of the last call before ``before`` that writes ``reg``."""
    for i in range(before - 1, -1, -1):
        if calls[i][2] == reg:
            return i
    return None


def _allocated_here(calls: list[tuple[str, list[str], str]], at: int, reg: str) -> bool:
    """``reg`` is a tensor at offset 0 of a storage allocated in this call for it alone."""
    i = _writer(calls, at, reg)
    if i is None or calls[i][0] != _ALLOC_TENSOR or len(calls[i][1]) < 2 or calls[i][1][1] != "i0":
        return False
    storage = calls[i][1][0]
    s = _writer(calls, i, storage)
    if s is None or calls[s][0] != _ALLOC_STORAGE:
        return False
    for name, args, dst in calls[s + 1 :]:
        if name == _ALLOC_TENSOR and args and args[0] == storage and dst != reg:
            return False  # another tensor in the same storage
        if dst == storage:
            break  # the register now holds something else
    return True
