"""MIL control flow and lists through IR regions: cond, while_loop, make_list/list_*."""

from __future__ import annotations
