"""Inlining injective producers into their consumers, with a bound on code growth."""

from __future__ import annotations

import re

from tvm import s_tir
from tvm.s_tir.dlight.analysis import SBlockInfo

MAX_SCRIPT_CHARS = 60_000
"""Largest function (as TVMScript text) inlining may produce. A producer its consumer reads
twice is copied twice; a chain of them (x**16 as four squarings) doubles the code per step."""


def inline_bounded(
    sch: s_tir.Schedule, blocks: list[SBlockInfo]
) -> tuple[s_tir.Schedule, list[SBlockInfo]]:
    """Like dlight's ``try_inline``, but each inline that could grow the code is tried on a
    copy and kept only while the function stays under ``MAX_SCRIPT_CHARS``. Returns the
    schedule to continue with and the blocks left.

    Measuring means printing the whole function, linear in its size: measuring every inline
    made a chain of a few hundred fused elementwise ops take minutes (quadratic). A producer
    that its one consumer reads once moves into it without copying anything, so
    those are inlined first, unmeasured; the rest (reverse inlining, producers read twice)
    are measured as before."""
    sch = sch.copy()
    blocks = _inline_single_reads(sch, list(blocks))
    return _inline_measured(sch, blocks)


def _inline_single_reads(sch: s_tir.Schedule, blocks: list[SBlockInfo]) -> list[SBlockInfo]:
    """Inline, in place, every producer whose consumers each read it once; the blocks left."""
    left: list[SBlockInfo] = []
    for block in blocks:
        if _read_once(sch, block):
            try:
                sch.compute_inline(block.block_rv)
                continue
            except Exception:  # noqa: BLE001 - not inlinable: TVM says why, we move on
                pass
        left.append(block)
    return left


def _read_once(sch: s_tir.Schedule, block: SBlockInfo) -> bool:
    """Whether ``block`` writes one buffer that one consumer loads at one place (two
    consumers would each get a copy: diamonds in a chain double the code per step)."""
    writes = sch.get(block.block_rv).writes
    consumers = sch.get_consumers(block.block_rv)
    if len(writes) != 1 or len(consumers) != 1:
        return False
    load = re.compile(rf"(?<![\w.]){re.escape(writes[0].source.name)}\[")
    return len(load.findall(str(sch.get(consumers[0]).body))) == 1


def _inline_measured(
    sch: s_tir.Schedule, blocks: list[SBlockInfo]
) -> tuple[s_tir.Schedule, list[SBlockInfo]]:
    """Each inline tried on a copy and kept only while the function stays under the bound.

    An inline refused for size is not tried again. The inlines left for this path copy code
    (producers read twice or by two consumers), so a refusal almost always stands; retrying
    every refused one after each success was quadratic (a chain of 25 fused ``x - relu(x)``
    took 20 s to schedule, 2 s now)."""
    too_big: set[tuple[str, int]] = set()
    progress = True
    while progress:
        progress = False
        for inline in ("compute_inline", "reverse_compute_inline"):
            for i, block in enumerate(blocks):
                if (inline, id(block)) in too_big:
                    continue
                trial = sch.copy()
                try:
                    getattr(trial, inline)(block.block_rv)
                except Exception:  # noqa: BLE001 - not inlinable: TVM says why, we move on
                    continue
                if len(trial.mod.script()) > MAX_SCRIPT_CHARS:
                    too_big.add((inline, id(block)))
                    continue
                sch = trial
                blocks.pop(i)
                progress = True
                break
            if progress:
                break
    return sch, blocks
