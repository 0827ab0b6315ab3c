"""TVM's tensor intrinsics, loaded for one target family only, and fast.

The first use of a tensor-core or SIMD schedule imports the package ``tvm.s_tir.tensor_intrin``,
whose ``__init__`` imports every backend's intrinsics (CUDA, ROCm, Hexagon, x86, ARM, ...):
some 250 TVMScript functions, parsed in 30 to 120 s here. ``tensor_intrinsics_only`` loads the
family's own (``"cuda"``; ``"x86"`` and ``"arm_cpu"``) with the package standing in
``sys.modules`` without having run its ``__init__``, and takes the package away after, so a
later import of it still loads them all (the modules already loaded are not parsed again).

Most of what is left is TVMScript's ``prim_func`` calling ``inspect.stack()`` once per
intrinsic, which resolves the module of every frame on the stack, scanning ``sys.modules`` for
each frame of the import machinery: 13 s for the CUDA intrinsics in a process that imported
only TVM, more with more modules loaded. While the family's modules load, ``inspect.stack``
is one that reads each frame's line from ``linecache`` instead (all the parser uses). Measured
here with torch and onnx loaded: the whole package 33 s, the CUDA intrinsics this way 1.9 s.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import linecache
import sys
from collections.abc import Iterator

_PACKAGE = "tvm.s_tir.tensor_intrin"


@contextlib.contextmanager
def tensor_intrinsics_only(*families: str) -> Iterator[None]:
    """Within: the tensor intrinsics of ``families`` (submodules of ``tvm.s_tir.tensor_intrin``
    such as "cuda", "x86", "arm_cpu") registered, the others not loaded."""
    import tvm.s_tir

    spec = None if _PACKAGE in sys.modules else importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.loader is None:
        yield
        return
    package = importlib.util.module_from_spec(spec)
    sys.modules[_PACKAGE] = package
    try:
        with _line_only_stack():
            for family in families:
                importlib.import_module(f"{_PACKAGE}.{family}")
        yield
    finally:
        if sys.modules.get(_PACKAGE) is package:
            del sys.modules[_PACKAGE]
            if getattr(tvm.s_tir, "tensor_intrin", None) is package:
                delattr(tvm.s_tir, "tensor_intrin")


@contextlib.contextmanager
def _line_only_stack() -> Iterator[None]:
    saved = inspect.stack
    inspect.stack = _stack
    try:
        yield
    finally:
        inspect.stack = saved


def _stack(context: int = 1) -> list[inspect.FrameInfo]:
    """``inspect.stack()`` of the caller, each frame with its one current line (any
    ``context``), found without resolving modules."""
    frames = []
    frame = sys._getframe(1)
    while frame is not None:
        filename, lineno = frame.f_code.co_filename, frame.f_lineno or 0
        line = linecache.getline(filename, lineno)
        frames.append(
            inspect.FrameInfo(
                frame, filename, lineno, frame.f_code.co_name, [line] if line else None, 0
            )
        )
        frame = frame.f_back
    return frames
