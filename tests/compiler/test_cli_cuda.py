"""``nnxc compile --target cuda`` and ``nnxc inspect`` of the CUDA artifact, in a subprocess
(needs nvcc, no GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cudautil import requires_nvcc

pytest.register_assert_rewrite("models_fixture")

from models_fixture import assert_one_error_line, nnxc  # noqa: E402

pytest_plugins = ["models_fixture"]  # fixtures: tiny_onnx

pytestmark = requires_nvcc


def test_compile_for_cuda_and_inspect(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny_cuda.so"
    r = nnxc("compile", tiny_onnx, "--target", "cuda", "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    r = nnxc("inspect", out)
    assert r.returncode == 0, r.stderr
    assert "target:    cuda (archs sm_80, sm_86, sm_89, sm_90)" in r.stdout
    assert "CUDA code: SASS sm_80, sm_86, sm_89, sm_90; PTX compute_90" in r.stdout


def test_arch_nvcc_cannot_build(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "old.so"
    r = nnxc("compile", tiny_onnx, "--target", '{"kind": "cuda", "arch": "sm_50"}', "-o", out)
    assert_one_error_line(r, "cannot build sm_50", "sm_75")
    assert not out.exists()
