"""The same models from Core ML and from ONNX: compile time, outputs and CPU latency side by side.

Each model (``benchmarks/coreml_models.py``: random weights, batch 1) is one PyTorch module
written to ONNX and to both Core ML flavours (NeuralNetwork ``.mlmodel``, float32 ML Program
``.mlpackage``; ``--fp16`` adds ``ct.convert``'s default float16 program). Every file is compiled
by nnxc in a fresh process (``benchmarks/cpu.py``'s ``compile_model``); the artifacts are loaded
into this process, their outputs compared with PyTorch's, and each Core ML artifact is timed
against the ONNX one in interleaved blocks (``cpu.interleaved``), onnxruntime too for scale.

    python benchmarks/coreml_vs_onnx.py                      # resnet, mobilenet, transformer, unet
    python benchmarks/coreml_vs_onnx.py --models lstm --blocks 12 --json out/coreml.json
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

from benchmarks.coreml_models import FLAVOURS, export  # noqa: E402
from benchmarks.cpu import compile_model, interleaved, ort_session  # noqa: E402


def bench(name: str, args: argparse.Namespace) -> dict:
    import compiler

    model = export(name, args.workdir, small=args.small)
    flavours = ["onnx", "mlmodel", "mlpackage"] + (["mlpackage-fp16"] if args.fp16 else [])
    out = args.workdir / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    row: dict = {"model": name}
    runtimes = {}
    for flavour in flavours:
        artifact = out / f"{name}-{flavour}.so"
        row[f"{flavour}_compile_s"] = compile_model(model.files[flavour], artifact)["total_s"]
        runtimes[flavour] = compiler.load(artifact, threads=args.threads)
    feeds = {f: model.onnx_feeds if f == "onnx" else model.feeds for f in flavours}
    scale = float(np.abs(model.expected).max())
    for flavour in flavours:
        (got,) = runtimes[flavour].run(feeds[flavour]).values()
        row[f"{flavour}_rel_err"] = float(np.abs(got - model.expected).max()) / scale
    base = runtimes["onnx"]
    for flavour in flavours[1:]:
        rt = runtimes[flavour]
        t_onnx, t_other = interleaved(
            lambda: base.run(feeds["onnx"]),
            lambda rt=rt, f=flavour: rt.run(feeds[f]),
            args.blocks,
            2,
            60,
        )
        row[f"{flavour}_ms"] = 1e3 * float(np.median(t_other))
        row[f"{flavour}_onnx_ms"] = 1e3 * float(np.median(t_onnx))
        row[f"{flavour}_over_onnx"] = row[f"{flavour}_ms"] / row[f"{flavour}_onnx_ms"]
    sess = ort_session(model.files["onnx"], args.threads)
    t_onnx, t_ort = interleaved(
        lambda: base.run(feeds["onnx"]), lambda: sess.run(None, feeds["onnx"]), args.blocks, 2, 60
    )
    row["ort_ms"] = 1e3 * float(np.median(t_ort))
    row["ort_onnx_ms"] = 1e3 * float(np.median(t_onnx))
    row["onnx_over_ort"] = row["ort_onnx_ms"] / row["ort_ms"]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet,mobilenet,transformer,unet", help="comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blocks", type=int, default=8, help="timed blocks per pair")
    p.add_argument("--fp16", action="store_true", help="also the float16 ML Program")
    p.add_argument("--small", action="store_true", help="the test sizes (a quick check)")
    p.add_argument("--workdir", type=Path, default=ROOT / "out" / "bench-coreml")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models.split(","):
        r = bench(name.strip(), args)
        rows.append(r)
        compile_s = ", ".join(
            f"{k[:-10]} {v:.1f}s" for k, v in r.items() if k.endswith("compile_s")
        )
        errs = ", ".join(f"{k[:-8]} {v:.1e}" for k, v in r.items() if k.endswith("_rel_err"))
        print(f"{name}: compile {compile_s}; error vs PyTorch / output scale: {errs}")
        for other in [f for f in FLAVOURS[1:] if f"{f}_ms" in r] + ["ort"]:
            ratio = r[f"{other}_over_onnx"] if other != "ort" else 1 / r["onnx_over_ort"]
            print(
                f"  {other:>15} {r[f'{other}_ms']:8.2f} ms vs onnx {r[f'{other}_onnx_ms']:8.2f} ms"
                f" (same blocks): {ratio:.3f}",
                flush=True,
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
