"""backends/tvm/packing.py: the library's packed imports are exactly the bytes TVM serializes
(the same array ``ModulePackImportsToC`` would write), under the symbol TVM's loader reads,
and the artifact computes what the model does."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
import tvm_ffi

import compiler
from backends.tvm.packing import SYMBOL, incbin_available, pack_imports

pytest.register_assert_rewrite("models_fixture")

from models_fixture import tiny_expected, tiny_model  # noqa: E402

pytestmark = pytest.mark.skipif(not incbin_available(), reason="GNU .incbin on Linux only")


def test_packed_library_holds_the_serialized_imports(tmp_path: Path) -> None:
    cm = compiler.compile(tiny_model())
    so = tmp_path / "tiny.so"
    cm.export(so)
    want = bytes(
        np.from_dlpack(
            tvm_ffi.get_global_func("runtime.ModulePackImportsToTensor")(cm.executable.mod)
        )
    )
    lib = ctypes.CDLL(str(so))
    got = bytes((ctypes.c_ubyte * len(want)).in_dll(lib, SYMBOL))
    assert got == want
    assert int.from_bytes(want[:8], "little") == len(want) - 8  # TVM's length header
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    (y,) = compiler.load(so).run({"x": x}).values()
    np.testing.assert_allclose(y, tiny_expected(x), rtol=1e-6)


def test_system_libraries_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="system libraries"):
        pack_imports(None, True, "", str(tmp_path))
