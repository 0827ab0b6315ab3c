"""A corpus of small PyTorch modules converted by ``ct.convert``, covering the ops real models
use beyond the whole models of ``test_models.py``: each module is traced, converted to a
NeuralNetwork (``.mlmodel``), a float32 ML Program of the default target and one for iOS18
(later op revisions, fused attention), compiled by nnxc and compared with PyTorch's outputs to
1e-4 of each output's scale. Related ops share one module (one TVM build each), converted once
per session. Also: flexible inputs (ranges, enumerated shapes) run at several sizes, image
inputs (BGR, grayscale, float16 grayscale) with classifier labels, int32 token ids, scripted
control flow, and weight-compressed ML Programs checked against coremltools' decompression.

Ops that coremltools 9 (with torch 2.13) cannot convert, or not to the NeuralNetwork flavour,
are left out with a comment where they would be. With torch 2.13, sizes read from
``x.shape`` in a traced module make coremltools fail (an int() of a 1-element array), so the
modules use constant sizes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the modules are converted from PyTorch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import compiler  # noqa: E402
from compiler.errors import InputError  # noqa: E402

logging.getLogger("coremltools").setLevel(logging.ERROR)
import coremltools as ct  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:Output, .* has been renamed:UserWarning"),
]

TOLERANCE = 1e-4
"""Largest error allowed, relative to the largest magnitude of each output."""

FLAVOURS = ("mlmodel", "mlpackage", "mlpackage-ios18")
"""A NeuralNetwork, an ML Program of coremltools' default target (iOS15 ops) and one for iOS18
(the ops' later revisions, and fused ops such as scaled_dot_product_attention)."""


class Fn(nn.Module):
    """A module computing ``fn`` of its inputs (with ``parts``' weights, if any)."""

    def __init__(self, fn: Callable[..., Any], **parts: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.parts = nn.ModuleDict(parts)

    def forward(self, *xs: Any) -> Any:
        return self.fn(self.parts, *xs) if len(self.parts) else self.fn(*xs)


@dataclass
class Case:
    module: nn.Module
    inputs: dict[str, np.ndarray]


def _rand(*shape: int, lo: float = -1.0, hi: float = 1.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def _interpolations(x: Any) -> tuple[Any, ...]:
    return (
        F.interpolate(x, scale_factor=2, mode="nearest"),
        F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
        F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True),
        F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=False),
        F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True),
        F.interpolate(x, size=(8, 12), mode="nearest"),
    )


def _activations(x: Any, prelu: nn.Module) -> Any:
    return torch.cat(
        [
            torch.clamp(x, -0.5, 0.7),
            F.hardtanh(x, -0.3, 0.4),
            F.hardswish(x * 4),
            F.hardsigmoid(x * 4),
            F.silu(x),
            F.mish(x),
            F.gelu(x, approximate="tanh"),
            F.gelu(x),
            F.elu(x, alpha=0.7),
            F.leaky_relu(x, 0.1),
            F.softplus(x),
            prelu(x),
            torch.sigmoid(x),
            torch.tanh(x),
            F.relu6(x * 8),
        ],
        dim=1,
    )


def _unary(x: Any) -> Any:
    pos = x.abs() + 0.5
    return torch.cat(
        [
            torch.exp(x),
            torch.log(pos),
            torch.sqrt(pos),
            torch.rsqrt(pos),
            torch.pow(pos, 1.7),
            x**2,
            torch.abs(x),
            torch.sin(x),
            torch.cos(x),
            torch.erf(x),
            torch.reciprocal(pos),
            torch.floor(x * 3),
            torch.ceil(x * 3),
            torch.sign(x),
        ],
        dim=1,
    )


def _comparisons(x: Any, y: Any) -> Any:
    return torch.cat(
        [
            (x > y).float(),
            (x >= y).float(),
            (x < y).float(),
            (x <= 0.2).float(),
            (x == torch.round(x)).float(),
            (x != y).float(),
            torch.maximum(x, y),
            torch.minimum(x, y),
        ],
        dim=1,
    )


def _reductions(x: Any) -> tuple[Any, ...]:
    return (
        x.mean(dim=(2, 3)),
        x.sum(dim=1, keepdim=True),
        x.amax(dim=-1),
        x.amin(dim=2),
        x.max(dim=1)[0],
        # torch.prod: coremltools has no converter for it.
        torch.norm(x, dim=1),
        torch.linalg.vector_norm(x, ord=1, dim=-1),
        x.logsumexp(dim=1),
    )


def _reshapes(x: Any) -> tuple[Any, ...]:
    a, b = torch.split(x, [1, 3], dim=1)
    c, d = torch.chunk(x, 2, dim=-1)
    return (
        torch.cat([b, a], dim=1),
        torch.stack([c, d], dim=2),
        x.permute(0, 2, 3, 1),
        x.transpose(1, 3),
        torch.flatten(x, 1),
        x.unflatten(1, (2, 2)),
        x.reshape(1, -1, 5),
        x.squeeze(0).unsqueeze(-1),
    )


def _indexing(x: Any) -> tuple[Any, ...]:
    idx = torch.tensor([3, 0, 2])
    gidx = torch.tensor([[[0, 2, 1, 4, 3]] * 6] * 4).unsqueeze(0)
    return (
        torch.index_select(x, 3, idx),
        torch.gather(x, 3, gidx),
        x[:, 1:4:2, ::2, 1:],
        x[..., -1],
        # Negative slice steps: coremltools refuses them ("step must be greater than zero").
        torch.flip(x, [2]),
        x[0, 2],
    )


def _sorting(x: Any) -> tuple[Any, ...]:
    values, indices = torch.topk(x, 3, dim=-1)
    small, _ = torch.topk(x, 2, dim=1, largest=False)
    ordered, order = torch.sort(x, dim=-1, descending=True)
    return values, indices, small, x.argmax(dim=-1), x.argmin(dim=1), ordered, order


def _selection(x: Any, y: Any) -> tuple[Any, ...]:
    return (
        torch.cumsum(x, dim=-1),
        torch.cumsum(x, dim=1),
        torch.where(x > y, x, y * 2),
        x.masked_fill(x < 0, -3.0),
        torch.where(x > 0, x, torch.zeros_like(x)),
    )


def _products(x: Any, y: Any, w: Any) -> tuple[Any, ...]:
    return (
        torch.matmul(x, y),
        torch.bmm(x, y),
        torch.einsum("bij,bjk->bik", x, y),
        torch.einsum("bij,bkj->bik", x, x),
        torch.matmul(x, w),
    )


def _broadcasts(x: Any) -> tuple[Any, ...]:
    return (
        x.expand(3, 4, 5),
        x.repeat(2, 3, 1),
        x.expand(2, -1, -1) * 2,
    )


def _softmaxes(x: Any) -> tuple[Any, ...]:
    return (
        F.softmax(x, dim=-1),
        F.softmax(x, dim=1),
        F.log_softmax(x, dim=-1),
    )


def _pads(x: Any) -> tuple[Any, ...]:
    return (
        F.pad(x, (1, 2, 2, 1), mode="reflect"),
        F.pad(x, (1, 2, 2, 1), mode="replicate"),
        F.pad(x, (1, 2, 2, 1), mode="constant", value=0.5),
        F.pad(x, (0, 0, 1, 0), mode="constant"),
    )


def _more_activations(x: Any) -> Any:
    return torch.cat(
        [
            F.glu(x, dim=1),
            # F.logsigmoid: coremltools has no converter for it.
            F.softsign(x),
            F.selu(x),
            # F.celu: coremltools has no converter for it.
            F.threshold(x, 0.2, -1.0),
            F.tanhshrink(x),
            # F.hardshrink, F.softshrink: coremltools has no converters for them.
            torch.clamp_min(x, 0.1),
            torch.clamp(x, max=0.3),
        ],
        dim=1,
    )


def _statistics(x: Any, m: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return (
        x.var(dim=-1),
        x.std(dim=(1, 2), keepdim=True),
        F.normalize(x, dim=1),
        x.mean(),
        torch.addmm(m, a, b),
        torch.baddbmm(x[:, :, :4], x, x.transpose(1, 2)[:, :, :4] * 0.5, alpha=0.5),
    )


def _arithmetic(x: Any, y: Any) -> tuple[Any, ...]:
    # Sizes from x.shape fail in coremltools (an int() of a 1-element array): constants.
    causal = torch.triu(torch.ones(5, 6), diagonal=1).bool()
    return (
        torch.roll(x, 2, dims=-1),
        torch.remainder(x * 5, 1.5),
        torch.floor_divide(x * 5, 1.5),
        x.masked_fill(causal, float("-inf")).softmax(-1),
        x + torch.arange(6, dtype=torch.float32),
        # torch.fmod: coremltools has no converter for it.
        x / (y.abs() + 0.5) - y,
    )


def _scatters(x: Any, y: Any) -> tuple[Any, ...]:
    idx = torch.tensor([[2, 0, 1, 3, 4], [1, 2, 0, 4, 3], [0, 1, 2, 3, 4]])
    put = x.clone()
    put[:, 1] = y[:, 0]
    rows = x.clone()
    rows[1:3] = 0.5
    return (
        torch.scatter(x, 1, idx, y),
        torch.scatter_add(x, 1, idx, y),
        put,
        rows,
        torch.narrow(x, 1, 1, 3),
        x.select(1, 2),
    )


def _logic(x: Any, y: Any) -> tuple[Any, ...]:
    a, b = x > 0, y > 0.2
    return (
        # The operators &, |, ^ on bools: coremltools has no converters (the functions work).
        torch.logical_and(a, b).float(),
        torch.logical_or(a, b).float(),
        torch.logical_xor(a, b).float(),
        torch.logical_not(a).float(),
        a.any(dim=1).float(),
        a.all(dim=-1).float(),
        torch.clamp(x, min=y - 0.5, max=y + 0.5),
        x.int().float(),
        torch.round(x * 3),
        # torch.trunc: coremltools has no converter for it.
        torch.flip(torch.cumsum(torch.flip(x, [1]), 1), [1]),
        torch.argsort(x, dim=1).float(),
    )


def _sdpa(q: Any, k: Any, v: Any) -> tuple[Any, ...]:
    mask = torch.tensor([[True, False, True, True, False, True]]).expand(5, 6)
    return (
        F.scaled_dot_product_attention(q, k, v),
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
    )


def _cases() -> dict[str, Callable[[], Case]]:
    """Each case's module and inputs, built on demand (seeded weights)."""

    def conv1d() -> Case:
        parts = {
            "plain": nn.Conv1d(4, 6, 3, padding=1),
            "dilated": nn.Conv1d(4, 6, 3, dilation=2, stride=2),
            "grouped": nn.Conv1d(4, 6, 3, groups=2, padding=2),
            "transposed": nn.ConvTranspose1d(4, 3, 3, stride=2, padding=1, output_padding=1),
        }
        m = Fn(lambda p, x: tuple(p[k](x) for k in p), **parts)
        return Case(m, {"x": _rand(1, 4, 11)})

    def conv2d() -> Case:
        parts = {
            "dilated": nn.Conv2d(4, 6, 3, dilation=2, padding=2),
            "grouped": nn.Conv2d(4, 6, 3, groups=2, stride=2, padding=1),
            "depthwise": nn.Conv2d(4, 4, 3, groups=4, bias=False),
            "asymmetric": nn.Conv2d(4, 2, (1, 3), stride=(2, 1), padding=(0, 1)),
            "transposed": nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
            "transposed_grouped": nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2),
        }
        m = Fn(lambda p, x: tuple(p[k](x) for k in p), **parts)
        return Case(m, {"x": _rand(1, 4, 7, 8)})

    def conv3d() -> Case:
        parts = {
            "plain": nn.Conv3d(2, 3, 3, padding=1),
            "strided": nn.Conv3d(2, 4, (1, 3, 3), stride=(1, 2, 2), groups=2),
        }
        m = Fn(lambda p, x: tuple(p[k](x) for k in p), **parts)
        return Case(m, {"x": _rand(1, 2, 4, 5, 6)})

    def pools() -> Case:
        def fn(x: Any) -> tuple[Any, ...]:
            return (
                F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
                F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=True),
                # ceil_mode with count_include_pad=True: Core ML's divisor for a last window
                # hanging past the input is unspecified (coremltools#2772), nnxc refuses it.
                F.avg_pool2d(x, 2, stride=2, ceil_mode=True, count_include_pad=False),
                F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                F.max_pool2d(x, 3, stride=2, ceil_mode=True),
                F.max_pool2d(x, 3, stride=1, padding=1),
                F.adaptive_avg_pool2d(x, 1),
                F.adaptive_max_pool2d(x, 1),
                F.avg_pool1d(x.flatten(2), 4, stride=3),
            )

        # AdaptiveAvgPool2d to a size that does not divide the input: coremltools refuses it.
        return Case(Fn(fn), {"x": _rand(1, 3, 7, 9)})

    def adaptive_pool() -> Case:
        return Case(Fn(lambda x: F.adaptive_avg_pool2d(x, (2, 3))), {"x": _rand(1, 3, 8, 9)})

    def norms() -> Case:
        parts = {
            "group": nn.GroupNorm(2, 4),
            "instance": nn.InstanceNorm2d(4, affine=True),
            "instance_plain": nn.InstanceNorm2d(4),
            "layer": nn.LayerNorm(6),
            "layer2d": nn.LayerNorm([5, 6]),
            "batch": nn.BatchNorm2d(4),
        }
        for p in parts.values():
            for name, t in p.named_parameters():
                t.data = torch.rand_like(t) + (0.5 if name == "weight" else -0.5)
        parts["batch"].running_mean.uniform_(-1, 1)
        parts["batch"].running_var.uniform_(0.5, 2)
        m = Fn(lambda p, x: tuple(p[k](x) for k in p), **parts).eval()
        return Case(m, {"x": _rand(1, 4, 5, 6, lo=-2, hi=3)})

    def recurrent() -> Case:
        parts = {
            "gru": nn.GRU(4, 5, batch_first=True),
            "rnn": nn.RNN(4, 3, num_layers=2),
            "relu_rnn": nn.RNN(3, 3, nonlinearity="relu"),
        }

        def fn(p: Any, x: Any) -> tuple[Any, ...]:
            out, h = p["gru"](x)
            # Two RNNs reading one input: coremltools names two NN layers alike and fails.
            seq = p["rnn"](x.transpose(0, 1))[0]
            return out, h, seq, p["relu_rnn"](seq)[0]

        return Case(Fn(fn, **parts), {"x": _rand(1, 6, 4)})

    def lstm_states() -> Case:
        parts = {"lstm": nn.LSTM(4, 5, num_layers=2, batch_first=True)}

        def fn(p: Any, x: Any, h: Any, c: Any) -> tuple[Any, ...]:
            out, (h, c) = p["lstm"](x, (h, c))
            return out, h, c

        inputs = {"x": _rand(1, 6, 4), "h": _rand(2, 1, 5, seed=1), "c": _rand(2, 1, 5, seed=2)}
        return Case(Fn(fn, **parts), inputs)

    def bidirectional_states() -> Case:
        parts = {
            "gru": nn.GRU(4, 3, num_layers=2, bidirectional=True, batch_first=True),
            "lstm": nn.LSTM(4, 5, bidirectional=True),
        }

        def fn(p: Any, x: Any, h: Any, lh: Any, lc: Any) -> tuple[Any, ...]:
            out, h = p["gru"](x, h)
            seq, (lh, lc) = p["lstm"](x.transpose(0, 1) * 2, (lh, lc))
            return out, h, seq, lh, lc

        inputs = {
            "x": _rand(1, 6, 4),
            "h": _rand(4, 1, 3, seed=1),
            "lh": _rand(2, 1, 5, seed=2),
            "lc": _rand(2, 1, 5, seed=3),
        }
        return Case(Fn(fn, **parts), inputs)

    def bidirectional_gru() -> Case:
        gru = nn.GRU(4, 3, bidirectional=True)
        return Case(Fn(lambda p, x: p["gru"](x)[0], gru=gru), {"x": _rand(5, 1, 4)})

    # nn.MultiheadAttention: with torch 2.13, coremltools fails on its trace (an int() of a
    # 1-element shape; with batch_first, the _native_multi_head_attention fast path).

    def sdpa() -> Case:
        inputs = {
            "q": _rand(1, 2, 5, 8),
            "k": _rand(1, 2, 6, 8, seed=1),
            "v": _rand(1, 2, 6, 4, seed=2),
        }
        return Case(Fn(_sdpa), inputs)

    def causal_sdpa() -> Case:
        def fn(q: Any) -> Any:
            return F.scaled_dot_product_attention(q, q * 0.5, q, is_causal=True)

        return Case(Fn(fn), {"q": _rand(1, 2, 5, 8)})

    def resampling() -> Case:
        def fn(x: Any) -> tuple[Any, ...]:
            # pixel_unshuffle needs iOS16: in resampling_ios16.
            return (F.pixel_shuffle(x, 2), *_interpolations(x))

        return Case(Fn(fn), {"x": _rand(1, 4, 4, 6)})

    def resampling_ios16() -> Case:
        def fn(x: Any, grid: Any) -> tuple[Any, ...]:
            return (
                F.pixel_unshuffle(x, 2),
                F.grid_sample(x, grid, align_corners=False),
                F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=True),
                F.grid_sample(x, grid * 1.2, padding_mode="reflection", align_corners=False),
            )

        inputs = {"x": _rand(1, 2, 6, 4), "grid": _rand(1, 5, 3, 2, lo=-1.1, hi=1.1, seed=1)}
        return Case(Fn(fn), inputs)

    def patches() -> Case:
        def fn(x: Any) -> tuple[Any, ...]:
            cols = F.unfold(x, 3, stride=2, padding=1)
            return (
                cols,
                F.fold(cols[:, :8], (6, 4), 2, stride=2),
                F.interpolate(x, size=(3, 2), mode="area"),
                F.interpolate(x.flatten(2), scale_factor=2, mode="linear"),
                F.lp_pool2d(x, 2, 2),
                torch.tril(x) + torch.triu(x, 1) * 2,
            )

        return Case(Fn(fn), {"x": _rand(1, 2, 6, 4)})

    def trigonometry() -> Case:
        def fn(x: Any) -> Any:
            half = x * 0.5
            return torch.cat(
                [
                    torch.tan(x),
                    torch.atan(x),
                    torch.asin(half),
                    torch.acos(half),
                    torch.sinh(x),
                    torch.cosh(x),
                    # torch.asinh: coremltools fails on it (its builder has no asinh).
                    torch.atanh(half),
                    torch.atan2(x, x + 1.5),
                    torch.log2(x.abs() + 1),
                    torch.log10(x.abs() + 1),
                    torch.log1p(x.abs()),
                    torch.expm1(x),
                    torch.exp2(x),
                ],
                dim=1,
            )

        return Case(Fn(fn), {"x": _rand(1, 2, 3, 4)})

    def pads() -> Case:
        return Case(Fn(_pads), {"x": _rand(1, 2, 4, 5)})

    def reshapes() -> Case:
        return Case(Fn(_reshapes), {"x": _rand(1, 4, 5, 6)})

    def windows_partition() -> Case:
        def fn(x: Any) -> tuple[Any, ...]:
            # Swin's window partition and its inverse, batch dim left out: Core ML tensors
            # have rank <= 5 (coremltools refuses rank 6 and 7).
            w = x.reshape(2, 3, 2, 2, 4).permute(0, 2, 1, 3, 4).reshape(-1, 3 * 2, 4)
            back = w.reshape(2, 2, 3, 2, 4).permute(0, 2, 1, 3, 4).reshape(6, 4, 4)
            return w, back + x, x.reshape(2, 3, 2, 2, 4).sum(dim=(1, 3))

        return Case(Fn(fn), {"x": _rand(6, 4, 4)})

    def indexing() -> Case:
        return Case(Fn(_indexing), {"x": _rand(1, 4, 6, 5)})

    def sorting() -> Case:
        # Distinct values: ties would let indices differ.
        x = np.random.default_rng(3).permutation(60).astype(np.float32).reshape(1, 4, 15) / 7
        return Case(Fn(_sorting), {"x": x})

    def selection() -> Case:
        return Case(Fn(_selection), {"x": _rand(2, 3, 5), "y": _rand(2, 3, 5, seed=1)})

    def activations() -> Case:
        m = Fn(lambda p, x: _activations(x, p["prelu"]), prelu=nn.PReLU(3, 0.2))
        return Case(m, {"x": _rand(1, 3, 4, 5, lo=-3, hi=3)})

    def unary() -> Case:
        return Case(Fn(_unary), {"x": _rand(1, 3, 4, 5, lo=-2, hi=2)})

    def comparisons() -> Case:
        x = np.round(_rand(1, 3, 4, 5, lo=-2, hi=2) * 2) / 2
        return Case(Fn(_comparisons), {"x": x, "y": np.round(_rand(1, 3, 4, 5, seed=1))})

    def reductions() -> Case:
        return Case(Fn(_reductions), {"x": _rand(1, 4, 5, 6)})

    def products() -> Case:
        w = torch.from_numpy(_rand(5, 3, seed=2))
        inputs = {"x": _rand(2, 4, 5), "y": _rand(2, 5, 3, seed=1)}
        return Case(Fn(lambda x, y: _products(x, y, w)), inputs)

    def more_windows() -> Case:
        parts = {
            "same": nn.Conv2d(2, 3, 3, padding="same"),
            "same_dilated": nn.Conv2d(2, 2, 3, padding="same", dilation=2, bias=False),
        }

        def fn(p: Any, x: Any) -> tuple[Any, ...]:
            line = x.flatten(2)
            return (
                p["same"](x),
                p["same_dilated"](x),
                F.max_pool1d(line, 3, stride=2),
                F.adaptive_avg_pool1d(line, 5),
                # A fractional bilinear scale (1.5): coremltools refuses it.
                F.interpolate(x, scale_factor=3, mode="nearest"),
                # Nearest resizing by a fractional factor: coremltools makes it a bilinear
                # NeuralNetwork upsample (it warns), another function than PyTorch's.
            )

        return Case(Fn(fn, **parts), {"x": _rand(1, 2, 6, 5)})

    def windows3d() -> Case:
        parts = {"transposed": nn.ConvTranspose3d(2, 3, 2, stride=2)}

        def fn(p: Any, x: Any) -> tuple[Any, ...]:
            return (
                p["transposed"](x),
                F.max_pool3d(x, 2),
                F.avg_pool3d(x, (1, 2, 2), stride=(1, 2, 2)),
                # adaptive_avg_pool3d: coremltools has no converter for it.
            )

        return Case(Fn(fn, **parts), {"x": _rand(1, 2, 4, 4, 6)})

    def more_activations() -> Case:
        return Case(Fn(_more_activations), {"x": _rand(1, 4, 3, 5, lo=-2, hi=2)})

    def statistics() -> Case:
        inputs = {
            "x": _rand(2, 4, 6),
            "m": _rand(3, 5, seed=1),
            "a": _rand(3, 4, seed=2),
            "b": _rand(4, 5, seed=3),
        }
        return Case(Fn(_statistics), inputs)

    def arithmetic() -> Case:
        return Case(
            Fn(_arithmetic), {"x": _rand(1, 5, 6, lo=-2, hi=2), "y": _rand(1, 5, 6, seed=1)}
        )

    def more_norms() -> Case:
        parts = {
            "batch1d": nn.BatchNorm1d(4),
            "batch_flat": nn.BatchNorm1d(4 * 5),
            "lrn": nn.LocalResponseNorm(3, alpha=0.1, beta=0.75, k=1.5),
            "channel_last": nn.LayerNorm(4),
        }
        for p in (parts["batch1d"], parts["batch_flat"]):
            p.running_mean.uniform_(-1, 1)
            p.running_var.uniform_(0.5, 2)

        def fn(p: Any, x: Any) -> tuple[Any, ...]:
            image = x.unsqueeze(-1)
            return (
                p["batch1d"](x),
                p["batch_flat"](x.flatten(1)),
                p["lrn"](image),
                p["channel_last"](image.permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
                F.normalize(x, p=1.0, dim=-1),
                F.softmax(image, dim=1),
            )

        return Case(Fn(fn, **parts).eval(), {"x": _rand(2, 4, 5, lo=-2, hi=2)})

    def scatters() -> Case:
        return Case(Fn(_scatters), {"x": _rand(3, 5), "y": _rand(3, 5, seed=1)})

    def logic() -> Case:
        return Case(Fn(_logic), {"x": _rand(2, 5, 4, lo=-2, hi=2), "y": _rand(2, 5, 4, seed=1)})

    def attention_heads() -> Case:
        def fn(q: Any, k: Any) -> tuple[Any, ...]:
            scores = torch.einsum("bhid,bhjd->bhij", q, k) / 2
            return scores.softmax(-1), torch.einsum("bhij,bhjd->bihd", scores, k).flatten(2)

        return Case(Fn(fn), {"q": _rand(1, 2, 3, 4), "k": _rand(1, 2, 5, 4, seed=1)})

    def blocks() -> Case:
        parts = {
            "dw": nn.Conv2d(4, 4, 7, padding=3, groups=4),
            "norm": nn.LayerNorm(4, eps=1e-6),
            "up": nn.Linear(4, 8),
            "down": nn.Linear(8, 4),
            "squeeze": nn.Conv2d(4, 2, 1),
            "excite": nn.Conv2d(2, 4, 1),
        }

        def fn(p: Any, x: Any) -> tuple[Any, ...]:
            # ConvNeXt: depthwise conv, channels-last LayerNorm and MLP, residual.
            h = p["dw"](x).permute(0, 2, 3, 1)
            h = p["down"](F.gelu(p["up"](p["norm"](h)))).permute(0, 3, 1, 2)
            convnext = x + h * 0.5
            # EfficientNet's squeeze-and-excitation.
            scale = torch.sigmoid(p["excite"](F.silu(p["squeeze"](x.mean((2, 3), keepdim=True)))))
            # ShuffleNet's channel shuffle (sizes from x.shape fail in coremltools).
            shuffled = x.view(1, 2, 2, 6, 5).transpose(1, 2).reshape(1, 4, 6, 5)
            return convnext, x * scale, shuffled

        return Case(Fn(fn, **parts), {"x": _rand(1, 4, 6, 5)})

    def linear() -> Case:
        parts = {"a": nn.Linear(6, 5), "b": nn.Linear(5, 3, bias=False)}
        m = Fn(lambda p, x: p["b"](torch.relu(p["a"](x))), **parts)
        return Case(m, {"x": _rand(2, 4, 6)})

    def broadcasts() -> Case:
        return Case(Fn(_broadcasts), {"x": _rand(1, 4, 5)})

    def softmaxes() -> Case:
        return Case(Fn(_softmaxes), {"x": _rand(2, 4, 5, lo=-3, hi=3)})

    return {
        f.__name__: f
        for f in (
            conv1d,
            conv2d,
            conv3d,
            pools,
            adaptive_pool,
            norms,
            recurrent,
            lstm_states,
            bidirectional_gru,
            bidirectional_states,
            sdpa,
            causal_sdpa,
            resampling,
            resampling_ios16,
            patches,
            trigonometry,
            pads,
            reshapes,
            windows_partition,
            indexing,
            sorting,
            selection,
            activations,
            unary,
            comparisons,
            reductions,
            products,
            more_windows,
            windows3d,
            more_activations,
            statistics,
            arithmetic,
            more_norms,
            scatters,
            logic,
            attention_heads,
            blocks,
            linear,
            broadcasts,
            softmaxes,
        )
    }


CASES = _cases()


@dataclass
class Converted:
    path: Path
    feeds: dict[str, np.ndarray]
    expected: list[np.ndarray]


def _convert(module: nn.Module, example: tuple[Any, ...], flavour: str, **kwargs: Any) -> Any:
    """``ct.convert`` of the traced module to one flavour (ML Programs in float32)."""
    with torch.no_grad():
        traced = torch.jit.trace(module.eval(), example)
    if flavour == "mlmodel":
        return ct.convert(traced, convert_to="neuralnetwork", **kwargs)
    if flavour == "mlpackage-ios18":
        kwargs["minimum_deployment_target"] = ct.target.iOS18
    return ct.convert(
        traced, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32, **kwargs
    )


def _flat(out: Any) -> list[np.ndarray]:
    outs = out if isinstance(out, tuple) else (out,)
    return [o.detach().numpy() for o in outs]


class Corpus:
    """Each case converted once per flavour per session (a failed conversion fails only its
    own tests)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.done: dict[tuple[str, str], Converted | BaseException] = {}

    def get(self, name: str, flavour: str) -> Converted:
        key = (name, flavour)
        if key not in self.done:
            try:
                self.done[key] = self._make(name, flavour)
            except Exception as e:  # noqa: BLE001 - reraised for each test of the case
                self.done[key] = e
        got = self.done[key]
        if isinstance(got, BaseException):
            raise got
        return got

    def _make(self, name: str, flavour: str) -> Converted:
        torch.manual_seed(0)
        case = CASES[name]()
        example = tuple(torch.from_numpy(v) for v in case.inputs.values())
        with torch.no_grad():
            expected = _flat(case.module.eval()(*example))
        inputs = [ct.TensorType(name=k, shape=v.shape) for k, v in case.inputs.items()]
        model = _convert(case.module, example, flavour, inputs=inputs)
        path = _saved(model, self.folder, name, flavour)
        return Converted(path, dict(case.inputs), expected)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("torch-ops"))


def _compare(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} outputs, PyTorch gives {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"{what} output {i}: shape {g.shape}, PyTorch {w.shape}"
        g = np.asarray(g, np.float64)
        scale = max(float(np.abs(w).max()), 1e-6)
        err = float(np.abs(g - w).max())
        assert err <= TOLERANCE * scale, f"{what} output {i}: error {err:.3g}, scale {scale:.3g}"


NEEDS_IOS16 = {"resampling_ios16"}
"""Cases of ops that coremltools converts for iOS16 and later only."""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "flavour"),
    [
        (name, flavour)
        for name in CASES
        for flavour in FLAVOURS
        if name not in NEEDS_IOS16 or flavour == "mlpackage-ios18"
    ],
)
def test_matches_pytorch(corpus: Corpus, name: str, flavour: str) -> None:
    model = corpus.get(name, flavour)
    got = compiler.compile(model.path).run(model.feeds)
    want = model.expected
    if flavour == "mlmodel":  # NeuralNetworks have no rank-0 blobs: a scalar comes as [1]
        want = [w.reshape(1) if w.ndim == 0 else w for w in want]
    _compare(list(got.values()), want, f"{name} {flavour}")


def _saved(model: Any, folder: Path, name: str, flavour: str) -> Path:
    ext = "mlmodel" if flavour == "mlmodel" else "mlpackage"
    path = folder / f"{name}-{flavour}.{ext}"
    model.save(str(path))
    return path


class _Features(nn.Module):
    """conv -> relu -> conv, whatever the spatial size (for flexible inputs)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.a = nn.Conv2d(channels, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 2, 3, padding=1, stride=2)

    def forward(self, x: Any) -> Any:
        return self.b(torch.relu(self.a(x)))


class _Sequence(nn.Module):
    """A transformer-style block over a sequence of any length (flexible inputs; nnxc's
    convolutions need static spatial dims, so a flexible image size is out of reach)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 6)
        self.norm = nn.LayerNorm(6)

    def forward(self, x: Any) -> Any:
        h = self.norm(F.gelu(self.a(x)))
        return F.softmax(h @ h.transpose(1, 2), dim=-1) @ h


FLEXIBLE = [
    (flexibility, flavour)
    for flexibility in ("range", "unbounded", "enumerated")
    for flavour in FLAVOURS
    # ML Programs cannot have an unbounded range (coremltools refuses to convert).
    if flexibility != "unbounded" or flavour == "mlmodel"
]


@pytest.mark.slow
@pytest.mark.parametrize(("flexibility", "flavour"), FLEXIBLE)
def test_flexible_input_runs_at_two_sizes(tmp_path: Path, flavour: str, flexibility: str) -> None:
    torch.manual_seed(0)
    module = _Sequence().eval()
    lengths = [5, 9]
    if flexibility == "range":
        shape: Any = ct.Shape((1, ct.RangeDim(2, 16, 5), 8))
    elif flexibility == "unbounded":
        shape = ct.Shape((1, ct.RangeDim(1, -1, 5), 8))
        lengths.append(40)
    else:
        shape = ct.EnumeratedShapes([(1, n, 8) for n in lengths], default=(1, 5, 8))
    example = (torch.rand(1, 5, 8),)
    model = _convert(module, example, flavour, inputs=[ct.TensorType(name="x", shape=shape)])
    cm = compiler.compile(_saved(model, tmp_path, "flexible", flavour))
    for n in lengths:
        x = _rand(1, n, 8, seed=n)
        with torch.no_grad():
            want = _flat(module(torch.from_numpy(x)))
        _compare(list(cm.run({"x": x}).values()), want, f"{flexibility} {flavour} length {n}")
    # A length the model does not allow (past the range, or not listed) is refused.
    refused = {"range": 17, "unbounded": 0, "enumerated": 7}[flexibility]
    with pytest.raises(InputError, match="allows"):
        cm.run({"x": _rand(1, refused, 8)})


class _Control(nn.Module):
    """Data-dependent control flow (scripted, not traced): a while loop and an if."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        while bool(y.sum() < 20.0):
            y = y.abs() * 2.0 + 0.1
        if bool(x.mean() > 0):
            y = y * 3.0
        else:
            y = y - x
        return y


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_scripted_control_flow(tmp_path: Path, flavour: str) -> None:
    """Both branches, and loops of different trip counts, in one compiled model."""
    module = torch.jit.script(_Control())
    kwargs: dict[str, Any] = {"inputs": [ct.TensorType(name="x", shape=(2, 3))]}
    if flavour == "mlmodel":
        model = ct.convert(module, convert_to="neuralnetwork", **kwargs)
    else:
        if flavour == "mlpackage-ios18":
            kwargs["minimum_deployment_target"] = ct.target.iOS18
        model = ct.convert(
            module, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32, **kwargs
        )
    cm = compiler.compile(_saved(model, tmp_path, "control", flavour))
    for x in (_rand(2, 3, lo=0.1, hi=1), -_rand(2, 3, lo=0.1, hi=1, seed=1), _rand(2, 3) * 9):
        with torch.no_grad():
            want = _flat(module(torch.from_numpy(x)))
        _compare(list(cm.run({"x": x}).values()), want, f"control {flavour}")


class _Classifier(nn.Module):
    """Image -> class probabilities."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.features = _Features(channels)
        self.fc = nn.Linear(2, 4)

    def forward(self, x: Any) -> Any:
        pooled = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return F.softmax(self.fc(pooled) * 3, dim=1)


LABELS = ["cat", "dog", "bird", "fish"]


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("layout", ["BGR", "G"])
def test_image_classifier(tmp_path: Path, flavour: str, layout: str) -> None:
    """Pixels in the declared colour order, scaled and biased by the model, and the
    classifier's labels kept in the metadata with the probabilities as the output."""
    channels = 3 if layout == "BGR" else 1
    torch.manual_seed(0)
    module = _Classifier(channels).eval()
    scale, bias = 1 / 64, [-1.0, -2.0, 0.5][:channels]
    color = ct.colorlayout.BGR if layout == "BGR" else ct.colorlayout.GRAYSCALE
    image = ct.ImageType(
        name="image",
        shape=(1, channels, 6, 8),
        scale=scale,
        bias=bias if layout == "BGR" else bias[0],
        color_layout=color,
    )
    example = (torch.rand(1, channels, 6, 8),)
    model = _convert(
        module, example, flavour, inputs=[image], classifier_config=ct.ClassifierConfig(LABELS)
    )
    cm = compiler.compile(_saved(model, tmp_path, f"classifier_{layout}", flavour))
    assert cm.metadata.extra["labels"] == LABELS
    pixels = np.random.default_rng(5).integers(0, 256, (1, channels, 6, 8)).astype(np.float32)
    shifted = pixels * np.float32(scale) + np.asarray(bias, np.float32).reshape(1, -1, 1, 1)
    with torch.no_grad():
        (want,) = _flat(module(torch.from_numpy(shifted)))
    (got,) = cm.run({"image": pixels}).values()
    _compare([np.reshape(got, want.shape)], [want], f"{layout} classifier {flavour}")
    # The model applies the preprocessing: the preprocessed input fed as pixels differs.
    (wrong,) = cm.run({"image": shifted}).values()
    assert not np.allclose(np.reshape(wrong, want.shape), want, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_grayscale_float16_image(tmp_path: Path) -> None:
    """An iOS16 float16 program's GRAYSCALE_FLOAT16 image input takes float32 pixels like any
    image; the program computes in float16 (to float16's precision)."""
    torch.manual_seed(0)
    module = _Classifier(1).eval()
    image = ct.ImageType(
        name="image",
        shape=(1, 1, 6, 8),
        scale=1 / 64,
        bias=-1.0,
        color_layout=ct.colorlayout.GRAYSCALE_FLOAT16,
    )
    with torch.no_grad():
        traced = torch.jit.trace(module, torch.rand(1, 1, 6, 8))
    model = ct.convert(
        traced,
        convert_to="mlprogram",
        inputs=[image],
        minimum_deployment_target=ct.target.iOS16,
        classifier_config=ct.ClassifierConfig(LABELS),
    )
    cm = compiler.compile(_saved(model, tmp_path, "gray16", "mlpackage"))
    assert cm.metadata.extra["labels"] == LABELS
    assert cm.metadata.extra["precision"] == "float16"
    (inp,) = cm.metadata.inputs
    assert (inp.name, str(inp.dtype)) == ("image", "float32")
    pixels = np.random.default_rng(5).integers(0, 256, (1, 1, 6, 8)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(pixels / 64 - 1)).numpy()
    (got,) = cm.run({"image": pixels}).values()
    np.testing.assert_allclose(np.reshape(got, want.shape), want, rtol=1e-2, atol=2e-3)


class _Tokens(nn.Module):
    """Token ids -> embeddings -> a linear head (ids arrive as int32)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, ids: Any) -> Any:
        return self.head(self.embed(ids)).sum(dim=1)


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_int32_token_ids(tmp_path: Path, flavour: str) -> None:
    torch.manual_seed(0)
    module = _Tokens().eval()
    ids = np.array([[1, 4, 9, 0, 4], [7, 2, 2, 5, 3]], np.int32)
    inputs = [ct.TensorType(name="ids", shape=ids.shape, dtype=np.int32)]
    model = _convert(module, (torch.from_numpy(ids).long(),), flavour, inputs=inputs)
    cm = compiler.compile(_saved(model, tmp_path, "tokens", flavour))
    # coremltools declares a NeuralNetwork's int32 input as float32 (the ids as floats).
    dtype = "float32" if flavour == "mlmodel" else "int32"
    (inp,) = cm.metadata.inputs
    assert (inp.name, str(inp.dtype)) == ("ids", dtype)
    with torch.no_grad():
        want = _flat(module(torch.from_numpy(ids).long()))
    _compare(list(cm.run({"ids": ids.astype(dtype)}).values()), want, f"tokens {flavour}")


def _compressions() -> dict[str, tuple[Any, str, Callable[[Any], Any]]]:
    """Weight compressions of ``ct.optimize.coreml``: name -> (deployment target, the
    constexpr op it must emit, the compression). Palettes are uniform: k-means needs
    scikit-learn. Joint modes prune first, then compress the kept values."""
    from coremltools.optimize import coreml as cto

    def quantize(model: Any, joint: bool = False, **config: Any) -> Any:
        op = cto.OpLinearQuantizerConfig(weight_threshold=0, **config)
        return cto.linear_quantize_weights(
            model, cto.OptimizationConfig(op), joint_compression=joint
        )

    def palettize(model: Any, joint: bool = False, **config: Any) -> Any:
        op = cto.OpPalettizerConfig(mode="uniform", weight_threshold=0, **config)
        return cto.palettize_weights(model, cto.OptimizationConfig(op), joint_compression=joint)

    def prune(model: Any) -> Any:
        op = cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=0)
        return cto.prune_weights(model, cto.OptimizationConfig(op))

    ios16, ios18 = ct.target.iOS16, ct.target.iOS18
    return {
        "int8": (ios16, "constexpr_affine_dequantize", quantize),
        "int8-ios18": (ios18, "constexpr_blockwise_shift_scale", quantize),
        "int4-blockwise": (
            ios18,
            "constexpr_blockwise_shift_scale",
            lambda m: quantize(
                m, mode="linear", dtype="int4", granularity="per_block", block_size=2
            ),
        ),
        "palette": (ios16, "constexpr_lut_to_dense", lambda m: palettize(m, nbits=4)),
        "palette-grouped": (
            ios18,
            "constexpr_lut_to_dense",
            lambda m: palettize(m, nbits=2, granularity="per_grouped_channel", group_size=2),
        ),
        "sparse": (ios16, "constexpr_sparse_to_dense", prune),
        "sparse-palette": (
            ios18,
            "constexpr_lut_to_sparse",
            lambda m: palettize(prune(m), nbits=2, joint=True),
        ),
        "sparse-int8": (
            ios18,
            "constexpr_sparse_blockwise_shift_scale",
            lambda m: quantize(prune(m), joint=True),
        ),
    }


COMPRESSIONS = _compressions()


def _op_types(model: Any) -> set[str]:
    main = model.get_spec().mlProgram.functions["main"]
    return {op.type for op in main.block_specializations[main.opset].operations}


@pytest.mark.slow
@pytest.mark.parametrize("compression", list(COMPRESSIONS))
def test_compressed_weights(tmp_path: Path, compression: str) -> None:
    """A weight-compressed ML Program gives what the same program with the weights that
    coremltools decompresses gives (``decompress_weights``, its own reading of the ops)."""
    from coremltools.optimize.coreml import decompress_weights

    target, op_type, compress = COMPRESSIONS[compression]
    torch.manual_seed(0)
    module = _Features().eval()
    x = _rand(1, 3, 6, 8)
    model = _convert(
        module,
        (torch.from_numpy(x),),
        "mlpackage",
        inputs=[ct.TensorType(name="x", shape=x.shape)],
        minimum_deployment_target=target,
    )
    compressed = compress(model)
    assert op_type in _op_types(compressed)
    dense = decompress_weights(compressed)
    assert not any(t.startswith("constexpr_") for t in _op_types(dense))
    want = compiler.compile(_saved(dense, tmp_path, "dense", "mlpackage")).run({"x": x})
    cm = compiler.compile(_saved(compressed, tmp_path, "compressed", "mlpackage"))
    _compare(list(cm.run({"x": x}).values()), list(want.values()), compression)
