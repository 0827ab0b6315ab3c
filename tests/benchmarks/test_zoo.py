"""The benchmark's hand-built models (``benchmarks/zoo.py``): each builds as valid ONNX in the
shape torch exports, its output depends on its input, and nnxc matches onnxruntime on it
(small sizes, so a compile takes seconds)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from benchmarks import zoo
from benchmarks.models import example_input

SMALL = {
    "mobilenet": {"size": 32, "width": 0.25, "classes": 10},
    "transformer": {"layers": 1, "d_model": 32, "heads": 2, "seq": 16},
    "unet": {"size": 32, "base": 8},
    "lstm": {"layers": 2, "inputs": 8, "hidden": 16, "seq": 6},
}
# nnxc vs onnxruntime: max abs error relative to the output's largest magnitude.
TOLERANCE = 1e-4


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return sess.run(None, feeds)[0]


def test_names_and_builders_agree() -> None:
    assert set(zoo.ZOO_MODELS) == set(zoo.BUILDERS) == set(SMALL)
    with pytest.raises(ValueError, match="unknown zoo model"):
        zoo.build("resnet")


def test_deterministic_by_seed() -> None:
    a = zoo.build("transformer", seed=3, **SMALL["transformer"])
    b = zoo.build("transformer", seed=3, **SMALL["transformer"])
    c = zoo.build("transformer", seed=4, **SMALL["transformer"])
    assert a.SerializeToString() == b.SerializeToString()
    assert a.SerializeToString() != c.SerializeToString()


@pytest.mark.parametrize(
    "name, ops",
    [
        ("mobilenet", {"Conv", "Clip", "Add", "GlobalAveragePool", "Flatten", "Gemm"}),
        (
            "transformer",
            {"MatMul", "Add", "Reshape", "Transpose", "Softmax", "LayerNormalization", "Erf"},
        ),
        ("unet", {"Conv", "Relu", "MaxPool", "ConvTranspose", "Concat", "Resize"}),
        ("lstm", {"LSTM", "Transpose", "Reshape"}),
    ],
)
def test_torch_export_shape(name: str, ops: set[str]) -> None:
    model = zoo.build(name, **SMALL[name])
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == zoo.OPSET
    counts = Counter(n.op_type for n in model.graph.node)
    assert ops <= set(counts), ops - set(counts)
    assert "BatchNormalization" not in counts  # folded into the convs, as the eval export does
    if name == "mobilenet":
        depthwise = [
            n
            for n in model.graph.node
            if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
        ]
        assert depthwise, "no depthwise conv"
    if name == "unet":
        assert counts["Resize"] == 1 and counts["ConvTranspose"] == 2


def test_full_size_signatures() -> None:
    """The benchmark sizes: only the graphs, no compile."""
    expected = {
        "mobilenet": ([1, 3, 224, 224], [1, 1000]),
        "transformer": ([1, 128, 256], [1, 128, 256]),
        "unet": ([1, 3, 128, 128], [1, 2, 128, 128]),
        "lstm": ([32, 1, 64], [32, 1, 256]),
    }
    for name, (ins, outs) in expected.items():
        model = zoo.build(name)
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        out = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
        assert (dims, out) == (ins, outs), name
    layers = zoo.build("transformer")
    assert sum(n.op_type == "LayerNormalization" for n in layers.graph.node) == 8  # 4 layers


@pytest.mark.parametrize("name", zoo.ZOO_MODELS)
def test_nnxc_matches_onnxruntime(name: str) -> None:
    import compiler

    model = zoo.build(name, **SMALL[name])
    feeds = example_input(model, seed=1)
    expected = _ort(model, feeds)
    other = _ort(model, example_input(model, seed=2))
    scale = float(np.abs(expected).max())
    assert 0.1 < scale < 100, f"{name}: output scale {scale:.3g}"
    assert float(np.abs(other - expected).max()) > 1e-2 * scale, "output ignores the input"

    got = list(compiler.compile(model).run(feeds).values())
    assert len(got) == 1 and got[0].shape == expected.shape
    err = float(np.abs(got[0].astype(np.float64) - expected).max())
    assert err <= TOLERANCE * scale, f"{name}: max abs error {err:.3g}, scale {scale:.3g}"
