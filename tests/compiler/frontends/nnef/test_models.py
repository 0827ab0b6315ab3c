"""The converted-model corpus: each light model-zoo architecture (random weights) and zoo model,
converted from ONNX to NNEF by nnef-tools, gives nnxc the same IR after the pass pipeline as
the ONNX original (op histograms); a fast subset, compiled by TVM from the ``.nnef.tgz``, gives
onnxruntime's outputs on the ONNX original.

Slow (``@pytest.mark.slow``): the models whose conversion and import take long on 2 cores
(nnef-tools writes a .dat per weight; AlexNet, VGG-19 and ZFNet-512 carry 240-550 MB of them).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.register_assert_rewrite("models_fixture", "nnef_models")

from models_fixture import ort_run  # noqa: E402
from nnef_models import ConversionFailed  # noqa: E402

from benchmarks.models import LIGHT_MODELS, example_input  # noqa: E402
from benchmarks.zoo import ZOO_MODELS  # noqa: E402

pytest_plugins = ["nnef_models"]  # fixture: nnef_models

MODELS = [*LIGHT_MODELS, *(f"zoo:{z}" for z in ZOO_MODELS)]

SLOW = {
    "bvlc_alexnet",
    "densenet121",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "vgg19",
    "zfnet512",
    "zoo:unet",
    "zoo:lstm",
}

FAST_OUTPUTS = ("squeezenet", "zoo:mobilenet", "zoo:transformer")
"""Compiled from the .nnef.tgz and run, against onnxruntime on the ONNX original."""

CONVERSION_FAILURES: dict[str, str] = {}
"""Models nnef-tools does not convert, with the reason (an expected failure: the test fails
if one of them converts, so the list stays true)."""

IR_DIFFERENCES: dict[str, dict[str, int]] = {}
"""Per model, op -> (count from NNEF) - (count from ONNX) where the two IRs differ for a reason
the comment gives; every other op must have the same count."""

# nnxc vs onnxruntime: max abs error relative to the output's largest magnitude (as
# tests/test_light_models.py).
TOLERANCE = 1e-3


def _param(name: str) -> object:
    marks = [pytest.mark.slow] if name in SLOW else []
    if name in CONVERSION_FAILURES:
        marks.append(pytest.mark.xfail(reason=CONVERSION_FAILURES[name], strict=True))
    return pytest.param(name, marks=marks)


def _ir_histogram(model: Path) -> Counter[str]:
    from compiler.driver import import_model, optimize
    from compiler.ir.graph import walk
    from compiler.options import CompileOptions

    graph, _ = import_model(model)
    optimize(graph, CompileOptions())
    return Counter(node.op for node in walk(graph))


def _converted(nnef_models, name: str):
    try:
        return nnef_models.get(name)
    except ConversionFailed as e:
        pytest.fail(f"{name}: nnef-tools does not convert it: {e}")


@pytest.mark.parametrize("name", [_param(n) for n in MODELS])
def test_same_ir_as_onnx(name: str, nnef_models) -> None:
    converted = _converted(nnef_models, name)
    from_onnx = _ir_histogram(converted.onnx)
    from_nnef = _ir_histogram(converted.folder)
    expected = dict(from_onnx)
    for op, delta in IR_DIFFERENCES.get(name, {}).items():
        expected[op] = expected.get(op, 0) + delta
    expected = {op: n for op, n in expected.items() if n}
    assert dict(from_nnef) == expected, (
        f"{name}: IR op histogram from NNEF {dict(from_nnef)}, from ONNX {dict(from_onnx)}"
    )


@pytest.mark.parametrize("name", [_param(n) for n in FAST_OUTPUTS])
def test_outputs_match_onnxruntime(name: str, nnef_models) -> None:
    import compiler

    converted = _converted(nnef_models, name)
    model = onnx.load(str(converted.onnx), load_external_data=False)
    feeds = example_input(model, seed=1)
    expected = ort_run(converted.onnx, feeds)
    cm = compiler.compile(converted.tgz)
    assert cm.metadata.source_format == "nnef"
    got = cm.run(feeds)
    assert len(got) == len(expected)
    for (out, g), e in zip(got.items(), expected, strict=True):
        assert g.shape == e.shape, f"{name}: output {out} is {g.shape}, onnxruntime's {e.shape}"
        scale = float(np.abs(e).max())
        assert scale > 0
        err = float(np.abs(g.astype(np.float64) - e).max())
        assert err <= TOLERANCE * scale, f"{name}: max abs error {err:.3g}, scale {scale:.3g}"
