"""ONNX vision converters: each model runs in onnxruntime, the nnxc reference and TVM."""

import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from onnxutil import check_model, make_model
from oputil import run_tvm

from backends.reference import run_graph
from compiler.errors import ConversionError, NeedsValueError
from compiler.frontends.onnx import import_onnx

rng = np.random.default_rng(0)


def randn(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype("float32")


def one_node(op, inputs, attrs=None, initializers=(), opset=22, outputs=("y",), **kw):
    """A model of one node; ``inputs`` are fed at run time, ``initializers`` are constants."""
    names = [n for n, _ in inputs] + [n for n, _ in initializers]
    node = helper.make_node(op, kw.pop("node_inputs", names), list(outputs), **(attrs or {}))
    model = make_model([node], inputs, list(outputs), initializers, opset=opset)
    return model, check_model(model, dict(inputs), **kw)


# -- GridSample ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode,padding,align",
    [
        ("nearest", "reflection", 0),
        ("nearest", "border", 1),
        ("linear", "zeros", 1),
        ("linear", "border", 0),
        ("linear", "reflection", 1),
        ("cubic", "zeros", 0),
        ("cubic", "reflection", 0),
        ("cubic", "border", 1),
    ],
)
def test_grid_sample(mode, padding, align):
    """A sample of the modes (the core op tests cover every combination)."""
    x, grid = randn(2, 3, 5, 4), randn(2, 4, 6, 2, scale=1.5)
    attrs = dict(mode=mode, padding_mode=padding, align_corners=align)
    if (mode, padding) != ("cubic", "border"):
        one_node("GridSample", [("x", x), ("g", grid)], attrs)
        return
    # onnxruntime clamps only the cubic taps here, onnx's reference (which the conformance
    # cases follow, and so do we) also the sample position: compare with the reference.
    node = helper.make_node("GridSample", ["x", "g"], ["y"], **attrs)
    model = make_model([node], [("x", x), ("g", grid)], ["y"], opset=22)
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x, "g": grid})
    graph = import_onnx(model)
    (ref,) = run_graph(graph, {"x": x, "g": grid}).values()
    (got,) = run_tvm(graph, {"x": x, "g": grid})
    np.testing.assert_allclose(ref, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_grid_sample_volumetric():
    x, grid = randn(1, 2, 3, 4, 5), randn(1, 2, 3, 4, 3, scale=1.3)
    one_node("GridSample", [("x", x), ("g", grid)], dict(mode="linear", padding_mode="border"))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_grid_sample_opset16_names(mode):
    x, grid = randn(1, 2, 4, 4), randn(1, 3, 3, 2, scale=1.2)
    one_node("GridSample", [("x", x), ("g", grid)], dict(mode=mode), opset=16)


def test_grid_sample_opset16_refuses_opset20_names():
    x, grid = randn(1, 2, 4, 4), randn(1, 3, 3, 2)
    node = helper.make_node("GridSample", ["x", "g"], ["y"], mode="linear")
    model = make_model([node], [("x", x), ("g", grid)], ["y"], opset=16)
    with pytest.raises(ConversionError, match="GridSample node 'y': mode 'linear'"):
        import_onnx(model)


# -- AffineGrid ------------------------------------------------------------------------------


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("size", [[2, 3, 4, 5], [2, 1, 3, 4, 2]])
def test_affine_grid(align, size):
    d = len(size) - 2
    theta = randn(2, d, d + 1)
    one_node(
        "AffineGrid",
        [("theta", theta)],
        dict(align_corners=align),
        [("size", np.array(size, "int64"))],
        opset=20,
    )


def test_affine_grid_feeding_grid_sample():
    theta = np.array([[[0.8, -0.3, 0.1], [0.2, 1.1, -0.2]]], "float32")
    x = randn(1, 2, 6, 5)
    nodes = [
        helper.make_node("AffineGrid", ["theta", "size"], ["grid"]),
        helper.make_node("GridSample", ["x", "grid"], ["y"]),
    ]
    inputs = [("theta", theta), ("x", x)]
    size = np.array([1, 2, 4, 3], "int64")
    model = make_model(nodes, inputs, ["y"], [("size", size)], opset=20)
    check_model(model, dict(inputs))


# -- RoiAlign --------------------------------------------------------------------------------

_ROIS = np.array([[0, 0, 9, 9], [0, 5, 4, 9], [5.5, 5.5, 9, 9], [2, 1, 2.5, 7]], "float32")
_BATCH = np.array([0, 1, 0, 1], "int64")


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("ctm", ["half_pixel", "output_half_pixel"])
def test_roi_align(mode, ctm):
    x = randn(2, 3, 10, 10)
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm, output_height=3)
    attrs |= dict(output_width=4, sampling_ratio=2, spatial_scale=0.8)
    # onnxruntime implements RoiAlign up to opset 16 (22 only widens the types).
    one_node("RoiAlign", [("x", x), ("rois", _ROIS), ("b", _BATCH)], attrs, opset=16)


def test_roi_align_opset10_is_output_half_pixel():
    x = randn(2, 3, 10, 10)
    attrs = dict(output_height=2, output_width=2, sampling_ratio=3)
    _, (y10,) = one_node("RoiAlign", [("x", x), ("rois", _ROIS), ("b", _BATCH)], attrs, opset=10)
    attrs["coordinate_transformation_mode"] = "output_half_pixel"
    _, (y16,) = one_node("RoiAlign", [("x", x), ("rois", _ROIS), ("b", _BATCH)], attrs, opset=16)
    np.testing.assert_array_equal(y10, y16)


# -- DeformConv ------------------------------------------------------------------------------


@pytest.mark.parametrize("with_mask", [False, True])
def test_deform_conv(with_mask):
    x, w, b = randn(1, 4, 6, 6), randn(4, 2, 3, 3), randn(4)
    attrs = dict(group=2, offset_group=2, pads=[1, 1, 1, 1], strides=[2, 1], dilations=[1, 1])
    offset = randn(1, 2 * 9 * 2, 3, 6, scale=1.5)
    inputs = [("x", x), ("w", w), ("off", offset), ("b", b)]
    if with_mask:
        inputs.append(("mask", rng.uniform(0, 1, (1, 18, 3, 6)).astype("float32")))
    one_node("DeformConv", inputs, attrs, opset=19, rtol=1e-4, atol=1e-4)


def test_deform_conv_3d_is_a_clear_error():
    x, w, offset = randn(1, 1, 3, 3, 3), randn(1, 1, 2, 2, 2), randn(1, 24, 2, 2, 2)
    node = helper.make_node("DeformConv", ["x", "w", "o"], ["y"])
    model = make_model([node], [("x", x), ("w", w), ("o", offset)], ["y"], opset=19)
    with pytest.raises(ConversionError, match="DeformConv node 'y': only 2-D"):
        import_onnx(model)


# -- Col2Im ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image,block,attrs",
    [
        ([5, 5], [2, 2], {}),
        ([6, 7], [3, 2], dict(strides=[2, 3], pads=[1, 0, 0, 1], dilations=[1, 2])),
        ([9], [3], dict(strides=[2])),
        ([3, 4, 5], [2, 2, 3], dict(pads=[0, 1, 1, 1, 0, 0])),
    ],
)
def test_col2im(image, block, attrs):
    n = len(image)
    pads = attrs.get("pads", [0] * 2 * n)
    strides = attrs.get("strides", [1] * n)
    dil = attrs.get("dilations", [1] * n)
    blocks = [
        (image[i] + pads[i] + pads[n + i] - dil[i] * (block[i] - 1) - 1) // strides[i] + 1
        for i in range(n)
    ]
    x = randn(2, 3 * int(np.prod(block)), int(np.prod(blocks)))
    shapes = [("image", np.array(image, "int64")), ("block", np.array(block, "int64"))]
    model, _ = one_node("Col2Im", [("x", x)], attrs, shapes, opset=18)
    assert [n.op for n in import_onnx(model).nodes] == ["reshape", "conv_transpose"]


def test_col2im_wrong_column_count_is_a_clear_error():
    x = randn(1, 4, 7)
    node = helper.make_node("Col2Im", ["x", "image", "block"], ["y"])
    shapes = [("image", np.array([4, 4], "int64")), ("block", np.array([2, 2], "int64"))]
    model = make_model([node], [("x", x)], ["y"], shapes, opset=18)
    with pytest.raises(ConversionError, match="Col2Im node 'y'"):
        import_onnx(model)


# -- CenterCropPad ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,axes",
    [([6, 3, 4], None), ([3, 9, 4], None), ([7, 2], [0, -1]), ([5, 5], [1, 2])],
)
def test_center_crop_pad(shape, axes):
    x = randn(4, 6, 4)
    attrs = {} if axes is None else dict(axes=axes)
    one_node("CenterCropPad", [("x", x)], attrs, [("shape", np.array(shape, "int64"))], opset=18)


# -- MaxPool indices and MaxUnpool -----------------------------------------------------------


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize(
    "attrs",
    [
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        dict(kernel_shape=[2, 3], strides=[2, 1], ceil_mode=1),
        dict(kernel_shape=[2, 2], dilations=[2, 1]),
    ],
)
def test_max_pool_indices(storage_order, attrs):
    x = randn(2, 3, 7, 6)
    attrs = dict(attrs, storage_order=storage_order)
    one_node("MaxPool", [("x", x)], attrs, outputs=("y", "i"), opset=12)


def test_max_pool_indices_3d():
    one_node(
        "MaxPool", [("x", randn(1, 2, 4, 5, 6))], dict(kernel_shape=[2, 2, 3]), outputs=("y", "i")
    )


def test_max_pool_then_unpool_round_trip():
    x = randn(1, 2, 6, 8)
    pool = dict(kernel_shape=[2, 2], strides=[2, 2])
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p", "i"], **pool),
        helper.make_node("MaxUnpool", ["p", "i"], ["y"], **pool),
    ]
    model = make_model(nodes, [("x", x)], ["y"], opset=11)
    (y,) = check_model(model, {"x": x})
    assert (y != 0).sum() == 2 * 3 * 4


def test_max_unpool_output_shape_zero_extends():
    x = np.array([[[[5, 6], [7, 8]]]], "float32")
    idx = np.array([[[[5, 7], [13, 15]]]], "int64")
    node = helper.make_node(
        "MaxUnpool", ["x", "i", "s"], ["y"], kernel_shape=[2, 2], strides=[2, 2]
    )
    shape = np.array([1, 1, 5, 5], "int64")
    model = make_model([node], [("x", x), ("i", idx)], ["y"], [("s", shape)], opset=11)
    graph = import_onnx(model)
    (y,) = run_graph(graph, {"x": x, "i": idx}).values()
    expected = np.zeros((1, 1, 5, 5), "float32")
    expected[0, 0, 1, 1], expected[0, 0, 1, 3], expected[0, 0, 3, 1], expected[0, 0, 3, 3] = (
        5,
        6,
        7,
        8,
    )
    np.testing.assert_array_equal(y, expected)


# -- NonMaxSuppression -----------------------------------------------------------------------

_BOXES = np.array(
    [
        [[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, -0.1, 1, 0.9], [0, 10, 1, 11], [1, 1, 0, 0.2]],
        [[0, 0, 2, 2], [0.5, 0.5, 2.5, 2.5], [0, 0, 0.2, 0.2], [3, 3, 4, 4], [0, 0, 2, 2]],
    ],
    "float32",
)
_SCORES = np.array(
    [
        [[0.9, 0.75, 0.6, 0.95, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]],
        [[0.3, 0.9, 0.9, 0.2, 0.3], [0.6, 0.6, 0.6, 0.6, 0.6]],
    ],
    "float32",
)


@pytest.mark.parametrize("center", [0, 1])
@pytest.mark.parametrize("limit,iou,score", [(3, 0.5, 0.0), (10, 0.2, None), (1, 0.0, 0.55)])
def test_non_max_suppression(center, limit, iou, score):
    consts = [
        ("boxes", _BOXES),
        ("scores", _SCORES),
        ("limit", np.array([limit], "int64")),
        ("iou", np.array([iou], "float32")),
    ]
    if score is not None:
        consts.append(("score", np.array([score], "float32")))
    model, _ = one_node("NonMaxSuppression", [], dict(center_point_box=center), consts, opset=11)
    assert import_onnx(model).nodes == []  # folded to a constant


def test_non_max_suppression_without_limit_selects_nothing():
    consts = [("boxes", _BOXES), ("scores", _SCORES)]
    _, (y,) = one_node("NonMaxSuppression", [], {}, consts, opset=10)
    assert y.shape == (0, 3)


def test_non_max_suppression_runtime_boxes_is_a_clear_error():
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["y"])
    model = make_model([node], [("boxes", _BOXES)], ["y"], [("scores", _SCORES)], opset=11)
    with pytest.raises(NeedsValueError, match="number of boxes kept") as e:
        import_onnx(model)
    assert e.value.value_name == "boxes"
