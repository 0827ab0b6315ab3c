"""The Python API: ``compiler.compile`` (model object or path, shapes, options, targets),
``CompiledModel.export/run/metadata``, and the driver's own errors."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

import compiler
from compiler.errors import ModelLoadError, NnxcError, ResourceLimitError, UnsupportedOpsError

pytest.register_assert_rewrite("models_fixture")

from models_fixture import TINY_W, tiny_expected, tiny_model  # noqa: E402

pytest_plugins = ["models_fixture"]  # fixtures: tiny_onnx, tiny_so


def test_compile_model_proto_and_run() -> None:
    model = tiny_model()
    m = compiler.compile(model)
    assert m.source.format == "onnx" and m.source.name == "tiny"
    assert m.source.sha256 == hashlib.sha256(model.SerializeToString()).hexdigest()
    assert m.target.is_host and m.target.kind == "llvm"
    assert set(m.timings) == {"import", "optimize", "lower", "build"}
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    out = m.run({"x": x})
    np.testing.assert_allclose(out["y"], tiny_expected(x), rtol=1e-5, atol=1e-6)


def test_compile_path_with_input_shapes(tiny_onnx: Path, tmp_path: Path) -> None:
    m = compiler.compile(tiny_onnx, input_shapes={"x": [2, 4]})
    meta = m.metadata
    assert [(t.name, t.shape, t.dtype) for t in meta.inputs] == [("x", (2, 4), "float32")]
    assert [(t.name, t.shape, t.dtype) for t in meta.outputs] == [("y", (2, 3), "float32")]
    assert meta.source_name == "tiny.onnx"
    assert meta.source_sha256 == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert meta.nnxc_version == compiler.__version__
    out = tmp_path / "m.so"
    m.export(out)
    assert out.read_bytes()[:4] == b"\x7fELF"
    rt = compiler.load(out)
    assert rt.metadata.library_sha256  # the checksum of the library, added when written
    assert rt.metadata == replace(meta, library_sha256=rt.metadata.library_sha256)
    x = np.ones((2, 4), np.float32)
    got = rt.run({"x": x})
    assert list(got) == ["y"]
    np.testing.assert_allclose(got["y"], tiny_expected(x), rtol=1e-5, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["m.so"]  # no temporary files left


def test_progress_and_pass_options(capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    compiler.compile(
        tiny_model(),
        progress=lines.append,
        time_passes=True,
        verify_each=True,
        passes=["shape_inference", "dce"],
        print_ir_after=["dce"],
    )
    assert lines[0] == "import..." and any(ln.startswith("build: ") for ln in lines)
    err = capsys.readouterr().err
    assert "IR after dce" in err and "IR after shape_inference" not in err
    assert "shape_inference" in err  # the timing table


def _terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress bars on, as when stderr is a terminal."""
    from compiler import progress

    monkeypatch.setattr(progress, "enabled", lambda quiet=False: not quiet)


def test_progress_off_a_terminal_is_lines_only(capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    compiler.compile(tiny_model(), progress=lines.append)
    assert lines[:2] == ["import...", lines[1]] and lines[1].startswith("import: ")
    assert [ln.split("...")[0] for ln in lines[::2]] == ["import", "optimize", "lower", "build"]
    assert capsys.readouterr().err == ""  # stderr is not a terminal here: no bar


def test_progress_bars_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bar over the stages naming the current one, a bar over the passes, and the timing
    lines (but no "stage..." lines, which the bar replaces)."""
    _terminal(monkeypatch)
    lines: list[str] = []
    compiler.compile(tiny_model(), progress=lines.append)
    assert [ln.split(":")[0] for ln in lines] == ["import", "optimize", "lower", "build"]
    err = capsys.readouterr().err
    for stage in ("import", "optimize", "lower", "build"):
        assert re.search(rf"stages: .*\| \d/4 \[.*{stage}\]", err), stage
    assert "stages: 100%" in err
    for i, name in enumerate(
        ["shape_inference", "constant_folding", "simplify", "dce", "fold_batchnorm", "canonicalize"]
    ):
        assert re.search(rf"optimize: .*\| {i}/6 \[.*, {name}\]", err), name


def test_no_progress_means_no_bars(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _terminal(monkeypatch)
    compiler.compile(tiny_model())  # progress=None: what -q gives
    assert capsys.readouterr().err == ""


def test_print_ir_after_all(capsys: pytest.CaptureFixture[str]) -> None:
    compiler.compile(tiny_model(), print_ir_after=["all"])
    err = capsys.readouterr().err
    assert "IR after shape_inference" in err and "IR after canonicalize" in err


def test_verify_each_catches_a_broken_pass() -> None:
    from compiler.ir.types import TensorType
    from passes import PassError, function_pass

    @function_pass("h_test_breaks_types", "sets a wrong output type (test only)")
    def breaks(graph) -> bool:  # noqa: ANN001
        node = graph.nodes[0]
        node.outputs[0].type = TensorType("int32", node.outputs[0].type.shape)
        return True

    with pytest.raises(PassError, match="does not verify after pass 'h_test_breaks_types'"):
        compiler.compile(tiny_model(), passes=["h_test_breaks_types"], verify_each=True)


def test_unknown_option_and_pass() -> None:
    with pytest.raises(TypeError, match="unknown compile option.*fast_math"):
        compiler.compile(tiny_model(), fast_math=True)
    with pytest.raises(NnxcError, match="unknown pass 'nosuch'"):
        compiler.compile(tiny_model(), passes=["nosuch"])


def test_bad_model_arguments(tmp_path: Path) -> None:
    with pytest.raises(NnxcError, match="cannot compile an object of type int"):
        compiler.compile(42)
    with pytest.raises(ModelLoadError, match=r"m\.nnef: no such file or folder"):
        compiler.compile(tmp_path / "m.nnef")
    with pytest.raises(NnxcError, match="a folder"):
        compiler.compile(tmp_path)
    with pytest.raises(ModelLoadError, match="no such file"):
        compiler.compile(tmp_path / "none.onnx")


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 0.999])
def test_truncated_models(tmp_path: Path, fraction: float) -> None:
    from benchmarks.models import light_path

    data = light_path("squeezenet").read_bytes()
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        compiler.compile(bad)


def test_graph_that_reads_undefined_values() -> None:
    model = tiny_model()
    del model.graph.node[0]  # Relu now reads "h", which nothing defines
    with pytest.raises(ModelLoadError, match="'h', which nothing defines"):
        compiler.compile(model)


def test_unsupported_ops_in_memory_model() -> None:
    model = tiny_model()
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    model.graph.node.append(
        onnx.helper.make_node("Frob", ["y"], ["u"], domain="com.example", name="frob")
    )
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info("u"))
    with pytest.raises(UnsupportedOpsError, match=r"com\.example\.Frob x1 \(e\.g\. frob\)"):
        compiler.compile(model)


def test_bad_input_shapes() -> None:
    with pytest.raises(ModelLoadError, match="unknown input"):
        compiler.compile(tiny_model(), input_shapes={"nosuch": [1, 4]})
    with pytest.raises(ModelLoadError, match="contradicts"):
        compiler.compile(tiny_model(batch=2), input_shapes={"x": [3, 4]})


def test_unknown_target() -> None:
    from backends.tvm import TargetError

    with pytest.raises(TargetError, match="unknown target 'tpu'"):
        compiler.compile(tiny_model(), target="tpu")


def test_precision_is_checked_before_importing() -> None:
    with pytest.raises(NnxcError, match="fp16 is for CUDA targets"):
        compiler.compile(tiny_model(), precision="fp16")
    with pytest.raises(NnxcError, match="unknown precision 'int8'"):
        compiler.compile(tiny_model(), precision="int8")


def test_aarch64_cross_target(tmp_path: Path) -> None:
    """Code for AArch64 compiles here; export needs the cross C compiler (then it is an
    AArch64 ELF file), or fails naming the compiler; it never runs on this x86 host."""
    import shutil

    from backends.tvm import TargetError

    m = compiler.compile(tiny_model(batch=2), target="aarch64")
    assert m.target.config["mtriple"] == "aarch64-linux-gnu" and not m.target.is_host
    assert m.metadata.target["mtriple"] == "aarch64-linux-gnu"
    with pytest.raises(NnxcError, match="cannot run on this machine"):
        m.run({"x": np.zeros((2, 4), np.float32)})
    out = tmp_path / "arm.so"
    if shutil.which("aarch64-linux-gnu-gcc"):
        m.export(out)
        head = out.read_bytes()[:20]
        assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
        from compiler.artifact import read_metadata

        assert read_metadata(out).target["mtriple"] == "aarch64-linux-gnu"
    else:
        with pytest.raises(TargetError, match="aarch64-linux-gnu-gcc"):
            m.export(out)
        assert list(tmp_path.iterdir()) == []


def test_export_to_missing_folder(tmp_path: Path) -> None:
    from compiler.errors import ArtifactError

    m = compiler.compile(tiny_model(batch=1))
    with pytest.raises(ArtifactError, match="no such directory"):
        m.export(tmp_path / "none" / "m.so")


def test_weights_are_the_models(tmp_path: Path) -> None:
    """Changing the weight changes the result: the artifact holds the model's own weights."""
    model = tiny_model(batch=1)
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(-TINY_W, "w"))
    x = np.ones((1, 4), np.float32)
    out = compiler.compile(model).run({"x": x})
    np.testing.assert_allclose(out["y"], np.maximum(x @ -TINY_W, 0), rtol=1e-5, atol=1e-6)


def test_max_memory_refuses_a_constant_before_allocating() -> None:
    with pytest.raises(ResourceLimitError, match=r"initializer 'w' of shape \[4, 3\] needs 48 B"):
        compiler.compile(tiny_model(), max_memory=40)


def test_max_memory_is_checked_over_the_optimized_graph() -> None:
    # x (600x4 float32, 9600 B) is over 8 KiB; every tensor the frontend builds is under it.
    with pytest.raises(ResourceLimitError, match=r"input 'x': float32\[600, 4\] needs 9.4 KiB"):
        compiler.compile(tiny_model(batch=600), max_memory="8K")
