"""NNEF quantization: the fragments as ops, graph.quant entries of activations (fake
quantization) and of variables (integer codes in .dat files: 8-bit through nnef.write_tensor,
sub-byte packed and 1-bit bool files written by hand, a model from nnef-tools' writer).

The expected values are numpy written here from the fragment bodies, rounding half away from
zero (NNEF's round, C++ std::round); nnef-tools' interpreter rounds half to even, so it is
compared only on inputs without ties."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from nnefutil import check_nnef, one_input_model, write_model

from compiler.errors import ConversionError, ModelLoadError
from compiler.frontends.nnef import import_nnef

RNG = np.random.default_rng(3)


def _round(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _zero_point(x, zp, scale, bits, signed, symmetric):
    r = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    low = 0 if not signed else -r if symmetric else -r - 1
    q = np.clip(_round(x / scale) + zp, low, r)
    return ((q - zp) * scale).astype(np.float32)


def _min_max(x, lo, hi, bits, signed, symmetric):
    r = 2**bits - 1 - int(signed and symmetric)
    q = _round((np.clip(x, lo, hi) - lo) / (hi - lo) * r)
    return (q / r * (hi - lo) + lo).astype(np.float32)


def _log(x, hi, bits):
    m = np.ceil(np.log2(hi))
    r = 2**bits - 1
    with np.errstate(divide="ignore"):
        q = _round(np.clip(np.log2(np.abs(x)), m - r, m))
    return (np.sign(x) * 2.0**q).astype(np.float32)


# -- the fragments as ops ---------------------------------------------------------------------
def test_fragments_as_ops_with_ties(tmp_path: Path) -> None:
    """Halfway cases round away from zero (0.5 -> 1, -2.5 -> -3, 1.5 -> 2)."""
    x = np.array([[0.25, -1.25, 0.75, 3.0, -9.0, 0.1, -0.0, 2.1]], np.float32)
    folder = one_input_model(
        tmp_path,
        [1, 8],
        [
            "a = zero_point_linear_quantize(x, zero_point = 3, scale = 0.5, bits = 4, "
            "signed = true, symmetric = false)",
            "b = min_max_linear_quantize(x, min = -1.0, max = 2.0, bits = 3, signed = true, "
            "symmetric = true)",
            "c = linear_quantize(x, min = -1.0, max = 3.0, bits = 3)",
            "d = logarithmic_quantize(x, max = 4.0, bits = 2)",
            "e = logarithmic_quantize(x, max = abs(x) + 1.0, bits = 2)",  # max not constant
        ],
        ["a", "b", "c", "d", "e"],
    )
    check_nnef(
        folder,
        {"x": x},
        [
            _zero_point(x, 3, 0.5, 4, True, False),
            _min_max(x, -1.0, 2.0, 3, True, True),
            _min_max(x, -1.0, 3.0, 3, False, False),
            _log(x, 4.0, 2),
            _log(x, np.abs(x) + 1, 2),
        ],
        oracle=False,
    )
    # one tie made explicit: 0.25 / 0.5 = 0.5 rounds to 1, + zero point 3 = 4 -> (4 - 3) * 0.5
    assert _zero_point(x, 3, 0.5, 4, True, False)[0, 0] == 0.5


@pytest.mark.parametrize(("signed", "symmetric"), [(False, False), (True, False), (True, True)])
def test_fragments_vs_oracle(tmp_path: Path, signed: bool, symmetric: bool) -> None:
    """Per-channel parameters given as [1, C] variables (rank 2, where the interpreter's
    trailing-axis broadcasting agrees with NNEF's); random inputs (no ties), so the
    interpreter agrees too. (Leading-axis alignment of parameters: test_uint8_and_int8_codes.)"""
    x = (RNG.standard_normal((4, 3)) * 2).astype(np.float32)
    scale = np.array([[0.1, 0.3, 0.05]], np.float32)
    zp = np.array([[0, 2, -3]] if signed else [[0, 7, 128]], np.int64)
    lo, hi = np.array([[-1.0, -2.0, 0.0]], np.float32), np.array([[1.0, 0.5, 3.0]], np.float32)
    flag = f"signed = {str(signed).lower()}, symmetric = {str(symmetric).lower()}"
    folder = one_input_model(
        tmp_path,
        [4, 3],
        [
            "s = variable<scalar>(shape = [1, 3], label = 's')",
            "z = variable<integer>(shape = [1, 3], label = 'z')",
            "lo = variable<scalar>(shape = [1, 3], label = 'lo')",
            "hi = variable<scalar>(shape = [1, 3], label = 'hi')",
            f"a = zero_point_linear_quantize(x, zero_point = z, scale = s, bits = 8, {flag})",
            f"b = min_max_linear_quantize(x, min = lo, max = hi, bits = 5, {flag})",
            "d = logarithmic_quantize(x, max = 3.0, bits = 3)",
        ],
        ["a", "b", "d"],
        variables={"s": scale, "z": zp, "lo": lo, "hi": hi},
    )
    check_nnef(
        folder,
        {"x": x},
        [
            _zero_point(x, zp, scale, 8, signed, symmetric),
            _min_max(x, lo, hi, 5, signed, symmetric),
            _log(x, 3.0, 3),
        ],
    )


# -- graph.quant: activations -----------------------------------------------------------------
def test_activation_entries(tmp_path: Path) -> None:
    """An input and an op's result pass through their entries' fragments where computed."""
    x = np.array([[0.3, -0.7, 1.26, 5.0, -5.0, 0.0]], np.float32)
    folder = one_input_model(
        tmp_path,
        [1, 6],
        ["y = x * 2.0", "w = y + 0.0"],
        ["w"],
        quant='"x": zero_point_linear_quantize(zero_point = 0, scale = 0.25, bits = 8, '
        "signed = true, symmetric = true);\n"
        '"y": min_max_linear_quantize(min = -2.0, max = 2.0, bits = 4, signed = false, '
        "symmetric = false);\n",
    )
    xq = _zero_point(x, 0, 0.25, 8, True, True)
    check_nnef(folder, {"x": x}, [_min_max(xq * 2, -2.0, 2.0, 4, False, False)], oracle=False)


def test_unknown_scheme_refused(tmp_path: Path) -> None:
    folder = one_input_model(
        tmp_path,
        [2],
        ["y = x + 1.0"],
        ["y"],
        fragments="fragment myq( x: tensor<scalar>, k: scalar ) -> ( y: tensor<scalar> )\n"
        "{ y = x * k; }\n",
        quant='"y": myq(k = 2.0);\n',
    )
    with pytest.raises(ConversionError, match="myq"):
        import_nnef(folder)


# -- graph.quant: variables --------------------------------------------------------------------
def _variable_model(tmp_path: Path, shape: list[int], quant: str, **kw) -> Path:
    return write_model(
        tmp_path,
        f"graph G( x ) -> ( y )\n{{\n  x = external<scalar>(shape = {shape});\n"
        f"  w = variable<scalar>(shape = {shape}, label = 'w');\n  y = x + w;\n}}",
        quant=quant,
        **kw,
    )


def test_uint8_and_int8_codes(tmp_path: Path) -> None:
    """quint8 codes, zero point scheme with per-channel (leading axis) parameters; qint8 codes,
    signed symmetric min/max scheme."""
    codes = RNG.integers(0, 256, (3, 4)).astype(np.uint8)
    zp, scale = np.array([0, 100, 255]), np.array([0.5, 0.25, 0.125], np.float32)
    folder = _variable_model(
        tmp_path / "u",
        [3, 4],
        '"w": zero_point_linear_quantize(zero_point = [0, 100, 255], scale = [0.5, 0.25, 0.125], '
        "bits = 8, signed = false, symmetric = false);",
        variables={"w": codes},
        quantized={"w"},
    )
    x = np.zeros((3, 4), np.float32)
    expected = (codes.astype(np.float32) - zp[:, None]) * scale[:, None]
    check_nnef(folder, {"x": x}, [expected], oracle=False)

    codes = RNG.integers(-127, 128, (2, 5)).astype(np.int8)
    folder = _variable_model(
        tmp_path / "s",
        [2, 5],
        '"w": min_max_linear_quantize(min = -1.0, max = 1.0, bits = 8, signed = true, '
        "symmetric = true);",
        variables={"w": codes},
        quantized={"w"},
    )
    # q + p with p = 127, r = 254: codes -127..127 span [min, max]
    expected = ((codes.astype(np.float32) + 127) / 254 * 2 - 1).astype(np.float32)
    check_nnef(folder, {"x": np.zeros((2, 5), np.float32)}, [expected], oracle=False)


def _dat(path: Path, shape: list[int], bits: int, item_type: int, payload: bytes) -> None:
    """A .dat file written by hand: the 128-byte header, then ``payload``."""
    extents = list(shape) + [0] * (8 - len(shape))
    header = struct.pack(
        "<2B2BII8III19I",
        0x4E,
        0xEF,
        1,
        0,
        len(payload),
        len(shape),
        *extents,
        bits,
        item_type,
        *([0] * 19),
    )
    assert len(header) == 128
    path.write_bytes(header + payload)


def _pack(values: list[int], bits: int) -> bytes:
    """Two's-complement ``bits``-wide items, MSB first, no padding between them."""
    stream = "".join(format(v & ((1 << bits) - 1), f"0{bits}b") for v in values)
    stream += "0" * (-len(stream) % 8)
    return bytes(int(stream[i : i + 8], 2) for i in range(0, len(stream), 8))


@pytest.mark.parametrize(
    ("bits", "item_type", "codes", "quant", "fn"),
    [
        (
            4,
            2,
            [0, 15, 7, 8, 1, 14],
            "zero_point = 8, scale = 0.5, bits = 4, signed = false",
            lambda q: (q - 8) * 0.5,
        ),
        (
            4,
            3,
            [-8, 7, -1, 0, 3, -5],
            "zero_point = 0, scale = 0.25, bits = 4, signed = true",
            lambda q: q * 0.25,
        ),
        (
            3,
            3,
            [-4, 3, -1, 0, 2, 1],
            "zero_point = -1, scale = 2.0, bits = 3, signed = true",
            lambda q: (q + 1) * 2.0,
        ),
        (
            2,
            2,
            [0, 3, 1, 2, 2, 1],
            "zero_point = 1, scale = 1.5, bits = 2, signed = false",
            lambda q: (q - 1) * 1.5,
        ),
    ],
)
def test_packed_sub_byte_codes(tmp_path: Path, bits, item_type, codes, quant, fn) -> None:
    """Codes of 2, 3 and 4 bits packed MSB first (the C++ writer's layout; 3 bits cross byte
    boundaries)."""
    folder = _variable_model(
        tmp_path, [2, 3], f'"w": zero_point_linear_quantize({quant}, symmetric = false);'
    )
    _dat(folder / "w.dat", [2, 3], bits, item_type, _pack(codes, bits))
    expected = fn(np.array(codes, np.float32)).reshape(2, 3).astype(np.float32)
    check_nnef(folder, {"x": np.zeros((2, 3), np.float32)}, [expected], oracle=False)


def test_packed_bool_file(tmp_path: Path) -> None:
    """A 1-bit bool .dat: 10 flags in two bytes, MSB first."""
    flags = [1, 0, 1, 1, 0, 0, 0, 1, 1, 0]
    folder = write_model(
        tmp_path,
        "graph G( x ) -> ( y )\n{\n  x = external<scalar>(shape = [2, 5]);\n"
        "  m = variable<logical>(shape = [2, 5], label = 'm');\n"
        "  y = select(m, x, -x);\n}",
    )
    _dat(folder / "m.dat", [2, 5], 1, 5, _pack(flags, 1))
    x = RNG.standard_normal((2, 5)).astype(np.float32)
    mask = np.array(flags, bool).reshape(2, 5)
    check_nnef(folder, {"x": x}, [np.where(mask, x, -x)], oracle=False)


def test_float_variable_with_entry(tmp_path: Path) -> None:
    """Float values with a graph.quant entry go through its fragment."""
    w = np.array([[0.3, -0.7, 1.26, 5.0]], np.float32)
    folder = _variable_model(
        tmp_path,
        [1, 4],
        '"w": logarithmic_quantize(max = 2.0, bits = 2);',
        variables={"w": w},
    )
    check_nnef(folder, {"x": np.zeros((1, 4), np.float32)}, [_log(w, 2.0, 2)], oracle=False)


def test_code_errors(tmp_path: Path) -> None:
    """Codes of logarithmic_quantize are refused (ill-defined), and codes out of range."""
    folder = _variable_model(
        tmp_path / "log",
        [2],
        '"w": logarithmic_quantize(max = 2.0, bits = 4);',
        variables={"w": np.array([1, 2], np.uint8)},
        quantized={"w"},
    )
    with pytest.raises(ModelLoadError, match="logarithmic_quantize"):
        import_nnef(folder)
    folder = _variable_model(
        tmp_path / "range",
        [2],
        '"w": zero_point_linear_quantize(zero_point = 0, scale = 1.0, bits = 4, signed = false, '
        "symmetric = false);",
        variables={"w": np.array([3, 16], np.uint8)},
        quantized={"w"},
    )
    with pytest.raises(ModelLoadError, match="outside"):
        import_nnef(folder)


def test_nnef_tools_writer(tmp_path: Path) -> None:
    """A quantized model written by nnef-tools' Writer, the whole path: graph.quant, quint8
    .dat and the conversion."""
    from nnef_tools.io.nnef import Writer
    from nnef_tools.model import Graph, Operation, Tensor

    g = Graph("G")
    x = Tensor(g, "x", (2, 3), np.float32)
    codes = RNG.integers(0, 256, (2, 3)).astype(np.uint8)
    quant = {
        "op-name": "zero_point_linear_quantize",
        "zero_point": 128,
        "scale": 0.5,
        "bits": 8,
        "signed": False,
        "symmetric": False,
    }
    w = Tensor(g, "w", (2, 3), np.float32, codes, quant)
    y = Tensor(g, "y", (2, 3), np.float32)
    Operation(g, "external", attribs={"shape": [2, 3], "dtype": np.float32}, outputs=x)
    Operation(
        g, "variable", attribs={"shape": [2, 3], "label": "w", "dtype": np.float32}, outputs=w
    )
    Operation(g, "add", inputs=(x, w), outputs=y)
    g.inputs, g.outputs = [x], [y]
    Writer()(g, str(tmp_path / "m"))
    assert (tmp_path / "m" / "graph.quant").is_file()
    feed = RNG.standard_normal((2, 3)).astype(np.float32)
    check_nnef(
        tmp_path / "m", {"x": feed}, [feed + (codes.astype(np.float32) - 128) * 0.5], oracle=False
    )
