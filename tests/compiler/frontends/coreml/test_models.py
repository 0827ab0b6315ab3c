"""Whole models converted from PyTorch by ``ct.convert``, in both Core ML flavours: a ResNet, a
MobileNetV2 fed an RGB image input (its normalisation is the model's preprocessing), a
transformer encoder, a U-Net and a 2-layer bidirectional LSTM (``benchmarks/coreml_models.py``,
test sizes). nnxc compiles each ``.mlmodel`` (NeuralNetwork), float32 ``.mlpackage`` and float16
``.mlpackage`` (``ct.convert``'s default precision) and must give PyTorch's outputs: to 1e-4 of
the output's scale in float32, to float16's precision otherwise. The models are written once per
session (about 15 s in all); each compile takes a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the models are converted from PyTorch")

import compiler  # noqa: E402
from benchmarks.coreml_models import FLAVOURS, MODELS, Exported, export  # noqa: E402

TOLERANCE = {"mlmodel": 1e-4, "mlpackage": 1e-4, "mlpackage-fp16": 2e-2}
"""Largest error allowed, relative to the largest output magnitude."""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    folder = tmp_path_factory.mktemp("coreml-models")
    return {name: export(name, folder, small=True) for name in MODELS}


@pytest.mark.slow
@pytest.mark.parametrize("flavour", [f for f in FLAVOURS if f != "onnx"])
@pytest.mark.parametrize("name", MODELS)
def test_matches_pytorch(models: dict[str, Exported], name: str, flavour: str) -> None:
    model = models[name]
    cm = compiler.compile(model.files[flavour])
    (got,) = cm.run(model.feeds).values()
    want = model.expected
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= TOLERANCE[flavour] * scale, (
        f"{name} {flavour}: error {err:.3g}, scale {scale:.3g}"
    )
    precision = cm.metadata.extra.get("precision")
    # iOS15's lstm takes float32 only (float16 from iOS17): coremltools keeps that program
    # wholly in float32, so nothing in it computes in float16.
    fp16 = flavour.endswith("fp16") and name != "lstm"
    assert precision == ("float16" if fp16 else None)


@pytest.mark.slow
def test_image_input_is_pixels(models: dict[str, Exported]) -> None:
    """The MobileNet's image input is declared as float32 RGB pixels; both flavours apply the
    normalisation once (NeuralNetwork: the preprocessing; ML Program: graph ops)."""
    model = models["mobilenet"]
    for flavour in ("mlmodel", "mlpackage"):
        cm = compiler.compile(model.files[flavour])
        (inp,) = cm.metadata.inputs
        assert (inp.name, inp.dtype, tuple(inp.shape)) == ("image", "float32", (1, 3, 64, 64))
        # Normalised input fed as if it were pixels gives another answer: the model normalises.
        (wrong,) = cm.run({"image": model.onnx_feeds["x"]}).values()
        assert not np.allclose(wrong, model.expected, rtol=1e-2, atol=1e-2)


def test_exported_models_are_the_same_model(tmp_path: Path) -> None:
    """The ONNX file and the Core ML files come from one module: compiled ONNX gives the same
    PyTorch output (so benchmarks compare like with like)."""
    model = export("lstm", tmp_path, small=True)
    (got,) = compiler.compile(model.files["onnx"]).run(model.onnx_feeds).values()
    np.testing.assert_allclose(got, model.expected, rtol=1e-4, atol=1e-5)
