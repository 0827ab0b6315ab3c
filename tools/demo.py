"""The main job on a model that needs no download: ResNet-50 from the onnx package.

Gives the model random weights (as shipped its outputs ignore the input), compiles it with
``nnxc compile``, runs it with ``nnxc run``, and checks the outputs against onnxruntime.

    python tools/demo.py [--model resnet50] [--out out/demo]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.models import LIGHT_MODELS, example_input, light_path, randomized  # noqa: E402


def nnxc(*args: str) -> None:
    exe = shutil.which("nnxc", path=str(Path(sys.executable).parent)) or "nnxc"
    print(f"$ nnxc {' '.join(args)}", flush=True)
    subprocess.run([exe, *args], check=True)


def ort_latency(sess, feeds: dict, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", choices=LIGHT_MODELS)
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"))
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    import onnxruntime as ort

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / f"{args.model}.onnx"
    print(f"preparing {light_path(args.model).name} with random weights -> {model_path}")
    model = randomized(onnx.load(light_path(args.model)))
    onnx.save(model, model_path)
    feeds = example_input(model, seed=1)
    np.savez(out / "inputs.npz", **feeds)

    artifact = out / f"{args.model}.so"
    nnxc("compile", str(model_path), "-o", str(artifact))
    nnxc("inspect", str(artifact))
    nnxc(
        "run",
        str(artifact),
        "--inputs",
        str(out / "inputs.npz"),
        "--outputs",
        str(out / "outputs.npz"),
        "--repeat",
        str(args.repeat),
    )

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 2
    sess = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    expected = sess.run(None, feeds)
    with np.load(out / "outputs.npz") as got:
        worst = 0.0
        for info, e in zip(sess.get_outputs(), expected):
            err = float(np.abs(got[info.name] - e).max()) / max(float(np.abs(e).max()), 1e-12)
            worst = max(worst, err)
            print(f"check vs onnxruntime: {info.name}: max abs error / max |output| = {err:.2e}")
    print(
        f"onnxruntime latency: median {ort_latency(sess, feeds, args.repeat) * 1e3:.2f} ms "
        f"(2 threads, {args.repeat} runs)"
    )
    if worst > 1e-3:
        print("MISMATCH against onnxruntime")
        return 1
    print("OK: nnxc matches onnxruntime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
