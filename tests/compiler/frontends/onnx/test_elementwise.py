import numpy as np
from onnx import helper
from onnxutil import check_model, make_model


def test_add_relu():
    a = np.random.randn(2, 3).astype("float32")
    b = np.random.randn(3).astype("float32")
    model = make_model(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])],
        [("a", a), ("b", b)],
        ["y"],
    )
    check_model(model, {"a": a, "b": b})
