"""``compiler.verify`` / ``nnxc verify``: a good model passes against onnxruntime and against
the interpreter; a deliberately wrong lowering rule makes it fail, and bisection names the
node of that op and no other."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxutil import make_model
from tvm import relax

import compiler
from backends.tvm.lowering import RULES
from compiler import cli
from compiler.errors import NnxcError
from compiler.verification import compare, find_divergence

RNG = np.random.default_rng(3)
W = RNG.standard_normal((8, 8)).astype(np.float32)
B = RNG.standard_normal(8).astype(np.float32)


def chain_model() -> object:
    """x -> MatMul -> Add -> Relu ("act") -> Tanh -> Mul: the Relu sits in the middle, so a
    wrong Relu is neither the first node nor the output."""
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "B"], ["hb"], name="bias"),
        helper.make_node("Relu", ["hb"], ["r"], name="act"),
        helper.make_node("Tanh", ["r"], ["t"], name="squash"),
        helper.make_node("Mul", ["t", "x"], ["y"], name="gate"),
    ]
    x = np.zeros((2, 8), np.float32)
    return make_model(nodes, [("x", x)], ["y"], [("W", W), ("B", B)])


@pytest.fixture
def broken_relu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Relu lowered as 2 * relu(x): wrong wherever x > 0."""

    def doubled(ctx, args):  # noqa: ANN001, ANN202 - a lowering rule's signature
        return relax.op.multiply(relax.op.nn.relu(args[0]), relax.const(2.0, "float32"))

    monkeypatch.setitem(RULES, "relu", doubled)


def test_good_model_passes_against_onnxruntime() -> None:
    report = compiler.verify(chain_model(), seed=1, bisect=True)
    assert report.reference == "onnxruntime"
    assert report.ok, report.lines()
    assert [c.name for c in report.outputs] == ["y"]
    assert report.outputs[0].max_abs <= 1e-5
    assert report.bisection is None  # nothing to bisect when all outputs agree
    assert report.summary() == "verify: PASS (1 of 1 outputs within rtol 0.0001 atol 1e-05)"


def test_broken_lowering_fails_and_bisects_to_its_node(broken_relu: None) -> None:
    report = compiler.verify(chain_model(), seed=1, bisect=True)
    assert not report.ok
    assert report.reference == "onnxruntime"
    assert report.summary() == "verify: FAIL (1 of 1 outputs differ)"
    assert report.outputs[0].max_abs > 1e-3
    bis = report.bisection
    assert bis is not None and bis.divergence is not None, report.lines()
    d = bis.divergence
    assert (d.node, d.op) == ("act", "relu")
    assert len(d.output_types) == 1 and d.output_types[0].endswith(": float32[2, 8]")
    assert len(d.input_types) == 1 and "float32[2, 8]" in d.input_types[0]
    assert d.error.max_abs > 1e-3 and not d.error.ok
    assert not d.drift.ok  # nothing before it differs: its drift is its own error
    assert d.drift.max_abs == pytest.approx(d.error.max_abs, rel=1e-3)
    # Every value before the Relu was compared and agreed: it is not the first value.
    assert 1 < d.position <= bis.compared
    text = "\n".join(report.lines())
    assert "bisect: first diverging node 'act': relu" in text


def test_broken_lowering_against_the_interpreter(broken_relu: None) -> None:
    report = compiler.verify(chain_model(), seed=2, reference="interpreter", bisect=True)
    assert report.reference == "the nnxc reference interpreter"
    assert not report.ok
    assert report.bisection.divergence.node == "act"


def test_nnef_model_uses_the_interpreter(tmp_path: Path, broken_relu: None) -> None:
    from nnefutil import one_input_model

    folder = one_input_model(
        tmp_path / "m", [2, 6], ["a = exp(x)", "r = relu(a - 1.0)", "y = tanh(r)"], ["y"]
    )
    with pytest.raises(NnxcError, match="not ONNX"):
        compiler.verify(folder, reference="onnxruntime")
    with pytest.raises(NnxcError, match="tolerances must be >= 0"):
        compiler.verify(folder, rtol=-1.0)
    report = compiler.verify(folder, seed=4, bisect=True)
    assert report.reference == "the nnxc reference interpreter"
    assert not report.ok
    d = report.bisection.divergence
    assert d is not None and (d.node, d.op) == ("r", "relu")


def test_nnef_model_passes(tmp_path: Path) -> None:
    from nnefutil import one_input_model

    folder = one_input_model(tmp_path / "m", [3, 4], ["a = exp(x)", "y = relu(a - 1.0)"], ["y"])
    report = compiler.verify(folder, seed=4)
    assert report.ok, report.lines()
    assert report.reference == "the nnxc reference interpreter"


def test_coreml_model_uses_the_interpreter(tmp_path: Path, broken_relu: None) -> None:
    from coremlutil import nn_builder, save_nn

    b = nn_builder([("x", (2, 6))], [("y", None)])
    b.add_activation("pre", "LINEAR", "x", "h", params=[2.0, 0.5])
    b.add_activation("act", "RELU", "h", "r")
    b.add_activation("post", "SIGMOID", "r", "y")
    path = save_nn(b, tmp_path)
    report = compiler.verify(path, seed=5, bisect=True)
    assert report.reference == "the nnxc reference interpreter"
    assert not report.ok
    d = report.bisection.divergence
    assert d is not None and (d.node, d.op) == ("act", "relu")


def test_given_inputs_are_used() -> None:
    x = np.ones((2, 8), np.float32)
    report = compiler.verify(chain_model(), inputs={"x": x})
    assert report.inputs == "given" and report.ok


def branch_model() -> object:
    """Exp, then an If whose taken branch holds a Relu, then a Relu outside: a wrong Relu
    inside the region is reported as the If node (region values are not bisected)."""

    def body(node: object, out: str) -> object:
        info = helper.make_tensor_value_info(out, TensorProto.FLOAT, [2, 3])
        return helper.make_graph([node], "body", [], [info])

    then_g = body(helper.make_node("Relu", ["a"], ["o"], name="then_relu"), "o")
    else_g = body(helper.make_node("Neg", ["a"], ["o2"], name="else_neg"), "o2")
    nodes = [
        helper.make_node("Exp", ["x"], ["a"], name="e"),
        helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
        helper.make_node("Greater", ["s", "low"], ["c"], name="cmp"),
        helper.make_node("If", ["c"], ["b"], name="branch", then_branch=then_g, else_branch=else_g),
        helper.make_node("Relu", ["b"], ["y"], name="last"),
    ]
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    low = numpy_helper.from_array(np.array(-100.0, np.float32), "low")  # always "then"
    graph = helper.make_graph(nodes, "branchy", [x_info], [y_info], initializer=[low])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_bisect_stops_at_the_node_owning_the_region(broken_relu: None) -> None:
    report = compiler.verify(branch_model(), bisect=True)
    assert not report.ok
    d = report.bisection.divergence
    assert (d.node, d.op, d.regions) == ("branch", "if", 2)
    assert "whose values are not bisected" in "\n".join(report.lines())


def test_find_divergence_on_agreeing_code_finds_none() -> None:
    cm = compiler.compile(chain_model())
    feeds = {"x": RNG.standard_normal((2, 8)).astype(np.float32)}
    options = {"records": None, "precision": "fp32", "cuda_graph": True}
    result = find_divergence(cm, feeds, 1e-4, 1e-5, options)
    assert result.divergence is None
    assert result.compared == len(cm.graph.nodes) >= 4
    assert "every top-level node computes what the interpreter does" in result.note


def test_auto_falls_back_to_the_interpreter_when_onnxruntime_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("NOT_IMPLEMENTED: no kernel for this op")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    report = compiler.verify(chain_model())
    assert report.ok
    assert report.reference.startswith("the nnxc reference interpreter (onnxruntime cannot")
    assert "no kernel for this op" in report.reference
    with pytest.raises(NnxcError, match="onnxruntime cannot load the model: NOT_IMPLEMENTED"):
        compiler.verify(chain_model(), reference="onnxruntime")


def compiled_ir(make: object) -> object:
    """A CompiledModel (CPU) of an IR graph that ``make(graph, builder, x)`` fills in, for x
    a float32[2, 3] input: no frontend, no passes."""
    from backends.tvm import build, lower_graph, resolve_target
    from compiler.driver import CompiledModel
    from compiler.frontends.base import Source
    from compiler.ir.builder import Builder
    from compiler.ir.graph import Graph
    from compiler.ir.types import TensorType

    g = Graph()
    b = Builder(g, fold=False)
    x = g.add_input("x", TensorType("float32", (2, 3)))
    g.set_outputs([make(g, b, x)], ["y"])
    spec = resolve_target("cpu")
    return CompiledModel(g, build(lower_graph(g), spec), spec, Source("ir", "ir", ""))


def sequence_graph_model() -> object:
    """exp, a sequence of two tensors (no frontend keeps one at the top level), one picked
    back out, relu ("act"), add."""

    def make(g, b, x):  # noqa: ANN001, ANN202
        (a,) = b.op("exp", [x], node_name="e")
        (seq,) = b.op("sequence", [x, a], node_name="pack")
        (c,) = b.op("sequence_at", [seq], {"position": 1}, node_name="pick")
        (r,) = b.op("relu", [c], node_name="act")
        return b.op("add", [r, x], node_name="sum")[0]

    return compiled_ir(make)


def test_bisect_reads_sequences_from_the_interpreter(broken_relu: None) -> None:
    cm = sequence_graph_model()
    feeds = {"x": RNG.standard_normal((2, 3)).astype(np.float32)}
    options = {"records": None, "precision": "fp32", "cuda_graph": True}
    result = find_divergence(cm, feeds, 1e-4, 1e-5, options)
    assert result.compared == 4  # exp, sequence_at, relu, add: not the sequence
    d = result.divergence
    assert d is not None and (d.node, d.op, d.position) == ("act", "relu", 3)


def test_bisect_without_a_wrong_node_names_where_drift_begins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each relu off by 4e-5 (relative): within tolerance alone, out of it after three."""

    def slightly_off(ctx, args):  # noqa: ANN001, ANN202
        return relax.op.multiply(relax.op.nn.relu(args[0]), relax.const(1 + 4e-5, "float32"))

    monkeypatch.setitem(RULES, "relu", slightly_off)

    def make(g, b, x):  # noqa: ANN001, ANN202
        (v,) = b.op("exp", [x], node_name="e")
        for i in range(1, 5):
            (v,) = b.op("relu", [v], node_name=f"r{i}")
        return v

    cm = compiled_ir(make)
    feeds = {"x": np.array([[2.0, 1.0, 0.5], [0.0, -1.0, 1.5]], np.float32)}
    options = {"records": None, "precision": "fp32", "cuda_graph": True}
    result = find_divergence(cm, feeds, 1e-4, 1e-5, options)
    assert result.divergence is None
    assert "drifting out of tolerance from the model's inputs is %" in result.note
    assert "of relu node 'r3'" in result.note


# -- the command line --------------------------------------------------------------------------
def test_cli_fails_with_exit_1_and_writes_json(
    tmp_path: Path, broken_relu: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    model = tmp_path / "chain.onnx"
    onnx.save(chain_model(), model)
    out = tmp_path / "report.json"
    status = cli.main(["verify", str(model), "-q", "--bisect", "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 1
    assert "verify: FAIL (1 of 1 outputs differ)" in printed.splitlines()
    assert "bisect: first diverging node 'act': relu" in printed
    data = json.loads(out.read_text())
    assert data["ok"] is False
    assert data["bisection"]["divergence"]["node"] == "act"


def test_cli_passes_with_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    model = tmp_path / "chain.onnx"
    onnx.save(chain_model(), model)
    feeds = tmp_path / "x.npz"
    with open(feeds, "wb") as f:
        np.savez(f, x=RNG.standard_normal((2, 8)).astype(np.float32))
    assert cli.main(["verify", str(model), "-q", "--inputs", str(feeds)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[-1].startswith("verify: PASS (1 of 1 outputs")
    assert "against onnxruntime" in printed


def test_cli_json_makes_its_folder_and_an_unwritable_path_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    model = tmp_path / "chain.onnx"
    onnx.save(chain_model(), model)
    out = tmp_path / "new" / "r.json"
    assert cli.main(["verify", str(model), "-q", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["ok"] is True
    capsys.readouterr()
    folder = tmp_path / "a_folder"
    folder.mkdir()
    status = cli.main(["verify", str(model), "-q", "--json", str(folder)])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f"nnxc: error: cannot write {folder}")
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.glob("**/.*.tmp")) == []


def test_cli_help_describes_every_flag() -> None:
    text = cli.build_parser()._subparsers._group_actions[0].choices["verify"].format_help()
    for flag in ("--inputs", "--seed", "--rtol", "--atol", "--reference", "--bisect", "--json"):
        assert flag in text
    assert "--target" in text and "regions" in text


# -- comparing arrays --------------------------------------------------------------------------
def test_compare_within_and_outside_tolerance() -> None:
    e = np.array([1.0, 0.0, -2.0], np.float32)
    ok = compare("a", e + np.float32(1e-6), e, rtol=1e-4, atol=1e-5)
    assert ok.ok and ok.mismatched == 0
    bad = compare("a", np.array([1.1, 0.0, -2.0], np.float32), e, rtol=1e-4, atol=1e-5)
    assert not bad.ok and bad.mismatched == 1
    assert bad.max_abs == pytest.approx(0.1, rel=1e-5)
    assert bad.max_rel == pytest.approx(0.1, rel=1e-5)


def test_compare_nan_inf_shape_dtype() -> None:
    e = np.array([np.nan, np.inf, 1.0])
    assert compare("a", e.copy(), e, 1e-4, 1e-5).ok
    one_nan = compare("a", np.array([1.0, np.inf, 1.0]), e, 1e-4, 1e-5)
    assert not one_nan.ok and math.isinf(one_nan.max_abs)
    assert "shape [2]" in compare("a", np.zeros(2), np.zeros(3), 1e-4, 1e-5).note
    assert "dtype int32" in compare("a", np.zeros(2, np.int32), np.zeros(2), 1e-4, 1e-5).note
    assert compare("a", np.array([True]), np.array([True]), 0, 0).ok
    assert not compare("a", np.array([3]), np.array([4]), 0, 0).ok


def test_compare_infinite_reference_needs_equal_value() -> None:
    e = np.array([np.inf, -np.inf])
    assert not compare("a", np.array([1e30, -np.inf]), e, 1e-4, 1e-5).ok
    assert not compare("a", np.array([np.inf, np.inf]), e, 1e-4, 1e-5).ok


def test_compare_scaled_judges_against_the_tensors_scale() -> None:
    """Intermediate values: an error small next to the tensor's largest element passes even
    where the element itself is near zero (a sum that cancels); a large one does not."""
    e = np.array([100.0, 0.001])
    near = np.array([100.0, 0.003])
    assert not compare("a", near, e, 1e-4, 1e-5).ok
    assert compare("a", near, e, 1e-4, 1e-5, scaled=True).ok
    assert not compare("a", np.array([100.0, 0.05]), e, 1e-4, 1e-5, scaled=True).ok
    assert not compare("a", np.array([np.nan, 0.001]), e, 1e-4, 1e-5, scaled=True).ok
