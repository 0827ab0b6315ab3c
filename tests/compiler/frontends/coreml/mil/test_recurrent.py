"""MIL lstm, gru and rnn against PyTorch's nn.LSTM/nn.RNN and a numpy GRU (Core ML's GRU
multiplies the reset gate into the state before the recurrent matmul)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from coremltools.converters.mil.mil import Builder as mb
from coremltools.converters.mil.mil import get_new_symbol
from coremlutil import check, ct, save_program

from compiler.errors import ConversionError
from compiler.frontends.coreml.importer import import_coreml

S, B, IN, H = 4, 2, 3, 5


def _ifzo_to_ifoz(w: np.ndarray) -> np.ndarray:
    i, f, z, o = np.split(w, 4)
    return np.concatenate([i, f, o, z])


def _lstm_weights(lstm: torch.nn.LSTM, suffix: str = "") -> dict[str, np.ndarray]:
    sd = {k: v.detach().numpy() for k, v in lstm.state_dict().items()}
    return {
        "weight_ih": _ifzo_to_ifoz(sd[f"weight_ih_l0{suffix}"]),
        "weight_hh": _ifzo_to_ifoz(sd[f"weight_hh_l0{suffix}"]),
        "bias": _ifzo_to_ifoz(sd[f"bias_ih_l0{suffix}"] + sd[f"bias_hh_l0{suffix}"]),
    }


def _join(x: torch.Tensor) -> np.ndarray:
    """PyTorch's ``[D, b, H]`` state as Core ML's ``[b, D*H]``."""
    return np.concatenate(list(x.detach().numpy()), axis=-1)


@pytest.mark.parametrize(
    "direction,output_sequence,tvm",
    [
        ("forward", True, True),
        ("reverse", True, False),
        ("bidirectional", True, True),
        ("bidirectional", False, False),
    ],
)
def test_lstm_against_torch(
    tmp_path: Path, direction: str, output_sequence: bool, tvm: bool
) -> None:
    torch.manual_seed(0)
    bidir = direction == "bidirectional"
    d = 2 if bidir else 1
    net = torch.nn.LSTM(IN, H, bidirectional=bidir)
    w = _lstm_weights(net)
    if bidir:
        w.update({k + "_back": v for k, v in _lstm_weights(net, "_reverse").items()})

    @mb.program(input_specs=[mb.TensorSpec(s) for s in ((S, B, IN), (B, d * H), (B, d * H))])
    def prog(x, h0, c0):
        return mb.lstm(
            x=x,
            initial_h=h0,
            initial_c=c0,
            direction=direction,
            output_sequence=output_sequence,
            **w,
        )

    rng = np.random.default_rng(1)
    x = rng.standard_normal((S, B, IN)).astype(np.float32)
    h0 = rng.standard_normal((d, B, H)).astype(np.float32)
    c0 = rng.standard_normal((d, B, H)).astype(np.float32)
    xt = torch.from_numpy(x)
    if direction == "reverse":
        xt = torch.flip(xt, [0])  # Core ML's reverse lstm: outputs in processing order
    y, (hn, cn) = net(xt, (torch.from_numpy(h0), torch.from_numpy(c0)))
    y = y.detach().numpy()
    if not output_sequence:
        y = np.concatenate([y[-1:, :, :H], y[:1, :, H:]], axis=-1)
    path = save_program(prog, tmp_path)
    feeds = {"x": x, "h0": np.concatenate(list(h0), -1), "c0": np.concatenate(list(c0), -1)}
    check(path, feeds, [y, _join(hn), _join(cn)], rtol=1e-4, atol=1e-5, tvm=tvm)


def _act(name: str, x: np.ndarray) -> np.ndarray:
    return {
        "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
        "tanh": np.tanh,
        "hard_sigmoid": lambda v: np.clip(0.2 * v + 0.5, 0, 1),
        "linear": lambda v: v,
        "relu": lambda v: np.maximum(v, 0),
    }[name](x)


def test_lstm_peephole_clip_and_activations(tmp_path: Path) -> None:
    """MIL's clip bounds the cell state after each update; peepholes are in ``i f o`` order."""
    rng = np.random.default_rng(2)
    w_ih = rng.standard_normal((4 * H, IN)).astype(np.float32)
    w_hh = rng.standard_normal((4 * H, H)).astype(np.float32)
    bias = rng.standard_normal(4 * H).astype(np.float32)
    peep = rng.standard_normal(3 * H).astype(np.float32)
    clip = 0.3

    @mb.program(input_specs=[mb.TensorSpec((S, B, IN))])
    def prog(x):
        zeros = np.zeros((B, H), np.float32)
        y, _, c = mb.lstm(
            x=x,
            initial_h=zeros,
            initial_c=zeros,
            weight_ih=w_ih,
            weight_hh=w_hh,
            bias=bias,
            peephole=peep,
            output_sequence=True,
            recurrent_activation="hard_sigmoid",
            cell_activation="linear",
            activation="relu",
            clip=np.float32(clip),
        )
        return y, c

    x = rng.standard_normal((S, B, IN)).astype(np.float32)
    wi, wf, wo, wz = np.split(w_ih, 4)
    ri, rf, ro, rz = np.split(w_hh, 4)
    bi, bf, bo, bz = np.split(bias, 4)
    pi, pf, po = np.split(peep, 3)
    h = c = np.zeros((B, H), np.float32)
    ys = []
    for t in range(S):
        xt = x[t]
        i = _act("hard_sigmoid", xt @ wi.T + h @ ri.T + bi + pi * c)
        f = _act("hard_sigmoid", xt @ wf.T + h @ rf.T + bf + pf * c)
        z = _act("linear", xt @ wz.T + h @ rz.T + bz)
        c = np.clip(f * c + i * z, -clip, clip)
        o = _act("hard_sigmoid", xt @ wo.T + h @ ro.T + bo + po * c)
        h = o * _act("relu", c)
        ys.append(h)
    path = save_program(prog, tmp_path)
    check(path, {"x": x}, [np.stack(ys), c], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_gru_against_numpy(tmp_path: Path, direction: str) -> None:
    rng = np.random.default_rng(3)
    w_ih = rng.standard_normal((3 * H, IN)).astype(np.float32)
    w_hh = rng.standard_normal((3 * H, H)).astype(np.float32)
    bias = rng.standard_normal(3 * H).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec((S, B, IN)), mb.TensorSpec((B, H))])
    def prog(x, h0):
        return mb.gru(
            x=x,
            initial_h=h0,
            weight_ih=w_ih,
            weight_hh=w_hh,
            bias=bias,
            direction=direction,
            output_sequence=True,
        )

    x = rng.standard_normal((S, B, IN)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    wr, wo, wz = np.split(w_ih, 3)
    rr, ro, rz = np.split(w_hh, 3)
    br, bo, bz = np.split(bias, 3)
    h, ys = h0, []
    for t in range(S)[:: -1 if direction == "reverse" else 1]:
        xt = x[t]
        z = _act("sigmoid", xt @ wz.T + h @ rz.T + bz)
        r = _act("sigmoid", xt @ wr.T + h @ rr.T + br)
        o = np.tanh(xt @ wo.T + (r * h) @ ro.T + bo)
        h = (1 - z) * o + z * h
        ys.append(h)
    path = save_program(prog, tmp_path)
    check(path, {"x": x, "h0": h0}, [np.stack(ys), h], rtol=1e-4, atol=1e-5)


def test_rnn_against_torch_fp16(tmp_path: Path) -> None:
    """An fp16 program (iOS17 allows fp16 recurrences) computes in float16."""
    torch.manual_seed(4)
    net = torch.nn.RNN(IN, H)
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}

    @mb.program(
        input_specs=[mb.TensorSpec((S, B, IN)), mb.TensorSpec((B, H))],
        opset_version=ct.target.iOS17,
    )
    def prog(x, h0):
        return mb.rnn(
            x=x,
            initial_h=h0,
            weight_ih=sd["weight_ih_l0"],
            weight_hh=sd["weight_hh_l0"],
            bias=sd["bias_ih_l0"] + sd["bias_hh_l0"],
            output_sequence=False,
        )

    rng = np.random.default_rng(5)
    x = rng.standard_normal((S, B, IN)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    y, hn = net(torch.from_numpy(x), torch.from_numpy(h0)[None])
    path = save_program(prog, tmp_path, precision="fp16", target=ct.target.iOS17)
    graph, _ = import_coreml(path)
    assert graph.metadata.get("precision") == "float16"
    check(
        path,
        {"x": x, "h0": h0},
        [y.detach().numpy()[-1:], hn.detach().numpy()[0]],
        rtol=1e-2,
        atol=1e-2,
    )


@pytest.mark.parametrize("length", [1, 6])
def test_bidirectional_lstm_over_a_flexible_length(tmp_path: Path, length: int) -> None:
    """A symbolic sequence length becomes a loop; the reverse outputs come back in time
    order."""
    torch.manual_seed(6)
    net = torch.nn.LSTM(IN, H, bidirectional=True)
    w = _lstm_weights(net)
    w.update({k + "_back": v for k, v in _lstm_weights(net, "_reverse").items()})
    zeros = np.zeros((B, 2 * H), np.float32)

    @mb.program(input_specs=[mb.TensorSpec((get_new_symbol(), B, IN))])
    def prog(x):
        return mb.lstm(
            x=x,
            initial_h=zeros,
            initial_c=zeros,
            direction="bidirectional",
            output_sequence=True,
            **w,
        )

    seq = ct.TensorType("x", shape=(ct.RangeDim(1, 16), B, IN))
    path = save_program(prog, tmp_path, inputs=[seq])
    graph, _ = import_coreml(path)
    assert "loop" in [n.op for n in graph.nodes]
    x = np.random.default_rng(7).standard_normal((length, B, IN)).astype(np.float32)
    y, (hn, cn) = net(torch.from_numpy(x))
    check(
        path,
        {"x": x},
        [y.detach().numpy(), _join(hn), _join(cn)],
        rtol=1e-4,
        atol=1e-5,
        tvm=length > 1,
    )


def test_unknown_activation_is_refused(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec((S, B, IN)), mb.TensorSpec((B, H))])
    def prog(x, h0):
        w_ih, w_hh = np.ones((3 * H, IN), np.float32), np.ones((3 * H, H), np.float32)
        return mb.gru(x=x, initial_h=h0, weight_ih=w_ih, weight_hh=w_hh, activation="softsign")

    path = save_program(prog, tmp_path)
    with pytest.raises(ConversionError, match=r"gru .*activation 'softsign' is not one of"):
        import_coreml(path)


def test_gru_reset_after_against_torch(tmp_path: Path) -> None:
    """iOS18's reset_after with input_bias: PyTorch's GRU (gates r o z in MIL's order)."""
    torch.manual_seed(8)
    net = torch.nn.GRU(IN, H)
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}

    def roz(w: np.ndarray) -> np.ndarray:
        r, z, n = np.split(w, 3)  # PyTorch's order
        return np.concatenate([r, n, z])

    @mb.program(
        input_specs=[mb.TensorSpec((S, B, IN)), mb.TensorSpec((B, H))],
        opset_version=ct.target.iOS18,
    )
    def prog(x, h0):
        return mb.gru(
            x=x,
            initial_h=h0,
            weight_ih=roz(sd["weight_ih_l0"]),
            weight_hh=roz(sd["weight_hh_l0"]),
            input_bias=roz(sd["bias_ih_l0"]),
            bias=roz(sd["bias_hh_l0"]),
            reset_after=True,
            output_sequence=True,
        )

    rng = np.random.default_rng(9)
    x = rng.standard_normal((S, B, IN)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    y, hn = net(torch.from_numpy(x), torch.from_numpy(h0)[None])
    path = save_program(prog, tmp_path, target=ct.target.iOS18)
    want = [y.detach().numpy(), hn.detach().numpy()[0]]
    check(path, {"x": x, "h0": h0}, want, rtol=1e-4, atol=1e-5, tvm=False)
