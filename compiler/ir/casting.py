"""The numpy semantics of the IR's ``cast``, for every pair of IR dtypes.

Plain numpy ``astype`` (ml_dtypes for the narrow types), except where ONNX says otherwise:

* to the float8 types with ``saturate`` (ONNX's default): finite values beyond the range and
  infinities become the largest finite value of their sign (NaN stays NaN); without it they
  become inf (float8_e5m2) or NaN (the others, which have no inf);
* to float8_e8m0fnu: the float32 exponent field with ``round_mode`` "up" (any fraction rounds
  up), "down" or "nearest", saturating at 2^127 unless ``saturate`` is off; NaN and inf give
  NaN, the sign is dropped (ONNX Cast-24).

Everything else, including the rounding to nearest even of float to narrower float, the
always-saturating float4_e2m1fn, and 4-bit/2-bit ints (a float truncates and becomes 0 when
out of range, an int wraps around), is ml_dtypes' ``astype``.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from .types import dtype

SATURATING = frozenset({"float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"})
"""The dtypes whose cast takes ``saturate`` (others saturate, or wrap, regardless)."""

ROUND_MODES = ("up", "down", "nearest")


def cast_array(x: np.ndarray, to: str, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """``x`` cast to IR dtype ``to`` as the IR's ``cast`` defines it."""
    target = dtype(to)
    with np.errstate(all="ignore"):
        if target == "float8_e8m0fnu":
            return to_e8m0(x, saturate, round_mode)
        if target in SATURATING and saturate and dtype(x.dtype).is_float:
            info = ml_dtypes.finfo(target.np)
            wide = x.astype(np.float32) if x.dtype.itemsize < 4 else x
            x = np.clip(wide, float(info.min), float(info.max))
        return x.astype(target.np)


def to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """ONNX's float8_e8m0fnu conversion: bit arithmetic on the float32 pattern."""
    if round_mode not in ROUND_MODES:
        raise ValueError(f"round_mode {round_mode!r} is not one of {', '.join(ROUND_MODES)}")
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(np.uint32)
    special = exponent == 0xFF
    if round_mode == "up":
        bump = (bits & 0x7FFFFF) != 0
    elif round_mode == "nearest":
        guard = (bits & 0x400000) != 0
        rest = (bits & 0x3FFFFF) != 0
        bump = guard & (rest | (exponent > 0))
    else:
        bump = np.zeros(bits.shape, bool)
    bump &= ~special
    if saturate:
        bump &= exponent != 0xFE
    code = np.where(special, 0xFF, (exponent + bump) & 0xFF).astype(np.uint8)
    return code.view(ml_dtypes.float8_e8m0fnu)
