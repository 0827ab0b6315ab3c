"""Element-wise MIL ops against numpy and torch.nn.functional: binary arithmetic and
comparisons, unary math (epsilons included), activations with their parameters, gelu's
three modes and softmax in fp32 and fp16."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types
from coremlutil import check, ct, save_program

from compiler.frontends.coreml.importer import import_coreml

rng = np.random.default_rng(0)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float64))


def test_binary_float(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3)), mb.TensorSpec(shape=(3,))])
    def prog(x, y):
        pos = mb.add(x=mb.abs(x=x), y=0.5)
        outs = [
            mb.add(x=x, y=y),
            mb.sub(x=x, y=y),
            mb.mul(x=x, y=y),
            mb.real_div(x=x, y=y),
            mb.floor_div(x=x, y=y),
            mb.mod(x=x, y=y),
            mb.pow(x=pos, y=y),
            mb.maximum(x=x, y=y),
            mb.minimum(x=x, y=y),
        ]
        cmp = [
            mb.equal(x=x, y=y),
            mb.not_equal(x=x, y=y),
            mb.less(x=x, y=y),
            mb.less_equal(x=x, y=y),
            mb.greater(x=x, y=y),
            mb.greater_equal(x=x, y=y),
        ]
        a, b = mb.less(x=x, y=0.0), mb.greater(x=y, y=-0.5)
        cmp += [mb.logical_and(x=a, y=b), mb.logical_or(x=a, y=b), mb.logical_xor(x=a, y=b)]
        cmp.append(mb.logical_not(x=a))
        return tuple(outs + [mb.cast(x=c, dtype="fp32") for c in cmp])

    x = rng.uniform(-3, 3, (2, 3)).astype(np.float32)
    y = np.array([1.5, -2.0, 0.75], np.float32)
    x[0, 0] = y[0]  # equal somewhere
    pos = np.abs(x) + 0.5
    a, b = x < 0, y > -0.5
    want = [x + y, x - y, x * y, x / y, np.floor(x / y), np.mod(x, y), pos**y]
    want += [np.maximum(x, y), np.minimum(x, y)]
    want += [x == y, x != y, x < y, x <= y, x > y, x >= y, a & b, a | b, a ^ b, ~a]
    want = [np.asarray(w, np.float32) for w in want]
    check(save_program(prog, tmp_path), {"x": x, "y": y}, want, rtol=1e-5, atol=1e-5)


def test_binary_int32(tmp_path: Path) -> None:
    """floor_div rounds toward -inf and mod takes the divisor's sign (Python's // and %);
    real_div of integers truncates."""

    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(6,), dtype=types.int32),
            mb.TensorSpec(shape=(6,), dtype=types.int32),
        ],
        opset_version=ct.target.iOS15,
    )
    def prog(x, y):
        return (
            mb.floor_div(x=x, y=y),
            mb.mod(x=x, y=y),
            mb.real_div(x=x, y=y),
            mb.pow(x=x, y=2),
            mb.exp2(x=mb.abs(x=y)),
            mb.square(x=x),
        )

    x = np.array([7, -7, 7, -7, 6, 0], np.int32)
    y = np.array([2, 2, -2, -2, 3, 5], np.int32)
    want = [x // y, x % y, np.trunc(x / y).astype(np.int32), x**2, 2 ** np.abs(y), x * x]
    check(save_program(prog, tmp_path), {"x": x, "y": y}, want, tvm=False)


def test_unary_math(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(3, 4)), mb.TensorSpec(shape=(3, 4))])
    def prog(u, x):
        ops = ["acos", "asin", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh"]
        outs = [getattr(mb, op)(x=u) for op in ops]
        outs += [mb.exp(x=x), mb.exp2(x=x), mb.erf(x=x), mb.abs(x=x), mb.sign(x=x)]
        outs += [mb.ceil(x=x), mb.floor(x=x), mb.round(x=x), mb.square(x=x)]
        outs += [mb.sqrt(x=u), mb.log(x=u), mb.rsqrt(x=u), mb.inverse(x=u)]
        outs += [mb.log(x=u, epsilon=0.5), mb.rsqrt(x=u, epsilon=0.25)]
        outs += [mb.inverse(x=u, epsilon=0.5), mb.clip(x=x, alpha=-1.0, beta=0.5)]
        outs.append(mb.threshold(x=x, alpha=0.25))
        return tuple(outs)

    u = rng.uniform(0.05, 0.95, (3, 4)).astype(np.float32)
    x = rng.uniform(-3, 3, (3, 4)).astype(np.float32)
    x[0, :3] = [0.5, -1.5, 2.5]  # round: half to even
    u64, x64 = u.astype(np.float64), x.astype(np.float64)
    want = [f(u64) for f in (np.arccos, np.arcsin, np.arctan, np.arctanh, np.cos)]
    want += [f(u64) for f in (np.cosh, np.sin, np.sinh, np.tan, np.tanh)]
    want += [np.exp(x64), np.exp2(x64), torch.erf(_t(x)).numpy(), np.abs(x64), np.sign(x64)]
    want += [np.ceil(x64), np.floor(x64), np.round(x64), x64**2]
    want += [np.sqrt(u64), np.log(u64 + 1e-45), 1 / np.sqrt(u64 + 1e-12), 1 / (u64 + 1e-4)]
    want += [np.log(u64 + 0.5), 1 / np.sqrt(u64 + 0.25), 1 / (u64 + 0.5)]
    want += [np.clip(x64, -1, 0.5), np.maximum(x64, 0.25)]
    check(save_program(prog, tmp_path), {"u": u, "x": x}, want, rtol=1e-5, atol=1e-5)


def test_activations(tmp_path: Path) -> None:
    alpha = np.array([0.1, 0.2, 0.3], np.float32)
    beta = np.array([1.0, 2.0, 0.5], np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3, 4, 5))])
    def prog(x):
        return (
            mb.relu(x=x),
            mb.relu6(x=mb.mul(x=x, y=3.0)),
            mb.sigmoid(x=x),
            mb.sigmoid_hard(x=x, alpha=0.2, beta=0.5),
            mb.silu(x=x),
            mb.softplus(x=x),
            mb.softplus_parametric(x=x, alpha=alpha, beta=beta),
            mb.softsign(x=x),
            mb.elu(x=x, alpha=0.7),
            mb.leaky_relu(x=x, alpha=0.05),
            mb.prelu(x=x, alpha=alpha),
            mb.thresholded_relu(x=x, alpha=0.5),
            mb.clamped_relu(x=x, alpha=0.1, beta=1.5),
            mb.scaled_tanh(x=x, alpha=2.0, beta=0.5),
            mb.linear_activation(x=x, alpha=-1.5, beta=0.25),
        )

    x = rng.uniform(-4, 4, (2, 3, 4, 5)).astype(np.float32)
    x[0, 0, 0, :2] = [0.5, 0.0]  # thresholded_relu keeps x == alpha
    t = _t(x)
    a4, b4 = _t(alpha).reshape(1, 3, 1, 1), _t(beta).reshape(1, 3, 1, 1)
    want = [
        F.relu(t),
        F.relu6(3 * t),
        torch.sigmoid(t),
        torch.clamp(0.2 * t + 0.5, 0, 1),
        F.silu(t),
        F.softplus(t),
        a4 * torch.log1p(torch.exp(b4 * t)),
        F.softsign(t),
        F.elu(t, 0.7),
        F.leaky_relu(t, 0.05),
        F.prelu(t, _t(alpha)),
        torch.where(t >= 0.5, t, 0.0),
        torch.clamp(F.leaky_relu(t, 0.1), max=1.5),
        2 * torch.tanh(0.5 * t),
        -1.5 * t + 0.25,
    ]
    check(save_program(prog, tmp_path), {"x": x}, [w.numpy() for w in want], atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_gelu_modes_and_softmax(tmp_path: Path, precision: str) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3, 8))])
    def prog(x):
        return (
            mb.gelu(x=x),
            mb.gelu(x=x, mode="TANH_APPROXIMATION"),
            mb.gelu(x=x, mode="SIGMOID_APPROXIMATION"),
            mb.softmax(x=x),
            mb.softmax(x=x, axis=1),
        )

    x = rng.uniform(-4, 4, (2, 3, 8)).astype(np.float32)
    t = _t(x)
    want = [
        F.gelu(t),
        F.gelu(t, approximate="tanh"),
        t * torch.sigmoid(1.702 * t),
        F.softmax(t, -1),
        F.softmax(t, 1),
    ]
    path = save_program(prog, tmp_path, precision=precision)
    graph, _ = import_coreml(path)
    computes = {n.outputs[0].dtype for n in graph.nodes if n.op in ("gelu", "softmax")}
    assert computes == {"float16" if precision == "fp16" else "float32"}
    tol = 2e-3 if precision == "fp16" else 1e-5
    check(path, {"x": x}, [w.numpy() for w in want], rtol=tol, atol=tol)


def test_gelu_exact_is_erf(tmp_path: Path) -> None:
    """EXACT is 0.5 x (1 + erf(x / sqrt 2)), not an approximation, far into the tails."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(5,))])
    def prog(x):
        return mb.gelu(x=x, mode="EXACT")

    x = np.array([-6.0, -2.5, 0.0, 1.25, 6.0], np.float32)
    want = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)]
    check(save_program(prog, tmp_path), {"x": x}, [np.array(want)], tvm=False, atol=1e-6)
