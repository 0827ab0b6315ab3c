"""ONNX Attention: onnxruntime (or ONNX's reference where it differs) vs nnxc reference vs TVM."""

import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from onnxutil import check_model, make_model
from oputil import run_tvm

from backends.reference import run_graph
from compiler.errors import ConversionError
from compiler.frontends.onnx import import_onnx

rng = np.random.default_rng(0)


def randn(*shape: int, dtype: str = "float32") -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def attention_model(inputs, outputs=("Y",), opset=23, **attrs):
    """One Attention node; ``inputs`` maps ONNX input slots to (name, array), None skips."""
    names = [slot[0] if slot else "" for slot in inputs]
    while names and not names[-1]:
        names.pop()
    node = helper.make_node("Attention", names, list(outputs), **attrs)
    feeds = [slot for slot in inputs if slot]
    return make_model([node], feeds, [o for o in outputs if o], opset=opset), dict(feeds)


def check_against_onnx_reference(model, feeds, rtol=1e-5, atol=1e-6) -> list[np.ndarray]:
    """ONNX's reference == nnxc reference == TVM, where onnxruntime has no kernel or differs."""
    expected = ReferenceEvaluator(model).run(None, feeds)
    graph = import_onnx(model)
    ref = list(run_graph(graph, {v.name: feeds[v.name] for v in graph.inputs}).values())
    got = run_tvm(graph, {v.name: feeds[v.name] for v in graph.inputs})
    for e, r, t in zip(expected, ref, got, strict=True):
        np.testing.assert_allclose(r, e, rtol=rtol, atol=atol)
        np.testing.assert_allclose(t, e, rtol=rtol, atol=atol)
        assert t.dtype == e.dtype and t.shape == e.shape
    return expected


def qkv(b, qh, kvh, sq, skv, d, dv=None, rank=4, dtype="float32"):
    dv = dv or d
    if rank == 4:
        shapes = [(b, qh, sq, d), (b, kvh, skv, d), (b, kvh, skv, dv)]
    else:
        shapes = [(b, sq, qh * d), (b, skv, kvh * d), (b, skv, kvh * dv)]
    return [(n, randn(*s, dtype=dtype)) for n, s in zip("QKV", shapes)]


def test_mha_4d_scaled():
    model, feeds = attention_model(qkv(2, 3, 3, 4, 6, 8), scale=0.3)
    check_model(model, feeds)


@pytest.mark.parametrize("causal", [0, 1])
def test_gqa_3d(causal):
    attrs = dict(q_num_heads=4, kv_num_heads=2, is_causal=causal)
    model, feeds = attention_model(qkv(2, 4, 2, 5, 5, 8, dv=6, rank=3), **attrs)
    check_model(model, feeds)


@pytest.mark.parametrize("mask_keys", [7, 6])
def test_past_present_with_bool_mask(mask_keys):
    """3 past + 4 new keys; a mask of 6 keys is padded as not attending the 7th (onnxruntime
    refuses short masks, so that one is checked against ONNX's reference)."""
    b, h, sq, past, d = 2, 2, 4, 3, 8
    mask = rng.random((sq, mask_keys)) > 0.3
    mask[:, 0] = True
    inputs = [
        *qkv(b, h, h, sq, sq, d),
        ("mask", mask),
        ("past_key", randn(b, h, past, d)),
        ("past_value", randn(b, h, past, d)),
    ]
    model, feeds = attention_model(inputs, ("Y", "present_key", "present_value"))
    if mask_keys == past + sq:
        check_model(model, feeds)
    else:
        check_against_onnx_reference(model, feeds)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_qk_matmul_output_modes_with_float_mask_and_softcap(mode):
    b, h, sq, skv, d = 1, 2, 3, 5, 4
    inputs = [*qkv(b, h, h, sq, skv, d), ("mask", randn(b, 1, sq, skv))]
    outputs = ("Y", "", "", "qk")
    model, feeds = attention_model(inputs, outputs, softcap=1.5, qk_matmul_output_mode=mode)
    check_model(model, feeds)


def test_causal_with_past_is_bottom_right_aligned():
    b, h, sq, past, d = 1, 2, 3, 2, 4
    inputs = [
        *qkv(b, h, h, sq, sq, d),
        None,
        ("past_key", randn(b, h, past, d)),
        ("past_value", randn(b, h, past, d)),
    ]
    model, feeds = attention_model(inputs, ("Y", "present_key", "present_value"), is_causal=1)
    check_model(model, feeds)


def test_fully_masked_rows_are_zero():
    """A query that may attend no key gives 0 (ONNX's reference), not NaN."""
    mask = np.array([[False, False, False], [True, False, True]])
    model, feeds = attention_model(
        [*qkv(1, 2, 2, 2, 3, 4), ("mask", mask)], ("Y", "", "", "qk"), qk_matmul_output_mode=3
    )
    y, probs = check_against_onnx_reference(model, feeds)
    assert np.all(y[:, :, 0] == 0) and np.all(probs[:, :, 0] == 0)
    assert np.isfinite(y).all()


def test_nonpad_kv_seqlen_causal_gqa_decode():
    """External cache (opset 24): per-batch valid key counts give per-batch frontiers."""
    inputs = [*qkv(2, 4, 2, 1, 8, 4), None, None, None, ("nonpad", np.array([8, 5]))]
    model, feeds = attention_model(inputs, opset=24, is_causal=1)
    check_against_onnx_reference(model, feeds)


def test_sliding_window_with_past():
    b, h, sq, past, d = 1, 2, 3, 4, 4
    inputs = [
        *qkv(b, h, h, sq, sq, d),
        None,
        ("past_key", randn(b, h, past, d)),
        ("past_value", randn(b, h, past, d)),
    ]
    model, feeds = attention_model(inputs, opset=25, left_window_size=2, right_window_size=1)
    check_against_onnx_reference(model, feeds)


def test_float16_softmax_in_float32():
    model, feeds = attention_model(
        qkv(1, 2, 2, 3, 4, 8, dtype="float16"), softmax_precision=1, is_causal=1
    )
    check_against_onnx_reference(model, feeds, rtol=2e-3, atol=1e-3)


def test_symbolic_batch_and_sequence():
    model, feeds = attention_model(qkv(2, 2, 2, 5, 5, 4, rank=3), q_num_heads=2, kv_num_heads=2)
    for vi in model.graph.input:
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
        vi.type.tensor_type.shape.dim[1].dim_param = "seq"
    graph = import_onnx(model)
    assert graph.outputs[0].shape == ("batch", "seq", 8)
    check_model(model, feeds)


def test_3d_needs_head_counts():
    model, _ = attention_model(qkv(1, 2, 2, 3, 3, 4, rank=3), q_num_heads=2, kv_num_heads=2)
    del model.graph.node[0].attribute[:]
    with pytest.raises(ConversionError, match="q_num_heads"):
        import_onnx(model)
