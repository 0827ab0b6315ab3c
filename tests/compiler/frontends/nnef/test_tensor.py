"""NNEF tensor-shape ops and pad_border, against numpy written here (and nnef-tools' torch
interpreter where it implements the op the way NNEF defines it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nnefutil import check_nnef, one_input_model, write_model

from compiler.errors import ConversionError
from compiler.frontends.nnef import import_nnef

RNG = np.random.default_rng(1)


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_reshape(tmp_path: Path) -> None:
    """0 copies the dim at its position, -1 is inferred, axis_start/axis_count reshape a
    sub-range only."""
    x = _x(2, 3, 4, 5)
    folder = one_input_model(
        tmp_path,
        [2, 3, 4, 5],
        [
            "a = reshape(x, shape = [0, -1])",
            "b = reshape(x, shape = [4, 0, -1, 2])",
            "c = reshape(x, shape = [12], axis_start = 1, axis_count = 2)",
            "d = reshape(x, shape = [0, 5, -1], axis_start = 2)",
            "e = reshape(x, shape = [1, 2], axis_start = 0, axis_count = 1)",
        ],
        ["a", "b", "c", "d", "e"],
    )
    check_nnef(
        folder,
        {"x": x},
        [
            x.reshape(2, 60),
            x.reshape(4, 3, 5, 2),
            x.reshape(2, 12, 5),
            x.reshape(2, 3, 4, 5, 1),
            x.reshape(1, 2, 3, 4, 5),
        ],
    )


def test_transpose_concat_split(tmp_path: Path) -> None:
    """transpose's axes may be shorter than the rank; split's ratios cut the axis into
    ``sum(ratios)`` equal units."""
    x = _x(2, 3, 6)
    folder = one_input_model(
        tmp_path,
        [2, 3, 6],
        [
            "t = transpose(x, axes = [1, 0])",
            "u = transpose(x, axes = [2, 0, 1])",
            "c = concat([x, x * 2.0, x], axis = 2)",
            "[s1, s2, s3] = split(x, axis = 2, ratios = [1, 3, 2])",
        ],
        ["t", "u", "c", "s1", "s2", "s3"],
    )
    check_nnef(
        folder,
        {"x": x},
        [
            x.transpose(1, 0, 2),
            x.transpose(2, 0, 1),
            np.concatenate([x, 2 * x, x], axis=2),
            x[:, :, :1],
            x[:, :, 1:4],
            x[:, :, 4:],
        ],
    )


@pytest.mark.parametrize(
    ("args", "index"),
    [
        ("axes = [1], begin = [1], end = [0]", np.s_[:, 1:]),  # end 0: to the end
        ("axes = [0, 1], begin = [-2, 0], end = [-1, 2]", np.s_[1:2, 0:2]),
        ("axes = [1], begin = [-5], end = [100]", np.s_[:, 0:5]),  # end clamped
        ("axes = [1], begin = [0], end = [5], stride = [2]", np.s_[:, 0:5:2]),
        ("axes = [1], begin = [-1], end = [-6], stride = [-1]", np.s_[:, ::-1]),  # through 0
        ("axes = [1], begin = [4], end = [0], stride = [-2]", np.s_[:, 4:0:-2]),
        ("axes = [1, 0], begin = [3, 0], end = [-100, 3], stride = [-2, 1]", np.s_[0:3, 3::-2]),
    ],
)
def test_slice(tmp_path: Path, args: str, index) -> None:
    """Negative indices count from the end and clamp to [-1, dim]; with a negative stride an
    end of -1 (after clamping) takes index 0 too."""
    x = _x(3, 5)
    folder = one_input_model(tmp_path, [3, 5], [f"y = slice(x, {args})"], ["y"])
    check_nnef(folder, {"x": x}, [x[index]])


def test_squeeze_unsqueeze_stack_unstack_tile(tmp_path: Path) -> None:
    x = _x(2, 1, 3)
    folder = one_input_model(
        tmp_path,
        [2, 1, 3],
        [
            "s = squeeze(x, axes = [1])",
            "u = unsqueeze(x, axes = [0, 4])",
            "k = stack([x, x * 3.0], axis = 1)",
            "[a, b] = unstack(x, axis = 0)",
            "t = tile(x, repeats = [2, 3, 1])",
        ],
        ["s", "u", "k", "a", "b", "t"],
    )
    check_nnef(
        folder,
        {"x": x},
        [
            x[:, 0],
            x[None, :, :, :, None],
            np.stack([x, 3 * x], axis=1),
            x[0],
            x[1],
            np.tile(x, (2, 3, 1)),
        ],
    )


def test_gather(tmp_path: Path) -> None:
    """Output shape input[:axis] + indices.shape + input[axis+1:]."""
    x = _x(3, 4, 2)
    idx = np.array([[3, 0, 1], [2, 2, 0]], np.int64)
    folder = write_model(
        tmp_path,
        "graph G( x, i ) -> ( y, z )\n{\n"
        "  x = external<scalar>(shape = [3, 4, 2]);\n"
        "  i = external<integer>(shape = [2, 3]);\n"
        "  y = gather(x, i, axis = 1);\n"
        "  z = gather(x, i, axis = 0);\n}",
    )
    # the interpreter's gather wants int64 indices; nnxc's integer is int64 too
    z_idx = np.minimum(idx, 2)
    check_nnef(folder, {"x": x, "i": z_idx}, [np.take(x, z_idx, axis=1), np.take(x, z_idx, axis=0)])


@pytest.mark.parametrize(
    ("border", "mode"),
    [
        ("constant", "constant"),
        ("replicate", "edge"),
        ("reflect", "reflect"),
        ("reflect-even", "symmetric"),
    ],
)
def test_pad_borders(tmp_path: Path, border: str, mode: str) -> None:
    """Every border mode of pad_border: reflect mirrors without the edge, reflect-even (numpy's
    symmetric) with it."""
    x = _x(1, 2, 4, 3)
    pads = [(0, 0), (0, 0), (2, 3), (2, 1)]
    folder = one_input_model(
        tmp_path,
        [1, 2, 4, 3],
        [f"y = pad(x, padding = {pads}, border = '{border}')".replace("[(", "[(")],
        ["y"],
    )
    expected = np.pad(x, pads, mode=mode)
    # the interpreter has no reflect-even beyond 1 (it refuses); compare with it elsewhere
    check_nnef(folder, {"x": x}, [expected], oracle=border != "reflect-even")


def test_pad_value_and_negative(tmp_path: Path) -> None:
    """``value`` fills constant padding; negative entries crop (after padding, as nnef-tools'
    interpreter does)."""
    x = _x(1, 2, 5, 4)
    folder = one_input_model(
        tmp_path,
        [1, 2, 5, 4],
        [
            "y = pad(x, padding = [(0, 0), (0, 0), (1, 2), (0, 1)], value = 1.5)",
            "z = pad(x, padding = [(0, 0), (0, 0), (-1, 2), (1, -2)], border = 'reflect')",
        ],
        ["y", "z"],
    )
    y = np.pad(x, [(0, 0), (0, 0), (1, 2), (0, 1)], constant_values=1.5)
    z = np.pad(x, [(0, 0), (0, 0), (0, 2), (1, 0)], mode="reflect")[:, :, 1:, :-2]
    check_nnef(folder, {"x": x}, [y, z])


def test_pad_reflect_even_in_all_dims(tmp_path: Path) -> None:
    """reflect-even in a leading dim and up to the full size (the interpreter pads only the
    spatial dims)."""
    x = _x(2, 3)
    folder = one_input_model(
        tmp_path, [2, 3], ["y = pad(x, padding = [(2, 1), (3, 3)], border = 'reflect-even')"], ["y"]
    )
    check_nnef(folder, {"x": x}, [np.pad(x, [(2, 1), (3, 3)], mode="symmetric")], oracle=False)


def test_errors(tmp_path: Path) -> None:
    """What NNEF's shape inference lets through and nnxc refuses, naming the node."""
    folder = one_input_model(tmp_path / "a", [2, 3], ["y = squeeze(x, axes = [1])"], ["y"])
    with pytest.raises(ConversionError, match="size 1"):
        import_nnef(folder)
    folder = one_input_model(
        tmp_path / "b", [2, 3], ["y = pad(x, padding = [(0, 0), (1, 1)], border = 'ignore')"], ["y"]
    )
    with pytest.raises(ConversionError, match="ignore"):
        import_nnef(folder)
    folder = one_input_model(
        tmp_path / "c",
        [2, 3],
        ["y = pad(x, padding = [(0, 0), (4, 0)], border = 'reflect-even')"],
        ["y"],
    )
    with pytest.raises(ConversionError, match="reflect-even"):
        import_nnef(folder)
