"""The converted-model corpus: each light model-zoo architecture (random weights) and zoo model,
converted from ONNX to NNEF by nnef-tools, gives nnxc the same IR after the pass pipeline as
the ONNX original (op histograms); a fast subset, compiled by TVM from the ``.nnef.tgz``, gives
onnxruntime's outputs on the ONNX original.

The models are made once per session (benchmarks/nnef_models.py). Slow
(``@pytest.mark.slow``): the models whose randomizing, conversion and two imports take 20-75 s
on 2 cores (AlexNet, VGG-19 and ZFNet-512 carry 240-550 MB of weights); the rest take about a
minute together.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.register_assert_rewrite("models_fixture", "nnef_models")

from models_fixture import ort_run  # noqa: E402

from benchmarks.models import LIGHT_MODELS, example_input  # noqa: E402
from benchmarks.nnef_models import ConversionFailed  # noqa: E402
from benchmarks.zoo import ZOO_MODELS  # noqa: E402

pytest_plugins = ["nnef_models"]  # fixture: nnef_models

MODELS = [*LIGHT_MODELS, *(f"zoo:{z}" for z in ZOO_MODELS), "zoo:transformer-spelled-ln"]
"""The light models, the zoo models, and the zoo transformer with its LayerNormalization
spelled out in ONNX ops (which nnef-tools converts)."""

SLOW = {"bvlc_alexnet", "densenet121", "resnet50", "vgg19", "zfnet512"}

FAST_OUTPUTS = ("squeezenet", "zoo:mobilenet", "zoo:transformer-spelled-ln", "zoo:unet")
"""Compiled from the .nnef.tgz and run, against onnxruntime on the ONNX original."""


CONVERSION_FAILURES: dict[str, str] = {
    "zoo:transformer": "nnef-tools has no converter for ONNX LayerNormalization (opset 17); "
    "zoo:transformer-spelled-ln is the same model with it spelled out",
    "zoo:lstm": "nnef-tools converts an ONNX LSTM only when its direction is 'forward' and its "
    "first output Y has no consumers; the zoo LSTM is bidirectional and feeds Y on",
}
"""Models nnef-tools does not convert, with the reason (an expected failure: the test fails
if one of them converts, so the list stays true)."""

IR_DIFFERENCES: dict[str, dict[str, int]] = {
    # ONNX Softmax before opset 13 normalizes over the dims from `axis` on, flattened: on the
    # [1, 1000, 1, 1] GlobalAveragePool output nnxc reshapes to [1, 1000] and back; nnef-tools
    # writes softmax(axes = [1]) on the 4-D tensor, no reshape (the same numbers).
    "squeezenet": {"reshape": -2},
    # NNEF has no erf: nnef-tools writes a fragment of Abramowitz-Stegun's polynomial (error
    # under 1.5e-7), per erf: abs, div, neg, exp, sign, sub, 5 add, 9 mul.
    "zoo:transformer-spelled-ln": {
        "erf": -4,
        **{"abs": 4, "div": 4, "neg": 4, "exp": 4, "sign": 4, "sub": 4, "add": 20, "mul": 36},
    },
}
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
    # nnef-tools keeps I/O names where NNEF allows them ('gpu_0/data_0' becomes 'gpu_0_data_0')
    names = [t.name for t in cm.metadata.inputs]
    assert len(names) == len(feeds)
    got = cm.run(dict(zip(names, feeds.values(), strict=True)))
    assert len(got) == len(expected)
    for (out, g), e in zip(got.items(), expected, strict=True):
        assert g.shape == e.shape, f"{name}: output {out} is {g.shape}, onnxruntime's {e.shape}"
        scale = float(np.abs(e).max())
        assert scale > 0
        err = float(np.abs(g.astype(np.float64) - e).max())
        assert err <= TOLERANCE * scale, f"{name}: max abs error {err:.3g}, scale {scale:.3g}"
