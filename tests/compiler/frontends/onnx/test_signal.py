"""ONNX signal ops decomposed into core ops: DFT, STFT, windows, MelWeightMatrix, against
onnxruntime and numpy's FFT."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnxutil import check_model, make_model

from compiler.errors import ConversionError
from compiler.frontends.onnx import import_onnx
from compiler.frontends.onnx.signal import dft_matrices

rng = np.random.default_rng(0)


def _model(op_type, inputs, inits=(), opset=20, **attrs):
    names = [n for n, _ in inputs] + [n or "" for n, _ in inits]
    init = [(n, a) for n, a in inits if n]
    node = helper.make_node(op_type, names, ["y"], **attrs)
    return make_model([node], inputs, ["y"], initializers=init, opset=opset)


def _complex(z: np.ndarray) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1).astype(np.float32)


# -- DFT -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("inverse", "onesided"), [(0, 0), (0, 1), (1, 0)])
@pytest.mark.parametrize("length", [None, 6, 11])
def test_dft_v20_real_input(inverse, onesided, length):
    """Real input, transform along axis 1 of [2, 8, 3, 1]; lengths pad and truncate."""
    x = rng.standard_normal((2, 8, 3, 1)).astype(np.float32)
    inits = [("", None) if length is None else ("n", np.array(length, np.int64))]
    inits.append(("axis", np.array(1, np.int64)))
    model = _model("DFT", [("x", x)], inits, inverse=inverse, onesided=onesided)
    out = check_model(model, {"x": x}, rtol=1e-4, atol=1e-4)[0]
    n = length or 8
    if not inverse:
        full = np.fft.fft(x[..., 0], n=n, axis=1)
        want = _complex(full[:, : n // 2 + 1] if onesided else full)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("axis", [0, 2, -2])
def test_dft_v20_complex_input_axes(axis):
    z = rng.standard_normal((4, 5, 6)) + 1j * rng.standard_normal((4, 5, 6))
    x = _complex(z)
    model = _model("DFT", [("x", x)], [("", None), ("axis", np.array(axis, np.int64))])
    out = check_model(model, {"x": x}, rtol=1e-4, atol=1e-4)[0]
    np.testing.assert_allclose(out, _complex(np.fft.fft(z, axis=axis % 4)), atol=1e-4)


def test_dft_v17_axis_attribute_and_inverse_round_trip():
    z = rng.standard_normal((3, 7)) + 1j * rng.standard_normal((3, 7))
    x = _complex(z)[None]  # [1, 3, 7, 2], axis 2
    model = _model("DFT", [("x", x)], opset=17, axis=2, inverse=1)
    out = check_model(model, {"x": x}, rtol=1e-4, atol=1e-5)[0]
    np.testing.assert_allclose(out[0], _complex(np.fft.ifft(z, axis=1)), atol=1e-5)


@pytest.mark.parametrize("length", [10, 11])
def test_irfft_matches_numpy(length):
    """One-sided input to a real signal of even or odd length (DC/Nyquist counted once)."""
    spectrum = np.fft.rfft(rng.standard_normal((4, length)), axis=1)
    x = _complex(spectrum)
    model = _model(
        "DFT", [("x", x)], [("n", np.array(length, np.int64))], opset=17, inverse=1, onesided=1
    )
    out = import_onnx(model)
    from backends.reference import run_graph

    got = next(iter(run_graph(out, {"x": x}).values()))
    np.testing.assert_allclose(got[..., 0], np.fft.irfft(spectrum, n=length, axis=1), atol=1e-5)


def test_dft_matrices_are_the_transform():
    n, length = 5, 8
    rr, ir, ri, ii = dft_matrices(n, length, inverse=False, onesided=False)
    x = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    y = (x.real @ rr + x.imag @ ir) + 1j * (x.real @ ri + x.imag @ ii)
    np.testing.assert_allclose(y, np.fft.fft(x, n=length), atol=1e-12)


def test_dft_errors_name_the_node():
    x = np.zeros((2, 3, 3), np.float32)
    with pytest.raises(ConversionError, match="DFT node .*last dim must be 1"):
        import_onnx(_model("DFT", [("x", x)], opset=17, axis=1))
    x = np.zeros((2, 3, 2), np.float32)
    with pytest.raises(ConversionError, match="onesided=1 needs a real input"):
        import_onnx(_model("DFT", [("x", x)], opset=17, axis=1, onesided=1))
    with pytest.raises(ConversionError, match="inverse one-sided DFT needs a complex input"):
        import_onnx(_model("DFT", [("x", x[..., :1])], opset=17, inverse=1, onesided=1))
    with pytest.raises(ConversionError, match="not be the last"):
        import_onnx(_model("DFT", [("x", x)], [("", None), ("a", np.array(-1, np.int64))]))


# -- STFT ----------------------------------------------------------------------------------


@pytest.mark.parametrize("onesided", [0, 1])
def test_stft_with_window_and_frame_length(onesided):
    x = rng.standard_normal((2, 64, 1)).astype(np.float32)
    window = np.hanning(16).astype(np.float32)
    inits = [("step", np.array(6, np.int64)), ("w", window), ("len", np.array(16, np.int64))]
    model = _model("STFT", [("x", x)], inits, opset=17, onesided=onesided)
    out = check_model(model, {"x": x}, rtol=1e-4, atol=1e-4)[0]
    assert out.shape == (2, 1 + (64 - 16) // 6, 9 if onesided else 16, 2)


def test_stft_complex_signal_without_window():
    z = rng.standard_normal((1, 40)) + 1j * rng.standard_normal((1, 40))
    x = _complex(z)
    inits = [("step", np.array(8, np.int64)), ("", None), ("len", np.array(10, np.int64))]
    model = _model("STFT", [("x", x)], inits, opset=17, onesided=0)
    out = check_model(model, {"x": x}, rtol=1e-4, atol=1e-4)[0]
    frame = z[0, 8:18]
    np.testing.assert_allclose(out[0, 1], _complex(np.fft.fft(frame)), atol=1e-4)


# -- windows, mel --------------------------------------------------------------------------


@pytest.mark.parametrize("op_type", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.DOUBLE])
def test_windows_fold_to_constants(op_type, periodic, dtype):
    model = _model(
        op_type,
        [],
        [("size", np.array(13, np.int64))],
        opset=17,
        periodic=periodic,
        output_datatype=dtype,
    )
    graph = import_onnx(model)
    assert not graph.nodes and graph.outputs[0].is_constant
    check_model(model, {}, rtol=1e-6, atol=1e-7)


def test_window_size_fed_as_input_needs_its_value():
    from compiler.errors import NeedsValueError

    size = np.array(8, np.int32)
    with pytest.raises(NeedsValueError):
        import_onnx(_model("HannWindow", [("size", size)], opset=17))
    graph = import_onnx(
        _model("HannWindow", [("size", size)], opset=17), input_values={"size": size}
    )
    np.testing.assert_allclose(graph.outputs[0].const, np.hanning(9)[:8], atol=1e-7)


@pytest.mark.parametrize(
    "bins,length,rate,low,high", [(8, 16, 8192, 0.0, 4096.0), (20, 512, 16000, 60.0, 7800.0)]
)
def test_mel_weight_matrix(bins, length, rate, low, high):
    inits = [
        ("b", np.array(bins, np.int64)),
        ("n", np.array(length, np.int64)),
        ("r", np.array(rate, np.int64)),
        ("lo", np.array(low, np.float32)),
        ("hi", np.array(high, np.float32)),
    ]
    out = check_model(_model("MelWeightMatrix", [], inits, opset=17), {}, atol=1e-6)[0]
    assert out.shape == (length // 2 + 1, bins)
