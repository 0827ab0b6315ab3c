"""MIL quantize/dequantize and the compressed-weight constexpr_* ops (affine dequantize, LUT,
sparse, blockwise shift-scale)."""

from __future__ import annotations
