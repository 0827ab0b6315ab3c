"""Four hand-built models for the CPU benchmark, written as ONNX the way PyTorch exports them.

No torch needed: each model is made node by node with ``onnx.helper`` at opset 17, in the shapes
``torch.onnx.export`` gives for the eval-mode PyTorch module it imitates.

- ``mobilenet``: MobileNetV2 (torchvision's layout): 3x3 stem, inverted residual blocks (1x1
  expand, depthwise 3x3 with ``group`` = channels, 1x1 project, residual ``Add``), ReLU6 as
  ``Clip(x, 0, 6)``, BatchNorm folded into the convolutions as the eval export does,
  ``GlobalAveragePool`` + ``Flatten`` + ``Gemm`` head. Input 1x3x224x224.
- ``transformer``: a post-norm encoder (``nn.TransformerEncoderLayer`` style): attention from
  ``MatMul``/``Add``/``Reshape``/``Transpose``/``Softmax``, ``LayerNormalization``, GELU as
  the erf formula torch exports (``Div``, ``Erf``, ``Add``, ``Mul``, ``Mul``), residual adds.
  Input 1x128x256.
- ``unet``: encoder (two 3x3 conv + folded BN + ReLU per level, ``MaxPool``), decoder
  (``ConvTranspose`` stride 2, ``Concat`` with the skip, two convs), one level upsampled by a
  bilinear ``Resize`` (``nn.Upsample``) instead, 1x1 conv head. Input 1x3x128x128.
- ``lstm``: a 2-layer bidirectional ``nn.LSTM`` (input 64, hidden 128): one ``LSTM`` node per
  layer, ``Transpose`` + ``Reshape`` between layers. Input 32x1x64 (time first). Not in
  ``benchmarks/cpu.py``'s default list (``--models lstm``).

Weights are random with He scales and deterministic by seed. BatchNorm statistics are measured
on a random input with onnxruntime (as ``benchmarks.models.randomized`` does for the light
models), then folded into the preceding convolution, so activations keep a sane scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
ZOO_MODELS = ("mobilenet", "transformer", "unet", "lstm")


class _Builder:
    """Collects nodes and initializers; names values ``<op>_<n>`` like torch's exporter."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, prefix: str, value: np.ndarray) -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> str:
        outs = [self.name(f"/{op}_output") for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(f"/{op}"), **attrs))
        return outs[0]

    def he(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        w = self.rng.standard_normal(shape) * math.sqrt(2.0 / max(fan_in, 1))
        return w.astype(np.float32)

    def small(self, shape: tuple[int, ...], scale: float = 0.05) -> np.ndarray:
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    # -- layers, as torch exports them --------------------------------------------------------
    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        bn: bool = True,
    ) -> str:
        """Conv (no bias when a BatchNorm follows, as in torchvision) + BatchNormalization; the
        BatchNorm is folded away by ``_fold_batchnorm`` once its statistics are measured."""
        pad = k // 2
        w = self.const("weight", self.he((cout, cin // groups, k, k), cin // groups * k * k))
        inputs = [x, w] if bn else [x, w, self.const("bias", self.small((cout,)))]
        y = self.node(
            "Conv",
            inputs,
            dilations=[1, 1],
            group=groups,
            kernel_shape=[k, k],
            pads=[pad] * 4,
            strides=[stride, stride],
        )
        if not bn:
            return y
        gamma = self.rng.uniform(0.5, 1.5, cout).astype(np.float32)
        beta = self.small((cout,), 0.1)
        stats = [np.zeros(cout, np.float32), np.ones(cout, np.float32)]  # measured later
        params = [self.const("bn", a) for a in (gamma, beta, *stats)]
        return self.node("BatchNormalization", [y, *params], epsilon=1e-5, momentum=0.9)

    def relu6(self, x: str) -> str:
        lo = self.const("min", np.array(0.0, np.float32))
        hi = self.const("max", np.array(6.0, np.float32))
        return self.node("Clip", [x, lo, hi])

    def linear(self, x: str, fin: int, fout: int) -> str:
        """``nn.Linear`` on a 3-D input: MatMul with the transposed weight, then Add."""
        w = self.const("weight", self.he((fin, fout), fin))
        y = self.node("MatMul", [x, w])
        return self.node("Add", [self.const("bias", self.small((fout,))), y])

    def layer_norm(self, x: str, d: int) -> str:
        gamma = self.const("ln_weight", 1.0 + self.small((d,), 0.1))
        beta = self.const("ln_bias", self.small((d,)))
        return self.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)

    def gelu(self, x: str) -> str:
        """``x * 0.5 * (1 + erf(x / sqrt(2)))`` in the order torch's opset-17 export writes."""
        d = self.node("Div", [x, self.const("sqrt2", np.array(math.sqrt(2.0), np.float32))])
        e = self.node("Erf", [d])
        a = self.node("Add", [e, self.const("one", np.array(1.0, np.float32))])
        m = self.node("Mul", [x, a])
        return self.node("Mul", [m, self.const("half", np.array(0.5, np.float32))])

    def model(self, name: str, x: str, shape: list[int], out: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)],
            [helper.make_empty_tensor_value_info(out)],
            initializer=self.inits,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="pytorch",  # imitated, see the module docstring
            producer_version="2.1.0",
        )
        model.ir_version = 8
        inferred = onnx.shape_inference.infer_shapes(model)
        known = [*inferred.graph.value_info, *inferred.graph.output]
        out_info = next(v for v in known if v.name == out)
        del model.graph.output[:]
        model.graph.output.append(out_info)
        onnx.checker.check_model(model)
        return model


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding for width multipliers."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenet(
    size: int = 224, width: float = 1.0, classes: int = 1000, seed: int = 0
) -> onnx.ModelProto:
    """MobileNetV2 (torchvision's configuration), input 1x3xSIZExSIZE."""
    b = _Builder(seed)
    x = "input"
    c = _make_divisible(32 * width)
    y = b.relu6(b.conv(x, 3, c, 3, stride=2))
    # t (expansion), c (channels), n (repeats), s (first stride)
    settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    for t, ch, n, s in settings:
        cout = _make_divisible(ch * width)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = c * t
            h = y
            if t != 1:
                h = b.relu6(b.conv(h, c, hidden, 1))
            h = b.relu6(b.conv(h, hidden, hidden, 3, stride=stride, groups=hidden))
            h = b.conv(h, hidden, cout, 1)
            y = b.node("Add", [y, h]) if stride == 1 and c == cout else h
            c = cout
    last = _make_divisible(1280 * max(1.0, width))
    y = b.relu6(b.conv(y, c, last, 1))
    y = b.node("GlobalAveragePool", [y])
    y = b.node("Flatten", [y], axis=1)
    w = b.const("classifier.weight", b.he((classes, last), last))
    y = b.node("Gemm", [y, w, b.const("classifier.bias", b.small((classes,)))], transB=1)
    return _finish(b.model("mobilenet_v2", x, [1, 3, size, size], y), b.rng)


def transformer(
    layers: int = 4,
    d_model: int = 256,
    heads: int = 4,
    seq: int = 128,
    ffn: int | None = None,
    seed: int = 0,
) -> onnx.ModelProto:
    """A post-norm transformer encoder, input 1xSEQxD_MODEL (batch first)."""
    if d_model % heads:
        raise ValueError("d_model must be a multiple of heads")
    ffn = ffn or 4 * d_model
    dh = d_model // heads
    b = _Builder(seed)
    x = "input"
    y = x
    split = b.const("shape", np.array([1, seq, heads, dh], np.int64))
    merge = b.const("shape", np.array([1, seq, d_model], np.int64))
    scale = b.const("scale", np.array(math.sqrt(dh), np.float32))
    for _ in range(layers):
        q = b.node("Reshape", [b.linear(y, d_model, d_model), split])
        k = b.node("Reshape", [b.linear(y, d_model, d_model), split])
        v = b.node("Reshape", [b.linear(y, d_model, d_model), split])
        q = b.node("Transpose", [q], perm=[0, 2, 1, 3])  # 1 x heads x seq x dh
        k = b.node("Transpose", [k], perm=[0, 2, 3, 1])  # 1 x heads x dh x seq
        v = b.node("Transpose", [v], perm=[0, 2, 1, 3])
        s = b.node("Div", [b.node("MatMul", [q, k]), scale])
        p = b.node("Softmax", [s], axis=-1)
        a = b.node("Transpose", [b.node("MatMul", [p, v])], perm=[0, 2, 1, 3])
        a = b.linear(b.node("Reshape", [a, merge]), d_model, d_model)
        y = b.layer_norm(b.node("Add", [y, a]), d_model)
        f = b.linear(b.gelu(b.linear(y, d_model, ffn)), ffn, d_model)
        y = b.layer_norm(b.node("Add", [y, f]), d_model)
    return _finish(b.model("transformer_encoder", x, [1, seq, d_model], y), b.rng)


def unet(size: int = 128, base: int = 32, classes: int = 2, seed: int = 0) -> onnx.ModelProto:
    """A three-level U-Net, input 1x3xSIZExSIZE (SIZE a multiple of 8)."""
    if size % 8:
        raise ValueError("size must be a multiple of 8")
    b = _Builder(seed)
    x = "input"

    def double_conv(h: str, cin: int, cout: int) -> str:
        h = b.node("Relu", [b.conv(h, cin, cout, 3)])
        return b.node("Relu", [b.conv(h, cout, cout, 3)])

    def pool(h: str) -> str:
        return b.node("MaxPool", [h], kernel_shape=[2, 2], pads=[0] * 4, strides=[2, 2])

    def up_transposed(h: str, cin: int, cout: int) -> str:
        w = b.const("up.weight", b.he((cin, cout, 2, 2), cin))
        bias = b.const("up.bias", b.small((cout,)))
        return b.node(
            "ConvTranspose",
            [h, w, bias],
            dilations=[1, 1],
            group=1,
            kernel_shape=[2, 2],
            pads=[0] * 4,
            strides=[2, 2],
        )

    def up_resize(h: str) -> str:
        roi = b.const("roi", np.array([], np.float32))
        scales = b.const("scales", np.array([1, 1, 2, 2], np.float32))
        return b.node(
            "Resize",
            [h, roi, scales],
            coordinate_transformation_mode="pytorch_half_pixel",
            cubic_coeff_a=-0.75,
            mode="linear",
            nearest_mode="floor",
        )

    c1, c2, c3, c4 = base, 2 * base, 4 * base, 8 * base
    e1 = double_conv(x, 3, c1)  # size
    e2 = double_conv(pool(e1), c1, c2)  # size/2
    e3 = double_conv(pool(e2), c2, c3)  # size/4
    m = double_conv(pool(e3), c3, c4)  # size/8
    d3 = double_conv(b.node("Concat", [up_transposed(m, c4, c3), e3], axis=1), 2 * c3, c3)
    d2 = double_conv(b.node("Concat", [up_transposed(d3, c3, c2), e2], axis=1), 2 * c2, c2)
    d1 = double_conv(b.node("Concat", [up_resize(d2), e1], axis=1), c2 + c1, c1)
    w = b.const("head.weight", b.he((classes, c1, 1, 1), c1))
    y = b.node(
        "Conv",
        [d1, w, b.const("head.bias", b.small((classes,)))],
        dilations=[1, 1],
        group=1,
        kernel_shape=[1, 1],
        pads=[0] * 4,
        strides=[1, 1],
    )
    return _finish(b.model("unet", x, [1, 3, size, size], y), b.rng)


def lstm(
    layers: int = 2, inputs: int = 64, hidden: int = 128, seq: int = 32, seed: int = 0
) -> onnx.ModelProto:
    """``nn.LSTM(inputs, hidden, layers, bidirectional=True)``, input SEQx1xINPUTS (time
    first): one bidirectional ONNX LSTM per layer, zero initial states given as inputs 5/6,
    each layer's Y [T, 2, 1, H] turned into the next layer's X by Transpose + Reshape."""
    b = _Builder(seed)
    x = "input"
    y = x
    scale = 1.0 / math.sqrt(hidden)  # torch's uniform(-1/sqrt(H), 1/sqrt(H)), as a normal
    zeros = b.const("h0", np.zeros((2, 1, hidden), np.float32))
    merge = b.const("shape", np.array([seq, 1, 2 * hidden], np.int64))
    fin = inputs
    for _ in range(layers):
        w = b.const("lstm.weight_ih", b.small((2, 4 * hidden, fin), scale))
        r = b.const("lstm.weight_hh", b.small((2, 4 * hidden, hidden), scale))
        bias = b.const("lstm.bias", b.small((2, 8 * hidden), scale))
        y = b.node(
            "LSTM",
            [y, w, r, bias, "", zeros, zeros],
            n_out=3,
            direction="bidirectional",
            hidden_size=hidden,
        )
        y = b.node("Reshape", [b.node("Transpose", [y], perm=[0, 2, 1, 3]), merge])
        fin = 2 * hidden
    return _finish(b.model("lstm", x, [seq, 1, inputs], y), b.rng)


BUILDERS: dict[str, Callable[..., onnx.ModelProto]] = {
    "mobilenet": mobilenet,
    "transformer": transformer,
    "unet": unet,
    "lstm": lstm,
}


def build(name: str, seed: int = 0, **sizes) -> onnx.ModelProto:
    """A zoo model by name; ``sizes`` are the builder's keyword arguments (small tests)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(ZOO_MODELS)}")
    return BUILDERS[name](seed=seed, **sizes)


# -- BatchNorm: measure, then fold into the conv before it -----------------------------------------
def _finish(model: onnx.ModelProto, rng: np.random.Generator) -> onnx.ModelProto:
    if any(n.op_type == "BatchNormalization" for n in model.graph.node):
        import onnxruntime as ort

        from benchmarks.models import measure_batchnorm

        measure_batchnorm(model, rng, None, ort)
        _fold_batchnorm(model)
    onnx.checker.check_model(model)
    return model


def _fold_batchnorm(model: onnx.ModelProto) -> None:
    """Conv -> BatchNormalization becomes one Conv with scaled weights and a bias, as
    ``torch.onnx.export`` of an eval-mode module writes it."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    uses: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    dropped: set[str] = set()
    for bn in [n for n in g.node if n.op_type == "BatchNormalization"]:
        conv = producer[bn.input[0]]
        if conv.op_type != "Conv" or uses[bn.input[0]] != 1:
            raise ValueError(f"{bn.name}: BatchNorm not right after a conv")
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]) for i in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        w_name = conv.input[1]
        w = numpy_helper.to_array(inits[w_name])
        bias = numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2 else 0.0
        w = w * scale.reshape(-1, *[1] * (w.ndim - 1))
        bias = (bias - mean) * scale + beta
        inits[w_name].CopyFrom(numpy_helper.from_array(w.astype(np.float32), w_name))
        b_name = w_name.replace("weight", "bias")
        g.initializer.append(numpy_helper.from_array(bias.astype(np.float32), b_name))
        del conv.input[2:]
        conv.input.append(b_name)
        conv.output[0] = bn.output[0]
        dropped.add(bn.name)
        dropped.update(bn.input[1:5])
    keep = [n for n in g.node if n.name not in dropped]
    del g.node[:]
    g.node.extend(keep)
    kept = [t for t in g.initializer if t.name not in dropped]
    del g.initializer[:]
    g.initializer.extend(kept)
