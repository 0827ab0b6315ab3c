"""The same PyTorch models as ONNX and as both Core ML flavours, for tests and benchmarks.

Each model is a small PyTorch module written here (torchvision is not installed), in the
layouts of ``benchmarks/zoo.py`` plus a ResNet: ``resnet`` (basic blocks), ``mobilenet``
(MobileNetV2, fed an RGB *image* input whose scale and per-channel bias normalise the pixels),
``transformer`` (a post-norm encoder layer with the attention written out), ``unet`` and
``lstm`` (2-layer bidirectional). ``export`` traces the module once and writes

- ``NAME.onnx`` (``torch.onnx.export``, opset 17),
- ``NAME.mlmodel``: a NeuralNetwork (``ct.convert(..., convert_to="neuralnetwork")``),
- ``NAME.mlpackage``: an ML Program computing in float32,
- ``NAME-fp16.mlpackage``: the ML Program ``ct.convert`` makes by default (float16).

so that nnxc compiles the one model from three files; ``expected`` is PyTorch's output on the
same input. ``small=True`` gives the test sizes; the default sizes are the benchmark's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("resnet", "mobilenet", "transformer", "unet", "lstm")
FLAVOURS = ("onnx", "mlmodel", "mlpackage", "mlpackage-fp16")

MEAN = (0.485, 0.456, 0.406)
STD = 0.226
"""The image input's normalisation: ``x = pixel / (255 * STD) - MEAN / STD`` per channel (Core
ML's image scale is one number, its biases one per channel)."""


@dataclass
class Exported:
    """One model in every format, with an input and PyTorch's output on it."""

    name: str
    files: dict[str, Path]
    """Flavour -> path (``FLAVOURS``)."""
    feeds: dict[str, np.ndarray]
    """The input, by name (pixels 0-255 for the image model)."""
    expected: np.ndarray
    onnx_feeds: dict[str, np.ndarray]
    """The same input for the ONNX file (normalised pixels for the image model)."""
    image: bool = False


def _torch() -> Any:
    import torch

    return torch


def _modules() -> dict[str, Any]:
    """The module classes, defined on first use so that importing this file needs no torch."""
    torch = _torch()
    nn = torch.nn

    class Basic(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x: Any) -> Any:
            y = torch.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    class ResNet(nn.Module):
        """ResNet-18's layout (``width`` channels in the first stage)."""

        def __init__(self, width: int = 64, classes: int = 1000) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(3, 2, 1),
            )
            blocks, cin = [], width
            for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
                blocks += [Basic(cin, cout, 1 if i == 0 else 2), Basic(cout, cout, 1)]
                cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(cin, classes)

        def forward(self, x: Any) -> Any:
            y = self.blocks(self.stem(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))

    class Inverted(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            mid = cin * expand
            layers: list[Any] = []
            if expand != 1:
                layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6()]
            layers += [
                nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
                nn.BatchNorm2d(mid),
                nn.ReLU6(),
                nn.Conv2d(mid, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            ]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: Any) -> Any:
            return x + self.body(x) if self.residual else self.body(x)

    class MobileNet(nn.Module):
        """MobileNetV2 (torchvision's configuration, width multiplier ``alpha``)."""

        def __init__(self, alpha: float = 1.0, classes: int = 1000) -> None:
            super().__init__()

            def ch(c: int) -> int:
                return max(8, int(c * alpha + 4) // 8 * 8)

            cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2)]
            cfg += [(6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
            cin = ch(32)
            layers: list[Any] = [
                nn.Conv2d(3, cin, 3, 2, 1, bias=False),
                nn.BatchNorm2d(cin),
                nn.ReLU6(),
            ]
            for t, c, n, s in cfg:
                for i in range(n):
                    layers.append(Inverted(cin, ch(c), s if i == 0 else 1, t))
                    cin = ch(c)
            last = max(1280, ch(1280))
            layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(last, classes)

        def forward(self, x: Any) -> Any:
            y = self.features(x)
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))

    class Encoder(nn.Module):
        """A post-norm encoder layer with the attention written out (``nn.TransformerEncoderLayer``
        in eval mode takes a fused fast path that neither exporter reads)."""

        def __init__(self, d: int = 256, heads: int = 4, ff: int = 1024) -> None:
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.n1 = nn.LayerNorm(d)
            self.n2 = nn.LayerNorm(d)
            self.ff1 = nn.Linear(d, ff)
            self.ff2 = nn.Linear(ff, d)

        def forward(self, x: Any) -> Any:
            h, dh = self.heads, self.qkv.in_features // self.heads
            q, k, v = self.qkv(x).unflatten(-1, (3, h, dh)).permute(2, 0, 3, 1, 4)
            att = torch.softmax(q @ k.transpose(-1, -2) * dh**-0.5, dim=-1)
            y = (att @ v).transpose(1, 2).flatten(2)
            x = self.n1(x + self.proj(y))
            return self.n2(x + self.ff2(nn.functional.gelu(self.ff1(x))))

    def double(cin: int, cout: int) -> Any:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, 1, 1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )

    class UNet(nn.Module):
        """Three levels; one decoder level upsamples bilinearly, one by a transposed conv."""

        def __init__(self, base: int = 32, classes: int = 2) -> None:
            super().__init__()
            b = base
            self.e1, self.e2, self.e3 = double(3, b), double(b, 2 * b), double(2 * b, 4 * b)
            self.mid = double(4 * b, 8 * b)
            self.up3 = nn.ConvTranspose2d(8 * b, 4 * b, 2, 2)
            self.d3 = double(8 * b, 4 * b)
            self.up2 = nn.ConvTranspose2d(4 * b, 2 * b, 2, 2)
            self.d2 = double(4 * b, 2 * b)
            self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.d1 = double(3 * b, b)
            self.head = nn.Conv2d(b, classes, 1)

        def forward(self, x: Any) -> Any:
            pool = nn.functional.max_pool2d
            s1 = self.e1(x)
            s2 = self.e2(pool(s1, 2))
            s3 = self.e3(pool(s2, 2))
            y = self.mid(pool(s3, 2))
            y = self.d3(torch.cat([self.up3(y), s3], 1))
            y = self.d2(torch.cat([self.up2(y), s2], 1))
            y = self.d1(torch.cat([self.up1(y), s1], 1))
            return self.head(y)

    class Lstm(nn.Module):
        def __init__(self, inputs: int = 64, hidden: int = 128) -> None:
            super().__init__()
            self.rnn = nn.LSTM(inputs, hidden, num_layers=2, bidirectional=True)

        def forward(self, x: Any) -> Any:
            return self.rnn(x)[0]

    return {
        "resnet": ResNet,
        "mobilenet": MobileNet,
        "transformer": Encoder,
        "unet": UNet,
        "lstm": Lstm,
    }


def _sizes(name: str, small: bool) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Constructor arguments and input shape of a model."""
    if name == "resnet":
        return ({"width": 8, "classes": 10}, (1, 3, 32, 32)) if small else ({}, (1, 3, 224, 224))
    if name == "mobilenet":
        return ({"alpha": 0.25, "classes": 10}, (1, 3, 64, 64)) if small else ({}, (1, 3, 224, 224))
    if name == "transformer":
        return ({"d": 32, "heads": 2, "ff": 64}, (1, 16, 32)) if small else ({}, (1, 128, 256))
    if name == "unet":
        return ({"base": 4}, (1, 3, 32, 32)) if small else ({}, (1, 3, 128, 128))
    if name == "lstm":
        return ({"inputs": 8, "hidden": 16}, (6, 1, 8)) if small else ({}, (32, 1, 64))
    raise KeyError(f"unknown model {name!r}; the models are {', '.join(MODELS)}")


def module(name: str, small: bool = False, seed: int = 0) -> tuple[Any, tuple[int, ...]]:
    """The eval-mode module (random weights, by seed) and its input shape. BatchNorm statistics
    are measured on random inputs: with made-up statistics a random network's output soon stops
    depending on its input, and a comparison on such outputs passes for any compiler."""
    torch = _torch()
    kwargs, shape = _sizes(name, small)
    torch.manual_seed(seed)
    m = _modules()[name](**kwargs)
    norms = [sub for sub in m.modules() if isinstance(sub, torch.nn.BatchNorm2d)]
    if norms:
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # a plain average over the calibration batches
        m.train()
        with torch.no_grad():
            for _ in range(4):
                m(torch.randn(4, *shape[1:]))
    return m.eval(), shape


def export(name: str, folder: Path, small: bool = False, seed: int = 0) -> Exported:
    """``name`` written in every flavour under ``folder`` (reused when present)."""
    torch = _torch()
    m, shape = module(name, small, seed)
    rng = np.random.default_rng(seed + 1)
    image = name == "mobilenet"
    if image:
        pixels = rng.integers(0, 256, shape).astype(np.float32)
        x = torch.from_numpy(_normalise(pixels))
        feeds = {"image": pixels}
    else:
        x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        feeds = {"x": x.numpy()}
    with torch.no_grad():
        expected = m(x).numpy()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{name}-small" if small else name
    files = {
        "onnx": folder / f"{tag}.onnx",
        "mlmodel": folder / f"{tag}.mlmodel",
        "mlpackage": folder / f"{tag}.mlpackage",
        "mlpackage-fp16": folder / f"{tag}-fp16.mlpackage",
    }
    if not all(p.exists() for p in files.values()):
        _write(m, x, files, image)
    onnx_feeds = {"x": _normalise(feeds["image"])} if image else feeds
    return Exported(name, files, feeds, expected, onnx_feeds, image)


def _normalise(pixels: np.ndarray) -> np.ndarray:
    mean = np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1)
    return (pixels / np.float32(255 * STD) - mean / np.float32(STD)).astype(np.float32)


def _write(m: Any, x: Any, files: dict[str, Path], image: bool) -> None:
    torch = _torch()
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools as ct

    with torch.no_grad():
        torch.onnx.export(
            m,
            (x,),
            str(files["onnx"]),
            input_names=["x"],
            output_names=["y"],
            opset_version=17,
            dynamo=False,
        )
        traced = torch.jit.trace(m, x)
    if image:
        bias = [-mu / STD for mu in MEAN]
        inputs = [
            ct.ImageType(name="image", shape=tuple(x.shape), scale=1 / (255 * STD), bias=bias)
        ]
    else:
        inputs = [ct.TensorType(name="x", shape=tuple(x.shape))]
    outputs = [ct.TensorType(name="y")]
    common = {"inputs": inputs, "outputs": outputs}
    ct.convert(traced, convert_to="neuralnetwork", **common).save(str(files["mlmodel"]))
    ct.convert(
        traced, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32, **common
    ).save(str(files["mlpackage"]))
    ct.convert(traced, convert_to="mlprogram", **common).save(str(files["mlpackage-fp16"]))
