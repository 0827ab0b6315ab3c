"""Elementwise NNEF ops: NNEF's leading-axis broadcasting, rounding, the simplifier and
activation fragments, matmul and linear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nnefutil import check_nnef, write_model

RNG = np.random.default_rng(0)


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_leading_axis_broadcasting(tmp_path: Path) -> None:
    """``[1,16,4,4] + [1,16]`` adds per channel; ``[1,16,4,4] + [4]`` broadcasts to
    ``[4,16,4,4]`` (numpy would align trailing axes)."""
    x, b, c = _x(1, 16, 4, 4), _x(1, 16), _x(4)
    folder = write_model(
        tmp_path,
        "graph G( x ) -> ( y, z )\n{\n"
        "  x = external<scalar>(shape = [1, 16, 4, 4]);\n"
        "  b = variable<scalar>(shape = [1, 16], label = 'b');\n"
        "  c = variable<scalar>(shape = [4], label = 'c');\n"
        "  y = x + b;\n  z = x * c;\n}",
        {"b": b, "c": c},
    )
    check_nnef(
        folder,
        {"x": x},
        [x + b[:, :, None, None], x * c[:, None, None, None]],
    )


@pytest.mark.parametrize(
    ("expr", "fn"),
    [
        ("round(x * 4.0)", lambda x: np.sign(4 * x) * np.floor(np.abs(4 * x) + 0.5)),
        ("sqr(x)", lambda x: x * x),
        ("rsqr(x + 3.0)", lambda x: (x + 3) ** -2),
        ("rsqrt(abs(x) + 1.0)", lambda x: 1 / np.sqrt(np.abs(x) + 1)),
        ("log2(abs(x) + 1.0)", lambda x: np.log2(np.abs(x) + 1)),
        ("min(x, 0.5)", lambda x: np.minimum(x, 0.5)),
        ("max(x, 0.5)", lambda x: np.maximum(x, 0.5)),
        ("clamp(x, -0.5, 0.5)", lambda x: np.clip(x, -0.5, 0.5)),
        ("select(x > 0.0, x, 2.0 * x)", lambda x: np.where(x > 0, x, 2 * x)),
        ("gelu(x)", lambda x: x / (1 + np.exp(-1.702 * x))),
        ("silu(x)", lambda x: x / (1 + np.exp(-x))),
        ("elu(x, alpha = 0.5)", lambda x: np.where(x < 0, 0.5 * (np.exp(x) - 1), x)),
        ("leaky_relu(x, alpha = 0.1)", lambda x: np.where(x < 0, 0.1 * x, x)),
        ("softplus(x)", lambda x: np.log(np.exp(x) + 1)),
        ("rcp(x + 3.0)", lambda x: 1 / (x + 3)),
        ("copy(x)", lambda x: x),
    ],
)
def test_unary_fragments(tmp_path: Path, expr: str, fn) -> None:
    x = _x(2, 3, 5)
    x[0, 0, :3] = [0.125, -0.375, 0.625]  # halfway cases after * 4.0
    folder = write_model(
        tmp_path,
        f"graph G( x ) -> ( y )\n{{\n  x = external<scalar>(shape = [2, 3, 5]);\n  y = {expr};\n}}",
    )
    # the interpreter rounds half to even and uses erf-gelu: compare with it only elsewhere
    oracle = not expr.startswith(("round", "gelu"))
    check_nnef(folder, {"x": x}, [fn(x).astype(np.float32)], oracle=oracle)


def test_matmul_transposes_and_linear(tmp_path: Path) -> None:
    a, b = _x(2, 5, 3), _x(2, 4, 5)
    x, w, bias = _x(3, 6), _x(4, 6), _x(1, 4)
    folder = write_model(
        tmp_path,
        "graph G( a, b, x ) -> ( c, y )\n{\n"
        "  a = external<scalar>(shape = [2, 5, 3]);\n"
        "  b = external<scalar>(shape = [2, 4, 5]);\n"
        "  x = external<scalar>(shape = [3, 6]);\n"
        "  w = variable<scalar>(shape = [4, 6], label = 'w');\n"
        "  bias = variable<scalar>(shape = [1, 4], label = 'bias');\n"
        "  c = matmul(a, b, transposeA = true, transposeB = true);\n"
        "  y = linear(x, w, bias);\n}",
        {"w": w, "bias": bias},
    )
    check_nnef(
        folder,
        {"a": a, "b": b, "x": x},
        [a.transpose(0, 2, 1) @ b.transpose(0, 2, 1), x @ w.T + bias],
    )


def test_cast(tmp_path: Path) -> None:
    """Generic casts (written as their own statements: inside an operator expression the
    parser reads ``<`` as less-than)."""
    x = _x(2, 5) * 3
    folder = write_model(
        tmp_path,
        "graph G( x ) -> ( y, b )\n{\n  x = external<scalar>(shape = [2, 5]);\n"
        "  i = cast<integer>(x);\n  y = cast<scalar>(i);\n  b = cast<logical>(i);\n}",
    )
    check_nnef(folder, {"x": x}, [np.trunc(x), np.trunc(x) != 0], oracle=False)
