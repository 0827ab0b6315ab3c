import numpy as np
from oputil import check_op


def test_add_broadcasts():
    a = np.random.rand(2, 3).astype("float32")
    b = np.random.rand(3).astype("float32")
    check_op("add", [a, b], expected=[a + b])


def test_relu():
    x = np.random.randn(4, 5).astype("float32")
    check_op("relu", [x], expected=[np.maximum(x, 0)])
