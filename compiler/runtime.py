"""Loading and running an artifact with TVM's runtime alone.

Nothing here imports onnx, the frontends, the passes or TVM's compiler: with
``TVM_USE_RUNTIME_LIB=1`` an artifact loads and runs on a machine that has only the runtime
(for CUDA artifacts, TVM's CUDA runtime is loaded by hand: see ``compiler.devices``).
"""

from __future__ import annotations

import os
import platform
import sys
import threading
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from compiler.artifact import Metadata, TensorInfo, verify_library
from compiler.devices import (
    CPU,
    DeviceError,
    DeviceSpec,
    artifact_archs,
    artifact_kind,
    open_gpu,
    parse_device,
)
from compiler.errors import ArtifactError, InputError
from compiler.ir.types import dtype as dtype_of
from compiler.ir.types import from_storage, to_storage
from compiler.vm_outputs import fresh_outputs

ALIGNMENT = 64  # TVM's generated code assumes inputs this aligned (tvm.runtime.from_dlpack)
STAGE_BYTES = 1 << 16
"""Inputs up to this size that need copying (numpy aligns to 16 bytes only) are copied into a
buffer the Runtime keeps for the input: allocating a TVM tensor costs more than copying them."""
STAGE_ALWAYS_BYTES = 4096
"""Inputs up to this size are staged whatever their alignment: copying them costs less than
TVM's view that tells the alignment."""
CHECK_MARK = "nnxc run-time check: "
"""Starts the message of every run-time check in generated code
(``backends/tvm/lowering/checks.py``): an error carrying it is bad input data, reported as an
``InputError``."""
_KDL_CPU = 1


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


class _Port:
    """What the run loop needs of one input or output, worked out once at load."""

    __slots__ = (
        "info", "name", "shape", "np_dtype", "storage", "native", "numpy_dlpack", "fresh",
        "stage", "stage_view", "static",
    )  # fmt: skip

    def __init__(self, info: TensorInfo) -> None:
        d = dtype_of(info.dtype)
        self.info = info
        self.name = info.name
        self.shape = info.shape
        self.np_dtype = np.dtype(d.np)
        self.storage = str(d.storage)  # the dtype TVM holds it in
        self.native = d.is_native
        # numpy exchanges it through DLPack (ml_dtypes' types it cannot)
        self.numpy_dlpack = self.native and self.np_dtype.kind in "biuf"
        # an output each call allocates anew: handed to numpy without a copy (set by Runtime)
        self.fresh = False
        self.static = all(isinstance(d, int) for d in info.shape)  # a feed's shape must equal it
        # an input's staging buffer (numpy, and TVM's view of it), made at its first use
        self.stage: np.ndarray | None = None
        self.stage_view: Any = None

    def stageable(self, x: np.ndarray) -> bool:
        """Whether a numpy feed that needs copying may go through the staging buffer: a
        static shape (its size known), small, of a dtype numpy hands over through DLPack."""
        return self.numpy_dlpack and x.shape == self.shape and x.nbytes <= STAGE_BYTES


class Runtime:
    """A loaded model: ``inputs``/``outputs`` describe the signature, ``run`` executes it."""

    def __init__(self, vm: Any, metadata: Metadata, module: Any = None, device: Any = None) -> None:
        import tvm
        import tvm_ffi
        from tvm.runtime import _ffi_api

        self._vm = vm
        self._module = module  # kept alive as long as the VM
        self._main = vm["main"]
        self.metadata = metadata
        self.device = device if device is not None else tvm.cpu()
        self._on_cpu = self.device.dlpack_device_type() == _KDL_CPU
        self._ins = [_Port(t) for t in metadata.inputs]
        self._outs = [_Port(t) for t in metadata.outputs]
        if self._on_cpu:
            flags = fresh_outputs(module, len(self._outs)) if module is not None else []
            for port, fresh in zip(self._outs, flags):
                port.fresh = fresh
        self._names = {p.name for p in self._ins}
        self._flexible = bool(
            metadata.extra.get("dim_bounds") or metadata.extra.get("input_shape_choices")
        )
        self._view = tvm_ffi.from_dlpack  # any alignment and layout: checked here
        self._alloc = _ffi_api.TVMTensorAllocWithScope
        self._copy = _ffi_api.TVMTensorCopyFromTo
        self._tensor = tvm.runtime.tensor
        self._copied = False  # whether TVM copied an input in this run
        # whether this run may copy inputs into the staging buffers: only when nothing returned
        # can be one (outputs go to numpy, and any output not fresh is copied)
        self._staging = False
        self._get_item = tvm_ffi.container._ffi_api.ArrayGetItem  # Array[i], without its len
        self._dlpack_dtypes: dict[tuple[type, Any], str] = {}  # (type, .dtype) -> DLPack's
        self._lock = threading.Lock()  # one run at a time: see ``run``

    @classmethod
    def from_executable(cls, executable: Any, metadata: Metadata) -> Runtime:
        import tvm
        from tvm.runtime.vm import VirtualMachine

        module = getattr(executable, "mod", executable)  # its bytecode: see ``fresh_outputs``
        return cls(VirtualMachine(executable, tvm.cpu()), metadata, module)

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

    def run(self, feeds: Mapping[str, Any], as_numpy: bool = True) -> dict[str, Any]:
        """Output name -> numpy array the caller owns (``as_numpy=False``:
        ``tvm.runtime.Tensor`` left on the run's device, readable without a copy by
        ``torch.from_dlpack``/``np.from_dlpack``). Outputs the run allocates are handed over
        without a copy; inputs passed through and constants are copied (``vm_outputs``).

        A feed is a numpy array or any DLPack tensor (PyTorch, CuPy, JAX, a TVM tensor from an
        earlier run). It is used in place, without a copy, when it is on the run's device,
        C-contiguous and 64-byte aligned (what TVM's kernels assume). Anything else is copied
        first: numpy arrays and host tensors into a GPU, misaligned buffers (numpy aligns to 16
        bytes only), non-contiguous views (on a GPU: PyTorch's only, cloned on its stream). A
        tensor on another GPU is refused. With PyTorch CUDA tensors the model runs on PyTorch's
        current stream. Outputs with ``as_numpy=False`` may share memory with an input the model
        returns unchanged; narrow types TVM stores as integers (float8, int4) come back in that
        storage dtype.

        Threads may share one Runtime: its runs take turns (TVM's VM keeps the state of a call
        in the VM object, and a CUDA graph in its captured buffers). For runs in parallel, load
        one Runtime per thread.
        """
        with self._lock:
            return self._run(feeds, as_numpy)

    def _run(self, feeds: Mapping[str, Any], as_numpy: bool) -> dict[str, Any]:
        self._copied = False
        self._staging = as_numpy and self._on_cpu
        try:
            args = self.check_inputs(feeds)
        finally:
            self._staging = False
        if not self._on_cpu:
            return self._run_on_gpu(feeds, args, as_numpy)
        result = self._call(args)
        item = self._get_item
        if not as_numpy:
            return {p.name: item(result, i) for i, p in enumerate(self._outs)}
        return {p.name: self._to_numpy(item(result, i), p) for i, p in enumerate(self._outs)}

    def _call(self, args: list[Any]) -> Any:
        """The model's ``main`` on ``args``; a failed run-time check (an index out of range,
        an integer division by zero) becomes an InputError naming the op and the node."""
        try:
            return self._main(*args)
        except Exception as e:  # noqa: BLE001 - TVM raises the kind the check names
            text = str(e)
            at = text.find(CHECK_MARK)
            if at < 0:
                raise
            message = text[at + len(CHECK_MARK) :].splitlines()[0].strip()
            raise InputError(message) from None

    def _run_on_gpu(self, feeds: Mapping[str, Any], args: list[Any], as_numpy: bool) -> dict:
        """Kernels run on TVM's current stream of the device: PyTorch's current one when
        PyTorch CUDA tensors are fed, so that they run after the work producing their inputs and
        before PyTorch's work on the outputs. TVM copies inputs on the default stream: those
        copies are waited for when the kernels run on another stream."""
        import tvm_ffi

        stream = self._torch_stream(feeds)
        context = nullcontext() if stream is None else tvm_ffi.use_raw_stream(self.device, stream)
        with context:
            if self._copied and tvm_ffi.get_raw_stream(self.device):
                self.device.sync()
            result = self._call(args)
            outs = [result[i] for i in range(len(self._outs))]
            if as_numpy:
                self.device.sync(tvm_ffi.get_raw_stream(self.device))
        if not as_numpy:
            return {p.name: t for p, t in zip(self._outs, outs)}
        return {p.name: self._to_numpy(t, p) for p, t in zip(self._outs, outs)}

    def check_inputs(self, feeds: Mapping[str, Any]) -> list[Any]:
        """The inputs in signature order as TVM tensors on the run's device, or an InputError
        naming what is wrong and what the model expects."""
        if feeds.keys() != self._names:
            self._name_error(feeds)
        args = []
        dims: dict[str, int] = {}
        shapes = {}
        for port in self._ins:
            x = feeds[port.name]
            if isinstance(x, np.ndarray) or not hasattr(x, "__dlpack__"):
                x = np.asarray(x)
                if x.dtype != port.np_dtype:
                    self._dtype_error(port, x.dtype.name)
                shape = x.shape
            else:
                source = x
                x = self._read_dlpack(port, x)
                got = self._dlpack_dtype(source, x)
                if got != port.info.dtype:
                    self._dtype_error(port, got)
                shape = x.shape
            if (
                shape != port.shape
                if port.static
                else len(shape) != len(port.shape) or not _dims_match(shape, port.shape, dims)
            ):
                raise InputError(
                    f"input {port.name!r} has shape {list(shape)}; the model expects {port.info}"
                )
            shapes[port.name] = shape
            args.append(self._place(port, x, feeds[port.name]))
        if self._flexible:
            self._check_flexible(shapes, dims)
        return args

    def _name_error(self, feeds: Mapping[str, Any]) -> None:
        unknown = [n for n in feeds if n not in self._names]
        if unknown:
            raise InputError(
                f"unknown input {unknown[0]!r}; the model's inputs are "
                + ", ".join(str(t) for t in self.inputs)
            )
        missing = [t for t in self.inputs if t.name not in feeds]
        raise InputError("missing input " + ", ".join(str(t) for t in missing))

    def _dlpack_dtype(self, source: Any, view: Any) -> str:
        """The DLPack dtype of a feed, remembered per producer type and its own ``dtype``
        (reading it from TVM's view builds a new object per call)."""
        try:
            key = (type(source), source.dtype)
            return self._dlpack_dtypes[key]
        except KeyError:
            got = self._dlpack_dtypes[key] = str(view.dtype)
            return got
        except (AttributeError, TypeError):  # no dtype, or not hashable
            return str(view.dtype)

    @staticmethod
    def _dtype_error(port: _Port, got: str) -> None:
        raise InputError(f"input {port.name!r} has dtype {got}; the model expects {port.info}")

    def _read_dlpack(self, port: _Port, x: Any) -> Any:
        """A TVM view of a DLPack tensor (no copy), its dtype and shape read through DLPack."""
        try:
            return self._view(x)
        except Exception as e:  # noqa: BLE001 - producers raise BufferError, TypeError, ...
            raise InputError(f"input {port.name!r} cannot be read through DLPack: {e}") from None

    def _place(self, port: _Port, x: Any, source: Any = None) -> Any:
        """A TVM tensor on the run's device: ``x`` (a numpy array, or a TVM view of the DLPack
        tensor ``source``) itself where TVM may use it, else a copy."""
        if isinstance(x, np.ndarray):
            stageable = self._staging and port.stageable(x)
            if stageable and x.nbytes <= STAGE_ALWAYS_BYTES:
                return self._stage(port, x)
            if not port.numpy_dlpack or not x.flags.writeable:
                self._copied = True
                return self._tensor(to_storage(x, port.info.dtype), self.device)
            if not x.flags.c_contiguous:
                if stageable:
                    return self._stage(port, x)
                x = np.ascontiguousarray(x)
            view = self._view(x)
            if stageable and view.data_ptr() % ALIGNMENT:
                return self._stage(port, x)
            x = view
        device = x.device
        here = device == self.device
        host = device.dlpack_device_type() == _KDL_CPU
        contiguous = x.is_contiguous()
        if here and contiguous and x.data_ptr() % ALIGNMENT == 0:
            t = x
        elif here and not self._on_cpu and _is_torch(source):
            # PyTorch copies on its current stream, after the work that produced the tensor.
            torch = sys.modules["torch"]
            copy = source.clone(memory_format=torch.contiguous_format)
            return self._place(port, self._view(copy))
        elif contiguous and (here or host):
            t = self._alloc(x.shape, x.dtype, self.device, None)
            self._copy(x, t)
            self._copied = True
        elif host and port.numpy_dlpack:
            return self._place(port, np.ascontiguousarray(np.from_dlpack(x)))
        elif here or host:
            raise InputError(f"input {port.name!r} is not contiguous: pass a contiguous copy")
        else:
            raise InputError(f"input {port.name!r} is on {device}; the model runs on {self.device}")
        return t if port.native else t._create_view(t.shape, port.storage)

    def _stage(self, port: _Port, x: np.ndarray) -> Any:
        """``x`` copied into the input's staging buffer, made 64-byte aligned at first use.
        Safe to reuse every run: runs take turns, and nothing a run returns keeps it."""
        if port.stage is None:
            raw = np.empty(x.nbytes + ALIGNMENT, np.uint8)
            at = -raw.ctypes.data % ALIGNMENT
            port.stage = raw[at : at + x.nbytes].view(port.np_dtype).reshape(port.shape)
            port.stage_view = self._view(port.stage)
        port.stage[...] = x
        return port.stage_view  # numpy's dtypes only: TVM holds them as they are

    def _check_flexible(self, shapes: dict[str, tuple], dims: dict[str, int]) -> None:
        """Sizes of symbolic dims inside the bounds the model declares (Core ML's flexible
        shapes), and inputs of enumerated shapes one of the shapes listed."""
        for dim, (lo, hi) in self.metadata.extra.get("dim_bounds", {}).items():
            size = dims.get(dim)
            if size is not None and (size < (lo or 0) or (hi is not None and size > hi)):
                raise InputError(
                    f"dim {dim} is {size}; the model allows {lo} to "
                    f"{'any size' if hi is None else hi}"
                )
        for name, choices in self.metadata.extra.get("input_shape_choices", {}).items():
            shape = list(shapes[name])
            if shape not in choices:
                raise InputError(
                    f"input {name!r} has shape {shape}; the model allows "
                    + ", ".join(str(s) for s in choices)
                )

    def _to_numpy(self, t: Any, port: _Port) -> np.ndarray:
        if self._on_cpu and port.numpy_dlpack:
            # a fresh output is the caller's alone; any other may be an input or a weight
            return np.from_dlpack(t) if port.fresh else np.from_dlpack(t).copy()
        return from_storage(t.numpy(), port.info.dtype)

    def _torch_stream(self, feeds: Mapping[str, Any]) -> int | None:
        """PyTorch's current stream on the run's GPU when PyTorch CUDA tensors are fed."""
        torch = sys.modules.get("torch")
        if torch is None or not any(
            isinstance(x, torch.Tensor) and x.is_cuda for x in feeds.values()
        ):
            return None
        return int(torch.cuda.current_stream(self.device.index).cuda_stream)


def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


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


def load(path: str | os.PathLike, threads: int | None = None, device: str | None = None) -> Runtime:
    """Load an artifact written by ``CompiledModel.export`` / ``nnxc compile``.

    ``device``: ``None`` runs it on its own kind of device (CPU code on the CPU, CUDA code on
    ``cuda:0``); ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` name one. ``threads``: threads of the
    CPU thread pool (default: every core this process may use). A CUDA artifact needs an
    NVIDIA driver and a GPU whose architecture the artifact has code for (SASS for its major
    version, or PTX of an older one); it loads with TVM's runtime alone too
    (``TVM_USE_RUNTIME_LIB=1``), where TVM's CUDA runtime is loaded from TVM's library folder
    or ``$NNXC_TVM_CUDA_RUNTIME`` and libcudart from a CUDA toolkit or the nvidia wheels.
    Errors name the artifact and the device: ArtifactError, or InputError for a malformed
    ``device`` or ``threads``.
    """
    meta = verify_library(path)
    dev = artifact_device(path, meta, device)
    if dev.kind == CPU:
        triple = str(meta.target.get("mtriple", ""))
        if triple and not triple.startswith(platform.machine()):
            raise ArtifactError(
                f"{path}: compiled for {triple}; this machine is {platform.machine()}"
            )
    _set_threads(threads)
    import tvm
    from tvm.runtime.vm import VirtualMachine

    tvm_device = _open(path, dev, meta)
    try:
        module = tvm.runtime.load_module(str(Path(path).resolve()))
        vm = VirtualMachine(module, tvm_device)
    except Exception as e:  # noqa: BLE001 - TVM raises its own error types
        raise ArtifactError(f"{path}: TVM cannot load it: {str(e).strip().splitlines()[-1]}") from e
    return Runtime(vm, meta, module, tvm_device)


def artifact_device(path: str | os.PathLike, meta: Metadata, device: str | None) -> DeviceSpec:
    """The device to run the artifact on (``device`` as ``load`` takes it), or an error when
    the artifact's code cannot run there; shared with ``compiler.remote.load_remote``."""
    kind = artifact_kind(meta.target)
    if kind is None:
        raise ArtifactError(f"{path}: compiled for {meta.target}, which this loader cannot run")
    dev = parse_device(device, kind)
    if dev.kind != kind:
        raise ArtifactError(
            f"{path}: compiled for {kind}, it cannot run on {dev} (load it with device={kind!r})"
        )
    return dev


def _open(path: str | os.PathLike, dev: DeviceSpec, meta: Metadata) -> Any:
    """The TVM device to run on, or an ArtifactError naming the artifact and the device."""
    import tvm

    if dev.kind == CPU:
        return tvm.cpu()
    try:
        return open_gpu(dev.index, artifact_archs(meta.target))
    except DeviceError as e:
        raise ArtifactError(f"{path}: cannot run on {dev}: {e}") from None
