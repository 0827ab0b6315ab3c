"""Building small Core ML models in tests and checking nnxc on them.

NeuralNetwork models come from coremltools' ``NeuralNetworkBuilder`` (``nn_builder``), ML
Programs from the MIL builder (``mb.program``) through ``ct.convert`` (``save_program``). As
coremltools cannot run models on Linux, ``check`` compares nnxc's reference interpreter and
its TVM build against expectations the test computes (numpy, or PyTorch where installed).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from oputil import run_tvm

from backends.reference import run_graph

logging.getLogger("coremltools").setLevel(logging.ERROR)
import coremltools as ct  # noqa: E402
from coremltools.models import datatypes  # noqa: E402
from coremltools.models.neural_network import NeuralNetworkBuilder  # noqa: E402

from compiler.frontends.coreml.importer import import_coreml  # noqa: E402


def nn_builder(
    inputs: Sequence[tuple[str, Sequence[int]]],
    outputs: Sequence[tuple[str, Sequence[int] | None]],
    exact: bool = True,
    mode: str | None = None,
) -> NeuralNetworkBuilder:
    """A builder for a float32 network; ``exact`` gives true ranks (EXACT mapping, spec 4),
    else the rank-5 mapping of pre-2019 models (shapes then are [C], [C, H, W] or rank 5);
    ``mode`` "classifier" or "regressor" for those model types."""
    ins = [(n, datatypes.Array(*s)) for n, s in inputs]
    outs = [(n, None if s is None else datatypes.Array(*s)) for n, s in outputs]
    return NeuralNetworkBuilder(ins, outs, mode=mode, disable_rank5_shape_mapping=exact)


def save_nn(builder: NeuralNetworkBuilder | Any, folder: Path, name: str = "model") -> Path:
    """The builder's spec (or a ``Model`` spec) as ``folder/name.mlmodel``."""
    spec = builder.spec if isinstance(builder, NeuralNetworkBuilder) else builder
    path = Path(folder) / f"{name}.mlmodel"
    ct.models.utils.save_spec(spec, str(path))
    return path


def save_program(
    prog: Any,
    folder: Path,
    precision: str = "fp32",
    target: Any = None,
    name: str = "model",
    **convert: Any,
) -> Path:
    """A MIL program (``@mb.program``) converted to an ML Program at ``folder/name.mlpackage``;
    ``precision`` fp32 or fp16 (coremltools' default)."""
    kwargs: dict[str, Any] = dict(convert)
    kwargs["compute_precision"] = (
        ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    )
    if target is not None:
        kwargs["minimum_deployment_target"] = target
    model = ct.convert(prog, convert_to="mlprogram", **kwargs)
    path = Path(folder) / f"{name}.mlpackage"
    model.save(str(path))
    return path


def check(
    path: Path | Any,
    feeds: Mapping[str, np.ndarray],
    expected: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    rtol: float = 1e-5,
    atol: float = 1e-5,
    tvm: bool = True,
    **import_kwargs: Any,
) -> list[np.ndarray]:
    """Import ``path``; its reference run and (``tvm``) its TVM build must equal ``expected``
    (by output order, or by output name). Returns the reference outputs."""
    graph, _ = import_coreml(path, **import_kwargs)
    feeds = {v.name: np.asarray(feeds[v.name]) for v in graph.inputs}
    if isinstance(expected, Mapping):
        expected = [expected[n] for n in graph.output_names]
    assert len(expected) == len(graph.outputs), graph.output_names
    ref = list(run_graph(graph, feeds).values())
    runs = [("reference", ref)] + ([("tvm", run_tvm(graph, feeds))] if tvm else [])
    for what, outs in runs:
        for name, got, want in zip(graph.output_names, outs, expected):
            want = np.asarray(want)
            assert got.shape == want.shape, f"{what} {name}: {got.shape} vs {want.shape}"
            np.testing.assert_allclose(
                got.astype(np.float64) if got.dtype.kind == "f" else got,
                want.astype(np.float64) if want.dtype.kind == "f" else want,
                rtol=rtol,
                atol=atol,
                err_msg=f"{what} output {name}",
            )
    return ref
