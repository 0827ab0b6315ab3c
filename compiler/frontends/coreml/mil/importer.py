"""ML Programs -> nnxc IR.

coremltools' MIL proto loader rebuilds the program (weights read once from ``weight.bin``, as
numpy arrays); nnxc checks first that every blob value names a weight file inside the package
and an offset inside that file. The chosen function's ops convert in order; ``const`` ops
become IR constants when a tensor input reads them (parameters such as strides are read as
attributes). Each result's shape is checked against pymil's inference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from compiler.errors import ConversionError, ModelLoadError, UnsupportedOpsError
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph, Value
from compiler.limits import check_tensor

from ...converters import report_unsupported, run_converter
from ..features import declare_inputs
from ..files import CoreMLFiles, weight_file
from . import (  # noqa: F401  (registers the converters)
    attention,
    compression,
    control,
    elementwise,
    nn,
    random,
    recurrent,
    reduce,
    tensor,
)
from .registry import OPS, REFUSED, MilContext, ir_dtype, static_dims

_FREE = ("const",)
"""Ops that need no converter (constants are read where they are used)."""


def import_program(
    files: CoreMLFiles,
    input_shapes: Mapping[str, Any] | None,
    input_values: Mapping[str, np.ndarray] | None,
    function: str | None,
) -> Graph:
    _check_blobs(files)
    program = load_program(files)
    name, fn = _function(program, files, function)
    descriptions = _descriptions(files.spec, name)
    _check_ops(fn, files.name)
    graph = Graph(re.sub(r"\W", "_", name) or "main")
    importer = _Importer(graph, files.name, int(files.spec.specificationVersion))
    features = declare_inputs(descriptions[0], files.name, graph, input_shapes, input_values)
    env: dict[str, Value] = {}
    for var_name, var in fn.inputs.items():
        if var_name not in features:
            raise ModelLoadError(f"{files.name}: function input {var_name!r} is not declared")
        v = features[var_name].value
        want = ir_dtype(var)
        if v.dtype != want:
            v = importer.builder.emit("cast", v, to=want)
        env[var_name] = v
    importer.convert_ops(fn.operations, env, importer.builder)
    outputs, names = [], []
    # ct.convert folds an output it can compute into a const op: the output is that constant
    constants = {v.name: v for v in fn.outputs if v.val is not None}
    for desc in descriptions[1]:
        kind = desc.type.WhichOneof("Type")
        if desc.name in importer.labels_for:
            continue  # a classifier's label output: the artifact keeps the labels
        if desc.name not in env and desc.name in constants:
            env[desc.name] = importer.lookup(constants[desc.name], env)
        if desc.name not in env:
            raise ConversionError(f"{files.name}: the program computes no output {desc.name!r}")
        if kind not in ("multiArrayType", "dictionaryType"):
            raise UnsupportedOpsError(f"{files.name}: output {desc.name!r} is of type {kind}")
        outputs.append(env[desc.name])
        names.append(desc.name)
    graph.set_outputs(outputs, names)
    if importer.labels is not None:
        graph.metadata["labels"] = json.dumps(importer.labels)
    if importer.fp16:
        graph.metadata["precision"] = "float16"
    graph.metadata["mil_function"] = name
    return graph


def load_program(files: CoreMLFiles) -> Any:
    """The pymil ``Program`` of an ML Program spec (coremltools' MIL proto loader)."""
    from coremltools.converters.mil.frontend.milproto import load as milproto

    wdir = None if files.weights_dir is None else str(files.weights_dir)
    try:
        return milproto.load(
            files.spec, specification_version=files.spec.specificationVersion, file_weights_dir=wdir
        )
    except (
        RuntimeError,
        ValueError,
        KeyError,
        TypeError,
        NotImplementedError,
        IndexError,
        AssertionError,  # the loader's checks of the spec (a const op's outputs...)
        AttributeError,  # an op type its builder does not know
    ) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        if msg == "index out of bounds":  # coremltools' blob reader, for data past the end
            msg = "a weight's data lies past the end of its weight file (a truncated file?)"
        raise ModelLoadError(f"{files.name}: the ML Program does not load: {msg}") from None


def _check_blobs(files: CoreMLFiles) -> None:
    """Every weight a blob holds lies in a weight file inside the package and starts inside
    it; read before coremltools opens anything."""
    sizes: dict[str, int] = {}
    for what, value in _blob_values(files.spec.mlProgram):
        _check_declared(what, value.type)
        blob = value.blobFileValue
        path = weight_file(files, blob.fileName, what)
        key = str(path)
        if key not in sizes:
            sizes[key] = path.stat().st_size
            files.read.append(path)
        if blob.offset + 64 > sizes[key]:
            raise ModelLoadError(
                f"{files.name}: {what}: blob offset {blob.offset} is past the end of "
                f"{path.name} ({sizes[key]} bytes)"
            )


def _blob_values(program: Any) -> list[tuple[str, Any]]:
    """(what, Value) of every constant stored in a weight file, nested blocks too."""
    found = []
    blocks = [b for f in program.functions.values() for b in f.block_specializations.values()]
    while blocks:
        block = blocks.pop()
        for op in block.operations:
            blocks.extend(op.blocks)
            values = list(op.attributes.values()) + [
                b.value
                for arg in op.inputs.values()
                for b in arg.arguments
                if b.WhichOneof("binding") == "value"
            ]
            for value in values:
                if value.WhichOneof("value") == "blobFileValue":
                    out = op.outputs[0].name if op.outputs else op.type
                    found.append((f"constant {out!r}", value))
    return found


def _check_declared(what: str, t: Any) -> None:
    """Refuse a weight whose declared type is over the memory limit, before it is read."""
    if t.WhichOneof("type") != "tensorType":
        return
    dims = t.tensorType.dimensions
    if all(d.WhichOneof("dimension") == "constant" for d in dims):
        itemsize = _WIDE_ITEMSIZES.get(t.tensorType.dataType, 1)
        check_tensor(what, [d.constant.size for d in dims], itemsize)


_WIDE_ITEMSIZES = {10: 2, 11: 4, 12: 8, 13: 2, 22: 2, 23: 4, 24: 8, 32: 2, 33: 4, 34: 8}
"""Bytes an element of MIL's DataType codes wider than a byte (FLOAT16, FLOAT32, FLOAT64,
BFLOAT16, INT16-64, UINT16-64); the others take one byte an element in the IR."""


def _function(program: Any, files: CoreMLFiles, function: str | None) -> tuple[str, Any]:
    names = sorted(program.functions)  # a protobuf map: no order of its own
    if not names:
        raise ModelLoadError(f"{files.name}: the ML Program holds no function")
    default = files.spec.description.defaultFunctionName or "main"
    name = function or (default if default in names else names[0])
    if name not in program.functions:
        raise ModelLoadError(
            f"{files.name}: no function {name!r}; the program holds {', '.join(names)}"
        )
    return name, program.functions[name]


def _descriptions(spec: Any, function: str) -> tuple[Any, Any]:
    """The input and output feature descriptions of ``function`` (multi-function models
    describe each function apart)."""
    for f in spec.description.functions:
        if f.name == function:
            return f.input, f.output
    return spec.description.input, spec.description.output


def _check_ops(fn: Any, where: str) -> None:
    missing = []
    pending = list(fn.operations)
    while pending:
        op = pending.pop(0)
        if op.op_type not in _FREE and (
            op.op_type in REFUSED or OPS.find("", op.op_type, 1 << 30) is None
        ):
            missing.append((op.op_type, op.name))
        for block in op.blocks:
            pending.extend(block.operations)
    report_unsupported(missing, f"in {where}", reasons=REFUSED)


class _Importer:
    """Converts the ops of a function and of the blocks nested in it."""

    def __init__(self, graph: Graph, where: str, version: int) -> None:
        self.graph = graph
        self.builder = Builder(graph)
        self.where = where
        self.version = version
        self.labels: list[Any] | None = None
        self.labels_for: set[str] = set()
        self.fp16 = False
        self._consts: dict[int, Value] = {}

    def lookup(self, var: Any, env: dict[str, Value]) -> Value:
        """The IR value of a pymil variable: a converted result, or a constant."""
        if var.name in env:
            return env[var.name]
        if var.val is not None and not isinstance(var.val, str):
            key = id(var)
            if key not in self._consts:
                data = np.asarray(var.val)
                want = ir_dtype(var)
                if data.dtype.name != want:
                    data = data.astype(want)
                self._consts[key] = self.graph.constant(data, var.name)
            return self._consts[key]
        raise ConversionError(f"{self.where}: {var.name!r} is computed by no earlier op")

    def convert_ops(self, ops: Any, env: dict[str, Value], builder: Builder) -> None:
        """Convert ``ops`` in order into ``builder``'s block, reading and writing ``env``
        (control-flow converters call this for their blocks)."""
        for op in ops:
            if op.op_type in _FREE:
                continue
            ctx = MilContext(op, env, builder, self)
            fn = OPS.find("", op.op_type, self.version)
            if fn is None:
                raise ctx.error(f"has no converter for spec version {self.version}")
            results = run_converter(ctx, fn)
            if len(results) != len(op.outputs):
                raise ctx.error(f"the converter gives {len(results)} of {len(op.outputs)} outputs")
            for var, value in zip(op.outputs, results):
                if value is None:
                    continue
                want = _tensor_shape(var)
                if (
                    want is not None
                    and static_dims(want)
                    and list(value.shape) != [int(d) for d in want]
                ):
                    raise ctx.error(
                        f"nnxc computes shape {list(value.shape)} for {var.name!r}, "
                        f"coremltools {want}"
                    )
                if value.dtype == "float16":
                    self.fp16 = True
                env[var.name] = value


def _tensor_shape(var: Any) -> list[Any] | None:
    """The shape pymil inferred for a tensor or scalar variable; None for lists, dicts and
    strings (a classifier's outputs, MIL lists)."""
    from coremltools.converters.mil.mil import types

    is_array = types.is_tensor(var.sym_type) or types.is_scalar(var.sym_type)
    return list(var.shape) if is_array and not types.is_str(var.sym_type) else None
