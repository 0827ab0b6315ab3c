"""Models that need no download: the onnx package's nine light model-zoo architectures.

As shipped, their weights come from ``ConstantOfShape`` (one value per tensor), so their
outputs do not depend on the input and any comparison passes. ``randomized`` gives them real
weights: He-scaled conv/FC weights, small biases, and BatchNorm statistics measured on a
random input, layer after layer, so activations keep a sane scale through the network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

LIGHT_MODELS = (
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
)


def light_dir() -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def light_path(name: str) -> Path:
    if name not in LIGHT_MODELS:
        raise ValueError(f"unknown light model {name!r}; known: {', '.join(LIGHT_MODELS)}")
    return light_dir() / f"light_{name}.onnx"


def _consumers(model: onnx.ModelProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, i))
    return uses


def _weight_for(
    role: tuple[str, int] | None, shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    op, index = role or ("", -1)
    if op in ("Conv", "ConvTranspose", "Gemm", "MatMul") and index == 1 and len(shape) >= 2:
        fan_in = int(np.prod(shape[1:])) if op != "MatMul" else shape[0]
        if op == "Gemm":
            fan_in = shape[1]  # ONNX zoo Gemm weights are [out, in] with transB=1
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    if op == "BatchNormalization" and index == 1:
        return rng.uniform(0.5, 1.5, shape)
    if op == "BatchNormalization" and index == 4:
        return np.ones(shape)
    if op == "BatchNormalization" and index == 3:
        return np.zeros(shape)
    return rng.standard_normal(shape) * 0.05


def randomized(
    model: onnx.ModelProto,
    seed: int = 0,
    input_name: str | None = None,
) -> onnx.ModelProto:
    """A copy of ``model`` with every float weight random and BatchNorm statistics measured."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    uses = _consumers(model)
    inits = {t.name: t for t in g.initializer}

    def role(name: str) -> tuple[str, int] | None:
        for node, i in uses.get(name, []):
            return node.op_type, i
        return None

    # ConstantOfShape weights become initializers; float initializers get new values.
    new_inits: dict[str, np.ndarray] = {}
    keep_nodes = []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
            new_inits[node.output[0]] = _weight_for(role(node.output[0]), shape, rng)
        else:
            keep_nodes.append(node)
    for t in g.initializer:
        if t.data_type == onnx.TensorProto.FLOAT and t.name not in new_inits:
            shape = tuple(t.dims)
            if not t.name.endswith("__SHAPE"):
                new_inits[t.name] = _weight_for(role(t.name), shape, rng)
    del g.node[:]
    g.node.extend(keep_nodes)
    for t in list(g.initializer):
        if t.name in new_inits:
            g.initializer.remove(t)
    g.initializer.extend(
        numpy_helper.from_array(a.astype(np.float32), n) for n, a in new_inits.items()
    )
    measure_batchnorm(model, rng, input_name, ort)
    return model


def data_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The model's real input: the graph input that is no initializer."""
    inits = {t.name for t in model.graph.initializer}
    return next(i for i in model.graph.input if i.name not in inits)


def example_input(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    vi = data_input(model)
    shape = [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    return {vi.name: rng.standard_normal(shape).astype(np.float32)}


def measure_batchnorm(
    model: onnx.ModelProto, rng: np.random.Generator, input_name: str | None, ort
) -> None:
    """Set each BatchNorm's mean/var to the statistics of its input on a random input.

    A BatchNorm's input depends on the statistics of the BatchNorms before it, so they are
    measured in waves: wave k fixes every BatchNorm with k BatchNorms on its longest path from
    the input. One onnxruntime session serves all waves, with the statistics fed as inputs.
    """
    g = model.graph
    bns = [n for n in g.node if n.op_type == "BatchNormalization"]
    if not bns:
        return
    feeds = example_input(model, seed=int(rng.integers(1 << 30)))
    inits = {t.name: t for t in g.initializer}
    stats = {n: numpy_helper.to_array(inits[n]) for bn in bns for n in bn.input[3:5]}

    depth: dict[str, int] = {}
    level: dict[int, int] = {}
    for node in g.node:  # ONNX lists nodes in topological order
        d = max((depth.get(x, 0) for x in node.input if x), default=0)
        if node.op_type == "BatchNormalization":
            level[id(node)] = d
            d += 1
        for o in node.output:
            depth[o] = d

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    kept = [t for t in probe.graph.initializer if t.name not in stats]
    del probe.graph.initializer[:]
    probe.graph.initializer.extend(kept)
    inputs = [i for i in probe.graph.input if i.name not in stats]
    del probe.graph.input[:]
    probe.graph.input.extend(inputs)
    probe.graph.input.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, a.shape)
        for n, a in stats.items()
    )
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(bn.input[0]) for bn in bns)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(
        probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    for wave in sorted(set(level.values())):
        outs = sess.run(None, {**feeds, **{k: v.astype(np.float32) for k, v in stats.items()}})
        for bn, x in zip(bns, outs):
            if level[id(bn)] != wave:
                continue
            axes = tuple(i for i in range(x.ndim) if i != 1)
            stats[bn.input[3]] = x.mean(axis=axes)
            stats[bn.input[4]] = x.var(axis=axes)
    for name, a in stats.items():
        inits[name].CopyFrom(numpy_helper.from_array(a.astype(np.float32), name))
