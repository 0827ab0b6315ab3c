"""``Runtime.run`` with DLPack tensors (PyTorch here, on the CPU) and ``as_numpy=False``: inputs
used in place when TVM may use them, copied when not, checked without converting them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.errors import InputError

pytest.register_assert_rewrite("models_fixture")

from models_fixture import tiny_expected  # noqa: E402

import compiler  # noqa: E402

torch = pytest.importorskip("torch")

pytest_plugins = ["models_fixture"]  # fixtures: tiny_so, tiny_so_static, two_input_so


def aligned(x: np.ndarray, offset: int = 0) -> np.ndarray:
    """A copy of ``x`` whose data starts ``offset`` bytes past a 64-byte boundary."""
    buf = np.empty(x.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    out = buf[start : start + x.nbytes].view(x.dtype).reshape(x.shape)
    out[...] = x
    return out


class NoCopy:
    """Fails the test if the runtime allocates a device tensor to copy an input into."""

    def __init__(self, rt: compiler.runtime.Runtime) -> None:  # type: ignore[name-defined]
        self.rt, self.alloc = rt, rt._alloc

    def __enter__(self) -> None:
        def refuse(*args: object) -> None:
            raise AssertionError("an input was copied")

        self.rt._alloc = refuse

    def __exit__(self, *exc: object) -> None:
        self.rt._alloc = self.alloc


X = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)


def test_torch_and_aligned_numpy_in_place(tiny_so: Path) -> None:
    rt = compiler.load(tiny_so, threads=1)
    expected = tiny_expected(X)
    t = torch.tensor(X)  # PyTorch's CPU allocator aligns to 64 bytes
    assert t.data_ptr() % 64 == 0
    with NoCopy(rt):
        got_torch = rt.run({"x": t})["y"]
        got_numpy = rt.run({"x": aligned(X)})["y"]
    np.testing.assert_allclose(got_torch, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_numpy, got_torch)
    assert isinstance(got_torch, np.ndarray) and got_torch.flags.writeable


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: aligned(X, 16), id="numpy-misaligned"),
        pytest.param(lambda: np.asfortranarray(X), id="numpy-fortran"),
        pytest.param(lambda: torch.from_numpy(X.T.copy()).T, id="torch-transposed"),
        pytest.param(lambda: torch.from_numpy(aligned(X, 4)), id="torch-misaligned"),
        pytest.param(lambda: torch.from_numpy(np.concatenate([X, X]))[5:], id="torch-slice"),
    ],
)
def test_inputs_copied_when_needed(tiny_so: Path, make) -> None:  # noqa: ANN001
    rt = compiler.load(tiny_so, threads=1)
    x = make()
    np.testing.assert_allclose(rt.run({"x": x})["y"], tiny_expected(X), rtol=1e-5, atol=1e-6)


def test_unreadable_input(tiny_so_static: Path) -> None:
    class Broken:
        shape, dtype = (3, 4), "float32"

        def __dlpack__(self, **kwargs: object) -> object:
            raise BufferError("no export today")

    with pytest.raises(InputError, match="'x' cannot be read through DLPack: no export today"):
        compiler.load(tiny_so_static).run({"x": Broken()})


def test_read_only_numpy_input(tiny_so: Path) -> None:
    """numpy refuses to export read-only arrays through DLPack: they are copied."""
    x = aligned(X)
    x.flags.writeable = False
    out = compiler.load(tiny_so, threads=1).run({"x": x})["y"]
    np.testing.assert_allclose(out, tiny_expected(X), rtol=1e-5, atol=1e-6)


def test_as_numpy_false_gives_dlpack_tensors(two_input_so: Path) -> None:
    import tvm

    rt = compiler.load(two_input_so, threads=1)
    a = torch.randn(3, 2)
    b = torch.randn(3, 2)
    k = torch.tensor([4, -1, 7])
    out = rt.run({"a": a, "b": b, "k": k}, as_numpy=False)
    assert list(out) == ["z", "c"]
    assert all(isinstance(t, tvm.runtime.Tensor) for t in out.values())
    assert out["z"].device.dlpack_device_type() == 1
    torch.testing.assert_close(torch.from_dlpack(out["z"]), a + b)
    np.testing.assert_array_equal(np.from_dlpack(out["c"]), k.numpy().astype(np.float32))
    # The tensors feed another run as they are (same device, TVM's own alignment).
    again = rt.run({"a": out["z"], "b": out["z"], "k": k})
    np.testing.assert_allclose(again["z"], 2 * (a + b).numpy(), rtol=1e-6)


def test_outputs_do_not_alias_inputs_or_each_other(two_input_so: Path) -> None:
    rt = compiler.load(two_input_so, threads=1)
    ones = aligned(np.ones((2, 2), np.float32))  # used in place
    feeds = {"a": ones, "b": ones, "k": np.ones(3, np.int64)}
    first = rt.run(feeds)["z"]
    first[...] = 7
    np.testing.assert_array_equal(rt.run(feeds)["z"], np.full((2, 2), 2, np.float32))


@pytest.mark.parametrize(
    ("x", "needles"),
    [
        (torch.zeros(3, 4, dtype=torch.float64), ["has dtype float64", "x: float32[3, 4]"]),
        (torch.zeros(3, 4, dtype=torch.int32), ["has dtype int32"]),
        (torch.zeros(3, 5), ["has shape [3, 5]", "x: float32[3, 4]"]),
        (torch.zeros(2, 3, 4), ["has shape [2, 3, 4]"]),
    ],
)
def test_bad_torch_inputs(tiny_so_static: Path, x, needles: list[str]) -> None:  # noqa: ANN001
    rt = compiler.load(tiny_so_static)
    with pytest.raises(InputError) as info:
        rt.run({"x": x})
    for needle in needles:
        assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_symbolic_dims_bind_across_torch_and_numpy(two_input_so: Path) -> None:
    rt = compiler.load(two_input_so)
    k = torch.zeros(3, dtype=torch.int64)
    feeds = {"a": torch.zeros(3, 2), "b": np.zeros((4, 2), np.float32), "k": k}
    with pytest.raises(InputError, match=r"'b' has shape \[4, 2\]"):
        rt.run(feeds)


def test_flexible_shapes_checked_on_torch(tiny_so: Path, tmp_path: Path) -> None:
    """dim_bounds and input_shape_choices (Core ML's flexible shapes) read a torch tensor's
    shape without converting it."""
    from models_fixture import relabel

    from compiler.artifact import read_metadata

    meta = read_metadata(tiny_so)
    meta.extra = {"dim_bounds": {"N": [1, 4]}, "input_shape_choices": {"x": [[1, 4], [3, 4]]}}
    flexible = relabel(tiny_so, meta, tmp_path / "flexible.so")
    rt = compiler.load(flexible, threads=1)
    assert rt.run({"x": torch.ones(3, 4)})["y"].shape == (3, 3)
    with pytest.raises(InputError, match="dim N is 5; the model allows 1 to 4"):
        rt.run({"x": torch.ones(5, 4)})
    with pytest.raises(InputError, match=r"input 'x' has shape \[2, 4\]; the model allows"):
        rt.run({"x": torch.ones(2, 4)})


def test_gpu_run_path_on_the_cpu(two_input_so: Path) -> None:
    """The GPU run path (stream bookkeeping, PyTorch clones of misaligned tensors, outputs
    copied through ``.numpy()``) driven on the CPU device, where CI can run it."""
    rt = compiler.load(two_input_so, threads=1)
    rt._on_cpu = False
    a = torch.from_numpy(aligned(np.ones((3, 2), np.float32), 4))  # misaligned: cloned
    b = aligned(np.full((3, 2), 2, np.float32), 16)  # misaligned numpy: copied by TVM
    k = torch.tensor([1, 2, 3])
    out = rt.run({"a": a, "b": b, "k": k})
    np.testing.assert_array_equal(out["z"], np.full((3, 2), 3, np.float32))
    assert rt._copied
    kept = rt.run({"a": a, "b": b, "k": k}, as_numpy=False)
    np.testing.assert_array_equal(np.from_dlpack(kept["c"]), [1, 2, 3])
    strided = torch.arange(6, dtype=torch.float32).reshape(2, 3).T  # cloned contiguous
    np.testing.assert_array_equal(rt.run({"a": strided, "b": b, "k": k})["z"], strided + 2)
