"""Writing small NNEF models and checking nnxc on them: against an expected result, nnxc's
reference interpreter, and (where torch is installed) nnef-tools' PyTorch interpreter."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from oputil import run_tvm

from backends.reference import run_graph
from compiler.frontends.nnef import import_nnef

HAS_TORCH = importlib.util.find_spec("torch") is not None


def write_model(
    folder: Path,
    body: str,
    variables: dict[str, np.ndarray] | None = None,
    quant: str | None = None,
    extensions: str = "KHR_enable_fragment_definitions, KHR_enable_operator_expressions",
    fragments: str = "",
    quantized: set[str] = frozenset(),
) -> Path:
    """A model folder: ``body`` is the text inside ``graph G( inputs ) -> ( outputs )`` given
    as its first line, e.g. ``"graph G( x ) -> ( y )\\n{ x = external(...); y = relu(x); }"``.
    ``variables`` are written as ``<label>.dat`` (``quantized`` labels as qint/quint codes)."""
    import nnef

    folder.mkdir(parents=True, exist_ok=True)
    head = "version 1.0;\n" + (f"extension {extensions};\n" if extensions else "")
    (folder / "graph.nnef").write_text(head + fragments + "\n" + body + "\n")
    if quant is not None:
        (folder / "graph.quant").write_text(quant)
    for label, data in (variables or {}).items():
        path = folder / f"{label}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            nnef.write_tensor(f, np.asarray(data), quantized=label in quantized)
    return folder


def one_input_model(
    folder: Path, shape: list[int], lines: list[str], outs: list[str], **kw: Any
) -> Path:
    """A model of one float input ``x`` of ``shape``, the statements ``lines`` and the
    outputs ``outs`` (the other arguments as for ``write_model``)."""
    body = "\n".join(f"  {line};" for line in lines)
    return write_model(
        folder,
        f"graph G( x ) -> ( {', '.join(outs)} )\n{{\n"
        f"  x = external<scalar>(shape = {shape});\n{body}\n}}",
        **kw,
    )


def run_nnxc(folder: Path, feeds: dict[str, np.ndarray], **kwargs: Any) -> list[np.ndarray]:
    """The model's outputs from nnxc's reference interpreter and from TVM, checked equal."""
    graph, _, _ = import_nnef(folder, **kwargs)
    ref = list(run_graph(graph, {v.name: feeds[v.name] for v in graph.inputs}).values())
    got = run_tvm(graph, {v.name: feeds[v.name] for v in graph.inputs})
    for r, t in zip(ref, got, strict=True):
        np.testing.assert_allclose(t, r, rtol=1e-4, atol=1e-5)
        assert t.shape == r.shape
    return got


def run_oracle(folder: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """nnef-tools' PyTorch interpreter on the model (an independent implementation)."""
    from nnef_tools.interpreter.pytorch import Interpreter

    interp = Interpreter(str(folder), device="cpu")
    names = [t.name for t in interp.input_details()]
    outs = interp([feeds[n] for n in names])
    return [outs[t.name] for t in interp.output_details()]


def check_nnef(
    folder: Path,
    feeds: dict[str, np.ndarray],
    expected: list[np.ndarray] | None = None,
    oracle: bool = True,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> list[np.ndarray]:
    """nnxc (reference and TVM) == ``expected`` and, where torch is installed and ``oracle``,
    == nnef-tools' interpreter."""
    got = run_nnxc(folder, feeds)
    if expected is not None:
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
            assert g.shape == np.shape(e)
    if oracle and HAS_TORCH:
        for g, o in zip(got, run_oracle(folder, feeds), strict=True):
            np.testing.assert_allclose(g, o, rtol=rtol, atol=atol)
    return got
