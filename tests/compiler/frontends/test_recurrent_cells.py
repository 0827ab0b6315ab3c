"""The recurrent cells on their own: emitted through a plain Builder, no ONNX involved."""

import numpy as np
import pytest

from backends.reference import run_graph
from compiler.frontends.recurrent_cells import (
    Activation,
    GRUWeights,
    LSTMWeights,
    activations_from,
    gru_cell,
    lstm_cell,
    masked,
)
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.types import TensorType

rng = np.random.default_rng(1)
SIG, TANH = Activation("sigmoid"), Activation("tanh")


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _inputs(g, **arrays):
    return {k: g.add_input(k, TensorType.of(v)) for k, v in arrays.items()}


def test_activations_take_alpha_and_beta_in_order():
    acts = activations_from(["Affine", "Tanh", "LeakyRelu", "HardSigmoid"], [2.0, 0.1], [3.0])
    assert acts == [
        Activation("affine", 2.0, 3.0),
        Activation("tanh"),
        Activation("leakyrelu", 0.1),
        Activation("hardsigmoid", 0.2, 0.5),
    ]
    with pytest.raises(ValueError, match="unknown activation function 'Gelu'"):
        activations_from(["Gelu"], [], [])


def test_lstm_cell_with_stacked_directions_and_mask():
    """Two directions stacked on a leading axis, one step, a mask keeping entry 0 only."""
    d, b, n = 2, 3, 4
    x_t = rng.standard_normal((d, b, 4 * n)).astype("float32")
    h, c = (rng.standard_normal((d, b, n)).astype("float32") for _ in range(2))
    r_t = rng.standard_normal((d, n, 4 * n)).astype("float32")
    p = [rng.standard_normal((d, 1, n)).astype("float32") for _ in range(3)]
    keep = np.array([True, False, False]).reshape(1, b, 1)
    g = Graph()
    bld = Builder(g)
    v = _inputs(g, x_t=x_t, h=h, c=c, keep=keep)
    w = LSTMWeights(bld.const(r_t), SIG, TANH, TANH, n, *(bld.const(a) for a in p))
    new = lstm_cell(bld, v["x_t"], (v["h"], v["c"]), w)
    g.set_outputs(list(masked(bld, v["keep"], new, (v["h"], v["c"]))), ["h", "c"])
    got = run_graph(g, {"x_t": x_t, "h": h, "c": c, "keep": keep})

    gates = x_t + h @ r_t
    gi, go, gf, gc = np.split(gates, 4, axis=-1)
    i, f = _sigmoid(gi + p[0] * c), _sigmoid(gf + p[2] * c)
    c_new = f * c + i * np.tanh(gc)
    h_new = _sigmoid(go + p[1] * c_new) * np.tanh(c_new)
    np.testing.assert_allclose(got["h"], np.where(keep, h_new, h), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["c"], np.where(keep, c_new, c), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("linear_before_reset", [False, True])
def test_gru_cell(linear_before_reset):
    b, n = 2, 3
    x_t = rng.standard_normal((b, 3 * n)).astype("float32")
    h = rng.standard_normal((b, n)).astype("float32")
    r_t = rng.standard_normal((n, 3 * n)).astype("float32")
    rb_h = rng.standard_normal((1, n)).astype("float32")
    g = Graph()
    bld = Builder(g)
    v = _inputs(g, x_t=x_t, h=h)
    if linear_before_reset:
        w = GRUWeights(bld.const(r_t), SIG, TANH, n, True, rb_h=bld.const(rb_h), clip=0.5)
    else:
        w = GRUWeights(bld.const(r_t[:, : 2 * n]), SIG, TANH, n, r_h_t=bld.const(r_t[:, 2 * n :]))
    g.set_outputs(list(gru_cell(bld, v["x_t"], (v["h"],), w)), ["h"])
    got = run_graph(g, {"x_t": x_t, "h": h})["h"]

    clip = (lambda a: np.clip(a, -0.5, 0.5)) if linear_before_reset else (lambda a: a)
    xz, xr, xh = np.split(x_t, 3, axis=-1)
    rz, rr, rh = np.split(r_t, 3, axis=-1)
    z, r = _sigmoid(clip(xz + h @ rz)), _sigmoid(clip(xr + h @ rr))
    rec = r * (h @ rh + rb_h) if linear_before_reset else (r * h) @ rh
    cand = np.tanh(clip(xh + rec))
    np.testing.assert_allclose(got, (1 - z) * cand + z * h, rtol=1e-5, atol=1e-6)
