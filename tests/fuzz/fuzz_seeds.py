"""Seed models the fuzzer mutates: small real models of every frontend, written to a folder.

Seeds are built in code (no binary files in the repository): hand-written small models that
cover the op families (convolutions, shape ops with constant operands, dynamic dims, control
flow, recurrent cells), and, for the campaign, the small variants of the benchmark zoo (the
``--small`` Core ML/ONNX exports of benchmarks/coreml_models.py and benchmarks/zoo.py), which
are the same architectures as the light models at a fraction of the size.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRONTENDS = ("onnx", "nnef", "coreml")


@dataclass(frozen=True)
class Seed:
    """One seed model: which frontend reads it, its kind (how it is mutated) and its path."""

    frontend: str
    kind: str
    """onnx | nnef-folder | nnef-tgz | nnef-text | mlmodel | mlpackage"""
    name: str
    path: Path


# -- ONNX --------------------------------------------------------------------------------------
def _onnx_models() -> dict[str, object]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name: str, a: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(a), name)

    def model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
        g = helper.make_graph(nodes, "seed", inputs, outputs, initializer=list(inits))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m

    f32 = TensorProto.FLOAT
    vi = helper.make_tensor_value_info
    n = helper.make_node
    models: dict[str, object] = {}

    models["cnn"] = model(
        [
            n("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1]),
            n("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"], name="bn"),
            n("Relu", ["bn"], ["r"], name="relu"),
            n("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
            n("GlobalAveragePool", ["p"], ["gp"], name="gap"),
            n("Flatten", ["gp"], ["f"], name="flatten", axis=1),
            n("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
        ],
        [vi("x", f32, [1, 3, 8, 8])],
        [vi("y", f32, [1, 5])],
        [
            init("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
            init("b", np.zeros(4, np.float32)),
            init("g", np.ones(4, np.float32)),
            init("be", np.zeros(4, np.float32)),
            init("mu", np.zeros(4, np.float32)),
            init("var", np.ones(4, np.float32)),
            init("fw", rng.standard_normal((5, 4)).astype(np.float32)),
            init("fb", np.zeros(5, np.float32)),
        ],
    )
    models["shapes"] = model(
        [
            n("Reshape", ["x", "shape"], ["r"], name="reshape"),
            n("Transpose", ["r"], ["t"], name="transpose", perm=[0, 2, 1]),
            n("Slice", ["t", "starts", "ends", "axes"], ["s"], name="slice"),
            n("Gather", ["s", "idx"], ["g"], name="gather", axis=1),
            n("Unsqueeze", ["g", "uaxes"], ["u"], name="unsqueeze"),
            n("Concat", ["u", "u"], ["c"], name="concat", axis=0),
            n("Expand", ["c", "eshape"], ["e"], name="expand"),
            n("Pad", ["e", "pads"], ["pd"], name="pad", mode="constant"),
            n("ReduceSum", ["pd", "raxes"], ["y"], name="reduce", keepdims=0),
        ],
        [vi("x", f32, [2, 12])],
        [vi("y", f32, None)],
        [
            init("shape", np.array([2, 3, 4], np.int64)),
            init("starts", np.array([0], np.int64)),
            init("ends", np.array([3], np.int64)),
            init("axes", np.array([2], np.int64)),
            init("idx", np.array([0, 2, 1], np.int64)),
            init("uaxes", np.array([0], np.int64)),
            init("eshape", np.array([2, 2, 3, 3], np.int64)),
            init("pads", np.array([0, 0, 1, 0, 0, 0, 1, 0], np.int64)),
            init("raxes", np.array([1], np.int64)),
        ],
    )
    models["dynamic"] = model(
        [
            n("MatMul", ["x", "w"], ["m"], name="matmul"),
            n("Add", ["m", "b"], ["a"], name="add"),
            n("Softmax", ["a"], ["s"], name="softmax", axis=-1),
            n("Mul", ["s", "zero"], ["z"], name="zeros"),
            n("Greater", ["s", "z"], ["gt"], name="greater"),
            n("Where", ["gt", "s", "z"], ["wh"], name="where"),
            n("Cast", ["wh"], ["ci"], name="cast", to=TensorProto.INT32),
            n("Cast", ["ci"], ["cf"], name="cast_back", to=TensorProto.FLOAT),
            n("TopK", ["cf", "k"], ["y", "yi"], name="topk", axis=-1),
            n("Resize", ["x4", "", "scales"], ["rz"], name="resize", mode="nearest"),
        ],
        [vi("x", f32, ["N", 6]), vi("x4", f32, [1, 1, 2, 4])],
        [vi("y", f32, None), vi("yi", TensorProto.INT64, None), vi("rz", f32, None)],
        [
            init("w", rng.standard_normal((6, 4)).astype(np.float32)),
            init("b", np.zeros(4, np.float32)),
            init("k", np.array([2], np.int64)),
            init("zero", np.array(0, np.float32)),
            init("scales", np.array([1, 1, 2, 2], np.float32)),
        ],
    )
    then_g = helper.make_graph(
        [n("Relu", ["x"], ["t"], name="then_relu")], "then", [], [vi("t", f32, [2, 3])]
    )
    else_g = helper.make_graph(
        [n("Neg", ["x"], ["e"], name="else_neg")], "else", [], [vi("e", f32, [2, 3])]
    )
    body = helper.make_graph(
        [
            n("Add", ["acc", "x"], ["acc_out"], name="body_add"),
            n("Identity", ["cond"], ["cond_out"], name="body_cond"),
        ],
        "body",
        [
            vi("i", TensorProto.INT64, []),
            vi("cond", TensorProto.BOOL, []),
            vi("acc", f32, [2, 3]),
        ],
        [vi("cond_out", TensorProto.BOOL, []), vi("acc_out", f32, [2, 3])],
    )
    models["control"] = model(
        [
            n("If", ["c"], ["yi"], name="if", then_branch=then_g, else_branch=else_g),
            n("Loop", ["trips", "", "yi"], ["y"], name="loop", body=body),
        ],
        [vi("x", f32, [2, 3]), vi("c", TensorProto.BOOL, [])],
        [vi("y", f32, [2, 3])],
        [init("trips", np.array(3, np.int64))],
    )
    hidden, inputs = 4, 3
    models["lstm"] = model(
        [n("LSTM", ["x", "W", "R", "B"], ["y", "h", "c"], name="lstm", hidden_size=hidden)],
        [vi("x", f32, [5, 1, inputs])],
        [vi("y", f32, None), vi("h", f32, None), vi("c", f32, None)],
        [
            init("W", rng.standard_normal((1, 4 * hidden, inputs)).astype(np.float32)),
            init("R", rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32)),
            init("B", np.zeros((1, 8 * hidden), np.float32)),
        ],
    )
    return models


def _zoo_onnx() -> dict[str, object]:
    from benchmarks.zoo import build

    return {
        "zoo-mobilenet": build("mobilenet", size=32, width=0.25, classes=10),
        "zoo-transformer": build("transformer", layers=1, d_model=16, heads=2, seq=4),
        "zoo-unet": build("unet", size=16, base=2),
        "zoo-lstm": build("lstm", layers=1, inputs=4, hidden=4, seq=3),
    }


# -- NNEF --------------------------------------------------------------------------------------
NNEF_TEXTS = {
    "cnn": (
        "version 1.0;\n\n"
        "graph G( x ) -> ( y )\n{\n"
        "  x = external<scalar>(shape = [1, 3, 8, 8]);\n"
        "  w = variable<scalar>(shape = [4, 3, 3, 3], label = 'conv/w');\n"
        "  b = variable<scalar>(shape = [1, 4], label = 'conv/b');\n"
        "  c = conv(x, w, b, padding = [(1, 1), (1, 1)], stride = [1, 1]);\n"
        "  r = relu(c);\n"
        "  p = max_pool(r, size = [1, 1, 2, 2], stride = [1, 1, 2, 2], border = 'ignore');\n"
        "  f = reshape(p, shape = [1, -1]);\n"
        "  fw = variable<scalar>(shape = [5, 64], label = 'fc/w');\n"
        "  m = matmul(f, fw, transposeB = true);\n"
        "  s = slice(m, axes = [1], begin = [0], end = [4]);\n"
        "  y = softmax(s, axes = [1]);\n"
        "}\n"
    ),
    "ops": (
        "version 1.0;\nextension KHR_enable_fragment_definitions, "
        "KHR_enable_operator_expressions;\n\n"
        "fragment twice( a: tensor<scalar> ) -> ( b: tensor<scalar> )\n{\n"
        "  b = add(a, a);\n}\n\n"
        "graph G( x, z ) -> ( y, q )\n{\n"
        "  x = external<scalar>(shape = [2, 3, 4]);\n"
        "  z = external<scalar>(shape = [2, 12]);\n"
        "  t = transpose(x, axes = [0, 2, 1]);\n"
        "  u = unsqueeze(t, axes = [0]);\n"
        "  v = squeeze(u, axes = [0]);\n"
        "  c = concat([v, v], axis = 1);\n"
        "  [s0, s1] = split(c, axis = 1, ratios = [1, 1]);\n"
        "  d = twice(s0);\n"
        "  k = sum_reduce(d, axes = [2]);\n"
        "  y = clamp(k, 0.0, 6.0);\n"
        "  r = reshape(z, shape = [2, 3, 4]);\n"
        "  q = select(r > 0.0, r, 0.5 * r);\n"
        "}\n"
    ),
}


def _nnef_variables() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "conv/w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv/b": np.zeros((1, 4), np.float32),
        "fc/w": rng.standard_normal((5, 64)).astype(np.float32),
    }


def _write_nnef_folder(folder: Path, text: str, variables: dict[str, np.ndarray]) -> Path:
    import nnef

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "graph.nnef").write_text(text)
    for label, data in variables.items():
        path = folder / f"{label}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            nnef.write_tensor(f, data)
    return folder


def plain_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def tar_folder(folder: Path, gz: bool = True) -> bytes:
    """The folder's files as a (gzipped) tar archive, members relative to the folder; the
    same bytes for the same files (no times or owners: mutations draw from these bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            arcname = path.relative_to(folder).as_posix()
            tar.add(path, arcname=arcname, recursive=False, filter=plain_member)
    return gzip.compress(buf.getvalue(), mtime=0) if gz else buf.getvalue()


# -- Core ML -----------------------------------------------------------------------------------
def _coreml(out: Path) -> list[Seed]:
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    rng = np.random.default_rng(2)
    seeds = []
    b = NeuralNetworkBuilder(
        [("x", datatypes.Array(1, 3, 8, 8))],
        [("y", None)],
        disable_rank5_shape_mapping=True,
    )
    b.add_convolution(
        "conv", 3, 4, 3, 3, 1, 1, "same", 1, rng.standard_normal((3, 3, 3, 4)), None, False,
        input_name="x", output_name="c",
    )  # fmt: skip
    b.add_activation("relu", "RELU", "c", "r")
    b.add_pooling("pool", 2, 2, 2, 2, "MAX", "VALID", input_name="r", output_name="p")
    b.add_flatten_to_2d("flat", "p", "f")
    b.add_inner_product(
        "fc", rng.standard_normal((5, 64)), None, 64, 5, False, input_name="f", output_name="i"
    )
    b.add_reshape_static("reshape", "i", "rs", [1, 5])
    b.add_softmax_nd("softmax", "rs", "y", axis=-1)
    path = out / "cnn.mlmodel"
    ct.models.utils.save_spec(b.spec, str(path))
    seeds.append(Seed("coreml", "mlmodel", "cnn", path))

    b = NeuralNetworkBuilder(
        [("x", datatypes.Array(2, 6))], [("y", None)], disable_rank5_shape_mapping=True
    )
    b.add_transpose("t", [1, 0], "x", "t")
    b.add_concat_nd("cat", ["t", "t"], "c", axis=0)
    b.add_slice_static("sl", "c", "s", [0, 0], [4, 2], [1, 1], [False, False], [False, False])
    b.add_reduce_sum("sum", "s", "r", axes=[1], keepdims=True)
    b.add_elementwise("add", ["r", "r"], "y", "ADD")
    path = out / "shapes.mlmodel"
    ct.models.utils.save_spec(b.spec, str(path))
    seeds.append(Seed("coreml", "mlmodel", "shapes", path))

    w = rng.standard_normal((8, 16)).astype(np.float32)
    cw = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 16)), mb.TensorSpec(shape=(1, 3, 8, 8))])
    def prog(x, img):
        h = mb.relu(x=mb.add(x=mb.matmul(x=x, y=w.T), y=np.float32(1)))
        h = mb.reshape(x=h, shape=[4, 4])
        h = mb.softmax(x=mb.transpose(x=h, perm=[1, 0]), axis=-1)
        c = mb.conv(x=img, weight=cw, pad_type="same")
        c = mb.max_pool(x=c, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid")
        return h, mb.reduce_mean(x=c, axes=[2, 3])

    model = ct.convert(prog, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32)
    path = out / "prog.mlpackage"
    model.save(str(path))
    _fixed_manifest_ids(path)
    seeds.append(Seed("coreml", "mlpackage", "prog", path))
    return seeds


def _fixed_manifest_ids(package: Path) -> None:
    """Replace the random item ids of a package's manifest by fixed ones, so that the same
    mutations give the same inputs on every run."""
    manifest = package / "Manifest.json"
    text = manifest.read_text()
    ids = sorted(set(re.findall(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}", text)))
    items = json.loads(text)["itemInfoEntries"]
    for old in ids:
        name = items[old]["name"] if old in items else old
        text = text.replace(old, str(uuid.uuid5(uuid.NAMESPACE_URL, name)))
    manifest.write_text(text)


def _zoo_coreml(out: Path) -> list[Seed]:
    from benchmarks.coreml_models import export

    seeds = []
    for name in ("resnet", "transformer", "lstm"):
        files = export(name, out / "zoo-coreml", small=True).files
        seeds.append(Seed("coreml", "mlmodel", f"zoo-{name}", files["mlmodel"]))
        _fixed_manifest_ids(files["mlpackage"])
        seeds.append(Seed("coreml", "mlpackage", f"zoo-{name}", files["mlpackage"]))
        seeds.append(Seed("onnx", "onnx", f"zoo-coreml-{name}", files["onnx"]))
    return seeds


# -- all ---------------------------------------------------------------------------------------
def build_seeds(out: Path, frontends: tuple[str, ...] = FRONTENDS, zoo: bool = False) -> list[Seed]:
    """Write the seeds of ``frontends`` under ``out`` (reused when present); ``zoo`` adds the
    small zoo models (seconds to a minute more: PyTorch exports and Core ML conversions)."""
    import onnx

    out.mkdir(parents=True, exist_ok=True)
    seeds: list[Seed] = []
    if "onnx" in frontends:
        models = {**_onnx_models(), **(_zoo_onnx() if zoo else {})}
        for name, m in models.items():
            path = out / f"{name}.onnx"
            if not path.exists():
                onnx.save(m, str(path))
            seeds.append(Seed("onnx", "onnx", name, path))
    if "nnef" in frontends:
        variables = _nnef_variables()
        for name, text in NNEF_TEXTS.items():
            used = {k: v for k, v in variables.items() if f"'{k}'" in text}
            folder = _write_nnef_folder(out / f"{name}.nnef", text, used)
            seeds.append(Seed("nnef", "nnef-folder", name, folder))
            tgz = out / f"{name}.nnef.tgz"
            tgz.write_bytes(tar_folder(folder))
            seeds.append(Seed("nnef", "nnef-tgz", name, tgz))
            if not used:
                seeds.append(Seed("nnef", "nnef-text", name, folder / "graph.nnef"))
    if "coreml" in frontends:
        seeds.extend(_coreml(out))
        if zoo:
            seeds.extend(s for s in _zoo_coreml(out) if s.frontend in frontends)
    return seeds
