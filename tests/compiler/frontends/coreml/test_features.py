"""Core ML inputs and outputs: image inputs with their preprocessing (once, in the model's
colour order), classifiers' labels, flexible shapes as symbolic dims checked at run time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from coremlutil import check, ct, nn_builder, save_nn

import compiler
from compiler.cli import main
from compiler.errors import InputError, ModelLoadError
from compiler.frontends.coreml.importer import import_coreml


def _image_model(tmp_path: Path, layout: str, scale: float, biases: dict) -> Path:
    """An identity network on a 3x4x5 image input with an image scaler."""
    b = nn_builder([("image", (3, 4, 5))], [("y", None)], exact=False)
    b.add_activation("id", "LINEAR", "image", "y", params=[1.0, 0.0])
    b.set_pre_processing_parameters(
        image_input_names=["image"], is_bgr=layout == "BGR", image_scale=scale, **biases
    )
    spec = b.spec
    image = spec.description.input[0].type
    image.imageType.width, image.imageType.height = 5, 4
    image.imageType.colorSpace = ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Value(layout)
    return save_nn(spec, tmp_path, f"image_{layout}")


@pytest.mark.parametrize("layout", ["RGB", "BGR"])
def test_image_scaler_in_colour_order(tmp_path: Path, layout: str) -> None:
    biases = {"red_bias": -1.0, "green_bias": -2.0, "blue_bias": -3.0}
    path = _image_model(tmp_path, layout, 1 / 255, biases)
    graph, _ = import_coreml(path)
    assert [v.shape for v in graph.inputs] == [(1, 3, 4, 5)]  # NCHW pixels
    pixels = np.random.default_rng(0).integers(0, 256, (1, 3, 4, 5)).astype(np.float32)
    order = ("red", "green", "blue") if layout == "RGB" else ("blue", "green", "red")
    bias = np.array([biases[f"{c}_bias"] for c in order], np.float32).reshape(1, 3, 1, 1)
    expected = (pixels / 255 + bias).reshape(1, 1, 3, 4, 5)  # rank-5 image mapping
    check(path, {"image": pixels}, [expected.reshape(3, 4, 5)], rtol=1e-6, atol=1e-6)


def test_grayscale_and_mean_image(tmp_path: Path) -> None:
    b = nn_builder([("image", (1, 2, 2))], [("y", None)], exact=False)
    b.add_activation("id", "LINEAR", "image", "y", params=[1.0, 0.0])
    b.set_pre_processing_parameters(image_input_names=["image"], gray_bias=0.0)
    spec = b.spec
    spec.description.input[0].type.imageType.colorSpace = 10  # GRAYSCALE
    pre = spec.neuralNetwork.preprocessing[0]
    pre.meanImage.meanImage.extend([1.0, 2.0, 3.0, 4.0])
    path = save_nn(spec, tmp_path)
    pixels = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2) * 10
    check(path, {"image": pixels}, [pixels.reshape(1, 2, 2) - [[1, 2], [3, 4]]])


def test_classifier_labels_and_top_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    b = nn_builder([("x", (4,))], [("probs", None)], exact=True, mode="classifier")
    b.add_softmax_nd("softmax", "x", "probs", axis=-1)
    b.set_class_labels(
        ["cat", "dog", "emu", "fox"], predicted_feature_name="label", prediction_blob="probs"
    )
    path = save_nn(b.spec, tmp_path)
    graph, _ = import_coreml(path)
    assert graph.output_names == ["probs"]
    cm = compiler.compile(path)
    assert cm.metadata.extra["labels"] == ["cat", "dog", "emu", "fox"]
    artifact = tmp_path / "model.so"
    cm.export(artifact)
    rt = compiler.load(artifact)
    assert rt.labels == ["cat", "dog", "emu", "fox"]
    x = np.array([0.0, 3.0, 1.0, 2.0], np.float32)
    got = rt.run({"x": x})["probs"]
    np.testing.assert_allclose(got, np.exp(x) / np.exp(x).sum(), rtol=1e-5)
    np.savez(tmp_path / "in.npz", x=x)
    assert main(["run", str(artifact), "--inputs", str(tmp_path / "in.npz")]) == 0
    out = capsys.readouterr().out
    assert "top classes of probs: dog (0.6" in out and out.index("dog") < out.index("fox (")


def _flexible(tmp_path: Path, flexibility: str) -> Path:
    b = nn_builder([("x", (1, 3, 4, 4))], [("y", None)], exact=True)
    b.add_activation("relu", "RELU", "x", "y")
    spec = b.spec
    array = spec.description.input[0].type.multiArrayType
    if flexibility == "range":
        for lo, hi in [(1, 1), (3, 3), (2, 8), (4, -1)]:
            r = array.shapeRange.sizeRanges.add()
            r.lowerBound, r.upperBound = lo, hi
    else:
        for shape in [(1, 3, 4, 4), (1, 3, 8, 6)]:
            array.enumeratedShapes.shapes.add().shape.extend(shape)
    spec.specificationVersion = max(spec.specificationVersion, 3)
    return save_nn(spec, tmp_path, flexibility)


def test_ranged_shapes_are_symbolic_and_checked(tmp_path: Path) -> None:
    cm = compiler.compile(_flexible(tmp_path, "range"))
    assert cm.metadata.inputs[0].shape == (1, 3, "x_2", "x_3")
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 9)).astype(np.float32)
    np.testing.assert_array_equal(cm.run({"x": x})["y"], np.maximum(x, 0))
    with pytest.raises(InputError, match=r"dim x_2 is 9; the model allows 2 to 8"):
        cm.run({"x": np.zeros((1, 3, 9, 4), np.float32)})
    with pytest.raises(InputError, match=r"dim x_3 is 3; the model allows 4 to any size"):
        cm.run({"x": np.zeros((1, 3, 4, 3), np.float32)})


def test_enumerated_shapes_are_checked(tmp_path: Path) -> None:
    path = _flexible(tmp_path, "enumerated")
    cm = compiler.compile(path)
    x = np.ones((1, 3, 8, 6), np.float32)
    np.testing.assert_array_equal(cm.run({"x": x})["y"], x)
    with pytest.raises(InputError, match=r"has shape \[1, 3, 8, 4\]; the model allows"):
        cm.run({"x": np.ones((1, 3, 8, 4), np.float32)})


def test_binding_a_flexible_input(tmp_path: Path) -> None:
    path = _flexible(tmp_path, "range")
    graph, _ = import_coreml(path, input_shapes={"x": [1, 3, 6, 6]})
    assert graph.inputs[0].shape == (1, 3, 6, 6)
    with pytest.raises(ModelLoadError, match=r"dim x_2 must lie in \[2, 8\]"):
        import_coreml(path, input_shapes={"x": [1, 3, 9, 6]})
    with pytest.raises(ModelLoadError, match="the model fixes"):
        import_coreml(path, input_shapes={"x": [1, 4, 6, 6]})
    with pytest.raises(ModelLoadError, match="unknown input 'z'"):
        import_coreml(path, input_shapes={"z": [1]})
