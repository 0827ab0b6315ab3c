"""NNEF model -> nnxc IR graph.

The Khronos parser (``nnef.parse_file``) reads the graph text and ``graph.quant``; compound
fragments nnxc has no better core op for, and every custom fragment of the file, are expanded
by the parser (``lowered=``) into the ops they are made of. ``nnef.infer_shapes`` gives every
tensor's shape, which each converted op is checked against.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import ConversionError, ModelLoadError
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from compiler.limits import check_tensor

from ..converters import report_unsupported, run_converter
from . import (  # noqa: F401  (registers the converters)
    elementwise,
    quantize,
    reduce,
    tensor,
    window,
)
from .files import (
    ModelFiles,
    fragment_calls,
    open_model,
    read_dat,
    recursive_fragments,
    variable_path,
)
from .quantize import dequantize_variable, fake_quantize
from .registry import CONVERTERS, NNEF_DTYPES, REFUSED, NnefContext, first_output
from .syntax import check_assignments

LOWERED = (
    # compound fragments expanded by the parser into ops nnxc converts (the others have
    # converters of their own: see the table in docs/nnef.md)
    "softabs",
    "rms_pool",
    "local_mean_normalization",
    "local_variance_normalization",
    "local_contrast_normalization",
    "l1_normalization",
    "separable_conv",
    "separable_deconv",
    "linear_quantize",
    "copy_n",
    "add_n",
)
_DECLARATIONS = ("external", "variable", "constant")
MAX_LOWERING_PASSES = 16


def import_nnef(
    path: str | Path,
    input_shapes: Mapping[str, Any] | None = None,
    input_values: Mapping[str, np.ndarray] | None = None,
) -> tuple[Graph, str, str]:
    """Convert an NNEF model (a folder, a ``.tgz`` of one, or a bare graph text) into a graph
    of core ops; also return the model's display name and the sha256 of every file read."""
    with open_model(Path(path)) as files:
        g, unexpanded = parse(files)
        importer = _Importer(g, files, unexpanded)
        graph = importer.run(dict(input_shapes or {}), dict(input_values or {}))
        return graph, files.name, files.sha256()


def parse(files: ModelFiles) -> tuple[Any, dict[str, str]]:
    """The parsed graph, with LOWERED and every custom fragment expanded; and the custom
    fragments left as ops, with the reason (for the unsupported-ops error).

    The Khronos parser expands a fragment that calls itself without end until its stack
    overflows (a crash, not an error): recursive fragments are first expanded in a child
    process, and left unexpanded where that fails. Statements it crashes on are refused
    first (``syntax.check_assignments``).
    """
    import nnef

    text = _graph_text(files)
    check_assignments(text, files.name)
    calls = fragment_calls(text)
    recursive = recursive_fragments(calls)
    lowered = set(LOWERED)
    unexpanded: dict[str, str] = {}
    for _ in range(MAX_LOWERING_PASSES):
        g = _parse(files, lowered)
        ops = {op.name for op in g.operations}
        custom = ops - set(nnef.StandardOperations) - lowered - set(unexpanded)
        if not custom:
            break
        for name in custom:
            if calls.get(name, set()) is None:
                unexpanded[name] = "a fragment declared without a body"
        todo = custom - set(unexpanded)
        safe = todo - recursive
        for name in sorted(todo & recursive):
            if _expands_in_child(files, lowered | safe | {name}):
                safe.add(name)
            else:
                unexpanded[name] = "a recursive fragment the NNEF parser cannot expand"
        lowered |= safe
    return g, unexpanded


def _graph_text(files: ModelFiles) -> str:
    try:
        return files.graph.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ModelLoadError(f"{files.name}: graph.nnef is not text; not an NNEF model") from None
    except OSError as e:
        raise ModelLoadError(f"{files.name}: cannot read graph.nnef ({e.strerror})") from None


def _parse(files: ModelFiles, lowered: set[str]) -> Any:
    import nnef

    try:
        return nnef.parse_file(
            str(files.graph),
            quant_fn=str(files.quant) if files.quant else None,
            lowered=sorted(lowered),
        )
    except nnef.Error as e:
        raise ModelLoadError(_parse_message(files, e)) from None
    except UnicodeDecodeError:
        what = "graph.quant" if files.quant else "graph.nnef"
        raise ModelLoadError(f"{files.name}: {what} is not text; not an NNEF model") from None


_EXPAND_TIMEOUT_S = 60
_EXPAND = "import sys, nnef; nnef.parse_file(sys.argv[1], lowered=sys.argv[2:])"


def _expands_in_child(files: ModelFiles, lowered: set[str]) -> bool:
    """Whether the parser expands ``lowered`` in ``graph.nnef`` without crashing or hanging."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _EXPAND, str(files.graph), *sorted(lowered)],
            capture_output=True,
            timeout=_EXPAND_TIMEOUT_S,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0


def _parse_message(files: ModelFiles, e: Exception) -> str:
    """The parser's message on one line, naming the file and the line and column."""
    msg = " ".join(str(e).split())
    for path in (files.graph, files.quant):
        if path is not None:
            msg = msg.replace(f"'{path}'", path.name).replace(str(path), path.name)
    msg = re.sub(r"\[(\d+):(\d+)\]", r"line \1, column \2:", msg)
    return f"{files.name}: {msg}"


class _Importer:
    def __init__(self, g: Any, files: ModelFiles, unexpanded: dict[str, str]) -> None:
        self.g = g
        self.files = files
        self.unexpanded = unexpanded
        self.graph = Graph(re.sub(r"\W", "_", g.name) or "main")
        self.graph.metadata["source_format"] = "nnef"
        self.builder = Builder(self.graph)
        self.env: dict[str, Value] = {}

    def run(self, shapes: dict[str, Any], values: dict[str, np.ndarray]) -> Graph:
        import nnef

        self._check_ops()
        self._check_labels()
        externals = {op.outputs["output"]: op for op in self.g.operations if op.name == "external"}
        for name in list(shapes) + list(values):
            if name not in externals:
                raise ModelLoadError(
                    f"--input-shape/input_values name unknown input {name!r}; the model's inputs "
                    f"are {', '.join(externals)}"
                )
        bound = {}
        for name, shape in shapes.items():
            if not all(isinstance(d, int) for d in shape):
                raise ModelLoadError(
                    f"--input-shape {name}: NNEF models have static shapes; give sizes, not names"
                )
            bound[name] = [int(d) for d in shape]
        for name, data in values.items():
            bound[name] = list(np.shape(data))
        for name, shape in bound.items():
            declared = list(externals[name].attribs["shape"])
            where = f"{self.files.name}: input {name!r} bound to shape {shape}"
            if len(shape) != len(declared):
                raise ModelLoadError(f"{where}, another rank than the declared {declared}")
            if any(d < 0 for d in shape):
                raise ModelLoadError(f"{where}: a negative size")
        try:
            nnef.infer_shapes(self.g, external_shapes=bound)
        except (nnef.Error, AssertionError, ValueError, IndexError, TypeError) as e:
            msg = " ".join(str(e).split()) or type(e).__name__
            raise ConversionError(f"{self.files.name}: NNEF shape inference: {msg}") from None
        shapes_of = {name: t.shape for name, t in self.g.tensors.items()}
        for op in self.g.operations:
            if op.name == "external":
                self._external(op, values)
            elif op.name == "variable":
                self._variable(op)
            elif op.name == "constant":
                self._constant(op)
            else:
                self._convert(op, shapes_of)
            self._quantize_outputs(op)
        outs = [self.env[name] for name in self.g.outputs]
        self.graph.set_outputs(outs, list(self.g.outputs))
        return self.graph

    # -- checks before anything is read ------------------------------------------------------
    def _check_ops(self) -> None:
        missing = []
        for op in self.g.operations:
            if op.name in _DECLARATIONS:
                continue
            if op.name in REFUSED or CONVERTERS.find("", op.name, 1) is None:
                missing.append((op.name, first_output(op)))
        reasons = {**REFUSED, **self.unexpanded}
        report_unsupported(missing, f"in {self.files.name}", reasons=reasons)

    def _check_labels(self) -> None:
        if self.files.folder is None:
            return
        for op in self.g.operations:
            if op.name == "variable":
                try:
                    variable_path(self.files.folder, op.attribs["label"])
                except ModelLoadError as e:
                    name = op.outputs["output"]
                    raise ModelLoadError(f"{self.files.name}: variable {name!r}: {e}") from None

    # -- declarations ----------------------------------------------------------------------
    def _external(self, op: Any, values: dict[str, np.ndarray]) -> None:
        name = op.outputs["output"]
        dtype = NNEF_DTYPES[op.dtype]
        shape = self.g.tensors[name].shape
        if any(d < 0 for d in shape):
            raise ModelLoadError(f"{self.files.name}: input {name!r} has negative sizes {shape}")
        if name in values:
            self.env[name] = self.graph.constant(np.asarray(values[name], dtype), name)
        else:
            self.env[name] = self.graph.add_input(name, TensorType(dtype, tuple(shape)))

    def _variable(self, op: Any) -> None:
        name = op.outputs["output"]
        declared = self.g.tensors[name]
        shape = [int(d) for d in op.attribs["shape"]]
        label = op.attribs["label"]
        what = f"{self.files.name}: variable {name!r} (label {label!r})"
        if self.files.folder is None:
            raise ModelLoadError(
                f"{what} needs its .dat file; give the model folder or .tgz, not the bare "
                "graph.nnef"
            )
        path = variable_path(self.files.folder, label)
        dat = read_dat(path, shape, what, mmap=self.files.archive is None)
        self.files.read.append(path)
        quant = dict(declared.quantization or {})
        if quant and dat.data.dtype.kind == "f":
            # float values with a graph.quant entry: they go through its fragment, as IR ops
            # (one implementation of the fragments; constant folding evaluates them)
            value = self.graph.constant(np.asarray(dat.data, dtype=np.float32), name)
            self.env[name] = fake_quantize(self.builder, value, quant, what)
            return
        if quant:
            data = dequantize_variable(dat.data, quant, what)
        elif dat.quantized:
            raise ModelLoadError(
                f"{what}: its .dat holds quantized codes but graph.quant has no entry for it"
            )
        elif op.dtype != "scalar" and dat.item_type == "float":
            raise ModelLoadError(
                f"{what}: its .dat holds {dat.bits}-bit floats; a {op.dtype} variable needs "
                f"{'bools' if op.dtype == 'logical' else 'integers'}"
            )
        else:
            data = np.asarray(dat.data, dtype=NNEF_DTYPES[op.dtype].np)  # no copy when equal
        self.env[name] = self.graph.constant(data, name)

    def _constant(self, op: Any) -> None:
        name = op.outputs["output"]
        shape = [int(d) for d in op.attribs["shape"]]
        value = np.asarray(op.attribs["value"], dtype=NNEF_DTYPES[op.dtype].np)
        check_tensor(f"constant {name!r}", shape, value.itemsize)  # before np.full makes it
        if value.size == 1:
            data = np.full(shape, value.reshape(()))
        elif value.size == int(np.prod(shape)):
            data = value.reshape(shape)
        else:
            raise ModelLoadError(
                f"constant {name!r}: {value.size} values for shape {shape} (give 1 or all)"
            )
        self.env[name] = self.graph.constant(data, name)

    # -- operations ------------------------------------------------------------------------
    def _convert(self, op: Any, shapes: dict[str, Any]) -> None:
        ctx = NnefContext(op, self.env, self.builder, shapes)
        fn = CONVERTERS.find("", op.name, 1)
        assert fn is not None  # _check_ops ran first
        results = run_converter(ctx, fn)
        names = list(op.outputs.values())
        if len(results) != len(names):
            raise ctx.error(f"the converter gives {len(results)} of {len(names)} results")
        for name, value in zip(names, results):
            if isinstance(name, list):
                if not isinstance(value, list) or len(value) != len(name):
                    raise ctx.error(f"result array {name} has {len(value)} tensors")
                for n, v in zip(name, value):
                    self._bind(ctx, str(n), v, shapes)
            else:
                self._bind(ctx, str(name), value, shapes)

    def _bind(self, ctx: NnefContext, name: str, value: Value, shapes: dict[str, Any]) -> None:
        want = shapes.get(name)
        if want is not None and list(value.shape) != list(want):
            raise ctx.error(
                f"nnxc computes shape {list(value.shape)} for {name!r}, NNEF's shape inference "
                f"{list(want)}"
            )
        self.env[name] = value

    def _quantize_outputs(self, op: Any) -> None:
        """Activation entries of graph.quant: the tensor goes through the quantization
        fragment (quantize, then dequantize) where it is computed."""
        if op.name == "variable":
            return
        for name in op.outputs.values():
            for n in name if isinstance(name, list) else [name]:
                quant = self.g.tensors[str(n)].quantization
                if quant:
                    self.env[str(n)] = fake_quantize(
                        self.builder, self.env[str(n)], dict(quant), f"tensor {str(n)!r}"
                    )
