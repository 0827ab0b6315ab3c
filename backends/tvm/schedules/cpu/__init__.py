"""CPU schedule rules: TVM's CPU pipeline schedules nothing, so nnxc brings its own.

``conv_layout`` is the CPU-only legalization of conv2d (weights packed at compile time) that
the conv rules need; ``target_info`` reads the vector width the rules tile for.

Each rule is a ``tvm.s_tir.dlight.ScheduleRule`` (``apply(func, target, tunable)`` returns a
scheduled ``Schedule`` or None when the PrimFunc is not its pattern). ``cpu_rules()`` lists
them in priority order; the first rule that matches a PrimFunc schedules it.
"""

from __future__ import annotations

from tvm.s_tir.dlight import ScheduleRule


def cpu_rules() -> list[ScheduleRule]:
    """The rules applied to every PrimFunc of a CPU build, most specific first."""
    from . import conv, generic, matmul

    return [*conv.RULES, *matmul.RULES, *generic.RULES]
