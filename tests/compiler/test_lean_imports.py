"""compiler/lean_imports.py: once installed (the nnxc command does), importing TVM leaves
PyTorch unloaded (about 210 MB less resident memory), torch is still importable afterwards
and its tensors still cross into TVM by DLPack; ``NNXC_TVM_WITH_TORCH=1`` restores tvm_ffi's
own import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="nothing to hide where PyTorch is not installed")

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from compiler.lean_imports import install
install()
import tvm
print("after tvm:", "torch" in sys.modules)
import torch, tvm_ffi
t = tvm_ffi.from_dlpack(torch.arange(3, dtype=torch.float32))
print("from torch:", t.numpy().tolist())
"""


def _run(env_extra: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "NNXC_TVM_WITH_TORCH"} | env_extra
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, env=env
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_tvm_imports_without_torch_and_torch_still_works() -> None:
    assert _run({}) == ["after tvm: False", "from torch: [0.0, 1.0, 2.0]"]


def test_opt_out_lets_tvm_import_torch() -> None:
    assert _run({"NNXC_TVM_WITH_TORCH": "1"})[0] == "after tvm: True"


def test_a_library_import_of_compiler_hides_nothing() -> None:
    """Only the nnxc command installs the hook: a program importing compiler keeps tvm_ffi's
    own torch import."""
    script = "import sys, compiler, tvm\nprint('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr
