"""CUDA artifacts on a GPU: numerics, DLPack in and out with PyTorch CUDA tensors, outputs left
on the device. Marked ``gpu``: skipped with the reason where no GPU is usable (tests/conftest.py
prints how many ran). Artifacts come from ``cuda_artifacts.gpu_checks``: built here when the
compiler has its CUDA target, or prepared elsewhere and named by $NNXC_GPU_TEST_DIR (the GPU
machine has TVM's runtime only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.errors import InputError

pytest.register_assert_rewrite("models_fixture")

from models_fixture import tiny_expected  # noqa: E402

import compiler  # noqa: E402

pytest_plugins = ["models_fixture", "cuda_artifacts"]  # gpu_checks

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def torch_cuda():  # noqa: ANN201 - the torch module
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    return torch


@pytest.mark.parametrize("batch", [1, 6])
def test_numpy_in_numpy_out(gpu_checks: Path, batch: int) -> None:
    rt = compiler.load(gpu_checks / "tiny_cuda.so")  # the artifact's kind: cuda:0
    assert rt.device.dlpack_device_type() == 2 and rt.device.index == 0
    x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
    out = rt.run({"x": x})
    assert out["y"].dtype == np.float32 and out["y"].shape == (batch, 3)
    np.testing.assert_allclose(out["y"], tiny_expected(x), rtol=1e-5, atol=1e-5)


def test_cnn_matches_onnxruntime(gpu_checks: Path) -> None:
    ref = np.load(gpu_checks / "small_cnn_ref.npz")
    rt = compiler.load(gpu_checks / "small_cnn_cuda.so", device="cuda:0")
    np.testing.assert_allclose(rt.run({"x": ref["x"]})["y"], ref["y"], rtol=1e-4, atol=1e-5)


def test_torch_cuda_in_place_and_out(gpu_checks: Path, torch_cuda) -> None:  # noqa: ANN001
    torch = torch_cuda
    rt = compiler.load(gpu_checks / "tiny_cuda.so")
    x = torch.randn(5, 4, device="cuda")

    def refuse(*args: object) -> None:
        raise AssertionError("a CUDA input was copied")

    alloc, rt._alloc = rt._alloc, refuse
    try:
        out = rt.run({"x": x}, as_numpy=False)
    finally:
        rt._alloc = alloc
    y = torch.from_dlpack(out["y"])
    assert y.is_cuda and y.shape == (5, 3)
    expected = tiny_expected(x.cpu().numpy())
    np.testing.assert_allclose(y.cpu().numpy(), expected, rtol=1e-5, atol=1e-5)
    # numpy out from the same CUDA input; and a CPU tensor and a misaligned one are copied in.
    np.testing.assert_allclose(rt.run({"x": x})["y"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rt.run({"x": x.cpu()})["y"], expected, rtol=1e-5, atol=1e-5)
    wide = torch.cat([torch.zeros(1, device="cuda"), x.reshape(-1)])[1:].reshape(5, 4)
    assert wide.data_ptr() % 64 != 0
    np.testing.assert_allclose(rt.run({"x": wide})["y"], expected, rtol=1e-5, atol=1e-5)


def test_outputs_feed_the_next_run(gpu_checks: Path) -> None:
    rt = compiler.load(gpu_checks / "tiny_cuda.so")
    x = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    out = rt.run({"x": x}, as_numpy=False)["y"]
    assert out.device.dlpack_device_type() == 2
    np.testing.assert_allclose(out.numpy(), tiny_expected(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match=r"'x' has shape \[4, 3\]"):
        rt.run({"x": out})


def test_side_stream(gpu_checks: Path, torch_cuda) -> None:  # noqa: ANN001
    """Inputs made on a PyTorch side stream: the model runs on that stream, in order."""
    torch = torch_cuda
    rt = compiler.load(gpu_checks / "small_cnn_cuda.so")
    ref = np.load(gpu_checks / "small_cnn_ref.npz")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        x = torch.from_numpy(ref["x"]).cuda(non_blocking=True) * 1.0
        y = torch.from_dlpack(rt.run({"x": x}, as_numpy=False)["y"]) + 0.0
    stream.synchronize()
    np.testing.assert_allclose(y.cpu().numpy(), ref["y"], rtol=1e-4, atol=1e-5)


def test_cuda_tensor_into_cpu_model(gpu_checks: Path, torch_cuda) -> None:  # noqa: ANN001
    rt = compiler.load(gpu_checks / "tiny_cpu.so")
    with pytest.raises(InputError, match=r"'x' is on cuda:0; the model runs on cpu"):
        rt.run({"x": torch_cuda.zeros(2, 4, device="cuda")})


def test_device_out_of_range(gpu_checks: Path) -> None:
    from compiler.devices import gpu_count
    from compiler.errors import ArtifactError

    n = gpu_count()
    with pytest.raises(ArtifactError, match=rf"cannot run on cuda:{n}: this machine has {n} GPU"):
        compiler.load(gpu_checks / "tiny_cuda.so", device=f"cuda:{n}")
