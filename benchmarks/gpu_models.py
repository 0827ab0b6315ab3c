"""The five PyTorch models of the GPU benchmark, with weights that both machines make alike.

The benchmark compiles each model's ONNX export here and runs the artifact on the GPU machine
next to the same PyTorch module, so both sides must hold the same weights, and the weights
cannot travel (ResNet-50 alone is 100 MB in fp32). They are therefore computed, not drawn:
each value is a level k in {-2, -1, 0, 1, 2} from an integer hash of (parameter name, element
index) in numpy uint64 arithmetic, times a He-style scale. No torch or numpy random stream is
used (they differ between versions: torch 2.13 here, 2.11 there). ``fingerprint`` hashes a
module's weights so the GPU side can check that it built the same ones.

The artifacts must also travel small (at most 64 MiB for everything, and the five models hold
58 M parameters, 4 variants each). Five levels alone pack to about 2.9 bits per parameter with
xz (21 MiB per variant, measured), so a weight's rows (its output channels, dim 0) repeat with
a period of ``PERIOD`` rows, each row differing from its period's base row at one marker
element: every output channel stays distinct, and the repeats survive any per-row layout
change, interleaving of up to ``PERIOD`` rows and the ONNX exporter's BatchNorm folding (the
BatchNorm scales and variances repeat with the same period). Latency does not depend on the
values; correctness checks still see every channel differ.

Each model takes its full benchmark size by default and smaller sizes for the CPU tests.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# -- deterministic values --------------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _seed(name: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little"))


def hash64(name: str, count: int) -> np.ndarray:
    """splitmix64 of (name, 0..count-1): the same uint64 values on every machine and version."""
    z = np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN + _seed(name)
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def levels(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """float32 levels in {-2, -1, 0, 1, 2}, equally likely (mean square 2)."""
    count = math.prod(shape)
    k = (hash64(name, count) >> np.uint64(32)) % np.uint64(5)
    return (k.astype(np.int8) - 2).astype(np.float32).reshape(shape)


PERIOD = 64


def row_levels(name: str, shape: tuple[int, ...], period: int = PERIOD) -> np.ndarray:
    """``levels`` in which row i (dim 0) past the first period equals row i % period except at
    one marker element, where it always differs (see the module docstring)."""
    rows, width = shape[0], math.prod(shape[1:])
    out = levels(name, (min(rows, period), width))[np.arange(rows) % period]
    h = hash64(name + "#marker", rows)[period:]
    pos = ((h >> np.uint64(32)) % np.uint64(width)).astype(np.int64)
    shift = (h & np.uint64(3)).astype(np.float32) + 1  # 1..4: a different level of the five
    r = np.arange(period, rows)
    out[r, pos] = (out[r, pos] + 2 + shift) % 5 - 2
    return out.reshape(shape)


def periodic_levels(name: str, n: int, period: int = PERIOD) -> np.ndarray:
    """``levels`` of a vector that repeats with ``period``."""
    return levels(name, (min(n, period),))[np.arange(n) % period]


def uniform(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """float32 in [-1, 1) on a 2^-23 grid, for inputs (exact on every machine)."""
    u = (hash64(name, math.prod(shape)) >> np.uint64(40)).astype(np.float32)
    return (u * np.float32(2.0**-23) - np.float32(1.0)).reshape(shape)


def _fan_in(module: nn.Module, weight: torch.Tensor) -> int:
    if isinstance(module, nn.ConvTranspose2d):
        # each output pixel of a stride-s transposed conv receives in * k^2 / s^2 terms
        k = math.prod(module.kernel_size) // math.prod(module.stride)
        return module.in_channels * max(k, 1) // module.groups
    return math.prod(weight.shape[1:])


def init_weights(model: nn.Module, prefix: str) -> nn.Module:
    """Give every parameter and BatchNorm statistic of ``model`` its deterministic value.

    Weights: ``row_levels`` * 1/sqrt(fan_in) (variance 2/fan_in, He); biases: level/64; norm
    scales: 1 + level/16 (times ``residual_gain`` for the norm that closes a residual branch, so
    deep residual stacks stay in range); BatchNorm running mean level/16, variance 1 + level/16
    (BatchNorm scales and variances periodic, as the weights' rows). All are small multiples of
    powers of two or one rounding of one scale: no denormals.
    """
    gains = {name: getattr(m, "residual_gain", 1.0) for name, m in model.named_modules()}
    with torch.no_grad():
        for mname, module in model.named_modules():
            for pname, p in list(module.named_parameters(recurse=False)) + list(
                module.named_buffers(recurse=False)
            ):
                if not p.is_floating_point():
                    continue
                key = f"{prefix}/{mname}.{pname}"
                shape = tuple(p.shape)
                bn = isinstance(module, nn.BatchNorm2d)
                if pname == "weight" and isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                    k = periodic_levels(key, shape[0]) if bn else levels(key, shape)
                    v = (1 + k / 16) * np.float32(gains.get(mname, 1.0))
                elif pname == "weight":
                    v = row_levels(key, shape) * np.float32(1 / math.sqrt(_fan_in(module, p)))
                elif pname == "running_mean":
                    v = levels(key, shape) / 16
                elif pname == "running_var":
                    v = 1 + periodic_levels(key, shape[0]) / 16
                else:  # biases
                    v = levels(key, shape) / 64
                p.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
    return model


def fingerprint(model: nn.Module) -> str:
    """sha256 over the names and bytes of the module's state (on any device)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# -- ResNet-50 -------------------------------------------------------------------------------------
def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, as in torchvision's v1.5) -> 1x1, plus the shortcut."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.branch = nn.Sequential(
            *_conv_bn(cin, width, 1),
            nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride),
            nn.ReLU(inplace=True),
            *_conv_bn(width, cout, 1),
        )
        self.branch[-1].residual_gain = 0.25
        self.shortcut = (
            nn.Sequential(*_conv_bn(cin, cout, 1, stride))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class ResNet50(nn.Module):
    def __init__(self, width: int = 64, blocks: tuple[int, ...] = (3, 4, 6, 3), classes=1000):
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, width, 7, 2), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(3, 2, 1))
        cin = width
        for i, n in enumerate(blocks):
            w = width * 2**i
            for j in range(n):
                layers.append(Bottleneck(cin, w, 2 if i > 0 and j == 0 else 1))
                cin = w * 4
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# -- MobileNetV2 -----------------------------------------------------------------------------------
class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True)]
        layers += _conv_bn(hidden, cout, 1)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        if self.residual:
            self.block[-1].residual_gain = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    # (expansion, channels, repeats, stride) as in the paper
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
    SETTINGS += ((6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, width: float = 1.0, classes: int = 1000, last: int = 1280) -> None:
        super().__init__()
        cin = max(8, int(32 * width))
        layers: list[nn.Module] = [*_conv_bn(3, cin, 3, 2), nn.ReLU6(inplace=True)]
        for t, c, n, s in self.SETTINGS:
            cout = max(8, int(c * width))
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers += [*_conv_bn(cin, last, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# -- transformer encoder and GPT-2-style decoder ---------------------------------------------------
class SelfAttention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention`` (PyTorch's fused
    kernels; the ONNX export spells it out as MatMul/Softmax, with a Trilu mask if causal)."""

    def __init__(self, d: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(b, s, d))


class EncoderLayer(nn.Module):
    """Post-norm (BERT / ``nn.TransformerEncoderLayer`` default) with a GELU feed-forward."""

    def __init__(self, d: int, heads: int, ff: int) -> None:
        super().__init__()
        self.attn = SelfAttention(d, heads, causal=False)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.ff(x))


class TransformerEncoder(nn.Module):
    """Input: embeddings (batch, seq, d)."""

    def __init__(self, layers: int = 4, d: int = 512, heads: int = 8, ff: int = 2048) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(EncoderLayer(d, heads, ff) for _ in range(layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DecoderBlock(nn.Module):
    """GPT-2: pre-LayerNorm, causal self-attention, tanh-GELU MLP of width 4d."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = SelfAttention(d, heads, causal=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU("tanh"), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT2Blocks(nn.Module):
    """Input: hidden states (batch, seq, d); a final LayerNorm as in GPT-2."""

    def __init__(self, blocks: int = 2, d: int = 768, heads: int = 12) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(DecoderBlock(d, heads) for _ in range(blocks)))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_f(self.blocks(x))


# -- U-Net -----------------------------------------------------------------------------------------
def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        *_conv_bn(cin, cout, 3), nn.ReLU(inplace=True), *_conv_bn(cout, cout, 3), nn.ReLU(True)
    )


class UNet(nn.Module):
    """Three poolings (like benchmarks/zoo.py's unet) with BatchNorm; transposed-conv upsampling.
    Input (batch, 3, size, size), size a multiple of 8; output (batch, classes, size, size)."""

    def __init__(self, base: int = 32, classes: int = 2) -> None:
        super().__init__()
        c1, c2, c3, c4 = base, 2 * base, 4 * base, 8 * base
        self.enc = nn.ModuleList([_double_conv(3, c1), _double_conv(c1, c2), _double_conv(c2, c3)])
        self.mid = _double_conv(c3, c4)
        self.up = nn.ModuleList([nn.ConvTranspose2d(c, c // 2, 2, 2) for c in (c4, c3, c2)])
        self.dec = nn.ModuleList([_double_conv(c, c // 2) for c in (c4, c3, c2)])
        self.head = nn.Conv2d(c1, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.enc:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], 1))
        return self.head(x)


# -- registry --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """How to build one benchmark model, and the shape of its one input (batch first)."""

    name: str
    make: Callable[..., nn.Module]
    input_shape: tuple[int, ...]  # without the batch dim
    kwargs: tuple[tuple[str, object], ...] = ()

    def build(self) -> nn.Module:
        """The model in eval mode with its deterministic weights, on the CPU."""
        return init_weights(self.make(**dict(self.kwargs)), self.name).eval()

    def input(self, batch: int) -> np.ndarray:
        return uniform(f"{self.name}/input/{batch}", (batch, *self.input_shape))


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("resnet50", ResNet50, (3, 224, 224)),
        ModelSpec("mobilenet_v2", MobileNetV2, (3, 224, 224)),
        ModelSpec("transformer", TransformerEncoder, (128, 512)),
        ModelSpec("unet", UNet, (3, 256, 256)),
        ModelSpec("gpt2", GPT2Blocks, (128, 768)),
    )
}

# Small versions for tests on the CPU (same code paths, seconds instead of minutes).
TINY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("resnet50", ResNet50, (3, 32, 32), (("width", 8), ("blocks", (1, 1, 1, 1)))),
        ModelSpec("mobilenet_v2", MobileNetV2, (3, 32, 32), (("width", 0.25), ("last", 32))),
        ModelSpec(
            "transformer", TransformerEncoder, (8, 32), (("layers", 2), ("d", 32), ("ff", 64))
        ),
        ModelSpec("unet", UNet, (3, 32, 32), (("base", 4),)),
        ModelSpec("gpt2", GPT2Blocks, (8, 48), (("d", 48), ("heads", 4))),
    )
}
