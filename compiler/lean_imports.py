"""Importing TVM without PyTorch: ``tvm_ffi`` imports ``torch`` eagerly when it is installed
(a workaround for a Windows symbol clash), and so does ``tvm.relax`` (for its Python-function
modules), which adds about 210 MB of resident memory to
every process that compiles or loads a model, although nnxc's commands never need torch.

``install()`` (done by the ``nnxc`` command, a process of ours; a library import of
``compiler`` changes nothing in its host's imports) hides torch while ``tvm`` and ``tvm_ffi``
initialize, unless torch is imported already. Torch stays importable afterwards, and the
runtime still accepts PyTorch tensors: it reads them through the DLPack protocol, not through
tvm_ffi's torch hooks.
Set ``NNXC_TVM_WITH_TORCH=1`` to let tvm_ffi import torch as it would.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Any

HIDDEN_FROM = ("tvm", "tvm_ffi")
"""The packages whose first import runs with torch hidden (tvm imports tvm_ffi)."""


class _TorchHidden(importlib.abc.Loader):
    """Runs a package's real loader with ``torch`` unimportable, then restores it (the
    outermost of nested imports does: tvm's import runs tvm_ffi's)."""

    depth = 0

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if _TorchHidden.depth == 0 and "torch" in sys.modules:  # imported meanwhile
            self.inner.exec_module(module)
            return
        if _TorchHidden.depth == 0:
            sys.modules["torch"] = None  # type: ignore[assignment]  # "import torch" fails
        _TorchHidden.depth += 1
        try:
            self.inner.exec_module(module)
        finally:
            _TorchHidden.depth -= 1
            if _TorchHidden.depth == 0 and "torch" in sys.modules and sys.modules["torch"] is None:
                del sys.modules["torch"]


class _TvmFinder(importlib.abc.MetaPathFinder):
    """Finds ``tvm`` and ``tvm_ffi`` as the other finders do, with a loader that hides torch."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in HIDDEN_FROM or ("torch" in sys.modules and not _TorchHidden.depth):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _TorchHidden(spec.loader)
                return spec
        return None


def install() -> None:
    """Hide torch from TVM's first import in this process (once; a no-op when TVM is
    loaded already, or when ``NNXC_TVM_WITH_TORCH`` is set)."""
    if os.environ.get("NNXC_TVM_WITH_TORCH") or "tvm" in sys.modules:
        return
    if not any(isinstance(f, _TvmFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TvmFinder())
