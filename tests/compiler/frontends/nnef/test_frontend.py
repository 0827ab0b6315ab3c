"""NNEF through the command line and the API: ``nnxc compile`` of a folder and of a
``.nnef.tgz``, ``nnxc run`` and ``nnxc inspect`` on them, ``--input-shape``, help texts naming
the formats, and bad models ending in one ``nnxc: error:`` line."""

from __future__ import annotations

import hashlib
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from nnefutil import write_model

pytest.register_assert_rewrite("models_fixture")

from models_fixture import assert_one_error_line, nnxc  # noqa: E402

import compiler  # noqa: E402
from compiler.frontends.base import formats_text  # noqa: E402

RNG = np.random.default_rng(0)
W = RNG.standard_normal((1, 3, 1, 1)).astype(np.float32)

BODY = (
    "graph G( x ) -> ( y )\n{\n"
    "  x = external<scalar>(shape = [1, 3, 4, 4]);\n"
    "  w = variable<scalar>(shape = [1, 3, 1, 1], label = 'w');\n"
    "  y = relu(x * w);\n}"
)


def _model(folder: Path) -> Path:
    return write_model(folder, BODY, {"w": W})


def _tgz(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        for f in sorted(folder.iterdir()):
            tar.add(f, f.name)
    return out


def _expected(x: np.ndarray) -> np.ndarray:
    return np.maximum(x * W, 0)


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_api_compiles_a_folder(tmp_path: Path) -> None:
    cm = compiler.compile(_model(tmp_path / "m"))
    assert cm.metadata.source_format == "nnef" and cm.metadata.source_name == "m"
    x = RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(cm.run({"x": x})["y"], _expected(x), rtol=1e-6)


def test_cli_compile_run_inspect_a_tgz(tmp_path: Path) -> None:
    """The default artifact of ``m.nnef.tgz`` is ``m.so`` beside it; its metadata names the
    archive and hashes its bytes."""
    archive = _tgz(_model(tmp_path / "m"), tmp_path / "m.nnef.tgz")
    r = nnxc("compile", archive, "-q")
    assert r.returncode == 0, r.stderr
    so = tmp_path / "m.so"
    assert so.is_file() and f"wrote {so}" in r.stdout
    assert "x: float32[1, 3, 4, 4]" in r.stdout and "y: float32[1, 3, 4, 4]" in r.stdout

    x = RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)
    outputs = tmp_path / "out.npz"
    r = nnxc("run", so, "--inputs", _save_npz(tmp_path / "in.npz", x=x), "--outputs", outputs)
    assert r.returncode == 0, r.stderr
    with np.load(outputs) as data:
        np.testing.assert_allclose(data["y"], _expected(x), rtol=1e-6)

    r = nnxc("inspect", so)
    assert r.returncode == 0, r.stderr
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert f"source:    nnef m.nnef.tgz sha256 {sha}" in r.stdout


def test_cli_compile_a_folder(tmp_path: Path) -> None:
    folder = _model(tmp_path / "model")
    r = nnxc("compile", folder, "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "model.so").is_file()
    r = nnxc("run", tmp_path / "model.so")
    assert r.returncode == 0, r.stderr
    assert "y: float32[1, 3, 4, 4]" in r.stdout


def test_cli_inspect_a_folder(tmp_path: Path) -> None:
    r = nnxc("inspect", _model(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    assert "# nnef m: " in r.stdout
    assert "float32[1, 3, 4, 4]" in r.stdout
    assert "#   relu" in r.stdout and "#   mul" in r.stdout


def test_input_shape_overrides_the_external(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    r = nnxc("inspect", folder, "--input-shape", "x=2,3,8,8")
    assert r.returncode == 0, r.stderr
    assert "float32[2, 3, 8, 8]" in r.stdout and "[1, 3, 4, 4]" not in r.stdout
    cm = compiler.compile(folder, input_shapes={"x": [2, 3, 8, 8]})
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(cm.run({"x": x})["y"], _expected(x), rtol=1e-6)


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("y=2,3,8,8", "unknown input 'y'; the model's inputs are x"),
        ("x=N,3,8,8", "NNEF models have static shapes"),
        ("x=2,3", "input 'x' bound to shape [2, 3], another rank than the declared [1, 3, 4, 4]"),
        ("x=1,5,4,4", "NNEF shape inference: while inferring shape of tensor(s) 'mul1'"),
    ],
)
def test_bad_input_shape(tmp_path: Path, flag: str, needle: str) -> None:
    from compiler.driver import import_model
    from compiler.errors import NnxcError
    from compiler.options import parse_shape_binding

    name, shape = parse_shape_binding(flag)
    with pytest.raises(NnxcError, match=re.escape(needle)):
        import_model(_model(tmp_path / "m"), {name: shape})


@pytest.mark.parametrize("args", [["--help"], ["compile", "--help"], ["inspect", "--help"]])
def test_help_lists_the_formats(args: list[str]) -> None:
    r = nnxc(*args)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "NNEF: a folder holding graph.nnef" in text and "ONNX:" in text


def test_unknown_file_type_lists_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "model.xyz"
    path.write_bytes(bytes(range(256)) * 8)
    assert_one_error_line(nnxc("compile", path), "model.xyz", formats_text())


def test_unknown_folder_lists_the_formats(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert_one_error_line(nnxc("compile", tmp_path / "plain"), "a folder", formats_text())


def test_bad_models_end_in_one_line(tmp_path: Path) -> None:
    """A syntax error (line and column), an archive member leaving the folder, a missing
    model: each one line, nothing written."""
    bad = write_model(tmp_path / "syntax", "graph G( x ) -> ( y )\n{\n  y = relu(;\n}")
    assert_one_error_line(nnxc("compile", bad), "syntax: Parse error in graph.nnef line 6")
    assert not (tmp_path / "syntax.so").exists()

    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(bad / "graph.nnef", "graph.nnef")
        tar.add(bad / "graph.nnef", "../escaped.nnef")
    assert_one_error_line(nnxc("compile", evil), "'../escaped.nnef' leaves the archive's folder")
    assert not (tmp_path / "escaped.nnef").exists()

    assert_one_error_line(nnxc("compile", tmp_path / "none.nnef.tgz"), "no such file or folder")
