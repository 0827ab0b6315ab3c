"""Loading and running an artifact with TVM's runtime alone.

Nothing here imports onnx, the frontends, the passes or TVM's compiler: with
``TVM_USE_RUNTIME_LIB=1`` an artifact loads and runs on a machine that has only the runtime.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compiler.artifact import Metadata, TensorInfo, read_metadata
from compiler.errors import ArtifactError, InputError
from compiler.ir.types import from_storage, to_storage


def _set_threads(threads: int | None) -> None:
    """TVM's thread pool reads TVM_NUM_THREADS when it first starts.

    Without an explicit count, use every core this process may run on (TVM alone would take
    half of them on x86), unless the environment already says.
    """
    if threads is None:
        if "TVM_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ:
            return
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        if not threads:
            return
    if threads < 1:
        raise InputError(f"threads must be at least 1, not {threads}")
    os.environ["TVM_NUM_THREADS"] = str(threads)


class Runtime:
    """A loaded model: ``inputs``/``outputs`` describe the signature, ``run`` executes it."""

    def __init__(self, vm: Any, metadata: Metadata, module: Any = None) -> None:
        self._vm = vm
        self._module = module  # kept alive as long as the VM
        self.metadata = metadata

    @classmethod
    def from_executable(cls, executable: Any, metadata: Metadata) -> Runtime:
        import tvm
        from tvm.runtime.vm import VirtualMachine

        return cls(VirtualMachine(executable, tvm.cpu()), metadata)

    @property
    def inputs(self) -> list[TensorInfo]:
        return self.metadata.inputs

    @property
    def outputs(self) -> list[TensorInfo]:
        return self.metadata.outputs

    @property
    def labels(self) -> list[str | int] | None:
        """A classifier's class labels, in the order of its probability output (else None)."""
        return self.metadata.extra.get("labels")

    def check_inputs(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        """The inputs in signature order, or an InputError naming what is wrong and what the
        model expects."""
        expected = {t.name: t for t in self.inputs}
        unknown = [n for n in feeds if n not in expected]
        if unknown:
            raise InputError(
                f"unknown input {unknown[0]!r}; the model's inputs are "
                + ", ".join(str(t) for t in self.inputs)
            )
        missing = [t for t in self.inputs if t.name not in feeds]
        if missing:
            raise InputError("missing input " + ", ".join(str(t) for t in missing))
        arrays = []
        dims: dict[str, int] = {}
        for info in self.inputs:
            x = np.asarray(feeds[info.name])
            if x.dtype.name != info.dtype:
                raise InputError(
                    f"input {info.name!r} has dtype {x.dtype.name}; the model expects {info}"
                )
            if x.ndim != len(info.shape) or not _dims_match(x.shape, info.shape, dims):
                raise InputError(
                    f"input {info.name!r} has shape {list(x.shape)}; the model expects {info}"
                )
            arrays.append(np.require(x, requirements="C"))
        self._check_flexible(feeds, dims)
        return arrays

    def _check_flexible(self, feeds: Mapping[str, Any], dims: dict[str, int]) -> None:
        """Sizes of symbolic dims inside the bounds the model declares (Core ML's flexible
        shapes), and inputs of enumerated shapes one of the shapes listed."""
        for dim, (lo, hi) in self.metadata.extra.get("dim_bounds", {}).items():
            size = dims.get(dim)
            if size is not None and (size < (lo or 0) or (hi is not None and size > hi)):
                raise InputError(
                    f"dim {dim} is {size}; the model allows {lo} to "
                    f"{'any size' if hi is None else hi}"
                )
        for name, shapes in self.metadata.extra.get("input_shape_choices", {}).items():
            shape = list(np.shape(feeds[name]))
            if shape not in shapes:
                raise InputError(
                    f"input {name!r} has shape {shape}; the model allows "
                    + ", ".join(str(s) for s in shapes)
                )

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Output name -> numpy array."""
        import tvm

        arrays = self.check_inputs(feeds)
        args = [tvm.runtime.tensor(to_storage(a, t.dtype)) for a, t in zip(arrays, self.inputs)]
        result = self._vm["main"](*args)
        return {
            info.name: from_storage(result[i].numpy(), info.dtype)
            for i, info in enumerate(self.outputs)
        }


def _dims_match(
    actual: tuple[int, ...], declared: tuple[int | str, ...], bound: dict[str, int]
) -> bool:
    """Sizes equal the declared ones; a named dim takes one size across all inputs."""
    for a, d in zip(actual, declared):
        if isinstance(d, str):
            if bound.setdefault(d, a) != a:
                return False
        elif a != d:
            return False
    return True


def load(path: str | os.PathLike, threads: int | None = None) -> Runtime:
    """Load an artifact written by ``CompiledModel.export`` / ``nnxc compile``."""
    meta = read_metadata(path)
    if meta.target.get("kind") != "llvm":
        raise ArtifactError(f"{path}: compiled for {meta.target}, which this loader cannot run")
    triple = str(meta.target.get("mtriple", ""))
    if triple and not triple.startswith(platform.machine()):
        raise ArtifactError(f"{path}: compiled for {triple}; this machine is {platform.machine()}")
    _set_threads(threads)
    import tvm
    from tvm.runtime.vm import VirtualMachine

    try:
        module = tvm.runtime.load_module(str(Path(path).resolve()))
        vm = VirtualMachine(module, tvm.cpu())
    except Exception as e:  # noqa: BLE001 - TVM raises its own error types
        raise ArtifactError(f"{path}: TVM cannot load it: {str(e).strip().splitlines()[-1]}") from e
    return Runtime(vm, meta, module)
