"""End to end through the command line: the nine light model-zoo architectures, with random
weights, compiled by ``nnxc compile`` and run by ``nnxc run``, against onnxruntime.

Slow (``@pytest.mark.slow``): the models that take 30 s to 2 min each on a 2-core machine
(DenseNet-121's 900 nodes take longest to build; AlexNet, VGG-19 and ZFNet-512 carry 240-550 MB
of weights). They still run by default; ``-m "not slow"`` skips them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.register_assert_rewrite("models_fixture")

from models_fixture import nnxc, ort_run  # noqa: E402

from benchmarks.models import LIGHT_MODELS, example_input  # noqa: E402

pytest_plugins = ["models_fixture"]  # fixture: light_models

# Measured on 2 cores: densenet121 122 s, vgg19 71 s, bvlc_alexnet 36 s, zfnet512 30 s; the
# other five take 7-23 s each.
SLOW = {"bvlc_alexnet", "densenet121", "vgg19", "zfnet512"}

# Two random inputs must move the output by at least this fraction of its largest magnitude,
# or the comparison would pass with any constant output.
MIN_MOVE = 1e-2
# nnxc vs onnxruntime: max abs error relative to the output's largest magnitude.
TOLERANCE = 1e-3


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in LIGHT_MODELS]
)
def test_light_model_cli(name: str, light_models, tmp_path: Path) -> None:
    src = light_models.path(name)
    model = onnx.load(str(src), load_external_data=False)
    feeds = example_input(model, seed=1)
    expected = ort_run(src, feeds)
    other = ort_run(src, example_input(model, seed=2))
    out_names = [o.name for o in model.graph.output]
    assert len(expected) == len(out_names) == 1
    scale = float(np.abs(expected[0]).max())
    assert scale > 0
    moved = float(np.abs(other[0] - expected[0]).max())
    assert moved > MIN_MOVE * scale, f"{name}: the output hardly depends on the input"

    so = tmp_path / f"{name}.so"
    r = nnxc("compile", src, "-o", so, "-q")
    assert r.returncode == 0, r.stderr
    assert so.is_file()

    inputs = tmp_path / "in.npz"
    with open(inputs, "wb") as f:
        np.savez(f, **feeds)
    outputs = tmp_path / "out.npz"
    r = nnxc("run", so, "--inputs", inputs, "--outputs", outputs)
    assert r.returncode == 0, r.stderr
    assert "random" not in r.stderr
    with np.load(outputs) as data:
        assert data.files == out_names
        got = data[out_names[0]]
    assert got.dtype == expected[0].dtype and got.shape == expected[0].shape
    err = float(np.abs(got.astype(np.float64) - expected[0]).max())
    assert err <= TOLERANCE * scale, f"{name}: max abs error {err:.3g}, output scale {scale:.3g}"
