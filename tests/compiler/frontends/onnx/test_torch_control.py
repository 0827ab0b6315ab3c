"""PyTorch control flow exported to ONNX (TorchScript exporter: ``Loop`` and ``If``), compiled
by nnxc into an artifact and checked against PyTorch itself, for inputs that take different
branches and run different numbers of iterations with the same artifact."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")

import compiler  # noqa: E402
from compiler.ir.graph import walk  # noqa: E402


class WhileNet(torch.nn.Module):
    """A data-dependent ``while``: how often the body runs depends on the input's values."""

    def forward(self, x: torch.Tensor, limit: torch.Tensor):
        steps = torch.zeros((), dtype=torch.int64)
        while bool(x.abs().sum() < limit):
            x = x * 1.5 + 0.25
            steps = steps + 1
        return x, steps


class BranchNet(torch.nn.Module):
    """An ``if`` on a tensor condition, each branch with its own computation."""

    def forward(self, x: torch.Tensor, w: torch.Tensor):
        if bool(x.sum() > 0):
            y = torch.tanh(x @ w) * 2.0
        else:
            y = torch.relu(-x) @ w
        return y + 1.0


class CountNet(torch.nn.Module):
    """A ``for`` loop over a trip count given at run time, accumulating a running sum."""

    def forward(self, x: torch.Tensor, n: torch.Tensor):
        acc = torch.zeros_like(x)
        for i in range(int(n)):
            acc = acc + x * float(i)
        return acc


def _export(module: torch.nn.Module, args: tuple) -> onnx.ModelProto:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, and says so
        torch.onnx.export(torch.jit.script(module), args, f, opset_version=17, dynamo=False)
    return onnx.load_from_string(f.getvalue())


def _artifact(model: onnx.ModelProto, tmp_path, onnx_op: str, core_op: str):
    """Compile and load; the control flow must survive into the compiled graph (not folded
    away), so the artifact really decides at run time."""
    assert onnx_op in {n.op_type for n in model.graph.node}, "the exporter did not write it"
    compiled = compiler.compile(model)
    assert core_op in {n.op for n in walk(compiled.graph)}
    path = tmp_path / "model.so"
    compiled.export(str(path))
    return compiler.load(str(path))


def _check(rt, module: torch.nn.Module, feeds: list[np.ndarray]) -> None:
    want = module(*(torch.from_numpy(v) for v in feeds))
    want = want if isinstance(want, tuple) else (want,)
    got = rt.run({i.name: v for i, v in zip(rt.inputs, feeds)})
    assert len(got) == len(want)
    for (name, g), w in zip(got.items(), want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_while_loop_runs_a_data_dependent_number_of_times(tmp_path):
    x0 = np.array([0.1, -0.2, 0.3], np.float32)
    model = _export(WhileNet(), (torch.from_numpy(x0), torch.tensor(50.0)))
    rt = _artifact(model, tmp_path, "Loop", "loop")
    for limit in (0.0, 1.0, 50.0, 1e4):  # 0 to ~20 iterations, one artifact
        _check(rt, WhileNet(), [x0, np.array(limit, np.float32)])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_if_takes_the_branch_the_data_says(tmp_path, sign):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    model = _export(BranchNet(), (torch.from_numpy(x), torch.from_numpy(w)))
    rt = _artifact(model, tmp_path, "If", "if")
    _check(rt, BranchNet(), [np.abs(x) * sign, w])


def test_for_loop_with_a_run_time_trip_count(tmp_path):
    x = np.array([1.0, 2.0, -3.0], np.float32)
    model = _export(CountNet(), (torch.from_numpy(x), torch.tensor(3)))
    rt = _artifact(model, tmp_path, "Loop", "loop")
    for n in (0, 1, 7, 40):
        _check(rt, CountNet(), [x, np.array(n, np.int64)])
