"""nnxc as an ``onnx.backend`` (``prepare`` / ``run_model`` / ``run_node``), for ONNX's tests.

The rep compiles lazily, at ``run`` time, for the shapes of the inputs it is given: the
ONNX frontend folds shape computations once input shapes are known, so one ONNX model
becomes one executable per input signature. When conversion raises ``NeedsValueError`` for
a graph input (a shape, axes, pads... operand fed as an input rather than a constant), the
rep binds that input's run-time value as a constant and converts again; for a value computed
from inputs, it binds every integer or bool input of rank 0 or 1 (the likely shape operands,
loop trip counts and conditions). Sequence and optional inputs are compiled for the
structure they are fed with (length and element shapes; present or empty).
Executables are cached per (input shapes and dtypes, values of the bound inputs); the set
of inputs that must be bound is learned once per model.

Pipeline: the same as ``nnxc compile``: ``import_onnx`` -> the standard passes ->
``backends.tvm.lower_graph`` -> ``backends.tvm.build`` for the host CPU (our schedule rules
included) -> ``relax.VirtualMachine``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import tvm
import tvm_ffi
from onnx import helper, numpy_helper
from onnx.backend.base import Backend, BackendRep, namedtupledict
from tvm import relax

from backends.tvm import build, lower_graph, resolve_target
from compiler.errors import InputError, NeedsValueError
from compiler.frontends.onnx import import_onnx
from compiler.ir.graph import Graph
from compiler.ir.types import OptionalType, SequenceType, Type, from_storage, to_storage
from passes import run_passes

_MAX_BINDS = 16  # a model needs at most one retry per shape operand fed as an input


def _as_array(x: Any) -> Any:
    """A fed value as nnxc takes it: an array, a list of arrays (a sequence), or None (an
    empty optional)."""
    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    if x is None:
        return None
    if isinstance(x, list | tuple):
        return [_as_array(e) for e in x]
    if isinstance(x, dict):
        raise InputError("map inputs are not supported")
    return np.asarray(x)


def _spec(x: Any) -> Any:
    """What ``import_onnx``'s ``input_shapes`` says of a fed value (``InputShapes``)."""
    if x is None:
        return None
    if isinstance(x, list):
        return [_spec(e) for e in x]
    return list(x.shape)


def _signature(x: Any) -> Any:
    if x is None or isinstance(x, list):
        return None if x is None else tuple(_signature(e) for e in x)
    return (x.shape, x.dtype.str)


def _to_tvm(x: Any, t: Type) -> Any:
    if isinstance(t, SequenceType):
        return tvm_ffi.convert([_to_tvm(e, et) for e, et in zip(x, t.elements)])
    if isinstance(t, OptionalType):
        return tvm_ffi.convert([] if not t.present else [_to_tvm(x, t.of)])
    return tvm.runtime.tensor(to_storage(x, t.dtype))


def _from_tvm(r: Any, t: Type) -> Any:
    if isinstance(t, SequenceType):
        return [_from_tvm(r[i], et) for i, et in enumerate(t.elements)]
    if isinstance(t, OptionalType):
        return _from_tvm(r[0], t.of) if t.present else None
    return from_storage(r.numpy(), t.dtype)


def _declared_dtype(vi: onnx.ValueInfoProto) -> np.dtype | None:
    elem = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem)) if elem else None
    except (KeyError, TypeError, ValueError):
        return None  # a type the frontend reports when converting


def _run_passes(graph: Graph) -> Graph:
    """The standard pass pipeline, as ``nnxc compile`` runs it."""
    run_passes(graph)
    return graph


class _Compiled:
    """One executable for one input signature: the graph's inputs and the VM to call."""

    def __init__(self, graph: Graph) -> None:
        self.inputs = [(v.name, v.type) for v in graph.inputs]
        self.output_types = [v.type for v in graph.outputs]
        executable = build(lower_graph(graph), resolve_target("cpu"))
        self.vm = relax.VirtualMachine(executable, tvm.cpu())

    def __call__(self, feeds: Mapping[str, Any]) -> list[Any]:
        result = self.vm["main"](*[_to_tvm(feeds[n], t) for n, t in self.inputs])
        return [_from_tvm(result[i], t) for i, t in enumerate(self.output_types)]


class NnxcRep(BackendRep):
    """A prepared ONNX model; compiles on first ``run`` for each input signature."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        initializers = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in initializers]
        self.input_names = [i.name for i in inputs]
        self.input_dtypes = {i.name: _declared_dtype(i) for i in inputs}
        self.output_names = [o.name for o in model.graph.output]
        self.bound_names: set[str] = set()
        """Inputs whose values must be compile-time constants (learned on first run)."""
        self.cache: dict[tuple, _Compiled] = {}

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Inputs in the model's order (a list) or by name (a dict); outputs in order."""
        feeds = self._feeds(inputs)
        compiled = self.cache.get(self._key(feeds))
        if compiled is None:
            compiled = _Compiled(self._convert(feeds))
            self.cache[self._key(feeds)] = compiled
        outputs = compiled(feeds)
        return namedtupledict("Outputs", self.output_names)(*outputs)

    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            feeds = {str(k): _as_array(v) for k, v in inputs.items()}
        else:
            items = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            if len(items) != len(self.input_names):
                raise InputError(
                    f"the model has {len(self.input_names)} input(s), {len(items)} were given"
                )
            feeds = {n: _as_array(x) for n, x in zip(self.input_names, items)}
        missing = [n for n in self.input_names if n not in feeds]
        unknown = [n for n in feeds if n not in self.input_names]
        if missing or unknown:
            raise InputError(f"inputs missing: {missing}, unknown: {unknown}")
        for name, x in feeds.items():
            dtype = self.input_dtypes[name]
            if dtype is not None and isinstance(x, np.ndarray) and x.dtype != dtype:
                raise InputError(f"input {name!r} has dtype {x.dtype}, the model needs {dtype}")
        return feeds

    def _key(self, feeds: Mapping[str, np.ndarray]) -> tuple:
        shapes = tuple((n, _signature(feeds[n])) for n in self.input_names)
        values = tuple((n, feeds[n].tobytes()) for n in sorted(self.bound_names))
        return shapes, values

    def _convert(self, feeds: Mapping[str, np.ndarray]) -> Graph:
        """Import for these shapes, binding inputs the frontend needs as values, then passes."""
        for _ in range(_MAX_BINDS):
            bound = {n: feeds[n] for n in self.bound_names}
            shapes = {n: _spec(x) for n, x in feeds.items() if n not in bound}
            try:
                graph = import_onnx(self.model, input_shapes=shapes, input_values=bound)
            except NeedsValueError as e:
                wanted = self._to_bind(e.value_name, feeds)
                if not wanted:
                    raise
                self.bound_names |= wanted
                continue
            return _run_passes(graph)
        raise NeedsValueError(f"more than {_MAX_BINDS} inputs must be bound", "")

    def _to_bind(self, name: str, feeds: Mapping[str, np.ndarray]) -> set[str]:
        """The input named by the error; for a value computed from inputs, every input that
        can be a shape or control operand (integer or bool, at most 1-D: a loop's trip count
        and condition decide whether it unrolls) and is not bound yet."""
        if name in feeds:
            return set() if name in self.bound_names else {name}
        return {
            n
            for n, x in feeds.items()
            if n not in self.bound_names
            and isinstance(x, np.ndarray)
            and x.dtype.kind in "iub"
            and x.ndim <= 1
        }


class NnxcBackend(Backend):
    """The ``onnx.backend.base.Backend`` interface over nnxc's ONNX -> TVM pipeline."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> NnxcRep:
        if not cls.supports_device(device):
            raise ValueError(f"device {device!r} is not supported; nnxc's ONNX backend runs on CPU")
        return NnxcRep(model)

    @classmethod
    def run_model(
        cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
    ) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls,
        node: onnx.NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
        **kwargs: Any,
    ) -> tuple[np.ndarray, ...]:
        """Wrap one node in a model (inputs typed from the arrays) and run it."""
        names = [n for n in node.input if n]
        arrays = (
            [_as_array(inputs[n]) for n in names]
            if isinstance(inputs, Mapping)
            else [_as_array(x) for x in inputs]
        )
        graph_inputs = [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
            for n, x in zip(names, arrays, strict=True)
        ]
        graph_outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
        if outputs_info is not None:
            graph_outputs = [
                helper.make_tensor_value_info(
                    n, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape
                )
                for n, (dtype, shape) in zip([n for n in node.output if n], outputs_info)
            ]
        opset = int(kwargs.get("opset_version", onnx.defs.onnx_opset_version()))
        graph = helper.make_graph([node], "run_node", graph_inputs, graph_outputs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        return cls.run_model(model, arrays, device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """Only the host CPU for now (``CPU`` or ``CPU:0``)."""
        return device.split(":")[0].upper() == "CPU"


prepare = NnxcBackend.prepare
run_model = NnxcBackend.run_model
run_node = NnxcBackend.run_node
supports_device = NnxcBackend.supports_device
