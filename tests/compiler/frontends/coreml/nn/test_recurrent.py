"""Recurrent NeuralNetwork layers against PyTorch (LSTM) and numpy loops written from the
equations of NeuralNetwork.proto (every variant: activations, reverseInput, sequenceOutput,
biases, peepholes, coupled gates, forget bias, cell clipping, initial and final states)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from coremlutil import check, nn_builder, save_nn

from compiler.errors import ConversionError
from compiler.frontends.coreml.importer import import_coreml
from compiler.ir.graph import walk

S, B, IN, H = 4, 2, 3, 5
RNG = np.random.default_rng(7)


def _rand(*shape: int, scale: float = 0.5) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


ACTS = {
    "SIGMOID": lambda x: 1 / (1 + np.exp(-x)),
    "TANH": np.tanh,
    "RELU": lambda x: np.maximum(x, 0),
    "LINEAR": lambda x: x,
    "SIGMOID_HARD": lambda x: np.clip(0.2 * x + 0.5, 0, 1),
}


def _clip(x: np.ndarray, bound: float = 50.0) -> np.ndarray:
    return np.clip(x, -bound, bound)


def _outputs(ys: list[np.ndarray], sequence: bool) -> np.ndarray:
    """Per-step outputs [B, H] as the layer's Y, [Seq or 1, B, H, 1, 1]."""
    y = np.stack(ys) if sequence else ys[-1][None]
    return y[..., None, None]


def _rnn_ref(x, w, r, b, act, h, reverse, sequence):
    ys = []
    for t in range(S)[::-1] if reverse else range(S):
        h = ACTS[act](_clip(x[t] @ w.T + h @ r.T + b))
        ys.append(h)
    return _outputs(ys, sequence), h


def _gru_ref(x, w, r, b, acts, h, reverse, sequence):
    f, g = (ACTS[a] for a in acts)
    ys = []
    for t in range(S)[::-1] if reverse else range(S):
        z = f(_clip(x[t] @ w[0].T + h @ r[0].T + b[0]))
        rr = f(_clip(x[t] @ w[1].T + h @ r[1].T + b[1]))
        o = g(_clip(x[t] @ w[2].T + (h * rr) @ r[2].T + b[2]))
        h = (1 - z) * o + z * h
        ys.append(h)
    return _outputs(ys, sequence), h


def _lstm_ref(x, w, r, b, p, acts, h, c, reverse, sequence, coupled=False, cell_clip=50.0):
    """w, r, b in the builder's order [i, f, o, z]; p [i, f, o]."""
    f_, g_, h_ = (ACTS[a] for a in acts)
    ys = []
    for t in range(S)[::-1] if reverse else range(S):
        pre = [x[t] @ w[k].T + h @ r[k].T + b[k] for k in range(4)]
        i = f_(_clip(pre[0] + p[0] * c))
        f = 1 - i if coupled else f_(_clip(pre[1] + p[1] * c))
        z = g_(_clip(pre[3]))
        c = _clip(f * c + i * z, cell_clip)
        o = f_(_clip(pre[2] + p[2] * c))
        h = o * h_(c)
        ys.append(h)
    return _outputs(ys, sequence), h, c


def _state(v: np.ndarray) -> np.ndarray:
    return v[None, :, :, None, None]


def _model(
    tmp_path: Path, add, outputs: list[str], states: int = 0, exact: bool = True
) -> tuple[Path, dict]:
    """A model of one recurrent layer on x [S, B, IN, 1, 1] and ``states`` state inputs
    (``exact`` False: the rank-5 mapping of the models recurrent layers come from)."""
    inputs = [("x", (S, B, IN, 1, 1))] + [(f"s{k}", (1, B, H, 1, 1)) for k in range(states)]
    builder = nn_builder(inputs, [(n, None) for n in outputs], exact=exact)
    add(builder, ["x"] + [f"s{k}" for k in range(states)], outputs)
    feeds = {"x": _rand(S, B, IN, 1, 1, scale=1.0)}
    feeds.update({f"s{k}": _rand(1, B, H, 1, 1) for k in range(states)})
    return save_nn(builder, tmp_path), feeds


@pytest.mark.parametrize(
    "act, reverse, sequence, bias",
    [
        ("TANH", False, True, True),
        ("RELU", True, True, False),
        ("LINEAR", False, False, True),
        ("SIGMOID_HARD", True, False, True),
    ],
)
def test_simple_recurrent(tmp_path: Path, act: str, reverse: bool, sequence: bool, bias: bool):
    w, r, b = _rand(H, IN), _rand(H, H), _rand(H)

    def add(builder, ins, outs):
        builder.add_simple_rnn(
            "rnn", r, w, b if bias else None, H, IN, act, ins, outs, sequence, reverse
        )

    path, feeds = _model(tmp_path, add, ["y", "h"], states=1, exact=act != "RELU")
    x = feeds["x"][..., 0, 0]
    y, h = _rnn_ref(x, w, r, b if bias else 0, act, feeds["s0"][0, ..., 0, 0], reverse, sequence)
    check(path, feeds, [y, _state(h)], tvm=act == "TANH")


@pytest.mark.parametrize(
    "acts, reverse, sequence, bias",
    [(("SIGMOID_HARD", "TANH"), False, True, True), (("SIGMOID", "RELU"), True, False, False)],
)
def test_gru(tmp_path: Path, acts: tuple[str, str], reverse: bool, sequence: bool, bias: bool):
    w = [_rand(H, IN) for _ in range(3)]
    r = [_rand(H, H) for _ in range(3)]
    b = [_rand(H) for _ in range(3)]

    def add(builder, ins, outs):
        builder.add_gru(
            "gru", r, w, b if bias else None, H, IN, ins, outs, acts[1], acts[0], sequence, reverse
        )

    path, feeds = _model(tmp_path, add, ["y", "h"], states=1)
    x, h0 = feeds["x"][..., 0, 0], feeds["s0"][0, ..., 0, 0]
    y, h = _gru_ref(x, w, r, b if bias else [0, 0, 0], acts, h0, reverse, sequence)
    check(path, feeds, [y, _state(h)], tvm=not reverse)


def _torch_lstm(bidirectional: bool) -> tuple[torch.nn.LSTM, list[dict]]:
    """A torch LSTM and its weights per direction in the builder's [i, f, o, z] order."""
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(IN, H, bidirectional=bidirectional)
    sd = {k: v.detach().numpy() for k, v in lstm.state_dict().items()}
    dirs = []
    for suffix in ("", "_reverse")[: 1 + bidirectional]:

        def ifoz(m: np.ndarray) -> list[np.ndarray]:
            i, f, g, o = np.split(m, 4)
            return [i, f, o, g]

        bias = sd[f"bias_ih_l0{suffix}"] + sd[f"bias_hh_l0{suffix}"]
        dirs.append(
            {
                "W_x": ifoz(sd[f"weight_ih_l0{suffix}"]),
                "W_h": ifoz(sd[f"weight_hh_l0{suffix}"]),
                "b": ifoz(bias),
            }
        )
    return lstm, dirs


def test_lstm_uni_and_bidirectional_match_torch(tmp_path: Path) -> None:
    """Both layers in one model, with initial states; the bidirectional Y holds the
    backward half in input order, its final states come per direction."""
    uni, (wu,) = _torch_lstm(False)
    bi, (wf, wb) = _torch_lstm(True)
    inputs = [("x", (S, B, IN, 1, 1))] + [(f"s{k}", (1, B, H, 1, 1)) for k in range(6)]
    outs = ["yu", "hu", "cu", "yb", "hf", "cf", "hb", "cb"]
    builder = nn_builder(inputs, [(n, None) for n in outs])
    builder.add_unilstm(
        "uni", **wu, hidden_size=H, input_size=IN, input_names=["x", "s0", "s1"],
        output_names=outs[:3], output_all=True,
    )  # fmt: skip
    builder.add_bidirlstm(
        "bi", wf["W_h"], wf["W_x"], wf["b"], wb["W_h"], wb["W_x"], wb["b"], H, IN,
        ["x", "s2", "s3", "s4", "s5"], outs[3:], output_all=True,
    )  # fmt: skip
    feeds = {"x": _rand(S, B, IN, 1, 1, scale=1.0)}
    feeds.update({f"s{k}": _rand(1, B, H, 1, 1) for k in range(6)})
    st = [torch.from_numpy(feeds[f"s{k}"][..., 0, 0]) for k in range(6)]
    x = torch.from_numpy(feeds["x"][..., 0, 0])
    with torch.no_grad():
        yu, (hu, cu) = uni(x, (st[0], st[1]))
        yb, (hn, cn) = bi(x, (torch.cat([st[2], st[4]]), torch.cat([st[3], st[5]])))
    want = [yu, hu, cu, yb, hn[:1], cn[:1], hn[1:], cn[1:]]
    check(save_nn(builder, tmp_path), feeds, [w.numpy()[..., None, None] for w in want])


@pytest.mark.parametrize(
    "variant",
    ["peepholes", "coupled", "forget_bias", "cell_clip", "reverse_last", "no_bias", "acts"],
)
def test_lstm_variants(tmp_path: Path, variant: str) -> None:
    w = [_rand(H, IN, scale=1.0) for _ in range(4)]
    r = [_rand(H, H, scale=1.0) for _ in range(4)]
    b = [_rand(H) for _ in range(4)]
    p = [_rand(H) for _ in range(3)] if variant == "peepholes" else [0, 0, 0]
    acts = ("SIGMOID_HARD", "RELU", "LINEAR") if variant == "acts" else ("SIGMOID", "TANH", "TANH")
    reverse, sequence = variant == "reverse_last", variant != "reverse_last"
    cell_clip = 0.3 if variant == "cell_clip" else 50.0
    bias = variant != "no_bias"

    def add(builder, ins, outs):
        builder.add_unilstm(
            "lstm", r, w, b if bias else None, H, IN, ins, outs, *acts,
            peep=p if variant == "peepholes" else None, output_all=sequence,
            forget_bias=variant == "forget_bias", coupled_input_forget_gate=variant == "coupled",
            cell_clip_threshold=cell_clip, reverse_input=reverse,
        )  # fmt: skip

    path, feeds = _model(tmp_path, add, ["y", "h", "c"], states=2)
    x, h0, c0 = feeds["x"][..., 0, 0], feeds["s0"][0, ..., 0, 0], feeds["s1"][0, ..., 0, 0]
    bias_ref = [v.copy() for v in b] if bias else [np.zeros(H, np.float32) for _ in range(4)]
    if variant == "forget_bias":
        bias_ref[1] += 1
    y, h, c = _lstm_ref(
        x, w, r, bias_ref, p, acts, h0, c0, reverse, sequence, variant == "coupled", cell_clip
    )
    check(path, feeds, [y, _state(h), _state(c)], tvm=variant == "peepholes")


def test_lstm_without_state_inputs_starts_from_zero(tmp_path: Path) -> None:
    w = [_rand(H, IN) for _ in range(4)]
    r = [_rand(H, H) for _ in range(4)]
    b = [_rand(H) for _ in range(4)]

    def add(builder, ins, outs):
        builder.add_unilstm("lstm", r, w, b, H, IN, ins, outs)

    path, feeds = _model(tmp_path, add, ["y"])
    zero = np.zeros((B, H), np.float32)
    acts = ("SIGMOID", "TANH", "TANH")
    y, _, _ = _lstm_ref(feeds["x"][..., 0, 0], w, r, b, [0, 0, 0], acts, zero, zero, False, False)
    check(path, feeds, [y], tvm=False)


def test_gate_inputs_are_clipped_to_50(tmp_path: Path) -> None:
    """The proto's clip(): a linear activation saturates at 50."""
    w, r, b = _rand(H, IN), _rand(H, H, scale=0.1), np.full(H, 80.0, np.float32)

    def add(builder, ins, outs):
        builder.add_simple_rnn("rnn", r, w, b, H, IN, "LINEAR", ins, outs, True)

    path, feeds = _model(tmp_path, add, ["y"])
    zero = np.zeros((B, H), np.float32)
    y, _ = _rnn_ref(feeds["x"][..., 0, 0], w, r, b, "LINEAR", zero, False, True)
    assert np.all(y == 50.0)
    check(path, feeds, [y], tvm=False)


def test_scaled_tanh_with_parameters(tmp_path: Path) -> None:
    w, r = _rand(H, IN), _rand(H, H)
    builder = nn_builder([("x", (S, B, IN, 1, 1))], [("y", None)])
    builder.add_simple_rnn("rnn", r, w, None, H, IN, "TANH", ["x"], ["y"])
    a = builder.spec.neuralNetwork.layers[0].simpleRecurrent.activation.scaledTanh
    a.alpha, a.beta = 1.7159, 2 / 3
    x = _rand(S, B, IN, 1, 1, scale=1.0)
    h = np.zeros((B, H), np.float32)
    for t in range(S):
        h = 1.7159 * np.tanh(2 / 3 * (x[t, ..., 0, 0] @ w.T + h @ r.T))
    check(save_nn(builder, tmp_path), {"x": x}, [_state(h)], tvm=False)


@pytest.mark.parametrize(
    "act, message",
    [
        ("scaledTanh", "scaledTanh without alpha and beta is ambiguous"),
        ("PReLU", "activation 'PReLU' cannot be a recurrent layer's activation"),
    ],
)
def test_refused_activations(tmp_path: Path, act: str, message: str) -> None:
    builder = nn_builder([("x", (S, B, IN, 1, 1))], [("y", None)])
    builder.add_simple_rnn("rnn", _rand(H, H), _rand(H, IN), None, H, IN, "TANH", ["x"], ["y"])
    getattr(builder.spec.neuralNetwork.layers[0].simpleRecurrent.activation, act).SetInParent()
    with pytest.raises(ConversionError, match=f"simpleRecurrent node 'rnn'.*{message}"):
        import_coreml(save_nn(builder, tmp_path))


def test_wrong_input_size_is_refused(tmp_path: Path) -> None:
    builder = nn_builder([("x", (S, B, IN + 1, 1, 1))], [("y", None)])
    builder.add_simple_rnn("rnn", _rand(H, H), _rand(H, IN), None, H, IN, "TANH", ["x"], ["y"])
    with pytest.raises(ConversionError, match=r"'rnn'.*expected \[Seq, Batch, 3, 1, 1\]"):
        import_coreml(save_nn(builder, tmp_path))


def test_flexible_sequence_length_runs_in_a_loop(tmp_path: Path) -> None:
    """A Seq range on the input: a GRU (reverseInput, Y in processing order) and a
    bidirectional LSTM (Y back in input order) each become a loop that runs any length."""
    gw = [_rand(H, IN) for _ in range(3)]
    gr = [_rand(H, H) for _ in range(3)]
    gb = [_rand(H) for _ in range(3)]
    bi, (wf, wb) = _torch_lstm(True)
    outs = ["yg", "hg", "yb", "hf", "cf", "hb", "cb"]
    builder = nn_builder([("x", (S, B, IN, 1, 1))], [(n, None) for n in outs])
    builder.add_gru("gru", gr, gw, gb, H, IN, ["x"], outs[:2], "TANH", "SIGMOID", True, True)
    builder.add_bidirlstm(
        "bi", wf["W_h"], wf["W_x"], wf["b"], wb["W_h"], wb["W_x"], wb["b"], H, IN,
        ["x"], outs[2:], output_all=True,
    )  # fmt: skip
    seq = builder.spec.description.input[0].type.multiArrayType.shapeRange.sizeRanges
    for lo, hi in [(1, 10), (B, B), (IN, IN), (1, 1), (1, 1)]:
        seq.add(lowerBound=lo, upperBound=hi)
    path = save_nn(builder, tmp_path)
    graph, _ = import_coreml(path)
    assert isinstance(graph.inputs[0].shape[0], str)
    assert sum(n.op == "loop" for n in walk(graph)) == 2
    steps = 6
    x = _rand(steps, B, IN, 1, 1, scale=1.0)
    h = np.zeros((B, H), np.float32)
    ys = []
    for t in range(steps)[::-1]:
        xt = x[t, ..., 0, 0]
        z = ACTS["SIGMOID"](xt @ gw[0].T + h @ gr[0].T + gb[0])
        r = ACTS["SIGMOID"](xt @ gw[1].T + h @ gr[1].T + gb[1])
        o = np.tanh(xt @ gw[2].T + (h * r) @ gr[2].T + gb[2])
        h = (1 - z) * o + z * h
        ys.append(h)
    with torch.no_grad():
        yb, (hn, cn) = bi(torch.from_numpy(x[..., 0, 0]))
    want = [np.stack(ys)[..., None, None], _state(h)]
    want += [v.numpy()[..., None, None] for v in (yb, hn[:1], cn[:1], hn[1:], cn[1:])]
    check(path, {"x": x}, want)


def test_bidirectional_activations_must_agree(tmp_path: Path) -> None:
    _, (wf, wb) = _torch_lstm(True)
    builder = nn_builder([("x", (S, B, IN, 1, 1))], [("y", None)])
    builder.add_bidirlstm(
        "bi", wf["W_h"], wf["W_x"], wf["b"], wb["W_h"], wb["W_x"], wb["b"], H, IN, ["x"], ["y"]
    )
    backward = builder.spec.neuralNetwork.layers[0].biDirectionalLSTM.activationsBackwardLSTM
    backward[2].ReLU.SetInParent()
    with pytest.raises(ConversionError, match="'bi': the backward LSTM's activations differ"):
        import_coreml(save_nn(builder, tmp_path))
