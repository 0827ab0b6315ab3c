"""ONNX Attention: onnxruntime (or ONNX's reference where it differs) vs nnxc reference vs TVM."""

import numpy as np
import onnx
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


# -- LinearAttention (opset 27) ---------------------------------------------------------------


def linear_attention_model(inputs, **attrs):
    names = [slot[0] if slot else "" for slot in inputs]
    while names and not names[-1]:
        names.pop()
    node = helper.make_node("LinearAttention", names, ["Y", "present"], **attrs)
    feeds = [slot for slot in inputs if slot]
    return make_model([node], feeds, ["Y", "present"], opset=27), dict(feeds)


@pytest.mark.parametrize(
    "rule, decay_last, beta_last",
    [("linear", None, None), ("gated", 2, None), ("delta", None, 1), ("gated_delta", 8, 2)],
)
def test_linear_attention_rules_with_gqa_and_past(rule, decay_last, beta_last):
    """Every update rule over 5 steps with 4 query heads on 2 KV heads and a past state;
    decay per head (last dim 2) or per key dim (2 heads * 4), beta per head or shared."""
    b, t, hq, hkv, dk, dv = 2, 5, 4, 2, 4, 3
    inputs = [
        ("q", randn(b, t, hq * dk)),
        ("k", randn(b, t, hkv * dk) * 0.5),
        ("v", randn(b, t, hkv * dv)),
        ("past", randn(b, hkv, dk, dv)),
        ("decay", -rng.random((b, t, decay_last)).astype("float32")) if decay_last else None,
        ("beta", rng.random((b, t, beta_last)).astype("float32")) if beta_last else None,
    ]
    model, feeds = linear_attention_model(
        inputs, update_rule=rule, q_num_heads=hq, kv_num_heads=hkv
    )
    check_against_onnx_reference(model, feeds)


def test_linear_attention_without_past_and_explicit_scale():
    b, t, h, d = 1, 3, 2, 4
    inputs = [("q", randn(b, t, h * d)), ("k", randn(b, t, h * d)), ("v", randn(b, t, h * d))]
    model, feeds = linear_attention_model(
        inputs, update_rule="linear", q_num_heads=h, kv_num_heads=h, scale=0.7
    )
    y, state = check_against_onnx_reference(model, feeds)
    assert state.shape == (b, h, d, d)


def test_linear_attention_gated_needs_decay():
    inputs = [("q", randn(1, 2, 4)), ("k", randn(1, 2, 4)), ("v", randn(1, 2, 4))]
    model, _ = linear_attention_model(inputs, update_rule="gated", q_num_heads=1, kv_num_heads=1)
    with pytest.raises(ConversionError, match="LinearAttention node .*needs decay"):
        import_onnx(model)


# -- FlexAttention (ai.onnx.preview) ----------------------------------------------------------


def _mod_graph(name, nodes, inits=()):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    inits = [onnx.numpy_helper.from_array(a, n) for n, a in inits]
    return helper.make_graph(nodes, name, [x], [y], inits)


def flex_model(inputs, **attrs):
    node = helper.make_node("FlexAttention", list("QKV"), ["Y"], domain="ai.onnx.preview", **attrs)
    graph = helper.make_graph(
        [node],
        "flex",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, a.shape) for n, a in inputs],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 26), helper.make_opsetid("ai.onnx.preview", 1)],
    )
    model.ir_version = 10
    return model, dict(inputs)


def test_flex_attention_inlines_score_and_prob_mods_with_gqa():
    """score_mod: a causal -inf mask built from the scores' shape; prob_mod: times 2."""
    causal = _mod_graph(
        "causal",
        [
            helper.make_node("Trilu", ["ones", "k"], ["upper"], upper=1),
            helper.make_node("Cast", ["upper"], ["masked"], to=onnx.TensorProto.BOOL),
            helper.make_node("Where", ["masked", "ninf", "x"], ["y"]),
        ],
        [
            ("ones", np.ones((4, 6), "float32")),
            ("k", np.array(3, "int64")),
            ("ninf", np.array(-np.inf, "float32")),
        ],
    )
    double = _mod_graph(
        "double", [helper.make_node("Mul", ["x", "two"], ["y"])], [("two", np.float32(2))]
    )
    model, feeds = flex_model(
        qkv(2, 4, 2, 4, 6, 8, dv=5), score_mod=causal, prob_mod=double, scale=0.25
    )
    (y,) = check_against_onnx_reference(model, feeds)
    assert y.shape == (2, 4, 4, 5)


def test_flex_attention_mod_reading_an_undefined_name_is_refused():
    """Mods may read outer values (ONNX scoping); a name no scope defines is an error."""
    outer = _mod_graph("outer", [helper.make_node("Add", ["x", "nowhere"], ["y"])])
    model, _ = flex_model(qkv(1, 1, 1, 2, 2, 4), score_mod=outer)
    with pytest.raises(ConversionError, match="nowhere"):
        import_onnx(model)


# -- fully masked rows through ONNX's own decomposition, float16 ------------------------------


def test_expanded_fully_masked_row_finds_its_max_is_minus_inf():
    """ReduceMax of an all -inf bias row must be -inf (not the lowest float) for the
    ``Equal(max, -inf)`` of Attention's function body to zero the row instead of NaN."""
    bias = np.array([[-np.inf, -np.inf, -np.inf], [0, -np.inf, 0]], "float32")
    nodes = [
        helper.make_node("Add", ["s", "bias"], ["biased"]),
        helper.make_node("Softmax", ["biased"], ["p"]),
        helper.make_node("ReduceMax", ["bias"], ["m"], axes=[-1], keepdims=1),
        helper.make_node("Equal", ["m", "ninf"], ["empty"]),
        helper.make_node("Where", ["empty", "zero", "p"], ["y"]),
    ]
    inits = [("bias", bias), ("ninf", np.float32(-np.inf)), ("zero", np.float32(0))]
    model = make_model(nodes, [("s", randn(2, 3))], ["y", "m"], inits, opset=17)
    graph = import_onnx(model)
    y, m = run_tvm(graph, {"s": randn(2, 3)})
    assert m[0, 0] == -np.inf and np.all(y[0] == 0) and np.isfinite(y).all()


def test_float16_attention_matches_numpy_float32_sums():
    model, feeds = attention_model(qkv(1, 2, 2, 6, 40, 32, dtype="float16"), is_causal=1)
    check_against_onnx_reference(model, feeds, rtol=1e-3, atol=5e-4)
