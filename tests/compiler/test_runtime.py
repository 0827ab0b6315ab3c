"""``compiler.load``: signature, input checks, running, and loading with TVM's runtime alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from compiler.artifact import TensorInfo
from compiler.errors import ArtifactError, InputError

pytest.register_assert_rewrite("models_fixture")

from models_fixture import REPO, relabel, tiny_expected  # noqa: E402

import compiler  # noqa: E402

pytest_plugins = ["models_fixture"]  # fixtures: tiny_so, tiny_so_static, two_input_so


def test_signature(tiny_so: Path, two_input_so: Path) -> None:
    rt = compiler.load(tiny_so)
    assert rt.inputs == [TensorInfo("x", ("N", 4), "float32")]
    assert rt.outputs == [TensorInfo("y", ("N", 3), "float32")]
    rt = compiler.load(two_input_so)
    assert [(t.name, t.shape, t.dtype) for t in rt.inputs] == [
        ("a", ("N", 2), "float32"),
        ("b", ("N", 2), "float32"),
        ("k", (3,), "int64"),
    ]
    assert [t.name for t in rt.outputs] == ["z", "c"]


@pytest.mark.parametrize("batch", [1, 6])
def test_run_symbolic_batch(tiny_so: Path, batch: int) -> None:
    rt = compiler.load(str(tiny_so), threads=1)
    x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
    out = rt.run({"x": x})
    assert isinstance(out, dict) and list(out) == ["y"]
    assert out["y"].dtype == np.float32 and out["y"].shape == (batch, 3)
    np.testing.assert_allclose(out["y"], tiny_expected(x), rtol=1e-5, atol=1e-6)


def test_run_non_contiguous_input(tiny_so: Path) -> None:
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32).T  # (5, 4) view
    assert not x.flags.c_contiguous
    out = compiler.load(tiny_so).run({"x": x})
    np.testing.assert_allclose(out["y"], tiny_expected(x), rtol=1e-5, atol=1e-6)


def test_run_several_inputs(two_input_so: Path) -> None:
    rt = compiler.load(two_input_so)
    a = np.random.default_rng(1).standard_normal((3, 2)).astype(np.float32)
    b = np.random.default_rng(2).standard_normal((3, 2)).astype(np.float32)
    k = np.array([4, -1, 7], np.int64)
    out = rt.run({"k": k, "b": b, "a": a})  # any order of the feeds
    np.testing.assert_allclose(out["z"], a + b, rtol=1e-6)
    np.testing.assert_array_equal(out["c"], k.astype(np.float32))


@pytest.mark.parametrize(
    ("feeds", "needles"),
    [
        ({"x": np.zeros((3, 5), np.float32)}, ["'x'", "[3, 5]", "x: float32[3, 4]"]),
        ({"x": np.zeros((2, 4), np.float32)}, ["[2, 4]"]),
        ({"x": np.zeros((3, 4), np.float64)}, ["float64", "x: float32[3, 4]"]),
        ({"x": np.zeros((3, 4), np.int32)}, ["int32"]),
        ({"x": np.zeros((3, 4), np.float32), "q": 1}, ["unknown input 'q'"]),
        ({}, ["missing input x: float32[3, 4]"]),
    ],
)
def test_bad_inputs(tiny_so_static: Path, feeds: dict, needles: list[str]) -> None:
    rt = compiler.load(tiny_so_static)
    with pytest.raises(InputError) as info:
        rt.run(feeds)
    for needle in needles:
        assert needle in str(info.value)


def test_symbolic_dim_binds_once_across_inputs(two_input_so: Path) -> None:
    rt = compiler.load(two_input_so)
    k = np.zeros(3, np.int64)
    with pytest.raises(InputError, match=r"'b' has shape \[4, 2\]"):
        rt.run({"a": np.zeros((3, 2), np.float32), "b": np.zeros((4, 2), np.float32), "k": k})
    with pytest.raises(InputError, match=r"'k' has shape \[4\]"):
        rt.run(
            {
                "a": np.zeros((3, 2), np.float32),
                "b": np.zeros((3, 2), np.float32),
                "k": np.zeros(4, np.int64),
            }
        )


def test_bad_threads(tiny_so: Path) -> None:
    with pytest.raises(InputError, match="threads"):
        compiler.load(tiny_so, threads=0)


def test_load_errors(tmp_path: Path, tiny_so: Path) -> None:
    with pytest.raises(ArtifactError, match="no such file"):
        compiler.load(tmp_path / "none.so")
    plain = tmp_path / "plain.so"
    plain.write_bytes(b"\x7fELF" + bytes(100))
    with pytest.raises(ArtifactError, match="not an nnxc artifact"):
        compiler.load(plain)
    # Metadata that says another target kind.
    from compiler.artifact import read_metadata

    meta = read_metadata(tiny_so)
    meta.target = {"kind": "cuda", "arch": "sm_90"}
    other = relabel(tiny_so, meta, tmp_path / "cuda.so")
    with pytest.raises(ArtifactError, match="cuda"):
        compiler.load(other)


def test_load_refuses_code_for_another_cpu(tiny_so: Path, tmp_path: Path) -> None:
    """An artifact whose metadata names another triple (an AArch64 build copied to this x86
    host) is refused by name, before TVM tries to dlopen it."""
    import platform

    from compiler.artifact import read_metadata

    triple = "riscv64-linux-gnu" if platform.machine() == "aarch64" else "aarch64-linux-gnu"
    meta = read_metadata(tiny_so)
    meta.target = {"kind": "llvm", "mtriple": triple}
    other = relabel(tiny_so, meta, tmp_path / "other_cpu.so")
    with pytest.raises(ArtifactError, match=triple):
        compiler.load(other)


RUNTIME_ONLY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import compiler

    rt = compiler.load(sys.argv[1], threads=1)
    x = np.arange(8, dtype=np.float32).reshape(2, 4) - 3
    out = rt.run({"x": x})
    import tvm.base

    heavy = ("onnx", "onnxruntime", "tvm.relax", "tvm.topi", "compiler.frontends",
             "compiler.driver", "passes", "backends")
    loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
    print(json.dumps({
        "y": out["y"].tolist(),
        "loaded": loaded,
        "libs": sorted(tvm.base._LOADED_LIBS),
        "runtime_only": bool(tvm.base._RUNTIME_ONLY),
    }))
    """
)


def test_load_with_runtime_library_only(tiny_so: Path) -> None:
    env = {**os.environ, "TVM_USE_RUNTIME_LIB": "1"}
    r = subprocess.run(
        [sys.executable, "-c", RUNTIME_ONLY_SCRIPT, str(tiny_so)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["runtime_only"] and report["libs"] == ["tvm_runtime"]
    assert report["loaded"] == [], f"compiler-side modules imported: {report['loaded']}"
    x = np.arange(8, dtype=np.float32).reshape(2, 4) - 3
    np.testing.assert_allclose(
        np.array(report["y"], np.float32), tiny_expected(x), rtol=1e-5, atol=1e-6
    )


def test_narrow_dtypes_through_an_artifact(tmp_path: Path) -> None:
    """A bfloat16 input and float8 / int4 outputs: the metadata keeps the IR dtype names, the
    runtime views ml_dtypes arrays as their TVM containers and the results back."""
    import ml_dtypes
    import onnx
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    nodes = [
        helper.make_node("Cast", ["x"], ["wide"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["wide", "wide"], ["sq"]),
        helper.make_node("Cast", ["sq"], ["f8"], to=TensorProto.FLOAT8E4M3FN),
        helper.make_node("Cast", ["x"], ["i4"], to=TensorProto.INT4),
        helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "narrow",
        [
            helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 5]),
            helper.make_tensor_value_info("q", TensorProto.FLOAT8E5M2, [3]),
        ],
        [
            helper.make_tensor_value_info("f8", TensorProto.FLOAT8E4M3FN, [2, 5]),
            helper.make_tensor_value_info("i4", TensorProto.INT4, [2, 5]),
            helper.make_tensor_value_info("qf", TensorProto.FLOAT, [3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 11
    path = tmp_path / "narrow.onnx"
    onnx.save(model, path)
    compiler.compile(str(path)).export(str(tmp_path / "narrow.so"))
    rt = compiler.load(tmp_path / "narrow.so", threads=1)
    assert [t.dtype for t in rt.inputs] == ["bfloat16", "float8_e5m2"]
    assert [t.dtype for t in rt.outputs] == ["float8_e4m3fn", "int4", "float32"]
    x = np.array([[0.3, -1.7, 25.0, -7.2, 3.9], [100, 0, -0.1, 6.6, -8]], ml_dtypes.bfloat16)
    q = np.array([1.5, -0.375, 57344], ml_dtypes.float8_e5m2)
    out = rt.run({"x": x, "q": q})
    with np.errstate(invalid="ignore"):  # 25 and 100 are out of int4's range: 0
        expected = ReferenceEvaluator(model).run(None, {"x": x, "q": q})
    for name, e in zip(["f8", "i4", "qf"], expected):
        got = out[name]
        assert got.dtype == e.dtype and got.shape == e.shape
        np.testing.assert_array_equal(got.view(f"u{e.itemsize}"), e.view(f"u{e.itemsize}"))
    with pytest.raises(InputError, match="bfloat16"):
        rt.run({"x": x.astype(np.float32), "q": q})
    # The same through DLPack: PyTorch's bfloat16 and float8 (stored as uint8 by TVM).
    import torch

    tx = torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16)
    tq = torch.from_numpy(q.view(np.uint8)).view(torch.float8_e5m2)
    for name, got in rt.run({"x": tx, "q": tq}).items():
        np.testing.assert_array_equal(got.view(np.uint8), out[name].view(np.uint8))


def test_damaged_artifact_is_refused_before_loading(tiny_so: Path, tmp_path: Path) -> None:
    """A byte flipped inside the library: the checksum refuses it by name; the dynamic loader
    never sees it (a damaged ELF image can crash the process that maps it)."""
    data = bytearray(tiny_so.read_bytes())
    data[len(data) // 3] ^= 0xFF
    damaged = tmp_path / "damaged.so"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="damaged.so: the artifact is damaged"):
        compiler.load(damaged)


def test_threads_share_a_runtime(tiny_so: Path) -> None:
    """Eight threads running one loaded model at once each get their own inputs' outputs."""
    import threading

    rt = compiler.load(tiny_so, threads=1)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            rng = np.random.default_rng(seed)
            for _ in range(25):
                x = rng.standard_normal((int(rng.integers(1, 9)), 4)).astype(np.float32)
                np.testing.assert_allclose(
                    rt.run({"x": x})["y"], tiny_expected(x), rtol=1e-5, atol=1e-6
                )
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in threads)


def test_concurrent_compiles_leave_one_whole_artifact(tiny_onnx: Path, tmp_path: Path) -> None:
    """Two ``nnxc compile`` processes writing one path: each writes a private temporary file
    and renames it into place, so the path holds one whole artifact and nothing else is left."""
    nnxc = Path(sys.executable).with_name("nnxc")
    out = tmp_path / "same.so"
    cmds = [
        [str(nnxc), "compile", str(tiny_onnx), "-o", str(out), "--input-shape", f"x={n},4"]
        for n in (2, 5)
    ]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in cmds]
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output.decode()
    assert [p.name for p in tmp_path.iterdir()] == ["same.so"]
    rt = compiler.load(out)  # the checksum holds: no mix of the two
    (batch,) = {rt.inputs[0].shape[0]} & {2, 5}
    x = np.ones((batch, 4), np.float32)
    np.testing.assert_allclose(rt.run({"x": x})["y"], tiny_expected(x), rtol=1e-5)


# -- run-time checks (backends/tvm/lowering/checks.py): bad data is an InputError, no crash ------
BAD_DATA_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import compiler
    from compiler.errors import InputError

    rt = compiler.load(sys.argv[1], threads=1)
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    good = {"x": x, "i": np.array([4, -5], np.int64), "a": np.array([7, -7], np.int32),
            "b": np.array([2, -1], np.int32)}
    report = {"errors": []}
    for name, value in (("i", np.array([1 << 40, 0])), ("i", np.array([0, -6])),
                        ("b", np.array([3, 0], np.int32))):
        try:
            rt.run({**good, name: value.astype(good[name].dtype)})
            report["errors"].append(None)
        except InputError as e:
            report["errors"].append(str(e))
    out = rt.run(good)
    report["y"], report["q"] = out["y"].tolist(), out["q"].tolist()
    import tvm.base

    report["runtime_only"] = bool(tvm.base._RUNTIME_ONLY)
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def bad_data_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gather (an index input) and integer Div (a divisor input) in one artifact."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Gather", ["x", "i"], ["y"], name="lookup", axis=0),
        helper.make_node("Div", ["a", "b"], ["q"], name="ratio"),
    ]
    info = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "bad_data",
        [
            info("x", TensorProto.FLOAT, [5, 2]),
            info("i", TensorProto.INT64, [2]),
            info("a", TensorProto.INT32, [2]),
            info("b", TensorProto.INT32, [2]),
        ],
        [info("y", TensorProto.FLOAT, [2, 2]), info("q", TensorProto.INT32, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path_factory.mktemp("bad_data") / "bad_data.so"
    compiler.compile(model).export(path)
    return path


def test_bad_data_raises_input_error_and_the_process_survives(bad_data_so: Path) -> None:
    """In a child process loading with TVM's runtime alone (a crash would be a signal there,
    not a failed assertion here): an index far out of range (a segfault in TOPI's gather), a
    negative one past the axis, an integer division by zero (SIGFPE) each raise InputError
    naming the node; the same Runtime then runs good data."""
    env = {**os.environ, "TVM_USE_RUNTIME_LIB": "1"}
    r = subprocess.run(
        [sys.executable, "-c", BAD_DATA_SCRIPT, str(bad_data_so)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    report = json.loads(r.stdout.strip().splitlines()[-1])
    gather = "gather node 'lookup': an index is out of range [-5, 5) on axis 0"
    assert report["errors"] == [gather, gather, "div node 'ratio': integer division by zero"]
    assert report["y"] == [[8.0, 9.0], [0.0, 1.0]]
    assert report["q"] == [3, 7]
    assert report["runtime_only"]


def test_other_run_errors_are_not_input_errors(bad_data_so: Path) -> None:
    """Only a failed check becomes an InputError; ``_call`` re-raises anything else."""
    rt = compiler.load(bad_data_so)

    def failing(*args):
        raise RuntimeError("device lost")

    rt._main = failing
    feeds = {
        "x": np.zeros((5, 2), np.float32),
        "i": np.zeros(2, np.int64),
        "a": np.ones(2, np.int32),
        "b": np.ones(2, np.int32),
    }
    with pytest.raises(RuntimeError, match="device lost"):
        rt.run(feeds)


@pytest.fixture(scope="module")
def passthrough_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """float32[1, 16] x -> y = relu(x) (fresh), i = x (the input itself)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Identity", ["x"], ["i"])],
        "passthrough",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 16]) for n in ("y", "i")],
    )
    path = tmp_path_factory.mktemp("passthrough") / "m.so"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    compiler.compile(model).export(path)
    return path


def _misaligned(values: np.ndarray) -> np.ndarray:
    """A copy 16 bytes past a 64-byte boundary: the runtime must copy it (into its staging
    buffer for small inputs)."""
    buf = np.empty(values.size + 32, values.dtype)
    at = (-buf.ctypes.data % 64 + 16) // values.itemsize
    out = buf[at : at + values.size].reshape(values.shape)
    out[...] = values
    assert out.ctypes.data % 64 == 16
    return out


def test_small_inputs_staged_across_runs(passthrough_so: Path) -> None:
    rt = compiler.load(passthrough_so, threads=1)
    xs = [np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16) * k for k in (1, -2, 3)]
    read_only = _misaligned(xs[2])
    read_only.flags.writeable = False
    outs = [
        rt.run({"x": _misaligned(xs[0])}),
        rt.run({"x": xs[1].T.copy().T}),
        rt.run({"x": read_only}),
    ]
    for x, out in zip(xs, outs):  # each run's outputs are still its own
        np.testing.assert_array_equal(out["y"], np.maximum(x, 0))
        np.testing.assert_array_equal(out["i"], x)


def test_device_outputs_never_alias_a_staging_buffer(passthrough_so: Path) -> None:
    """With ``as_numpy=False`` the input passed through comes back as a TVM tensor: it must not
    be a buffer the next run overwrites."""
    rt = compiler.load(passthrough_so, threads=1)
    x1 = np.full((1, 16), 1.0, np.float32)
    first = rt.run({"x": _misaligned(x1)}, as_numpy=False)
    rt.run({"x": _misaligned(np.full((1, 16), 2.0, np.float32))})
    rt.run({"x": _misaligned(np.full((1, 16), 3.0, np.float32))}, as_numpy=False)
    np.testing.assert_array_equal(np.from_dlpack(first["i"]), x1)
