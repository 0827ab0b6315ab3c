"""NNEF reductions (reduced axes kept as size 1), softmax, moments, batch and l2
normalization, against numpy written here (and nnef-tools' torch interpreter where it follows
NNEF's definitions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nnefutil import check_nnef, one_input_model, write_model

RNG = np.random.default_rng(2)


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_reductions_keep_dims(tmp_path: Path) -> None:
    x = _x(2, 3, 4)
    folder = one_input_model(
        tmp_path,
        [2, 3, 4],
        [
            "s = sum_reduce(x, axes = [0, 2])",
            "n = sum_reduce(x, axes = [1], normalize = true)",
            "a = max_reduce(x, axes = [2, 1])",
            "b = min_reduce(x, axes = [0])",
            "m = mean_reduce(x, axes = [1, 2])",
            "e = sum_reduce(x, axes = [])",
        ],
        ["s", "n", "a", "b", "m", "e"],
    )
    check_nnef(
        folder,
        {"x": x},
        [
            x.sum(axis=(0, 2), keepdims=True),
            x.mean(axis=1, keepdims=True),
            x.max(axis=(1, 2), keepdims=True),
            x.min(axis=0, keepdims=True),
            x.mean(axis=(1, 2), keepdims=True),
            x,
        ],
    )


def _arg_over(x: np.ndarray, axes: list[int], fn) -> np.ndarray:
    """The first extreme's row-major index into the block of ``axes``, written with loops."""
    kept = [a for a in range(x.ndim) if a not in axes]
    out = np.zeros([1 if a in axes else d for a, d in enumerate(x.shape)], np.int64)
    for index in np.ndindex(*[x.shape[a] for a in kept]):
        sel: list = [slice(None)] * x.ndim
        for a, i in zip(kept, index):
            sel[a] = i
        block = x[tuple(sel)]  # the reduced axes, in order
        best = fn(block.reshape(-1))
        where: list = [0] * x.ndim
        for a, i in zip(kept, index):
            where[a] = i
        out[tuple(where)] = best
    return out


def test_argmax_argmin_reduce(tmp_path: Path) -> None:
    """Over several axes: the row-major index into the reduced axes; ties: the first."""
    x = np.round(_x(2, 3, 4, 2) * 2).astype(np.float32)  # many ties
    folder = one_input_model(
        tmp_path,
        [2, 3, 4, 2],
        [
            "a = argmax_reduce(x, axes = [1])",
            "b = argmin_reduce(x, axes = [1, 2])",
            "c = argmax_reduce(x, axes = [1, 3])",  # not consecutive
        ],
        ["a", "b", "c"],
    )
    expected = [
        _arg_over(x, [1], np.argmax),
        _arg_over(x, [1, 2], np.argmin),
        _arg_over(x, [1, 3], np.argmax),
    ]
    got = check_nnef(folder, {"x": x}, expected, oracle=False)
    # the interpreter takes consecutive axes only (and torch picks some index on ties)
    assert all(g.dtype == np.int64 for g in got)


def test_argmax_reduce_oracle(tmp_path: Path) -> None:
    x = _x(2, 3, 4)
    folder = one_input_model(tmp_path, [2, 3, 4], ["a = argmax_reduce(x, axes = [1, 2])"], ["a"])
    check_nnef(folder, {"x": x}, [_arg_over(x, [1, 2], np.argmax)])


def test_any_all_reduce(tmp_path: Path) -> None:
    x = _x(3, 4)
    folder = one_input_model(
        tmp_path,
        [3, 4],
        ["p = x > 0.5", "a = any_reduce(p, axes = [1])", "b = all_reduce(x > -1.0, axes = [0, 1])"],
        ["a", "b"],
    )
    check_nnef(
        folder,
        {"x": x},
        [(x > 0.5).any(axis=1, keepdims=True), (x > -1).all(axis=(0, 1), keepdims=True)],
    )


def test_moments_and_softmax(tmp_path: Path) -> None:
    x = _x(2, 3, 4)
    folder = one_input_model(
        tmp_path,
        [2, 3, 4],
        ["m, v = moments(x, axes = [0, 2])", "s = softmax(x)", "t = softmax(x, axes = [2])"],
        ["m", "v", "s", "t"],
    )
    mean = x.mean(axis=(0, 2), keepdims=True)
    e1, e2 = np.exp(x - x.max(1, keepdims=True)), np.exp(x - x.max(2, keepdims=True))
    check_nnef(
        folder,
        {"x": x},
        [
            mean,
            ((x - mean) ** 2).mean(axis=(0, 2), keepdims=True),
            e1 / e1.sum(1, keepdims=True),  # the default axes are [1]
            e2 / e2.sum(2, keepdims=True),
        ],
    )


def test_softmax_several_axes(tmp_path: Path) -> None:
    """The fragment's body; the interpreter divides by the sum of x there (a bug), and with no
    axes returns x where the fragment gives 1: no oracle."""
    x = _x(2, 3, 4)
    folder = one_input_model(
        tmp_path,
        [2, 3, 4],
        ["s = softmax(x, axes = [0, 2])", "o = softmax(x, axes = [])"],
        ["s", "o"],
    )
    e = np.exp(x - x.max(axis=(0, 2), keepdims=True))
    check_nnef(
        folder, {"x": x}, [e / e.sum(axis=(0, 2), keepdims=True), np.ones_like(x)], oracle=False
    )


def _bn(x, mean, var, offset, scale, eps):
    return offset + scale * (x - mean) / np.sqrt(var + eps)


def test_batch_normalization(tmp_path: Path) -> None:
    """[1, C] parameters (the IR batch_norm), literals, and a parameter that is not per
    channel (the fragment's body, leading axes aligned)."""
    x = _x(2, 3, 4, 4)
    mean, offset, scale = _x(1, 3), _x(1, 3), _x(1, 3)
    var = np.abs(_x(1, 3)) + 0.5
    full = np.abs(_x(2, 3, 4, 4)) + 0.5
    folder = write_model(
        tmp_path,
        "graph G( x ) -> ( y, z, w )\n{\n"
        "  x = external<scalar>(shape = [2, 3, 4, 4]);\n"
        "  mean = variable<scalar>(shape = [1, 3], label = 'mean');\n"
        "  var = variable<scalar>(shape = [1, 3], label = 'var');\n"
        "  offset = variable<scalar>(shape = [1, 3], label = 'offset');\n"
        "  scale = variable<scalar>(shape = [1, 3], label = 'scale');\n"
        "  full = variable<scalar>(shape = [2, 3, 4, 4], label = 'full');\n"
        "  y = batch_normalization(x, mean, var, offset, scale, epsilon = 0.01);\n"
        "  z = batch_normalization(x, mean, var, 0.0, 1.0, epsilon = 0.001);\n"
        "  w = batch_normalization(x, mean, full, offset, 2.0, epsilon = 0.001);\n}",
        {"mean": mean, "var": var, "offset": offset, "scale": scale, "full": full},
    )
    c = (slice(None), slice(None), None, None)
    check_nnef(
        folder,
        {"x": x},
        [
            _bn(x, mean[c], var[c], offset[c], scale[c], 0.01),
            _bn(x, mean[c], var[c], 0.0, 1.0, 0.001),
            _bn(x, mean[c], full, offset[c], 2.0, 0.001),
        ],
        oracle=False,  # the interpreter squeezes parameters to [C]: the full variance breaks it
    )


def test_batch_normalization_oracle(tmp_path: Path) -> None:
    x = _x(2, 3, 5)
    p = {k: _x(1, 3) for k in ("mean", "offset", "scale")}
    p["var"] = np.abs(_x(1, 3)) + 0.5
    folder = write_model(
        tmp_path,
        "graph G( x ) -> ( y )\n{\n"
        "  x = external<scalar>(shape = [2, 3, 5]);\n"
        + "".join(f"  {k} = variable<scalar>(shape = [1, 3], label = '{k}');\n" for k in p)
        + "  y = batch_normalization(x, mean, var, offset, scale, epsilon = 0.001);\n}",
        p,
    )
    c = (slice(None), slice(None), None)
    check_nnef(
        folder, {"x": x}, [_bn(x, p["mean"][c], p["var"][c], p["offset"][c], p["scale"][c], 1e-3)]
    )


@pytest.mark.parametrize(("bias", "eps"), [(0.0, 0.0), (0.5, 0.0), (0.0, 10.0)])
def test_l2_normalization(tmp_path: Path, bias: float, eps: float) -> None:
    """``x / max(sqrt(sum(x^2)) + bias, epsilon)``; a large epsilon wins the max."""
    x = _x(2, 3, 4)
    folder = one_input_model(
        tmp_path,
        [2, 3, 4],
        [f"y = l2_normalization(x, axes = [1, 2], bias = {bias}, epsilon = {eps})"],
        ["y"],
    )
    sigma = np.sqrt((x * x).sum(axis=(1, 2), keepdims=True)) + bias
    check_nnef(folder, {"x": x}, [x / np.maximum(sigma, eps)])


def test_l1_normalization_lowered(tmp_path: Path) -> None:
    x = _x(2, 3)
    folder = one_input_model(
        tmp_path, [2, 3], ["y = l1_normalization(x, axes = [1], bias = 0.25, epsilon = 0.1)"], ["y"]
    )
    check_nnef(folder, {"x": x}, [x / np.maximum(np.abs(x).sum(axis=1, keepdims=True) + 0.25, 0.1)])
