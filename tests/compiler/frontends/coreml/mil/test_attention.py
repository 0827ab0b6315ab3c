"""MIL scaled_dot_product_attention against PyTorch's, without a mask and with bool and
float masks (broadcast over the batch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coremltools.converters.mil.mil import Builder as mb
from coremlutil import check, ct, save_program

SHAPE_Q, SHAPE_KV, EV = (2, 3, 4, 8), (2, 3, 6, 8), 5


def _sdpa(q, k, v, mask=None) -> np.ndarray:
    t = [torch.from_numpy(a) for a in (q, k, v)]
    m = None if mask is None else torch.from_numpy(mask)
    return F.scaled_dot_product_attention(*t, attn_mask=m).numpy()


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_sdpa_against_torch(tmp_path: Path, mask_kind: str) -> None:
    rng = np.random.default_rng(0)
    q = rng.standard_normal(SHAPE_Q).astype(np.float32)
    k = rng.standard_normal(SHAPE_KV).astype(np.float32)
    v = rng.standard_normal((*SHAPE_KV[:-1], EV)).astype(np.float32)
    mask = None
    if mask_kind == "bool":
        mask = rng.random((4, 6)) < 0.7
        mask[:, 0] = True  # every row keeps a score
    elif mask_kind == "float":
        mask = rng.standard_normal((3, 1, 6)).astype(np.float32)
    specs = [mb.TensorSpec(SHAPE_Q), mb.TensorSpec(SHAPE_KV), mb.TensorSpec(v.shape)]

    @mb.program(input_specs=specs, opset_version=ct.target.iOS18)
    def prog(q, k, v):
        if mask is None:
            return mb.scaled_dot_product_attention(query=q, key=k, value=v)
        return mb.scaled_dot_product_attention(query=q, key=k, value=v, attn_mask=mask)

    path = save_program(prog, tmp_path, target=ct.target.iOS18)
    feeds = {"q": q, "k": k, "v": v}
    check(path, feeds, [_sdpa(q, k, v, mask)], rtol=1e-5, atol=1e-5, tvm=mask_kind != "none")


def test_sdpa_fp16_with_an_input_mask(tmp_path: Path) -> None:
    """An fp16 program computes in float16; the mask may be a model input."""
    rng = np.random.default_rng(1)
    q = rng.standard_normal((1, 4, 8)).astype(np.float32)
    kv = rng.standard_normal((1, 6, 8)).astype(np.float32)
    mask = rng.standard_normal((4, 6)).astype(np.float32)

    @mb.program(
        input_specs=[mb.TensorSpec(q.shape), mb.TensorSpec(kv.shape), mb.TensorSpec(mask.shape)],
        opset_version=ct.target.iOS18,
    )
    def prog(q, kv, mask):
        return mb.scaled_dot_product_attention(query=q, key=kv, value=kv, attn_mask=mask)

    path = save_program(prog, tmp_path, precision="fp16", target=ct.target.iOS18)
    feeds = {"q": q, "kv": kv, "mask": mask}
    check(path, feeds, [_sdpa(q, kv, kv, mask)], rtol=1e-2, atol=1e-2, tvm=False)
