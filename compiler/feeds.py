"""Inputs for a run: seeded random arrays matching a model's signature, or arrays from an .npz.

Shared by ``nnxc run`` and ``nnxc bench`` (and the API's ``compiler.bench``), so that the same
seed gives the same inputs everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from compiler.artifact import TensorInfo
from compiler.errors import NnxcError


def random_feeds(
    inputs: Sequence[TensorInfo], seed: int, batch: int | None = None
) -> dict[str, np.ndarray]:
    """One seeded random array per input: floats standard normal, bools 0/1, integers in
    [0, 10) (small enough to be valid indices of most gathers and embeddings).

    ``batch`` gives a symbolic leading dim that size; any other symbolic dim is an error that
    says how to bind it."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for t in inputs:
        shape = list(t.shape)
        if batch is not None and shape and isinstance(shape[0], str):
            shape[0] = batch
        if not all(isinstance(d, int) for d in shape):
            raise NnxcError(
                f"input {t} has symbolic dims: give --inputs, or compile with --input-shape"
            )
        if t.dtype.startswith("float"):
            feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
        elif t.dtype == "bool":
            feeds[t.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[t.name] = rng.integers(0, 10, shape).astype(t.dtype)
    return feeds


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file by name, or one clear error (missing, unreadable)."""
    p = Path(path)
    if not p.is_file():
        raise NnxcError(f"{p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError) as e:
        raise NnxcError(f"{p}: not a readable .npz file ({e})") from None
