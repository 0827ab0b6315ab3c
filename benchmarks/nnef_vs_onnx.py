"""The same models from NNEF and from ONNX: compile time, outputs and latency side by side.

Each model (random weights, batch 1) is converted from ONNX to NNEF by nnef-tools
(``benchmarks/nnef_models.py``), then both files are compiled by nnxc in fresh processes
(``benchmarks/cpu.py``'s ``compile_model``), both artifacts are loaded into this process, their
outputs compared, and their latencies timed interleaved in blocks (``cpu.interleaved``). The
NNEF/ONNX ratios should be within noise of 1: the two imports give the same IR after the
passes (``tests/compiler/frontends/nnef/test_models.py``). onnxruntime on the ONNX file is
timed in the same blocks for scale.

    python benchmarks/nnef_vs_onnx.py                          # resnet50 and squeezenet
    python benchmarks/nnef_vs_onnx.py --models squeezenet --blocks 12 --json out/nnef.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.cpu import compile_model, interleaved, ort_session  # noqa: E402
from benchmarks.nnef_models import NnefModels  # noqa: E402


def bench(name: str, models: NnefModels, args: argparse.Namespace) -> dict:
    import onnx

    import compiler
    from benchmarks.models import example_input

    converted = models.get(name)
    out = models.folder / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    row: dict = {"model": name}
    row["onnx_compile_s"] = compile_model(converted.onnx, out / f"{name}-onnx.so")["total_s"]
    row["nnef_compile_s"] = compile_model(converted.folder, out / f"{name}-nnef.so")["total_s"]
    feeds = example_input(onnx.load(str(converted.onnx), load_external_data=False), seed=1)
    from_onnx = compiler.load(out / f"{name}-onnx.so", threads=args.threads)
    from_nnef = compiler.load(out / f"{name}-nnef.so", threads=args.threads)
    # nnef-tools renames inputs NNEF forbids (gpu_0/data_0 -> gpu_0_data_0): match by position
    nnef_feeds = {t.name: feeds[s.name] for t, s in zip(from_nnef.inputs, from_onnx.inputs)}
    a = list(from_onnx.run(feeds).values())
    b = list(from_nnef.run(nnef_feeds).values())
    row["max_abs_diff"] = max(float(np.abs(x - y).max()) for x, y in zip(a, b))
    sess = ort_session(converted.onnx, args.threads)
    runs = {"onnx": [], "nnef": [], "ort": []}
    for _ in range(2):  # nnef vs onnx, then ort vs onnx: every pair interleaved in blocks
        t_onnx, t_nnef = interleaved(
            lambda: from_onnx.run(feeds), lambda: from_nnef.run(nnef_feeds), args.blocks, 2, 60
        )
        runs["onnx"] += t_onnx
        runs["nnef"] += t_nnef
    t_onnx, t_ort = interleaved(
        lambda: from_onnx.run(feeds), lambda: sess.run(None, feeds), args.blocks, 2, 60
    )
    runs["ort"] = t_ort
    for key, times in runs.items():
        row[f"{key}_ms"] = 1e3 * float(np.median(times))
    row["nnef_over_onnx"] = row["nnef_ms"] / row["onnx_ms"]
    row["onnx_over_ort"] = 1e3 * float(np.median(t_onnx)) / row["ort_ms"]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet50,squeezenet", help="comma-separated names")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blocks", type=int, default=8, help="timed blocks per pair")
    p.add_argument("--workdir", type=Path, default=ROOT / "out" / "bench-nnef")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    models = NnefModels(args.workdir)
    rows = []
    print(
        f"{'model':<12} {'compile onnx':>12} {'nnef':>8} {'onnx ms':>9} {'nnef ms':>9} "
        f"{'nnef/onnx':>9} {'onnx/ort':>9} {'max diff':>9}"
    )
    for name in args.models.split(","):
        r = bench(name.strip(), models, args)
        rows.append(r)
        print(
            f"{r['model']:<12} {r['onnx_compile_s']:>11.1f}s {r['nnef_compile_s']:>7.1f}s "
            f"{r['onnx_ms']:>9.2f} {r['nnef_ms']:>9.2f} {r['nnef_over_onnx']:>9.3f} "
            f"{r['onnx_over_ort']:>9.2f} {r['max_abs_diff']:>9.2e}",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
