"""Inlining injective producers into their consumers, with a bound on code growth."""

from __future__ import annotations

from tvm import s_tir
from tvm.s_tir.dlight.analysis import SBlockInfo

MAX_SCRIPT_CHARS = 60_000
"""Largest function (as TVMScript text) inlining may produce. A producer its consumer reads
twice is copied twice; a chain of them (x**16 as four squarings) doubles the code per step."""


def inline_bounded(
    sch: s_tir.Schedule, blocks: list[SBlockInfo]
) -> tuple[s_tir.Schedule, list[SBlockInfo]]:
    """Like dlight's ``try_inline``, but each inline is tried on a copy and kept only while the
    function stays under ``MAX_SCRIPT_CHARS``. Returns the schedule to continue with and the
    blocks left."""
    blocks = list(blocks)
    progress = True
    while progress:
        progress = False
        for inline in ("compute_inline", "reverse_compute_inline"):
            for i, block in enumerate(blocks):
                trial = sch.copy()
                try:
                    getattr(trial, inline)(block.block_rv)
                except Exception:  # noqa: BLE001 - not inlinable: TVM says why, we move on
                    continue
                if len(trial.mod.script()) > MAX_SCRIPT_CHARS:
                    continue
                sch = trial
                blocks.pop(i)
                progress = True
                break
            if progress:
                break
    return sch, blocks
