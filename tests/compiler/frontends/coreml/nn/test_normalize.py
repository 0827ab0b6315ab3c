"""NeuralNetwork layers with weights or statistics (innerProduct, batchnorm, scale, bias,
embedding, embeddingND, lrn, l2normalize, mvn, layerNormalization) against numpy and PyTorch,
under the rank-5 mapping and EXACT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coremlutil import check, nn_builder, save_nn

from compiler.errors import ConversionError
from compiler.frontends.coreml.importer import import_coreml

RNG = np.random.default_rng(11)


def _rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# -- innerProduct ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, flat",
    [
        ((6,), (6,)),
        ((3, 6), (3, 6)),
        ((2, 3, 6), (2, 3, 6)),
        ((4, 2, 1, 3), (4, 6)),
        ((2, 3, 3, 1, 2), (2, 3, 6)),
    ],
    ids=["rank1", "rank2", "rank3", "rank4", "rank5"],
)
def test_inner_product_ranks(tmp_path: Path, shape: tuple, flat: tuple) -> None:
    """NeuralNetwork.proto's reshape table: ranks 4 and 5 flatten [C, H, W] and give
    [..., C_out, 1, 1]."""
    x = _rand(*shape)
    w, bias = _rand(5, 6), _rand(5)
    b = nn_builder([("x", shape)], [("y", None)])
    b.add_inner_product("fc", w, bias, 6, 5, True, "x", "y")
    y = x.reshape(flat) @ w.T + bias
    if len(shape) >= 4:
        y = y.reshape(*shape[: len(shape) - 3], 5, 1, 1)
    check(save_nn(b, tmp_path), {"x": x}, [y], atol=1e-5, tvm=len(shape) == 4)


def test_inner_product_rank5_mapping(tmp_path: Path) -> None:
    """A [C] input is [1, 1, C, 1, 1]; the output [C_out] comes back."""
    x, w = _rand(6), _rand(4, 6)
    b = nn_builder([("x", (6,))], [("y", (4,))], exact=False)
    b.add_inner_product("fc", w, None, 6, 4, False, "x", "y")
    check(save_nn(b, tmp_path), {"x": x}, [w @ x], tvm=False)


def test_inner_product_dynamic_quantize_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (1, 4))], [("y", None)])
    q = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    b.add_inner_product(
        "fc",
        q.tobytes(),
        None,
        4,
        3,
        False,
        "x",
        "y",
        int_8_dynamic_quantize=True,
        is_quantized_weight=True,
        quantization_type="linear",
        nbits=8,
        quant_scale=np.array([0.5], np.float32),
    )
    with pytest.raises(ConversionError, match="innerProduct node 'fc': int8DynamicQuantize"):
        import_coreml(save_nn(b, tmp_path))


# -- batchnorm ------------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
@pytest.mark.parametrize("stats", ["given", "batch", "instance"])
def test_batchnorm(tmp_path: Path, exact: bool, stats: str) -> None:
    shape = (2, 3, 4, 5) if exact else (3, 4, 5)
    x = _rand(*shape) * 2 + 1
    gamma, beta = _rand(3), _rand(3)
    mean, var = _rand(3), np.abs(_rand(3)) + 0.5
    b = nn_builder([("x", shape)], [("y", None)], exact=exact)
    b.add_batchnorm(
        "bn",
        3,
        gamma,
        beta,
        mean,
        var,
        "x",
        "y",
        compute_mean_var=stats != "given",
        instance_normalization=stats != "given",
        epsilon=1e-3,
    )
    # The builder refuses batch statistics ("batch-instance norm"); the proto defines them.
    b.spec.neuralNetwork.layers[0].batchnorm.instanceNormalization = stats == "instance"
    cshape = (3, 1, 1)
    if stats == "given":
        m, v = mean.reshape(cshape), var.reshape(cshape)
    else:
        axes = (
            (-2, -1) if stats == "instance" else tuple(a for a in range(-len(shape), 0) if a != -3)
        )
        m, v = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    y = (x - m) / np.sqrt(v + 1e-3) * gamma.reshape(cshape) + beta.reshape(cshape)
    check(save_nn(b, tmp_path), {"x": x}, [y], atol=1e-5, tvm=exact and stats == "batch")


def test_batchnorm_agrees_with_torch_instance_norm(tmp_path: Path) -> None:
    x, gamma, beta = _rand(2, 3, 5, 4), _rand(3), _rand(3)
    b = nn_builder([("x", x.shape)], [("y", None)])
    b.add_batchnorm("bn", 3, gamma, beta, None, None, "x", "y", True, True, 1e-5)
    want = F.instance_norm(
        torch.from_numpy(x), weight=torch.from_numpy(gamma), bias=torch.from_numpy(beta), eps=1e-5
    ).numpy()
    check(save_nn(b, tmp_path), {"x": x}, [want], atol=1e-5, tvm=False)


# -- scale and bias -------------------------------------------------------------------------

PARAM_SHAPES = [[1], [3], [1, 4, 5], [3, 4, 5]]


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
def test_scale_and_bias(tmp_path: Path, exact: bool) -> None:
    """Every shape NeuralNetwork.proto allows, each broadcast over the trailing [C, H, W]."""
    shape = (2, 3, 4, 5) if exact else (3, 4, 5)
    x = _rand(*shape)
    outs = [f"s{i}" for i in range(4)] + [f"b{i}" for i in range(4)]
    b = nn_builder([("x", shape)], [(n, None) for n in outs], exact=exact)
    want = []
    for i, ps in enumerate(PARAM_SHAPES):
        s, t = _rand(*ps), _rand(*PARAM_SHAPES[-1 - i])
        b.add_scale(
            f"s{i}", s, t, True, "x", f"s{i}", shape_scale=ps, shape_bias=PARAM_SHAPES[-1 - i]
        )
        bc = lambda a: a.reshape(-1, 1, 1) if a.ndim == 1 else a  # noqa: E731
        want.append(x * bc(s) + bc(t))
    for i, ps in enumerate(PARAM_SHAPES):
        t = _rand(*ps)
        b.add_bias(f"b{i}", t, "x", f"b{i}", shape_bias=ps)
        want.append(x + (t.reshape(-1, 1, 1) if t.ndim == 1 else t))
    check(save_nn(b, tmp_path), {"x": x}, want, tvm=exact)


def test_scale_without_bias(tmp_path: Path) -> None:
    x, s = _rand(2, 3, 4, 5), _rand(3)
    b = nn_builder([("x", x.shape)], [("y", None)])
    b.add_scale("s", s, None, False, "x", "y", shape_scale=[3])
    check(save_nn(b, tmp_path), {"x": x}, [x * s.reshape(3, 1, 1)], tvm=False)


def test_scale_of_a_wrong_shape_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (2, 3, 4, 5))], [("y", None)])
    b.add_scale("s", _rand(4), None, False, "x", "y", shape_scale=[4])
    with pytest.raises(ConversionError, match=r"scale node 's': scale of shape \[4\] is not"):
        import_coreml(save_nn(b, tmp_path))


# -- embeddings -----------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
def test_embedding(tmp_path: Path, exact: bool) -> None:
    shape = (4, 1, 1, 1) if exact else (4, 2, 1, 1, 1)
    ids = RNG.integers(0, 7, size=shape).astype(np.float32)
    w, bias = _rand(5, 7), _rand(5)  # [outputChannels, inputDim]
    b = nn_builder([("x", shape)], [("y", None)], exact=exact)
    b.add_embedding("emb", w, bias, 7, 5, True, "x", "y")
    lead = shape[: len(shape) - 3]
    want = (w.T[ids.reshape(lead).astype(np.int64)] + bias).reshape(*lead, 5, 1, 1)
    check(save_nn(b, tmp_path), {"x": ids}, [want], tvm=exact)


@pytest.mark.parametrize("int_ids", [False, True], ids=["float_ids", "int32_ids"])
def test_embedding_nd(tmp_path: Path, int_ids: bool) -> None:
    ids = RNG.integers(0, 9, size=(2, 3, 1)).astype(np.float32)
    w, bias = _rand(4, 9), _rand(4)  # [embeddingSize, vocabSize]
    b = nn_builder([("x", ids.shape)], [("y", None), ("z", None)])
    b.add_embedding_nd("e1", "x", "y", 9, 4, w, bias)
    b.add_embedding_nd("e2", "x", "z", 9, 4, w)
    if int_ids:
        array = b.spec.description.input[0].type.multiArrayType
        array.dataType = array.INT32
    table = w.T[ids[..., 0].astype(np.int64)]
    feed = ids.astype(np.int32) if int_ids else ids
    check(save_nn(b, tmp_path), {"x": feed}, [table + bias, table], tvm=int_ids)


# -- lrn, l2normalize, mvn, layerNormalization ----------------------------------------------


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
def test_lrn(tmp_path: Path, exact: bool) -> None:
    shape = (2, 6, 3, 4) if exact else (6, 3, 4)
    x = _rand(*shape)
    b = nn_builder([("x", shape)], [("y", None), ("z", None)], exact=exact)
    b.add_lrn("lrn", "x", "y", alpha=0.3, beta=0.75, local_size=3, k=2.0)
    b.add_lrn("lrn5", "x", "z", alpha=1e-2, beta=0.5, local_size=5, k=1.0)
    xt = torch.from_numpy(x if exact else x[None])
    want = [
        F.local_response_norm(xt, 3, alpha=0.3, beta=0.75, k=2.0).numpy(),
        F.local_response_norm(xt, 5, alpha=1e-2, beta=0.5, k=1.0).numpy(),
    ]
    want = want if exact else [w[0] for w in want]
    check(save_nn(b, tmp_path), {"x": x}, want, atol=1e-5, tvm=exact)


def test_lrn_of_an_even_window_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (1, 4, 2, 2))], [("y", None)])
    b.add_lrn("lrn", "x", "y", alpha=1e-4, beta=0.75, local_size=4)
    with pytest.raises(ConversionError, match="lrn node 'lrn': localSize 4: an odd window"):
        import_coreml(save_nn(b, tmp_path))


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
def test_l2normalize_and_mvn(tmp_path: Path, exact: bool) -> None:
    shape = (2, 3, 4, 5) if exact else (3, 4, 5)
    x = _rand(*shape) * 3 + 1
    outs = ["l2", "m_cv", "m_c", "m_v", "m"]
    b = nn_builder([("x", shape)], [(n, None) for n in outs], exact=exact)
    b.add_l2_normalize("l2", "x", "l2", epsilon=1e-4)
    chw, hw = (-3, -2, -1), (-2, -1)
    want = [x / np.sqrt((x**2).sum(axis=chw, keepdims=True) + 1e-4)]
    for n, across, var in (
        ("m_cv", True, True),
        ("m_c", True, False),
        ("m_v", False, True),
        ("m", False, False),
    ):
        b.add_mvn(n, "x", n, across_channels=across, normalize_variance=var, epsilon=1e-3)
        axes = chw if across else hw
        y = x - x.mean(axis=axes, keepdims=True)
        if var:
            y = y / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-3)
        want.append(y)
    check(save_nn(b, tmp_path), {"x": x}, want, atol=1e-5, tvm=exact)


@pytest.mark.parametrize("normalized", [(5,), (4, 5)])
def test_layer_normalization(tmp_path: Path, normalized: tuple) -> None:
    x = _rand(2, 3, 4, 5)
    gamma, beta = _rand(*normalized), _rand(*normalized)
    b = nn_builder([("x", x.shape)], [("y", None)])
    b.add_layer_normalization("ln", "x", "y", list(normalized), gamma, beta, eps=1e-4)
    want = F.layer_norm(
        torch.from_numpy(x), normalized, torch.from_numpy(gamma), torch.from_numpy(beta), eps=1e-4
    ).numpy()
    check(save_nn(b, tmp_path), {"x": x}, [want], atol=1e-5, tvm=len(normalized) == 2)


def test_layer_normalization_of_a_wrong_shape_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (2, 3, 4))], [("y", None)])
    b.add_layer_normalization("ln", "x", "y", [3], _rand(3), _rand(3))
    with pytest.raises(ConversionError, match=r"layerNormalization node 'ln': normalizedShape"):
        import_coreml(save_nn(b, tmp_path))
