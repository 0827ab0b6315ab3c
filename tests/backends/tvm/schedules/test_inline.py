"""Bounded inlining: a long chain of fused elementwise ops inlines in one measured step
(the per-step measuring was quadratic), and a chain that doubles its code stays bounded."""

from __future__ import annotations

import pytest
import tvm
from tvm import s_tir, te
from tvm.s_tir.dlight.analysis import normalize_prim_func

from backends.tvm.schedules import inline


def _chain(n: int, square: bool = False) -> tvm.tirx.PrimFunc:
    """``n`` elementwise steps over x: add-one steps, or squarings (each reads its producer
    twice, so inlining them all doubles the code per step)."""
    x = te.placeholder((64,), name="x")
    t = x
    for i in range(n):
        t = te.compute((64,), _square(t) if square else _add_one(t), name=f"t{i}")
    return te.create_prim_func([x, t])


def _square(t: te.Tensor):
    return lambda j: t[j] * t[j]


def _add_one(t: te.Tensor):
    return lambda j: t[j] + 1.0


def _inline(func: tvm.tirx.PrimFunc) -> tuple[s_tir.Schedule, list]:
    sch = s_tir.Schedule(func)
    return inline.inline_bounded(sch, normalize_prim_func(sch))


def test_a_long_chain_inlines_without_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[int] = []
    real = inline._inline_measured  # noqa: SLF001

    def spy(sch, blocks):
        measured.append(len(blocks))
        return real(sch, blocks)

    monkeypatch.setattr(inline, "_inline_measured", spy)
    sch, left = _inline(_chain(300))
    assert measured == [1]  # only the output block reached the measured (quadratic) path
    assert len(left) == 1
    assert len(sch.get_child_blocks(sch.get_sblock("root"))) == 1


def test_doubling_code_stays_under_the_bound() -> None:
    sch, left = _inline(_chain(14, square=True))
    assert len(sch.mod.script()) <= inline.MAX_SCRIPT_CHARS
    assert 1 < len(left) < 14  # some squarings inlined, the rest kept as blocks


def test_both_paths_give_the_same_function() -> None:
    func = _chain(40)
    fast, _ = _inline(func)
    sch = s_tir.Schedule(func)
    measured, _ = inline._inline_measured(sch, normalize_prim_func(sch))  # noqa: SLF001
    tvm.ir.assert_structural_equal(fast.mod, measured.mod)
