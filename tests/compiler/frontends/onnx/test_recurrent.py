"""ONNX RNN, GRU and LSTM: each model runs in onnxruntime, the nnxc reference and TVM."""

import numpy as np
import onnx
import pytest
from onnx import helper
from onnxutil import check_model, make_model
from oputil import run_tvm

from backends.reference import run_graph
from compiler.errors import ConversionError
from compiler.frontends.onnx import import_onnx

rng = np.random.default_rng(0)
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def randn(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype("float32")


def recurrent(
    op,
    *,
    steps=4,
    batch=3,
    inputs=5,
    hidden=4,
    direction="forward",
    layout=0,
    opset=14,
    outputs=("Y", "Y_h", "Y_c"),
    bias=True,
    lens=None,
    initial=False,
    peepholes=False,
    weights_as_inputs=False,
    **attrs,
):
    """One ``op`` node on random data, checked against onnxruntime; returns its outputs.

    ``outputs`` are the node's output names ("" for one left out); ``lens`` the
    sequence_lens fed at run time; ``initial`` feeds initial_h (and initial_c).
    """
    d = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    x = randn(steps, batch, inputs)
    feeds = {"X": x}
    consts = {
        "W": randn(d, g * hidden, inputs, scale=0.5),
        "R": randn(d, g * hidden, hidden, scale=0.5),
    }
    names = ["X", "W", "R"]

    def optional(name, value, fed):
        if value is None:
            names.append("")
            return
        names.append(name)
        (feeds if fed else consts)[name] = value

    optional("B", randn(d, 2 * g * hidden, scale=0.5) if bias else None, False)
    optional("sequence_lens", None if lens is None else np.array(lens, "int32"), True)
    optional("initial_h", randn(d, batch, hidden) if initial else None, True)
    if op == "LSTM":
        optional("initial_c", randn(d, batch, hidden) if initial else None, True)
        optional("P", randn(d, 3 * hidden, scale=0.5) if peepholes else None, False)
    while names[-1] == "":
        names.pop()
    outputs = list(outputs if op == "LSTM" else outputs[:2])
    while outputs[-1] == "":
        outputs.pop()
    if weights_as_inputs:
        feeds.update(consts)
        consts = {}

    def model(layout_attr):
        node = helper.make_node(
            op, names, outputs, hidden_size=hidden, direction=direction, **attrs, **layout_attr
        )
        fed = [(n, _to_layout(n, v, layout)) if layout_attr else (n, v) for n, v in feeds.items()]
        real = [o for o in outputs if o]
        return make_model([node], fed, real, list(consts.items()), opset=opset)

    if not layout:
        return check_model(model({}), feeds)
    # onnxruntime refuses layout=1: run the layout-0 model there and compare transposed.
    import onnxruntime as ort

    sess = ort.InferenceSession(model({}).SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, feeds)
    real = [o for o in outputs if o]
    expected = [_to_layout(o, e, 1) for o, e in zip(real, expected)]
    graph = import_onnx(model({"layout": 1}))
    feeds1 = {n: _to_layout(n, v, 1) for n, v in feeds.items()}
    ins = {v.name: feeds1[v.name] for v in graph.inputs}
    ref = run_graph(graph, ins)
    got = run_tvm(graph, ins)
    for e, r, t in zip(expected, ref.values(), got, strict=True):
        np.testing.assert_allclose(r, e, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(t, e, rtol=1e-4, atol=1e-5)
        assert t.shape == e.shape
    return expected


def _to_layout(name, v, layout):
    """A layout-0 input or output in layout ``layout`` (1: batch first)."""
    if not layout:
        return v
    if name == "X":
        return v.transpose(1, 0, 2)
    if name == "Y":
        return v.transpose(2, 0, 1, 3)
    if name in ("initial_h", "initial_c", "Y_h", "Y_c"):
        return v.transpose(1, 0, 2)
    return v


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_directions_and_layouts(op, direction, layout):
    recurrent(op, direction=direction, layout=layout, initial=layout == 1)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("opset", [7, 22])
def test_other_opsets(op, opset):
    recurrent(op, opset=opset, direction="bidirectional", initial=True)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize(("direction", "layout"), [("forward", 0), ("bidirectional", 1)])
def test_sequence_lens(op, direction, layout):
    """Entries shorter than the sequence keep their state past their length (Y_h is the
    state at their last step) and get zeros in Y there; reverse runs start at their end."""
    steps = 5
    y = recurrent(
        op, steps=steps, lens=[5, 2, 1], direction=direction, layout=layout, initial=True
    )[0]
    y = np.transpose(y, (1, 2, 0, 3)) if layout else y  # [T, D, B, H]
    assert not y[2:, :, 1].any() and not y[1:, :, 2].any()
    assert y[:2, :, 1].all()


def test_sequence_lens_without_initial_state():
    recurrent("LSTM", lens=[4, 3, 2], direction="reverse", peepholes=True)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_weights_fed_at_run_time(op):
    recurrent(op, direction="bidirectional", weights_as_inputs=True, initial=True)


@pytest.mark.parametrize(
    ("op", "activations", "alpha", "beta"),
    [
        (
            "LSTM",
            ["HardSigmoid", "LeakyRelu", "Affine", "Sigmoid", "Elu", "ScaledTanh"],
            [0.3, 0.05, 0.7, 0.8, 0.9],
            [0.45, 0.1, 1.2],
        ),
        ("LSTM", ["Sigmoid", "Softsign", "Softplus"], [], []),
        ("GRU", ["HardSigmoid", "ThresholdedRelu", "Sigmoid", "Relu"], [0.25, 0.1], [0.4]),
        ("RNN", ["ScaledTanh", "Softsign"], [1.5], [0.5]),
        ("RNN", ["Relu"], [], []),
        ("RNN", ["LeakyRelu"], [], []),
    ],
)
def test_activations(op, activations, alpha, beta):
    """Each function takes the next alpha (beta) only if it has one; defaults otherwise."""
    direction = "bidirectional" if len(activations) > {"RNN": 1, "GRU": 2}.get(op, 3) else None
    attrs = dict(activations=activations)
    if alpha:
        attrs["activation_alpha"] = alpha
    if beta:
        attrs["activation_beta"] = beta
    recurrent(op, direction=direction or "forward", initial=True, **attrs)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_clip(op):
    """The clip bounds the input of every gate activation (large inputs make it bite)."""
    recurrent(op, clip=0.3, inputs=6, direction="bidirectional")


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_gru_linear_before_reset(direction):
    recurrent("GRU", linear_before_reset=1, direction=direction, initial=True, lens=[4, 2, 3])


@pytest.mark.parametrize("input_forget", [0, 1])
def test_lstm_peepholes_and_input_forget(input_forget):
    recurrent(
        "LSTM", peepholes=True, input_forget=input_forget, direction="bidirectional", initial=True
    )


@pytest.mark.parametrize(
    "outputs", [("Y",), ("", "Y_h"), ("", "", "Y_c"), ("Y", "", "Y_c")], ids=str
)
def test_lstm_each_output(outputs):
    got = recurrent("LSTM", outputs=outputs, direction="bidirectional", layout=1)
    assert len(got) == sum(1 for o in outputs if o)


def test_without_bias():
    recurrent("GRU", bias=False, direction="bidirectional", initial=True)


# -- errors --------------------------------------------------------------------------------


def _model(op, x_shape, **attrs):
    h = 4
    g = GATES[op]
    node = helper.make_node(op, ["X", "W", "R"], ["Y"], **{"hidden_size": h, **attrs})
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
        initializer=[
            onnx.numpy_helper.from_array(randn(1, g * h, x_shape[-1]), "W"),
            onnx.numpy_helper.from_array(randn(1, g * h, h), "R"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("with_lens", [False, True])
def test_symbolic_sequence_length_runs_as_a_loop(op, with_lens, tmp_path):
    """X: [seq, 2, 3] with seq symbolic becomes a ``loop`` over one cell step; one artifact
    then runs any length and matches onnxruntime (bidirectional, sequence_lens fed)."""
    import onnxruntime as ort

    import compiler
    from compiler.ir.graph import walk

    h, g, batch = 4, GATES[op], 2
    names = ["X", "W", "R", "B", "sequence_lens" if with_lens else ""]
    outs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    node = helper.make_node(op, names, outs, hidden_size=h, direction="bidirectional")
    inputs = [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["seq", batch, 3])]
    if with_lens:
        inputs.append(helper.make_tensor_value_info("sequence_lens", onnx.TensorProto.INT32, [2]))
    graph = helper.make_graph(
        [node],
        "g",
        inputs,
        [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outs],
        initializer=[
            onnx.numpy_helper.from_array(randn(2, g * h, 3, scale=0.5), "W"),
            onnx.numpy_helper.from_array(randn(2, g * h, h, scale=0.5), "R"),
            onnx.numpy_helper.from_array(randn(2, 2 * g * h, scale=0.5), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    compiled = compiler.compile(model)
    assert "loop" in {n.op for n in walk(compiled.graph)}
    path = str(tmp_path / "rnn.so")
    compiled.export(path)
    rt = compiler.load(path)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for steps in (1, 3, 7):
        feeds = {"X": randn(steps, batch, 3)}
        if with_lens:
            feeds["sequence_lens"] = np.array([steps, max(steps - 2, 0)], "int32")
        got = rt.run(feeds)
        for name, want in zip(outs, sess.run(None, feeds), strict=True):
            np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        (dict(activations=["Swish"]), "unknown activation function 'Swish'"),
        (dict(activations=["Tanh", "Tanh"]), "must list 1 function"),
        (dict(direction="sideways"), "direction 'sideways'"),
        (dict(hidden_size=5), "hidden_size=5"),
    ],
)
def test_bad_attributes(attrs, message):
    with pytest.raises(ConversionError, match=rf"RNN node .*{message}"):
        import_onnx(_model("RNN", [2, 1, 3], **attrs))


def test_symbolic_batch_needs_initial_state():
    with pytest.raises(ConversionError, match="batch size must be static"):
        import_onnx(_model("GRU", [2, "n", 3]))


# -- PyTorch exports -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_torch_export(cls, tmp_path):
    """torch.nn.LSTM/GRU (2 layers, bidirectional, batch_first) exported by torch: nnxc
    matches PyTorch's own outputs."""
    torch = pytest.importorskip("torch", reason="torch is not installed in this environment")

    torch.manual_seed(0)
    net = getattr(torch.nn, cls)(8, 16, num_layers=2, bidirectional=True, batch_first=True)
    net.eval()
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        y, state = net(x)
    path = tmp_path / "net.onnx"
    export = dict(input_names=["x"], output_names=["y"], opset_version=17)
    try:
        torch.onnx.export(net, (x,), str(path), dynamo=False, **export)
    except TypeError:  # a torch without the dynamo exporter: its one exporter is the old one
        torch.onnx.export(net, (x,), str(path), **export)
    graph = import_onnx(str(path))
    got = run_tvm(graph, {graph.inputs[0].name: x.numpy()})
    expected = [y, *(state if cls == "LSTM" else (state,))]  # Y, h_n (, c_n): the export order
    assert len(got) == len(expected) and got[0].shape == (2, 6, 32)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-4, atol=1e-5)


def test_long_static_sequence_runs_as_a_loop() -> None:
    """Past MAX_UNROLLED_STEPS a static length becomes a loop, as a symbolic one does (an
    unrolled declared length of millions made millions of nodes); same results."""
    from compiler.frontends.recurrent_cells import MAX_UNROLLED_STEPS
    from compiler.ir.graph import walk

    steps, batch, inputs, hidden = MAX_UNROLLED_STEPS + 44, 2, 3, 4
    w = randn(2, 4 * hidden, inputs, scale=0.3)
    r = randn(2, 4 * hidden, hidden, scale=0.3)
    lens = np.array([steps, steps - 7], np.int32)
    node = helper.make_node(
        "LSTM", ["x", "W", "R", "", "lens"], ["y", "h"], hidden_size=hidden,
        direction="bidirectional",
    )  # fmt: skip
    x = randn(steps, batch, inputs)
    model = make_model([node], [("x", x)], ["y", "h"], [("W", w), ("R", r), ("lens", lens)])
    ops = [n.op for n in walk(import_onnx(model))]
    assert "loop" in ops and len(ops) < 100, len(ops)
    check_model(model, {"x": x}, rtol=1e-3, atol=1e-4)
