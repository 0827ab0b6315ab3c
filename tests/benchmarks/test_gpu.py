"""The GPU benchmark's CPU side (``benchmarks/gpu.py``, ``benchmarks/gpu_models.py``): the models
build and run, their weights are the same on every machine, ``prepare`` compiles, packs and
describes artifacts (for the CPU target here), and ``run`` goes end to end on the CPU without
importing onnx or nnxc's compiler."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the GPU benchmark's models are PyTorch modules")

from benchmarks import gpu, gpu_models  # noqa: E402
from benchmarks.gpu_models import MODELS, TINY, fingerprint  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MASK = (1 << 64) - 1


def _splitmix64(seed: int, i: int) -> int:
    """The reference: splitmix64 in Python integers."""
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_hash_matches_splitmix64_and_known_values() -> None:
    seed = int.from_bytes(hashlib.sha256(b"nnxc").digest()[:8], "little")
    values = gpu_models.hash64("nnxc", 1000)
    assert [int(v) for v in values] == [_splitmix64(seed, i) for i in range(1000)]
    assert [int(v) for v in values[:3]] == [
        3390180092026461543,
        11132753025657592866,
        18190500289425021276,
    ]
    assert gpu_models.levels("nnxc", (10,)).tolist() == [0, 0, -2, 2, 2, 2, 1, -2, 1, 2]
    counts = sorted((gpu_models.levels("x", (5000,)) == k).sum() for k in range(-2, 3))
    assert counts[0] > 900 and counts[-1] < 1100  # the five levels about equally likely
    u = gpu_models.uniform("x", (5000,))
    assert u.dtype.name == "float32" and -1 <= u.min() < -0.99 and 0.99 < u.max() < 1


def test_rows_repeat_but_for_one_marker() -> None:
    """Rows i and i % PERIOD differ in exactly one element (so they compress and stay
    distinct); rows within a period are independent."""
    period = 4
    w = gpu_models.row_levels("w", (13, 3, 3), period).reshape(13, 9)
    assert set(np.unique(w).tolist()) <= {-2, -1, 0, 1, 2}
    for i in range(13):
        base = w[i % period] if i >= period else None
        if base is not None:
            assert (w[i] != base).sum() == 1
    assert len({row.tobytes() for row in w}) == 13
    v = gpu_models.periodic_levels("v", 10, period)
    assert v[:period].tolist() == v[period : 2 * period].tolist()


def test_weights_are_deterministic_and_known() -> None:
    a, b = TINY["gpt2"].build(), TINY["gpt2"].build()
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) == "6708933582fa0b987feb5cfe3c7d0abbbe199657b6846587c4ef0b86ccabab02"
    r = TINY["resnet50"].build()
    assert fingerprint(r) == "3368d2c607821439d1ddfaaf70c05193d1b31d17f7e17fe3a184517f823df1e3"
    bn = r.features[1]
    assert set(bn.running_var.unique().tolist()) <= {0.875, 0.9375, 1.0, 1.0625, 1.125}
    conv = r.features[0].weight  # 3x7x7 fan-in: five levels of 1/sqrt(147)
    assert len(conv.unique()) == 5


def test_full_models_have_the_standard_sizes() -> None:
    """torchvision's ResNet-50 and MobileNetV2 parameter counts, to the parameter."""
    counts = {n: sum(p.numel() for p in s.make().parameters()) for n, s in MODELS.items()}
    assert counts["resnet50"] == 25_557_032
    assert counts["mobilenet_v2"] == 3_504_872
    assert counts["gpt2"] == 2 * (12 * 768 * 768 + 13 * 768) + 2 * 768


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_models_run(name: str) -> None:
    spec = TINY[name]
    model = spec.build()
    x = torch.from_numpy(spec.input(2))
    with torch.no_grad():
        y = model(x)
        y1 = model(x[:1])
    assert torch.isfinite(y).all() and y.abs().max() > 0.1
    assert torch.allclose(y[:1], y1, atol=1e-5)  # rows of a batch are independent
    assert not torch.allclose(y[0], y[1])  # and the output depends on the input


def test_order_and_summary() -> None:
    entries = [
        {"model": m, "batch": b, "precision": p}
        for m in ("unet", "resnet50")
        for b in (1, 16)
        for p in ("fp16", "fp32")
    ]
    order = gpu.order_rows(entries, ["resnet50", "unet"])
    assert [(e["precision"], e["batch"], e["model"]) for e in order[:4]] == [
        ("fp32", 1, "resnet50"),
        ("fp32", 1, "unet"),
        ("fp32", 16, "resnet50"),
        ("fp32", 16, "unet"),
    ]
    rows = [
        {"model": "resnet50", "batch": 1, "precision": "fp32", "ratio": 0.5, "eager_ms": 2.0},
        {"model": "unet", "batch": 1, "precision": "fp32", "ratio": 2.0, "eager_ms": 1.0},
    ]
    for r in rows:
        r["compile_ms"] = 1.0
    geo, goals = gpu.summarize(rows)
    assert geo["fp32 b1"]["nnxc/compile"] == pytest.approx(1.0)
    assert geo["fp32 b1"]["eager/compile"] == pytest.approx(2**0.5)
    verdicts = {g["goal"]: g["met"] for g in goals}
    assert verdicts == {
        "fp32 b1: geomean nnxc/compile <= 0.8": False,
        "resnet50 fp32 b1: nnxc/compile <= 1.0": True,
    }


def test_prepare_and_run_on_the_cpu(tmp_path: Path) -> None:
    """prepare (export, compile for the CPU, pack, manifest) then run in a fresh process,
    which must import neither onnx nor nnxc's compiler."""
    out = tmp_path / "bench"
    argv = ["prepare", "--tiny", "--target", "cpu", "--out", str(out), "--models", "gpt2"]
    assert gpu.main([*argv, "--batches", "1,2", "--precisions", "fp32"]) == 0
    manifest = json.loads((out / gpu.MANIFEST).read_text())
    assert manifest["tiny"] is True and manifest["target"] == "cpu"
    assert [(e["model"], e["batch"]) for e in manifest["entries"]] == [("gpt2", 1), ("gpt2", 2)]
    for e in manifest["entries"]:
        data = lzma.decompress((out / e["file"]).read_bytes())
        assert hashlib.sha256(data).hexdigest() == e["sha256"] and len(data) == e["size"]
        assert e["packed_size"] < e["size"] / 3
        assert e["inputs"] == [{"name": "input", "shape": [e["batch"], 8, 48], "dtype": "float32"}]
        assert e["weights_sha256"] == fingerprint(TINY["gpt2"].build())
    assert manifest["total_packed"] == sum(e["packed_size"] for e in manifest["entries"])

    script = (
        "import sys\n"
        "from benchmarks import gpu\n"
        "rc = gpu.main(['run', sys.argv[1], '--device', 'cpu', '--compile-modes', 'none',"
        " '--seconds', '0.05'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'backends')"
        " or m.startswith(('compiler.frontends', 'compiler.driver', 'tvm.relax'))]\n"
        "print('FORBIDDEN', bad)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHONPATH": str(ROOT)}
    env["TVM_USE_RUNTIME_LIB"] = "1"  # as on the GPU machine: TVM's runtime alone
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FORBIDDEN []" in proc.stdout, proc.stdout
    result = json.loads((tmp_path / "out" / "gpu-bench.json").read_text())
    assert [(r["model"], r["batch"], r["pass"]) for r in result["rows"]] == [
        ("gpt2", 1, True),
        ("gpt2", 2, True),
    ]
    assert all(r["nnxc_err"] < 1e-5 and r["nnxc_ms"] > 0 for r in result["rows"])


def test_prepare_refuses_past_the_budget(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["prepare", "--tiny", "--target", "cpu", "--out", str(tmp_path), "--models", "unet"]
    assert gpu.main([*argv, "--batches", "1", "--precisions", "fp32", "--budget-mib", "0.01"]) == 1
    assert "over the budget of 0.01 MiB" in capsys.readouterr().err
    assert not (tmp_path / gpu.MANIFEST).exists()


def test_run_skips_rows_when_the_budget_is_short(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """No time left: every selected row is skipped with a note, and the run reports failure."""
    entries = [{"model": "gpt2", "batch": 1, "precision": p} for p in ("fp32", "fp16")]
    manifest = {"target": "cpu", "tiny": True, "entries": entries}
    (tmp_path / gpu.MANIFEST).write_text(json.dumps(manifest))
    argv = ["run", str(tmp_path), "--device", "cpu", "--budget-s", "0", "--precisions", "fp16"]
    assert gpu.main(argv) == 1
    out = capsys.readouterr().out
    assert "skipped gpt2 b1 fp16: 0 s left of --budget-s 0" in out
    assert "skipped for time: gpt2 b1 fp16\n" in out
