"""nnxc against PyTorch eager and torch.compile on one NVIDIA GPU: latency and correctness.

Five models built in PyTorch (``benchmarks/gpu_models.py``: ResNet-50, MobileNetV2, a
transformer encoder, a U-Net, GPT-2-style decoder blocks), batch 1 and 16, fp32 and fp16. Both
sides run the same weights: nnxc compiles the model's ONNX export, PyTorch runs the module, and
the weights are computed alike on both machines (checked by a fingerprint in the manifest).

Two steps on two machines. Here (nnxc, onnx, PyTorch on the CPU, nvcc; no GPU needed):

    python -m benchmarks.gpu prepare                  # compile for sm_90 into .gpu-bench/
    ../shared/tools/gpu-bundle                        # TVM's runtime into .gpu/

``prepare`` exports each model to ONNX (TorchScript exporter, static shapes), compiles it with
``compiler.compile(..., target="cuda:sm_90", precision=...)`` and packs the artifacts with xz
next to ``manifest.json``; it refuses when the packed total passes ``--budget-mib`` (56: the
GPU machine receives at most 64 MiB, the checkout and .gpu included; all 20 artifacts for sm_90
packed to 13.3 MiB, in 9 minutes on 2 cores). Then on the GPU machine, as one device command
carrying ``[".gpu", ".gpu-bench"]`` (timeout 600 s):

    source .gpu/setup.sh && python3 -m benchmarks.gpu run .gpu-bench

``run`` needs PyTorch with CUDA and TVM's runtime only: it imports neither onnx nor nnxc's
frontends or compiler. For each row it times PyTorch eager, ``torch.compile`` (``mode``
default; ``--compile-modes default,reduce-overhead`` adds CUDA graphs) and nnxc, each as the
median of synchronised wall times of single runs after warm-up; fp32 keeps PyTorch's default
TF32 settings (printed), fp16 runs PyTorch under ``torch.autocast("cuda", torch.float16)``.
Correctness in the same run: max |y - ref| / max |ref| against PyTorch eager in strict fp32
(TF32 off for the reference only). Rows run in the order of the issue's goals (fp32 batch 1,
fp32 batch 16, fp16 batch 16, fp16 batch 1; ResNet-50 first) and are skipped, with a note,
when the time left in ``--budget-s`` (400) is short, so the whole run stays under 8 minutes
(a row's cost is guessed as 1.25 times the slowest row of its model so far, or a prior).
``--precisions``/``--batches``/``--models`` select rows, to split the run over two calls.
The table goes to stdout and, as JSON, to ``$OUT/gpu-bench.json`` when ``OUT`` is set.

Exit status: 0 when every row that ran passed its correctness check, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import lzma
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16")
# The goals: geomean nnxc / torch.compile per (precision, batch), at most this.
GOALS = {("fp32", 1): 0.8, ("fp32", 16): 1.0, ("fp16", 1): 1.0, ("fp16", 16): 1.0}
ROW_ORDER = (("fp32", 1), ("fp32", 16), ("fp16", 16), ("fp16", 1))
# Seconds one row takes before any was measured (torch.compile dominates; H100, 16 cores).
PRIOR_ROW_S = {"resnet50": 60.0, "mobilenet_v2": 45.0, "unet": 40.0}
DEFAULT_ROW_S = 30.0
TOLERANCE = {"fp32": 5e-3, "fp16": 5e-2}


# -- prepare (here) --------------------------------------------------------------------------------
def export_onnx(module: Any, x: Any, path: Path) -> None:
    """The TorchScript exporter (``dynamo=False``): the torch.export-based one needs
    onnxscript, which the project does not install. Static shapes: one file per batch."""
    import warnings

    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            do_constant_folding=True,
        )


def pack(data: bytes) -> bytes:
    """xz with LZMA2 tuned for arrays of 4-byte values (most of an artifact is weights)."""
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 6, "lc": 0, "lp": 2, "pb": 2}]
    return lzma.compress(data, format=lzma.FORMAT_XZ, filters=filters)


def _compile(onnx_path: Path, target: str, precision: str) -> Any:
    import compiler

    # fp32 is the default; naming it only for fp16 keeps older compile APIs working.
    options = {} if precision == "fp32" else {"precision": precision}
    return compiler.compile(str(onnx_path), target=target, **options)


def prepare(args: argparse.Namespace) -> int:
    import torch

    from benchmarks.gpu_models import MODELS, TINY, fingerprint
    from compiler.artifact import read_metadata

    specs = TINY if args.tiny else MODELS
    target = args.target or f"cuda:{args.arch}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a run never sees a half-made set
    entries: list[dict] = []
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            spec = specs[name]
            module = spec.build()
            weights = fingerprint(module)
            for batch in args.batches:
                onnx_path = Path(tmp) / f"{name}-b{batch}.onnx"
                export_onnx(module, torch.from_numpy(spec.input(batch)), onnx_path)
                for precision in args.precisions:
                    stem = f"{name}-b{batch}-{precision}"
                    t = time.perf_counter()
                    so = Path(tmp) / f"{stem}.so"
                    _compile(onnx_path, target, precision).export(so)
                    compile_s = time.perf_counter() - t
                    data = so.read_bytes()
                    packed = pack(data)
                    (out / f"{stem}.so.xz").write_bytes(packed)
                    total += len(packed)
                    meta = read_metadata(so)
                    entries.append(
                        {
                            "model": name,
                            "batch": batch,
                            "precision": precision,
                            "file": f"{stem}.so.xz",
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "size": len(data),
                            "packed_size": len(packed),
                            "inputs": [_tensor_json(i) for i in meta.inputs],
                            "outputs": [_tensor_json(o) for o in meta.outputs],
                            "weights_sha256": weights,
                            "compile_s": round(compile_s, 1),
                        }
                    )
                    print(
                        f"{stem}: compiled in {compile_s:.1f} s, {len(data) / 2**20:.1f} MiB, "
                        f"packed {len(packed) / 2**20:.2f} MiB (total {total / 2**20:.2f} MiB)",
                        flush=True,
                    )
                onnx_path.unlink()
    budget = int(args.budget_mib * 2**20)
    if total > budget:
        sizes = ", ".join(f"{e['file']} {e['packed_size'] / 2**20:.1f}" for e in entries)
        print(
            f"refused: the packed artifacts take {total / 2**20:.1f} MiB, over the budget of "
            f"{args.budget_mib} MiB (the GPU machine receives at most 64 MiB with the checkout "
            f"and .gpu); drop models, batches or precisions. Sizes in MiB: {sizes}",
            file=sys.stderr,
        )
        return 1
    manifest = {
        "format": 1,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "target": target,
        "tiny": bool(args.tiny),
        "torch": torch.__version__,
        "total_packed": total,
        "entries": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(entries)} artifacts, {total / 2**20:.2f} MiB packed, in {out}/")
    return 0


def _tensor_json(info: Any) -> dict:
    return {"name": info.name, "shape": list(info.shape), "dtype": info.dtype}


# -- run (the GPU machine) -------------------------------------------------------------------------
def median_ms(fn: Callable[[], Any], sync: Callable[[], None], seconds: float) -> float:
    """Median wall time of single synchronised runs, after a warm-up of about a fifth of the
    time (at least three runs); 10 to 200 timed runs."""
    sync()
    warm_end = time.perf_counter() + seconds / 5
    for i in range(1000):
        fn()
        sync()
        if i >= 2 and time.perf_counter() > warm_end:
            break
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < 200 and (len(times) < 10 or time.perf_counter() < end):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def rel_error(y: Any, ref: Any) -> float:
    """max |y - ref| / max |ref|, in fp32."""
    y = y.float().reshape(ref.shape)
    return float((y - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


class Bench:
    """One GPU-side run: the models built once each, their fp32 references, the time budget."""

    def __init__(self, args: argparse.Namespace, manifest: dict) -> None:
        import torch

        from benchmarks.gpu_models import MODELS, TINY

        self.args = args
        self.torch = torch
        self.specs = TINY if manifest.get("tiny") else MODELS
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        self.dir = Path(args.dir)
        self.work = Path(tempfile.mkdtemp(prefix="nnxc-gpu-bench-"))
        self.modules: dict[str, Any] = {}
        self.refs: dict[tuple[str, int], Any] = {}
        self.deadline = time.monotonic() + args.budget_s
        self.row_s: dict[str, float] = {}

    def module(self, name: str, weights: str) -> Any:
        if name not in self.modules:
            from benchmarks.gpu_models import fingerprint

            m = self.specs[name].build()
            if fingerprint(m) != weights:
                raise RuntimeError(f"{name}: PyTorch built other weights than prepare's")
            self.modules[name] = m.to(self.device)
        return self.modules[name]

    def reference(self, name: str, batch: int, module: Any, x: Any) -> Any:
        """PyTorch eager in strict fp32 (TF32 off just for this call)."""
        torch = self.torch
        key = (name, batch)
        if key not in self.refs:
            saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            try:
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
                with torch.no_grad():
                    self.refs[key] = module(x).float()
            finally:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
        return self.refs[key]

    def autocast(self, precision: str) -> Any:
        import contextlib

        if precision == "fp16":
            return self.torch.autocast(self.device.type, dtype=self.torch.float16)
        return contextlib.nullcontext()

    def nnxc(self, entry: dict, x: Any) -> Callable[[], Any]:
        """Unpack, check and load the artifact; a function running it on ``x``."""
        import compiler

        data = lzma.decompress((self.dir / entry["file"]).read_bytes())
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise RuntimeError(f"{entry['file']}: unpacked bytes differ from the manifest's")
        path = self.work / entry["file"].removesuffix(".xz")
        path.write_bytes(data)
        info = entry["inputs"][0]
        feed = x.to(getattr(self.torch, info["dtype"]))
        from_dlpack = self.torch.from_dlpack
        # PyTorch tensors in and out through DLPack, no copies.
        rt = compiler.load(path, device=str(self.device))
        return lambda: from_dlpack(
            next(iter(rt.run({info["name"]: feed}, as_numpy=False).values()))
        )

    def row(self, entry: dict) -> dict:
        """Time eager, each compile mode and nnxc on one (model, batch, precision)."""
        torch = self.torch
        name, batch, precision = entry["model"], entry["batch"], entry["precision"]
        row: dict[str, Any] = {"model": name, "batch": batch, "precision": precision}
        module = self.module(name, entry["weights_sha256"])
        x = torch.from_numpy(self.specs[name].input(batch)).to(self.device)
        ref = self.reference(name, batch, module, x)
        seconds = self.args.seconds

        def timed(label: str, call: Callable[[], Any]) -> None:
            def fn() -> Any:
                with torch.no_grad(), self.autocast(precision):
                    return call()

            try:
                row[f"{label}_err"] = rel_error(fn(), ref)
                row[f"{label}_ms"] = median_ms(fn, self.sync, seconds)
            except Exception as e:  # noqa: BLE001 - one failing column must not end the run
                row[f"{label}_error"] = f"{type(e).__name__}: {str(e).strip()[:300]}"

        timed("eager", lambda: module(x))
        for mode in self.args.compile_modes:
            torch._dynamo.reset()
            compiled = torch.compile(module, mode=mode, dynamic=False)
            t = time.perf_counter()
            try:
                with torch.no_grad(), self.autocast(precision):
                    compiled(x)
                self.sync()
                row[f"compile:{mode}_build_s"] = round(time.perf_counter() - t, 1)
            except Exception as e:  # noqa: BLE001
                row[f"compile:{mode}_error"] = f"{type(e).__name__}: {str(e).strip()[:300]}"
                continue
            timed(f"compile:{mode}", lambda c=compiled: c(x))
        try:
            run = self.nnxc(entry, x)
            timed("nnxc", run)
        except Exception as e:  # noqa: BLE001
            row["nnxc_error"] = f"{type(e).__name__}: {str(e).strip()[:300]}"
        compiled_ms = [row.get(f"compile:{m}_ms") for m in self.args.compile_modes]
        compiled_ms = [t for t in compiled_ms if t is not None]
        row["compile_ms"] = min(compiled_ms) if compiled_ms else None
        if row.get("nnxc_ms") and row["compile_ms"]:
            row["ratio"] = row["nnxc_ms"] / row["compile_ms"]
        tol = self.args.tolerance or TOLERANCE[precision]
        row["tolerance"] = tol
        row["pass"] = row.get("nnxc_err") is not None and row["nnxc_err"] <= tol
        return row

    def budget_allows(self, name: str) -> tuple[bool, float]:
        left = self.deadline - time.monotonic()
        seen = self.row_s.get(name)
        need = 1.25 * seen if seen else PRIOR_ROW_S.get(name, DEFAULT_ROW_S)
        return left >= need, left


def order_rows(entries: list[dict], model_order: list[str]) -> list[dict]:
    """The goals' groups in order (fp32 b1, fp32 b16, fp16 b16, fp16 b1), models as listed."""
    rank = {g: i for i, g in enumerate(ROW_ORDER)}

    def key(e: dict) -> tuple:
        group = (e["precision"], e["batch"])
        return (rank.get(group, len(rank)), e["batch"], model_order.index(e["model"]))

    return sorted(entries, key=key)


def environment(torch: Any, device: Any) -> dict:
    info = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cuda": torch.version.cuda,
        "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
    }
    return info


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarize(rows: list[dict]) -> tuple[dict, list[dict]]:
    """Geomeans of nnxc / torch.compile (and eager / compile) per (precision, batch), and the
    issue's goals with their verdicts."""
    geo: dict[str, dict] = {}
    goals: list[dict] = []
    for (precision, batch), limit in GOALS.items():
        group = [r for r in rows if (r["precision"], r["batch"]) == (precision, batch)]
        ratios = [r["ratio"] for r in group if r.get("ratio")]
        eager = [
            r["eager_ms"] / r["compile_ms"] for r in group if r.get("eager_ms") and r["compile_ms"]
        ]
        if not ratios:
            continue
        key = f"{precision} b{batch}"
        geo[key] = {
            "nnxc/compile": _geomean(ratios),
            "eager/compile": _geomean(eager) if eager else None,
            "rows": len(ratios),
            "of": len(group),
        }
        goals.append(
            {
                "goal": f"{key}: geomean nnxc/compile <= {limit}",
                "value": geo[key]["nnxc/compile"],
                "met": geo[key]["nnxc/compile"] <= limit,
            }
        )
    for r in rows:
        if r["model"] == "resnet50" and r["precision"] == "fp32" and r.get("ratio"):
            goals.append(
                {
                    "goal": f"resnet50 fp32 b{r['batch']}: nnxc/compile <= 1.0",
                    "value": r["ratio"],
                    "met": r["ratio"] <= 1.0,
                }
            )
    return geo, goals


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}" if v < 10 else f"{v:.2f}"


def table(rows: list[dict], modes: list[str]) -> str:
    head = ["model", "batch", "prec", "eager ms"]
    head += [f"compile[{m}] ms" for m in modes] + ["nnxc ms", "nnxc/compile", "err nnxc"]
    head += ["err compile", "pass"]
    lines = [head]
    for r in rows:
        cells = [r["model"], str(r["batch"]), r["precision"], _ms(r.get("eager_ms"))]
        cells += [_ms(r.get(f"compile:{m}_ms")) for m in modes]
        errs = [r.get(f"compile:{m}_err") for m in modes]
        errs = [e for e in errs if e is not None]
        cells += [
            _ms(r.get("nnxc_ms")),
            "-" if r.get("ratio") is None else f"{r['ratio']:.2f}",
            "-" if r.get("nnxc_err") is None else f"{r['nnxc_err']:.1e}",
            f"{max(errs):.1e}" if errs else "-",
            "PASS" if r["pass"] else "FAIL",
        ]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines)


def run(args: argparse.Namespace) -> int:
    import torch

    manifest = json.loads((Path(args.dir) / MANIFEST).read_text())
    entries = manifest["entries"]
    for key, wanted in (
        ("model", args.models),
        ("batch", args.batches),
        ("precision", args.precisions),
    ):
        if wanted:
            entries = [e for e in entries if e[key] in wanted]
    bench = Bench(args, manifest)
    env = environment(torch, bench.device)
    env["compile_modes"] = args.compile_modes
    env["artifacts_target"] = manifest["target"]
    print(" | ".join(f"{k}: {v}" for k, v in env.items()), flush=True)
    model_order = list(dict.fromkeys(e["model"] for e in manifest["entries"]))
    rows: list[dict] = []
    skipped: list[str] = []
    for entry in order_rows(entries, model_order):
        label = f"{entry['model']} b{entry['batch']} {entry['precision']}"
        ok, left = bench.budget_allows(entry["model"])
        if not ok:
            skipped.append(label)
            print(
                f"skipped {label}: {max(left, 0):.0f} s left of --budget-s {args.budget_s:g}",
                flush=True,
            )
            continue
        t = time.monotonic()
        try:
            row = bench.row(entry)
        except Exception as e:  # noqa: BLE001 - report the row and go on
            row = {**{k: entry[k] for k in ("model", "batch", "precision")}, "pass": False}
            row["error"] = f"{type(e).__name__}: {str(e).strip()[:300]}"
        row["row_s"] = round(time.monotonic() - t, 1)
        bench.row_s[entry["model"]] = max(bench.row_s.get(entry["model"], 0.0), row["row_s"])
        rows.append(row)
        print(_progress(label, row), flush=True)
    geo, goals = summarize(rows)
    print()
    print(table(rows, args.compile_modes))
    print()
    for key, g in geo.items():
        eager = "" if g["eager/compile"] is None else f", eager/compile {g['eager/compile']:.2f}"
        print(f"geomean {key}: nnxc/compile {g['nnxc/compile']:.2f}{eager} ({g['rows']} rows)")
    for g in goals:
        print(f"goal {g['goal']}: {g['value']:.2f} {'met' if g['met'] else 'MISSED'}")
    if skipped:
        print(f"skipped for time: {', '.join(skipped)}")
    ratio_note = "the fastest of them" if len(args.compile_modes) > 1 else "it"
    print(
        f"torch.compile modes: {', '.join(args.compile_modes) or 'none'}; nnxc/compile is against "
        f"{ratio_note}. Errors: max |y - ref| / max |ref|, ref = eager strict fp32."
    )
    if os.environ.get("OUT"):
        result = {"environment": env, "rows": rows, "geomeans": geo, "goals": goals}
        result["skipped"] = skipped
        path = Path(os.environ["OUT"]) / "gpu-bench.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
    return 0 if rows and all(r["pass"] for r in rows) else 1


def _progress(label: str, row: dict) -> str:
    parts = [f"{label} ({row['row_s']} s):"]
    for k, v in row.items():
        if k.endswith("_ms") and k != "compile_ms" and v is not None:
            parts.append(f"{k[:-3]} {v:.3f} ms")
        elif k.endswith("_build_s"):
            parts.append(f"{k[:-8]} built in {v} s")
        elif k.endswith("error"):
            parts.append(f"{k} {v}")
    if row.get("nnxc_err") is not None:
        parts.append(f"nnxc err {row['nnxc_err']:.1e}")
    return " ".join(parts)


# -- command line ----------------------------------------------------------------------------------
def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.gpu_models import MODELS

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    pp = sub.add_parser("prepare", help="export, compile and pack the artifacts (here)")
    pp.add_argument("--out", default=str(ROOT / ".gpu-bench"), help="default: .gpu-bench/")
    pp.add_argument("--models", type=_list, default=list(MODELS), help="comma-separated")
    pp.add_argument("--batches", type=lambda s: [int(b) for b in _list(s)], default=[1, 16])
    pp.add_argument("--precisions", type=_list, default=list(PRECISIONS))
    pp.add_argument("--arch", default="sm_90", help="the GPU's architecture (H100/H200: sm_90)")
    pp.add_argument("--target", help="overrides --arch, e.g. cpu to try the steps here")
    pp.add_argument("--budget-mib", type=float, default=56.0)
    pp.add_argument("--tiny", action="store_true", help="the small test versions of the models")
    rp = sub.add_parser("run", help="time and check everything (on the GPU machine)")
    rp.add_argument("dir", help="the folder prepare wrote")
    rp.add_argument("--budget-s", type=float, default=400.0, help="skip rows past this")
    rp.add_argument("--device", default="cuda:0", help="cuda:N, or cpu to try the steps here")
    rp.add_argument("--models", type=_list, default=None, help="only these (comma-separated)")
    rp.add_argument("--batches", type=lambda s: [int(b) for b in _list(s)], help="only these")
    rp.add_argument("--precisions", type=_list, default=None, help="only these")
    rp.add_argument(
        "--compile-modes",
        type=lambda s: [] if s == "none" else _list(s),
        default=["default"],
        help="torch.compile modes, comma-separated, or none (default: default)",
    )
    rp.add_argument("--seconds", type=float, default=0.5, help="timing per column and row")
    rp.add_argument("--tolerance", type=float, help="default: 5e-3 for fp32, 5e-2 for fp16")
    args = p.parse_args(argv)
    if args.command == "prepare":
        for attr, known in (("models", MODELS), ("precisions", PRECISIONS)):
            bad = [v for v in getattr(args, attr) if v not in known]
            if bad:
                p.error(f"unknown {attr} {', '.join(bad)}; known: {', '.join(known)}")
        return prepare(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
