"""The converted-model corpus: ONNX models (the light model-zoo architectures with random
weights, the zoo models of benchmarks/zoo.py) converted to NNEF by nnef-tools, as a folder and
as a ``.tgz``, made on first use and kept as files (tests keep them for one pytest session,
``benchmarks/nnef_vs_onnx.py`` under its work folder).

nnef-tools needs every tensor's shape: the light models are ONNX IR version 3 files, whose
initializers shape inference ignores unless they are also graph inputs, so each ONNX model is
first cleaned (initializers no longer inputs, unused ones dropped, IR version 7, shapes
inferred). The cleaned file is the ONNX original the tests compare with.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

CONVERT_TIMEOUT_S = 1200


class ConversionFailed(Exception):
    """nnef-tools could not convert the model (the message is its last error line)."""


@dataclass(frozen=True)
class Converted:
    onnx: Path
    """The cleaned ONNX model both files were converted from."""
    folder: Path
    tgz: Path


def clean_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` as nnef-tools can read it: initializers are not graph inputs, unused ones
    are dropped (the light models carry unused ``*__SHAPE`` ones), IR version at least 7,
    every value's shape inferred."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output}
    names = {t.name for t in graph.initializer}
    inits = [t for t in graph.initializer if t.name in used]
    inputs = [i for i in graph.input if i.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.input[:]
    graph.input.extend(inputs)
    model.ir_version = max(model.ir_version, 7)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def convert(src: Path, out: Path) -> Converted:
    """``src`` (an .onnx file) converted by nnef-tools (``--compress``) into ``out``.nnef.tgz,
    and that unpacked into the folder ``out``.nnef (one conversion for both); raises
    ConversionFailed with nnef-tools' error."""
    folder = out.with_name(out.name + ".nnef")
    tgz = out.with_name(out.name + ".nnef.tgz")
    if not tgz.exists():
        tmp = out.with_name("tmp-" + folder.name)  # --compress writes tmp-....nnef.tgz
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "nnef_tools.convert",
                "--input-format",
                "onnx",
                "--output-format",
                "nnef",
                "--keep-io-names",
                "--compress",
                "1",
                "--input-model",
                str(src),
                "--output-model",
                str(tmp),
            ],
            capture_output=True,
            text=True,
            timeout=CONVERT_TIMEOUT_S,
        )
        written = tmp.with_name(tmp.name + ".tgz")
        if done.returncode != 0 or not written.exists():
            raise ConversionFailed(_why(done))
        written.replace(tgz)
    if not folder.exists():
        tmp_folder = out.with_name("tmp-" + folder.name)
        shutil.rmtree(tmp_folder, ignore_errors=True)
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp_folder, filter="data")
        tmp_folder.replace(folder)
    return Converted(src, folder, tgz)


def _why(done: subprocess.CompletedProcess[str]) -> str:
    """nnef-tools' reasons: its 'Conversion of operator ...' lines, else its last line."""
    lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    reasons = list(dict.fromkeys(ln for ln in lines if ln.startswith("Conversion of operator")))
    return "; ".join(reasons) or (lines[-1] if lines else f"exit status {done.returncode}")


def spell_out_layernorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with each LayerNormalization (which nnef-tools does not convert) written as
    the ONNX ops of its definition: mean and variance over the normalized axis (ReduceMean
    with ``axes``, before opset 18), then scale and bias. Only the last axis is normalized
    here, as in the zoo transformer."""
    from onnx import helper, numpy_helper

    graph = model.graph
    nodes = []
    for k, n in enumerate(graph.node):
        if n.op_type != "LayerNormalization":
            nodes.append(n)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        assert attrs.get("axis", -1) == -1 and len(n.output) == 1, n
        x, scale, bias = n.input
        p = f"{n.name or 'ln'}.{k}."
        eps = numpy_helper.from_array(np.array(attrs.get("epsilon", 1e-5), np.float32), p + "eps")
        graph.initializer.append(eps)
        nodes += [
            helper.make_node("ReduceMean", [x], [p + "mean"], axes=[-1], keepdims=1),
            helper.make_node("Sub", [x, p + "mean"], [p + "d"]),
            helper.make_node("Mul", [p + "d", p + "d"], [p + "d2"]),
            helper.make_node("ReduceMean", [p + "d2"], [p + "var"], axes=[-1], keepdims=1),
            helper.make_node("Add", [p + "var", p + "eps"], [p + "ve"]),
            helper.make_node("Sqrt", [p + "ve"], [p + "sd"]),
            helper.make_node("Div", [p + "d", p + "sd"], [p + "n"]),
            helper.make_node("Mul", [p + "n", scale], [p + "ns"]),
            helper.make_node("Add", [p + "ns", bias], [n.output[0]]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return model


def nnef_op_histogram(folder: Path, expanded: bool = True) -> Counter[str]:
    """The ops of an NNEF model's graph: as nnxc sees them (LOWERED and custom fragments
    expanded by the parser) or, with ``expanded=False``, as written."""
    import nnef

    from compiler.frontends.nnef.files import open_model
    from compiler.frontends.nnef.importer import parse

    with open_model(folder) as files:
        if expanded:
            g, _ = parse(files)
        else:
            g = nnef.parse_file(str(files.graph))
    return Counter(op.name for op in g.operations)


class NnefModels:
    """Converted models, made on first use and kept for the whole session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._failed: dict[str, str] = {}

    def onnx(self, name: str) -> Path:
        """The cleaned ONNX file of a light model (``squeezenet``) or zoo model (``zoo:unet``;
        ``zoo:transformer-spelled-ln``: with LayerNormalization spelled out)."""
        out = self.folder / f"{name.replace(':', '_')}.onnx"
        if not out.exists():
            model = clean_onnx(_source(name))
            tmp = out.with_suffix(".tmp")
            onnx.save(model, tmp)
            tmp.replace(out)
        return out

    def get(self, name: str) -> Converted:
        if name in self._failed:
            raise ConversionFailed(self._failed[name])
        src = self.onnx(name)
        try:
            return convert(src, src.with_suffix(""))
        except ConversionFailed as e:
            self._failed[name] = str(e)
            raise


def _source(name: str) -> onnx.ModelProto:
    from benchmarks.models import light_path, randomized

    if name.startswith("zoo:"):
        from benchmarks.zoo import build

        zoo, _, variant = name[4:].partition("-")
        model = build(zoo)
        if variant == "spelled-ln":
            model = spell_out_layernorm(model)
        elif variant:
            raise ValueError(f"unknown variant {variant!r} of {zoo}")
        return model
    return randomized(onnx.load(str(light_path(name))), seed=0)


if __name__ == "__main__":  # python benchmarks/nnef_models.py DIR [NAMES...]: the op report
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.models import LIGHT_MODELS
    from benchmarks.zoo import ZOO_MODELS

    models = NnefModels(Path(sys.argv[1]))
    models.folder.mkdir(parents=True, exist_ok=True)
    everything = [*LIGHT_MODELS, *(f"zoo:{z}" for z in ZOO_MODELS), "zoo:transformer-spelled-ln"]
    for name in sys.argv[2:] or everything:
        t0 = time.perf_counter()
        try:
            c = models.get(name)
        except (ConversionFailed, subprocess.TimeoutExpired) as e:
            print(f"{name}: conversion FAILED: {e}", flush=True)
            continue
        took = time.perf_counter() - t0
        written = nnef_op_histogram(c.folder, expanded=False)
        seen = nnef_op_histogram(c.folder)
        print(f"{name}: converted in {took:.0f} s", flush=True)
        print("  as written: " + ", ".join(f"{op} {n}" for op, n in written.most_common()))
        print("  nnxc sees:  " + ", ".join(f"{op} {n}" for op, n in seen.most_common()))
