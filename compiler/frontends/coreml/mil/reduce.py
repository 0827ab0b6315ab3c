"""MIL reductions and ranking: reduce_*, argmax/argmin, cumsum, topk, argsort."""

from __future__ import annotations
