"""Random ops: uniform and normal samples from a counter-based generator.

Element i of the output is a function of (seed, i) alone: a 32-bit keyed hash of the flat
index (two rounds of Wellons' ``lowbias32`` with the key mixed in), so a kernel computes
every element independently and a given seed gives the same tensor in the reference and
in compiled code (normal samples up to the rounding of log/cos/sqrt). Bernoulli and
Multinomial are built from ``random_uniform`` by the frontend.

``seed`` None means "unseeded": the op is then not a function of its inputs, so it is never
constant-folded nor merged with an equal node; the reference draws fresh entropy on each
evaluation and the TVM lowering draws one key per compiled kernel.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..types import FLOAT_DTYPES, IRTypeError, TensorType
from .registry import Attr, define

M1, M2 = 0x7FEB352D, 0x846CA68B
"""The multipliers of lowbias32 (Chris Wellons' hash-prospector)."""
GOLDEN = 0x9E3779B9
NORMAL_STREAM = 0x5BD1E995
"""XORed into the key for the second uniform of a Box-Muller pair."""


def lowbias32(x: np.ndarray) -> np.ndarray:
    """One round of the hash on uint32 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(M1)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(M2)
    return x ^ (x >> np.uint32(16))


def seed_key(seed: float | None) -> int:
    """The 32-bit key of a seed: its float64 bits folded and hashed; None draws one."""
    if seed is None:
        return secrets.randbits(32)
    bits = int(np.array(seed, np.float64).view(np.uint64))
    folded = np.array([(bits ^ (bits >> 32)) & 0xFFFFFFFF], np.uint32)
    return int(lowbias32(folded)[0])


def hash_index(index: np.ndarray, key: int) -> np.ndarray:
    """uint32 hash of each flat index under ``key``."""
    x = (index.astype(np.uint32) ^ np.uint32(key)) * np.uint32(GOLDEN)
    x = lowbias32(x) + np.uint32(key)
    return lowbias32(x)


def uniform_bits(dtype: str) -> int:
    """How many hash bits make a uniform in [0, 1) that the dtype holds exactly."""
    return {"float16": 11, "float32": 24, "float64": 32}[dtype]


def unit_uniform(index: np.ndarray, key: int, dtype: str) -> np.ndarray:
    """Uniform samples in [0, 1): the hash's top bits times 2**-bits (exact in ``dtype``)."""
    bits = uniform_bits(dtype)
    h = hash_index(index, key) >> np.uint32(32 - bits)
    return h.astype(dtype) * np.asarray(2.0**-bits, dtype)


def _shape(in_types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple:
    like = in_types[0] if in_types else None
    return tuple(like.shape) if like is not None else tuple(attrs["shape"])


def _infer(in_types: Sequence[TensorType | None], attrs: dict[str, Any]) -> TensorType:
    if attrs["dtype"] not in FLOAT_DTYPES:
        raise IRTypeError(f"random samples must be float, not {attrs['dtype']}")
    like = in_types[0] if in_types else None
    if like is None and any(d < 0 for d in attrs["shape"]):
        raise IRTypeError(f"random shape {attrs['shape']} has a negative dim")
    return TensorType(attrs["dtype"], _shape(in_types, attrs))


def _flat_index(xs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    like = xs[0] if xs else None
    shape = like.shape if like is not None else tuple(attrs["shape"])
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def _uniform_reference(xs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    dtype = attrs["dtype"]
    u = unit_uniform(_flat_index(xs, attrs), seed_key(attrs["seed"]), dtype)
    low, high = np.asarray(attrs["low"], dtype), np.asarray(attrs["high"], dtype)
    return (low + (high - low) * u).astype(dtype)


def box_muller_dtype(dtype: str) -> str:
    """float16 samples are computed in float32 and rounded."""
    return "float32" if dtype == "float16" else dtype


def _normal_reference(xs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    dtype = attrs["dtype"]
    work = box_muller_dtype(dtype)
    index = _flat_index(xs, attrs)
    key = seed_key(attrs["seed"])
    u1 = unit_uniform(index, key, work)
    u2 = unit_uniform(index, key ^ NORMAL_STREAM, work)
    one, two = np.asarray(1, work), np.asarray(-2, work)
    z = np.sqrt(two * np.log(one - u1)) * np.cos(np.asarray(2 * np.pi, work) * u2)
    return (np.asarray(attrs["mean"], work) + np.asarray(attrs["scale"], work) * z).astype(dtype)


def is_seeded(attrs: dict[str, Any]) -> bool:
    return attrs.get("seed") is not None


_COMMON = {
    "shape": Attr("ints", [], doc="the output shape when there is no `like` input"),
    "dtype": Attr("dtype", "float32"),
    "seed": Attr("float?", None, doc="None: unseeded, a fresh key per kernel / evaluation"),
}

define(
    "random_uniform",
    inputs=["like?"],
    attrs={**_COMMON, "low": Attr("float", 0.0), "high": Attr("float", 1.0)},
    infer=_infer,
    reference=_uniform_reference,
    foldable=is_seeded,
    reads_values=False,
    doc="Uniform samples in [low, high); shape of `like` (its values unread) or `shape`.",
)

define(
    "random_normal",
    inputs=["like?"],
    attrs={**_COMMON, "mean": Attr("float", 0.0), "scale": Attr("float", 1.0)},
    infer=_infer,
    reference=_normal_reference,
    foldable=is_seeded,
    reads_values=False,
    doc="Normal samples (Box-Muller of two hashed uniforms); shape of `like` or `shape`.",
)
