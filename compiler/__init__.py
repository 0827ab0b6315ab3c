"""nnxc: compile ONNX models to native code through TVM.

    import compiler
    m = compiler.compile("model.onnx")        # target="cpu" by default
    m.export("model.so")
    rt = compiler.load("model.so")            # on the artifact's device, or device="cuda:1"
    outs = rt.run({"data": x})                # numpy arrays or DLPack tensors (PyTorch, CuPy)

    compiler.tune("model.onnx", records="tuned", trials=200)   # MetaSchedule search
    compiler.compile("model.onnx", records="tuned")            # with the best kernels found

    print("\n".join(compiler.bench("model.onnx", threads=2, compare="onnxruntime").lines()))
    report = compiler.verify("model.onnx", bisect=True)        # outputs vs onnxruntime

``compiler.load`` needs only TVM's runtime: importing this package loads nothing heavy.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "bench", "compile", "load", "tune", "verify"]


def compile(
    model: Any, target: str = "cpu", input_shapes: dict | None = None, **options: Any
) -> Any:  # noqa: A001
    """Compile a model; see ``compiler.driver.compile``."""
    from compiler.driver import compile as _compile

    return _compile(model, target, input_shapes, **options)


def tune(model: Any, records: Any, trials: int, target: str = "cpu", **options: Any) -> Any:
    """Tune a model's kernels into a records folder; see ``compiler.driver.tune``."""
    from compiler.driver import tune as _tune

    return _tune(model, records, trials, target, **options)


def load(path: Any, threads: int | None = None, device: str | None = None) -> Any:
    """Load an artifact to run on ``device`` (``None``: the artifact's kind, device 0;
    ``"cpu"``, ``"cuda"``, ``"cuda:N"``); see ``compiler.runtime.load``."""
    from compiler.runtime import load as _load

    return _load(path, threads, device)


def bench(model: Any, **options: Any) -> Any:
    """Time a model or artifact (optionally against onnxruntime); see
    ``compiler.benchmark.bench``."""
    from compiler.benchmark import bench as _bench

    return _bench(model, **options)


def verify(
    model: Any, target: str = "cpu", input_shapes: dict | None = None, **options: Any
) -> Any:
    """Compile, run and compare every output with a reference (onnxruntime or nnxc's
    interpreter); ``bisect=True`` finds the first diverging node. See
    ``compiler.verification.verify``; returns a ``VerifyReport``."""
    from compiler.verification import verify as _verify

    return _verify(model, target, input_shapes, **options)
