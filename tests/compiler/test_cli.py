"""The ``nnxc`` command in a subprocess: help, inspect, run, shape binding, pass-manager flags,
and bad inputs that must end in one ``nnxc: error:`` line, never a traceback."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compiler import __version__

pytest.register_assert_rewrite("models_fixture")

from models_fixture import assert_one_error_line, nnxc, tiny_expected  # noqa: E402

pytest_plugins = ["models_fixture"]  # fixtures: tiny_onnx, tiny_so, ...

PASSES = [
    "shape_inference",
    "constant_folding",
    "simplify",
    "dce",
    "fold_batchnorm",
    "canonicalize",
]


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


# -- help and version -----------------------------------------------------------------------------
def test_top_level_help_lists_commands() -> None:
    r = nnxc("--help")
    assert r.returncode == 0, r.stderr
    for command in ("compile", "run", "inspect", "--debug", "--version"):
        assert command in r.stdout


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        (
            "compile",
            [
                "--output",
                "--quiet",
                "--target",
                "--input-shape",
                "--passes",
                "--verify-each",
                "--print-ir-after",
                "--time-passes",
            ],
        ),
        ("run", ["--inputs", "--outputs", "--threads", "--repeat", "--seed"]),
        (
            "inspect",
            [
                "--target",
                "--input-shape",
                "--passes",
                "--verify-each",
                "--print-ir-after",
                "--time-passes",
                "--graph",
                "--graph-max-nodes",
                "--json",
            ],
        ),
    ],
)
def test_command_help(command: str, flags: list[str]) -> None:
    r = nnxc(command, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: nnxc {command}")
    for flag in flags:
        assert flag in r.stdout, f"{flag} missing from nnxc {command} --help"


def test_compile_help_uses_option_help_text() -> None:
    """Flags come from CompileOptions: the help text is the field's own."""
    from dataclasses import fields

    from compiler.options import CompileOptions

    text = " ".join(nnxc("compile", "--help").stdout.split())
    for f in fields(CompileOptions):
        words = " ".join(f.metadata["help"].split())[:30]
        assert words in text, f"help of {f.name} not shown"


def test_console_script_and_version() -> None:
    script = Path(sys.executable).with_name("nnxc")
    assert script.exists(), "the nnxc console script is not installed"
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"nnxc {__version__}"


def test_no_command_is_a_usage_error() -> None:
    r = nnxc()
    assert r.returncode == 2
    assert "usage: nnxc" in r.stderr and "Traceback" not in r.stderr


# -- inspect --------------------------------------------------------------------------------------
def test_inspect_model_prints_ir_and_histogram(tiny_onnx: Path) -> None:
    r = nnxc("inspect", tiny_onnx)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "graph tiny(%x: float32[N, 4])" in out
    assert re.search(r"= matmul\(%x, %w\) : float32\[N, 3\]", out)
    assert re.search(r"= relu\(%\w+\) : float32\[N, 3\]", out)
    assert "# onnx tiny.onnx: 2 nodes, 1 constants" in out
    assert re.search(r"^#\s+matmul\s+1$", out, re.M)
    assert re.search(r"^#\s+relu\s+1$", out, re.M)


def test_max_memory_refusal_is_one_line(tiny_onnx: Path) -> None:
    r = nnxc("inspect", tiny_onnx, "--max-memory", "40")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "nnxc: error: initializer 'w' of shape [4, 3] needs 48 B, over the memory limit of "
        "40 B (--max-memory)"
    ]


def test_inspect_model_with_input_shape(tiny_onnx: Path) -> None:
    r = nnxc("inspect", tiny_onnx, "--input-shape", "x=2,4")
    assert r.returncode == 0, r.stderr
    assert "graph tiny(%x: float32[2, 4])" in r.stdout
    assert "float32[2, 3]" in r.stdout


def test_inspect_artifact_prints_metadata(tiny_onnx: Path, tiny_so: Path) -> None:
    import tvm

    r = nnxc("inspect", tiny_so)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"nnxc artifact {tiny_so}" in out
    assert f"nnxc {__version__}" in out and f"TVM {tvm.__version__}" in out
    assert re.search(r'target:.*"kind": "llvm"', out)
    assert hashlib.sha256(tiny_onnx.read_bytes()).hexdigest() in out
    assert "onnx tiny.onnx" in out
    assert re.search(r"input\s+x: float32\[N, 4\]", out)
    assert re.search(r"output\s+y: float32\[N, 3\]", out)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_inspect_graph_writes_an_svg_naming_the_ops(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.svg"
    r = nnxc("inspect", tiny_onnx, "--graph", out)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out} (2 of 2 nodes drawn)" in r.stderr
    assert "= matmul(" in r.stdout  # the text form is still printed
    svg = out.read_text()
    assert "<svg" in svg
    for text in ("matmul", "relu", "input x", "output y", "in1: float32[4, 3]"):
        assert f">{text}</text>" in svg, text


def test_inspect_graph_dot_with_node_limit(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.dot"
    r = nnxc("inspect", tiny_onnx, "--graph", out, "--graph-max-nodes", "1")
    assert r.returncode == 0, r.stderr
    dot = out.read_text()
    assert dot.startswith('digraph "tiny"')
    assert '"matmul' in dot and '"relu' not in dot
    assert "1 more nodes not drawn" in dot


def test_inspect_graph_without_dot_is_one_clear_error(tiny_onnx: Path, tmp_path: Path) -> None:
    """No dot on PATH: .svg fails naming the fix and writes nothing; .dot still works."""
    env = {"PATH": str(tmp_path)}
    r = nnxc("inspect", tiny_onnx, "--graph", tmp_path / "g.svg", env=env)
    assert_one_error_line(r, "g.svg", "needs Graphviz's dot program", "apt-get install graphviz")
    assert not list(tmp_path.iterdir())
    r = nnxc("inspect", tiny_onnx, "--graph", tmp_path / "g.dot", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "g.dot").is_file()


def test_inspect_graph_refuses_unknown_suffix_and_artifacts(
    tiny_onnx: Path, tiny_so: Path, tmp_path: Path
) -> None:
    r = nnxc("inspect", tiny_onnx, "--graph", tmp_path / "g.pdf")
    assert_one_error_line(r, "unknown picture format .pdf", ".svg")
    r = nnxc("inspect", tiny_so, "--graph", tmp_path / "g.svg")
    assert_one_error_line(r, "compiled artifact", "give the model")
    assert not list(tmp_path.iterdir())


def test_inspect_json_of_a_model(tiny_onnx: Path) -> None:
    r = nnxc("inspect", tiny_onnx, "--json", "--input-shape", "x=2,4")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info == {
        "format": "onnx",
        "name": "tiny.onnx",
        "nodes": 2,
        "constants": 1,
        "inputs": ["x: float32[2, 4]"],
        "outputs": ["y: float32[2, 3]"],
        "ops": {"matmul": 1, "relu": 1},
    }


def test_inspect_json_of_an_artifact(tiny_onnx: Path, tiny_so: Path) -> None:
    r = nnxc("inspect", tiny_so, "--json")
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)
    assert meta["source_sha256"] == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert meta["inputs"] == [{"name": "x", "shape": ["N", 4], "dtype": "float32"}]
    assert meta["outputs"] == [{"name": "y", "shape": ["N", 3], "dtype": "float32"}]
    assert meta["target"]["kind"] == "llvm"
    assert len(meta["library_sha256"]) == 64


# -- pass-manager flags ---------------------------------------------------------------------------
def test_inspect_print_ir_after_all(tiny_onnx: Path) -> None:
    r = nnxc("inspect", tiny_onnx, "--print-ir-after", "all")
    assert r.returncode == 0, r.stderr
    for name in PASSES:
        assert re.search(rf"// -----// IR after {name}( \(unchanged\))? //----- //", r.stdout), name


def test_inspect_print_ir_after_one_pass(tiny_onnx: Path) -> None:
    r = nnxc("inspect", tiny_onnx, "--print-ir-after", "dce")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("// -----// IR after") == 1
    assert "IR after dce" in r.stdout


def test_inspect_time_passes_and_verify_each(tiny_onnx: Path) -> None:
    r = nnxc("inspect", tiny_onnx, "--time-passes", "--verify-each")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^pass\s+time \(ms\)\s+share\s+nodes\s+changed$", r.stdout, re.M)
    for name in PASSES:
        assert re.search(
            rf"^{name}\s+\d+\.\d+\s+\d+\.\d%\s+\d+ -> \d+\s+(yes|no)$", r.stdout, re.M
        ), name
    assert re.search(r"^total\s+\d+\.\d+$", r.stdout, re.M)


def test_inspect_custom_pipeline(tiny_onnx: Path) -> None:
    r = nnxc("inspect", tiny_onnx, "--passes", "dce", "--time-passes")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^dce\s", r.stdout, re.M)
    assert not re.search(r"^simplify\s", r.stdout, re.M)


def test_unknown_pass(tiny_onnx: Path) -> None:
    assert_one_error_line(
        nnxc("inspect", tiny_onnx, "--passes", "dce,nosuch"), "unknown pass 'nosuch'", "dce"
    )


def test_compile_with_pass_flags(tiny_onnx: Path, tmp_path: Path) -> None:
    """--verify-each, --print-ir-after all and --time-passes on compile: progress on stderr."""
    out = tmp_path / "m.so"
    r = nnxc(
        "compile", tiny_onnx, "-o", out, "--verify-each", "--print-ir-after", "all", "--time-passes"
    )
    assert r.returncode == 0, r.stderr
    for name in PASSES:
        assert f"IR after {name}" in r.stderr, name
        assert re.search(rf"^{name}\s+\d+\.\d+\s", r.stderr, re.M), name
    for stage in ("import", "optimize", "lower", "build"):
        assert re.search(rf"^{stage}: \d+\.\d+ s$", r.stderr, re.M), stage
    assert f"wrote {out}" in r.stdout
    assert "inputs:  x: float32[N, 4]" in r.stdout and "outputs: y: float32[N, 3]" in r.stdout
    assert out.is_file()


def test_compile_progress_is_plain_lines_off_a_terminal_and_silent_with_quiet(
    tiny_onnx: Path, tmp_path: Path
) -> None:
    r = nnxc("compile", tiny_onnx, "-o", tmp_path / "a.so")
    assert r.returncode == 0, r.stderr
    names = ["import", "optimize", "lower", "build", "export"]
    assert r.stderr.splitlines() == [x for n in names for x in (f"{n}...", ANY_TIME(n))]
    assert "\r" not in r.stderr  # no bar
    r = nnxc("compile", tiny_onnx, "-o", tmp_path / "b.so", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


class ANY_TIME(str):  # noqa: N801 - reads as a pattern in the list above
    """Equal to any "NAME: 1.23 s" line of one stage."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and re.fullmatch(rf"{self}: \d+\.\d+ s", other) is not None

    __hash__ = str.__hash__


def test_compile_shows_stage_bars_on_a_terminal(
    tiny_onnx: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from compiler import cli, progress

    monkeypatch.setattr(progress, "enabled", lambda quiet=False: not quiet)
    assert cli.main(["compile", str(tiny_onnx), "-o", str(tmp_path / "m.so")]) == 0
    err = capsys.readouterr().err
    for stage in ("import", "optimize", "lower", "build"):
        assert re.search(rf"stages: .*/4 \[.*{stage}\]", err), stage
        assert re.search(rf"(^|\r){stage}: \d+\.\d+ s\n", err, re.M), stage  # above the bar
    assert re.search(r"stages: .*1/1 \[", err)  # export
    assert "import..." not in err  # the bar says which stage runs
    assert cli.main(["compile", str(tiny_onnx), "-o", str(tmp_path / "q.so"), "-q"]) == 0
    assert capsys.readouterr().err == ""


# -- run ------------------------------------------------------------------------------------------
def test_run_with_npz_inputs_and_outputs(tiny_so: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(3).standard_normal((7, 4)).astype(np.float32)
    inputs = _save_npz(tmp_path / "in.npz", x=x)
    outputs = tmp_path / "out"  # no .npz suffix: written exactly here
    r = nnxc(
        "run", tiny_so, "--inputs", inputs, "--outputs", outputs, "--repeat", "3", "--threads", "1"
    )
    assert r.returncode == 0, r.stderr
    assert "random" not in r.stderr
    assert re.search(r"^y: float32\[7, 3\] min ", r.stdout, re.M)
    assert re.search(r"^latency: median \d+\.\d+ ms over 3 runs$", r.stdout, re.M)
    with np.load(outputs) as data:
        assert data.files == ["y"]
        np.testing.assert_allclose(data["y"], tiny_expected(x), rtol=1e-5, atol=1e-6)


def test_run_without_inputs_uses_random_inputs(tiny_so_static: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.npz"
    r = nnxc("run", tiny_so_static, "--outputs", out, "--seed", "4")
    assert r.returncode == 0, r.stderr
    assert "no --inputs: using random inputs (seed 4)" in r.stderr
    x = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    with np.load(out) as data:
        np.testing.assert_allclose(data["y"], tiny_expected(x), rtol=1e-5, atol=1e-6)


def test_run_random_inputs_need_static_dims(tiny_so: Path) -> None:
    assert_one_error_line(nnxc("run", tiny_so), "symbolic dims", "--input-shape")


def test_input_shape_binds_symbolic_dim(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "b5.so"
    r = nnxc("compile", tiny_onnx, "-o", out, "--input-shape", "x=5,4", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # --quiet
    assert "inputs:  x: float32[5, 4]" in r.stdout and "outputs: y: float32[5, 3]" in r.stdout
    r = nnxc("run", out)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^y: float32\[5, 3\]", r.stdout, re.M)


def test_input_shape_renames_symbolic_dim(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "batch.so"
    r = nnxc("compile", tiny_onnx, "-o", out, "--input-shape", "x=batch,4", "-q")
    assert r.returncode == 0, r.stderr
    assert "x: float32[batch, 4]" in r.stdout and "y: float32[batch, 3]" in r.stdout


@pytest.mark.parametrize(
    ("binding", "needles"),
    [
        ("x=5,5", ["contradicts"]),
        ("x=5", ["rank 1"]),
        ("nosuch=1,4", ["unknown input", "nosuch", "x"]),
        ("x", ["NAME=D0,D1"]),
        ("x=1,-4", ["neither a size nor a name"]),
    ],
)
def test_bad_input_shape(tiny_onnx: Path, tmp_path: Path, binding: str, needles: list[str]) -> None:
    out = tmp_path / "m.so"
    assert_one_error_line(nnxc("compile", tiny_onnx, "-o", out, "--input-shape", binding), *needles)
    assert not out.exists()


# -- bad models -----------------------------------------------------------------------------------
def _compile_fails(model: Path, tmp_path: Path, *needles: str, args: tuple[str, ...] = ()) -> str:
    """Compiling ``model`` fails with one clear line and writes nothing next to the output."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = nnxc("compile", model, "-o", out_dir / "m.so", *args)
    line = assert_one_error_line(result, *needles)
    assert list(out_dir.iterdir()) == []
    return line


def test_random_bytes(tmp_path: Path) -> None:
    bad = tmp_path / "noise.onnx"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    _compile_fails(bad, tmp_path, str(bad), "not an ONNX model")
    assert_one_error_line(nnxc("inspect", bad), "not an ONNX model")


def test_text_file(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("graph main { relu }\n")
    _compile_fails(bad, tmp_path, "notes.txt", "not an ONNX model")


def test_truncated_model(tmp_path: Path) -> None:
    from benchmarks.models import light_path

    data = light_path("squeezenet").read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) * 6 // 10])
    _compile_fails(bad, tmp_path, "truncated.onnx")


def test_model_cut_after_its_graph(tmp_path: Path) -> None:
    """A prefix that still parses (the opset imports come after the graph on disk)."""
    model = onnx.load(str(_squeezenet()))
    full = model.SerializeToString()
    without_opsets = onnx.ModelProto()
    without_opsets.CopyFrom(model)
    del without_opsets.opset_import[:]
    prefix = without_opsets.SerializeToString()
    assert full.startswith(prefix)
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(prefix)
    _compile_fails(bad, tmp_path, "truncated")


def _squeezenet() -> Path:
    from benchmarks.models import light_path

    return light_path("squeezenet")


def test_missing_file(tmp_path: Path) -> None:
    _compile_fails(tmp_path / "nope.onnx", tmp_path, "nope.onnx", "no such file")
    assert_one_error_line(nnxc("inspect", tmp_path / "nope.onnx"), "no such file")


def test_folder_instead_of_model(tmp_path: Path) -> None:
    folder = tmp_path / "model_dir"
    folder.mkdir()
    _compile_fails(folder, tmp_path, "model_dir")


def test_unsupported_ops_listed_at_once(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("StringNormalizer", ["s"], ["s1"], name="norm_a"),
        helper.make_node("StringNormalizer", ["s1"], ["s2"], name="norm_b"),
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node(
            "TfIdfVectorizer",
            ["t"],
            ["tf"],
            name="tfidf",
            mode="TF",
            min_gram_length=1,
            max_gram_length=1,
            max_skip_count=0,
            ngram_counts=[0],
            ngram_indexes=[0],
            pool_int64s=[1],
        ),
        helper.make_node("Frobnicate", ["r"], ["f1"], domain="com.example", name="frob1"),
        helper.make_node("Frobnicate", ["f1"], ["f2"], domain="com.example", name="frob2"),
        helper.make_node("Frobnicate", ["f2"], ["f3"], domain="com.example", name="frob3"),
    ]
    graph = helper.make_graph(
        nodes,
        "unsupported",
        [
            helper.make_tensor_value_info("s", TensorProto.STRING, [2]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("t", TensorProto.INT64, [4]),
        ],
        [
            helper.make_tensor_value_info("s2", TensorProto.STRING, [2]),
            helper.make_tensor_value_info("tf", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("f3", TensorProto.FLOAT, [2]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    path = tmp_path / "unsupported.onnx"
    onnx.save(model, path)
    line = _compile_fails(
        path,
        tmp_path,
        "3 unsupported op type(s)",
        "opset 17",
        "StringNormalizer x2",
        "TfIdfVectorizer x1",
        "com.example.Frobnicate x3",
        "norm_a",
        "tfidf",
        "frob1",
    )
    assert "Relu" not in line


# -- external data --------------------------------------------------------------------------------
def _external_model(folder: Path, location: str) -> Path:
    """The tiny model with its weight stored as external data at ``location``."""
    from models_fixture import TINY_W, tiny_model

    model = tiny_model()
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(TINY_W.nbytes))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "model.onnx"
    onnx.save(model, path)
    return path


def test_external_data_inside_folder_works(tmp_path: Path) -> None:
    from models_fixture import TINY_W

    folder = tmp_path / "m"
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "w.bin").write_bytes(TINY_W.tobytes())
    model = _external_model(folder, "weights/w.bin")
    out = tmp_path / "m.so"
    r = nnxc("compile", model, "-o", out, "-q", "--input-shape", "x=2,4")
    assert r.returncode == 0, r.stderr
    x = np.arange(8, dtype=np.float32).reshape(2, 4) - 4
    inputs = _save_npz(tmp_path / "in.npz", x=x)
    r = nnxc("run", out, "--inputs", inputs, "--outputs", tmp_path / "out.npz")
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "out.npz") as data:
        np.testing.assert_allclose(data["y"], tiny_expected(x), rtol=1e-5, atol=1e-5)


def test_external_data_absolute_path(tmp_path: Path) -> None:
    from models_fixture import TINY_W

    outside = tmp_path / "secret.bin"
    outside.write_bytes(TINY_W.tobytes())
    folder = tmp_path / "m"
    folder.mkdir()
    _compile_fails(_external_model(folder, str(outside)), tmp_path, "absolute", "refused")


def test_external_data_dotdot(tmp_path: Path) -> None:
    from models_fixture import TINY_W

    (tmp_path / "secret.bin").write_bytes(TINY_W.tobytes())
    folder = tmp_path / "m"
    folder.mkdir()
    _compile_fails(_external_model(folder, "../secret.bin"), tmp_path, "../secret.bin", "refused")


def test_external_data_symlink_out(tmp_path: Path) -> None:
    from models_fixture import TINY_W

    (tmp_path / "secret.bin").write_bytes(TINY_W.tobytes())
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "w.bin").symlink_to(tmp_path / "secret.bin")
    _compile_fails(_external_model(folder, "w.bin"), tmp_path, "outside", "refused")


def test_external_data_missing(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _compile_fails(_external_model(folder, "w.bin"), tmp_path, "w.bin", "missing")


# -- bad targets ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "needles"),
    [
        ("foo", ["unknown target 'foo'", "cpu", "aarch64"]),
        ('{"kind": "llvm"', ["does not parse"]),
        ('{"kind": "rocm"}', ["rocm", "not supported", "llvm, cuda"]),
        ("cuda:sm_8x", ["unknown CUDA arch 'sm_8x'", "sm_NN"]),
        ('{"mtriple": "x86_64-linux-gnu"}', ["kind"]),
    ],
)
def test_bad_target(tiny_onnx: Path, tmp_path: Path, target: str, needles: list[str]) -> None:
    _compile_fails(tiny_onnx, tmp_path, *needles, args=("--target", target))


def _failing_cross_compiler(tmp_path: Path) -> dict[str, str]:
    """PATH with an ``aarch64-linux-gnu-gcc`` that always fails, so export fails late."""
    import os

    folder = tmp_path / "bin"
    folder.mkdir()
    cc = folder / "aarch64-linux-gnu-gcc"
    cc.write_text("#!/bin/sh\necho 'cross compiler exploded' >&2\nexit 1\n")
    cc.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_failed_export_keeps_the_old_file(tiny_onnx: Path, tmp_path: Path) -> None:
    """Export fails after the build: whatever was at the output path stays, and no temporary
    file is left next to it."""
    env = _failing_cross_compiler(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "m.so"
    out.write_bytes(b"old")
    r = nnxc("compile", tiny_onnx, "-o", out, "--target", "aarch64", env=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert out.read_bytes() == b"old"
    assert [p.name for p in out_dir.iterdir()] == ["m.so"]


def test_failed_cross_compiler_is_a_clear_error(tiny_onnx: Path, tmp_path: Path) -> None:
    env = _failing_cross_compiler(tmp_path)
    r = nnxc("compile", tiny_onnx, "-o", tmp_path / "m.so", "--target", "aarch64", env=env)
    assert_one_error_line(r, "aarch64-linux-gnu-gcc")
    assert r.returncode == 1


def test_output_path_is_a_folder(tiny_onnx: Path, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    r = nnxc("compile", tiny_onnx, "-o", folder, "--input-shape", "x=1,4")
    assert_one_error_line(r, "out")
    assert r.returncode == 1
    assert list(folder.iterdir()) == []


# -- bad run-time inputs --------------------------------------------------------------------------
def test_run_wrong_shape(tiny_so_static: Path, tmp_path: Path) -> None:
    feeds = _save_npz(tmp_path / "in.npz", x=np.zeros((2, 4), np.float32))
    assert_one_error_line(
        nnxc("run", tiny_so_static, "--inputs", feeds), "'x'", "[2, 4]", "x: float32[3, 4]"
    )


def test_run_wrong_rank(tiny_so: Path, tmp_path: Path) -> None:
    feeds = _save_npz(tmp_path / "in.npz", x=np.zeros((2, 4, 1), np.float32))
    assert_one_error_line(nnxc("run", tiny_so, "--inputs", feeds), "[2, 4, 1]", "float32[N, 4]")


def test_run_unknown_input(tiny_so: Path, tmp_path: Path) -> None:
    feeds = _save_npz(
        tmp_path / "in.npz", x=np.zeros((2, 4), np.float32), q=np.zeros(1, np.float32)
    )
    assert_one_error_line(
        nnxc("run", tiny_so, "--inputs", feeds), "unknown input 'q'", "x: float32[N, 4]"
    )


def test_run_wrong_dtype(tiny_so: Path, tmp_path: Path) -> None:
    feeds = _save_npz(tmp_path / "in.npz", x=np.zeros((2, 4), np.float64))
    assert_one_error_line(nnxc("run", tiny_so, "--inputs", feeds), "float64", "float32[N, 4]")


def test_run_missing_input(two_input_so: Path, tmp_path: Path) -> None:
    feeds = _save_npz(tmp_path / "in.npz", a=np.zeros((2, 2), np.float32))
    assert_one_error_line(
        nnxc("run", two_input_so, "--inputs", feeds),
        "missing input",
        "b: float32[N, 2]",
        "k: int64[3]",
    )


def test_run_inconsistent_symbolic_dim(two_input_so: Path, tmp_path: Path) -> None:
    feeds = _save_npz(
        tmp_path / "in.npz",
        a=np.zeros((2, 2), np.float32),
        b=np.zeros((3, 2), np.float32),
        k=np.zeros(3, np.int64),
    )
    assert_one_error_line(nnxc("run", two_input_so, "--inputs", feeds), "'b'", "[3, 2]")


def test_run_bad_threads(tiny_so: Path) -> None:
    r = nnxc("run", tiny_so, "--threads", "0")
    assert_one_error_line(r, "threads")
    assert r.returncode == 1


def test_run_inputs_file_problems(tiny_so: Path, tmp_path: Path) -> None:
    assert_one_error_line(
        nnxc("run", tiny_so, "--inputs", tmp_path / "none.npz"), "none.npz", "no such file"
    )
    junk = tmp_path / "junk.npz"
    junk.write_text("not numpy")
    assert_one_error_line(nnxc("run", tiny_so, "--inputs", junk), "junk.npz", ".npz")


# -- bad artifacts --------------------------------------------------------------------------------
def test_run_model_instead_of_artifact(tiny_onnx: Path) -> None:
    assert_one_error_line(nnxc("run", tiny_onnx), "tiny.onnx", "not an nnxc artifact")


def test_run_missing_artifact(tmp_path: Path) -> None:
    assert_one_error_line(nnxc("run", tmp_path / "none.so"), "none.so", "no such file")


def test_run_tiny_file(tmp_path: Path) -> None:
    small = tmp_path / "small.so"
    small.write_bytes(b"\x7fELF")
    assert_one_error_line(nnxc("run", small), "not an nnxc artifact")


def test_run_damaged_metadata(tiny_so: Path, tmp_path: Path) -> None:
    """Metadata length pointing before the start of the file, then JSON that does not parse."""
    from compiler.artifact import MAGIC

    bad = tmp_path / "bad_len.so"
    bad.write_bytes(b"abc" + (10**6).to_bytes(8, "little") + MAGIC)
    assert_one_error_line(nnxc("run", bad), "damaged")
    bad = tmp_path / "bad_json.so"
    blob = b"{not json"
    bad.write_bytes(b"abc" + blob + len(blob).to_bytes(8, "little") + MAGIC)
    assert_one_error_line(nnxc("run", bad), "damaged")
    assert_one_error_line(nnxc("inspect", bad), "damaged")


def test_run_metadata_without_library(tiny_so: Path, tmp_path: Path) -> None:
    """Valid nnxc metadata glued onto bytes that are no shared library: TVM cannot load it."""
    from compiler.artifact import read_metadata, write_artifact

    fake = tmp_path / "fake.so"
    write_artifact(
        fake, lambda tmp: Path(tmp).write_bytes(b"not a library" * 10), read_metadata(tiny_so)
    )
    assert_one_error_line(
        nnxc(
            "run", fake, "--inputs", _save_npz(tmp_path / "in.npz", x=np.zeros((1, 4), np.float32))
        ),
        "fake.so",
        "cannot load",
    )


def test_debug_shows_traceback(tiny_onnx: Path) -> None:
    r = nnxc("--debug", "run", tiny_onnx)
    assert r.returncode != 0
    assert "Traceback" in r.stderr and "ArtifactError" in r.stderr


def test_two_input_model_runs(two_input_so: Path, tmp_path: Path) -> None:
    a = np.ones((2, 2), np.float32)
    b = np.full((2, 2), 2, np.float32)
    k = np.array([1, 2, 3], np.int64)
    feeds = _save_npz(tmp_path / "in.npz", a=a, b=b, k=k)
    out = tmp_path / "out.npz"
    r = nnxc("run", two_input_so, "--inputs", feeds, "--outputs", out)
    assert r.returncode == 0, r.stderr
    with np.load(out) as data:
        assert sorted(data.files) == ["c", "z"]
        np.testing.assert_array_equal(data["z"], a + b)
        np.testing.assert_array_equal(data["c"], k.astype(np.float32))
