"""nnxc vs onnxruntime on the CPU: compile time, compile memory, accuracy and latency.

Eight models, batch 1: five light model-zoo architectures from the onnx package with random
weights (``benchmarks/models.py``) and three hand-built ones (``benchmarks/zoo.py``). For each:

1. compile with ``compiler.compile`` (default options) and export, in a subprocess, recording
   the wall time of compile + export and the subprocess's peak RSS (its own or its linker's);
2. load the artifact with ``threads`` TVM threads and onnxruntime with
   ``intra_op_num_threads=threads``;
3. check nnxc against onnxruntime on a random input: ``|nnxc - ort| <= atol + rtol * |ort|``
   elementwise (``--rtol``, ``--atol``), PASS or FAIL;
4. time both interleaved in this one process (``compiler.bench.interleaved``, as ``nnxc bench
   --compare onnxruntime`` does): warm-up, then alternating blocks (one untimed run, five
   timed), the order flipping every pair; report the medians and their ratio.

Timings are noisy on a shared machine: compare ratios from one run, never absolute times.

    python benchmarks/cpu.py                                # all eight models
    python benchmarks/cpu.py --models resnet50,transformer --blocks 12 --json out/bench.json
    python benchmarks/cpu.py --threads 1                    # TVM and onnxruntime on one thread

The randomized models are cached under ``--workdir`` (default ``out/bench``), keyed by a hash of
the scripts that make them. Exit status: 0 when every model compiled and passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The timing method and onnxruntime's settings live in the package, shared with ``nnxc bench``;
# coreml_vs_onnx.py and nnef_vs_onnx.py import them from here.
from compiler.benchmark import interleaved, ort_session  # noqa: E402

LIGHT = ("squeezenet", "resnet50", "inception_v1", "densenet121", "shufflenet")
ZOO = ("mobilenet", "transformer", "unet")
EXTRA = ("lstm",)  # hand-built too, timed only when named (--models)
MODELS = LIGHT + ZOO + EXTRA


# -- models ---------------------------------------------------------------------------------------
def _fingerprint(seed: int) -> str:
    """Changes when the scripts that make the models change, so stale caches are never used."""
    import onnx

    h = hashlib.sha256(f"{seed} {onnx.__version__}".encode())
    for script in ("models.py", "zoo.py"):
        h.update((ROOT / "benchmarks" / script).read_bytes())
    return h.hexdigest()[:10]


def prepare(name: str, workdir: Path, seed: int = 0) -> Path:
    """The model with random weights as an .onnx file (cached)."""
    path = workdir / "models" / f"{name}-{_fingerprint(seed)}.onnx"
    if path.is_file():
        return path
    import onnx

    if name in LIGHT:
        from benchmarks.models import light_path, randomized

        model = randomized(onnx.load(light_path(name)), seed=seed)
    elif name in ZOO + EXTRA:
        from benchmarks.zoo import build

        model = build(name, seed=seed)
    else:
        raise SystemExit(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    onnx.save(model, tmp)
    tmp.replace(path)
    return path


# -- compiling in a subprocess --------------------------------------------------------------------
def _peak_rss_kib() -> int:
    """The peak RSS of this process since it started, or of the linker it ran, in KiB.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the parent's peak over fork and
    exec into it, so a compile started by a large benchmark process would report the
    benchmark's size. ``VmHWM`` belongs to the address space, which exec makes new.
    """
    try:
        with open("/proc/self/status") as f:
            own = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
    except (OSError, StopIteration):  # no procfs: the inherited value is the best there is
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # The linker's peak; a value inherited from this process is at most ``own``.
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children)


def _compile_one(src: str, out: str) -> None:
    """Child side of ``compile_model``: compile + export, then one JSON line on stdout."""
    import compiler

    t0 = time.perf_counter()
    compiled = compiler.compile(src)
    t1 = time.perf_counter()
    compiled.export(out)
    t2 = time.perf_counter()
    report = {
        "compile_s": t1 - t0,
        "export_s": t2 - t1,
        "stages": compiled.timings,
        "peak_mb": _peak_rss_kib() / 1024,
    }
    print("NNXC-BENCH " + json.dumps(report), flush=True)


def compile_model(src: Path, out: Path) -> dict:
    """Compile ``src`` to ``out`` in a fresh Python process; its times and peak RSS."""
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, __file__, "--compile-one", str(src), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("NNXC-BENCH ")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"compile failed (exit {r.returncode}): {tail}")
    report = json.loads(lines[-1].split(" ", 1)[1])
    report["process_s"] = wall
    report["total_s"] = report["compile_s"] + report["export_s"]
    return report


# -- running --------------------------------------------------------------------------------------
def tvm_pool_threads() -> int:
    """How many threads TVM's pool runs (the pool starts at the first parallel kernel)."""
    import tvm

    return int(tvm.get_global_func("runtime.NumThreads")())


def bench_model(name: str, args: argparse.Namespace) -> dict:
    import compiler
    from benchmarks.models import example_input

    row: dict = {"model": name}
    src = prepare(name, args.workdir, args.seed)
    so = args.workdir / "artifacts" / f"{name}.so"
    so.parent.mkdir(parents=True, exist_ok=True)
    try:
        row["compile"] = compile_model(src, so)
    except RuntimeError as e:
        row["error"] = str(e)
        return row

    import onnx

    model = onnx.load(str(src), load_external_data=False)
    feeds = example_input(model, seed=1)
    rt = compiler.load(so, threads=args.threads)
    sess = ort_session(src, args.threads)

    got = list(rt.run(feeds).values())
    expected = sess.run(None, feeds)
    ok = len(got) == len(expected)
    errs = []
    for g, e in zip(got, expected):
        ok = ok and g.shape == e.shape
        if g.shape == e.shape:
            ok = ok and bool(np.allclose(g, e, rtol=args.rtol, atol=args.atol))
            diff = np.abs(g.astype(np.float64) - e)
            errs.append(
                {
                    "max_abs": float(diff.max()),
                    "max_rel_to_scale": float(diff.max() / max(np.abs(e).max(), 1e-30)),
                }
            )
    row["accuracy"] = {"pass": ok, "errors": errs}
    row["tvm_threads"] = tvm_pool_threads()

    ta, tb = interleaved(
        lambda: rt.run(feeds),
        lambda: sess.run(None, feeds),
        args.blocks,
        args.warmup,
        args.budget,
    )
    row["nnxc_ms"] = 1e3 * float(np.median(ta))
    row["ort_ms"] = 1e3 * float(np.median(tb))
    row["ratio"] = row["nnxc_ms"] / row["ort_ms"]
    row["runs"] = len(ta)
    row["nnxc_min_ms"] = 1e3 * min(ta)
    row["ort_min_ms"] = 1e3 * min(tb)
    return row


# -- report ---------------------------------------------------------------------------------------
def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def print_row(row: dict) -> None:
    if "error" in row:
        print(f"{row['model']:<13} ERROR {row['error']}", flush=True)
        return
    c = row["compile"]
    acc = row["accuracy"]
    err = max((e["max_abs"] for e in acc["errors"]), default=float("nan"))
    check = ("PASS" if acc["pass"] else "FAIL") + f" (max err {err:.1e})"
    print(
        f"{row['model']:<13} {c['total_s']:>9.1f} {c['peak_mb']:>8.0f} {row['nnxc_ms']:>9.2f} "
        f"{row['ort_ms']:>8.2f} {row['ratio']:>7.2f}  {check}",
        flush=True,
    )


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "") if head else "unknown"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default=",".join(LIGHT + ZOO),
        help=f"comma-separated names (default: all but {', '.join(EXTRA)})",
    )
    parser.add_argument(
        "--blocks", type=int, default=8, help="alternating blocks of 5 timed runs of each"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--budget", type=float, default=60.0, help="stop timing a model after this many seconds"
    )
    parser.add_argument("--threads", type=int, default=2, help="TVM and onnxruntime threads")
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--workdir", type=Path, default=ROOT / "out" / "bench")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--compile-one", nargs=2, metavar=("SRC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.compile_one:
        _compile_one(*args.compile_one)
        return 0
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")

    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    print(
        f"nnxc vs onnxruntime, {args.threads} thread(s), batch 1, git {git_state()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, started {started}",
        flush=True,
    )
    print(
        f"{'model':<13} {'compile s':>9} {'peak MB':>8} {'nnxc ms':>9} {'ort ms':>8} "
        f"{'ratio':>7}  check",
        flush=True,
    )
    rows = []
    for name in names:
        row = bench_model(name, args)
        rows.append(row)
        print_row(row)
    timed = [r["ratio"] for r in rows if "ratio" in r]
    gm = geomean(timed)
    failed = [r["model"] for r in rows if "error" in r or not r["accuracy"]["pass"]]
    print(f"geomean ratio nnxc/onnxruntime: {gm:.2f} over {len(timed)} model(s)")
    threads = sorted({r["tvm_threads"] for r in rows if "tvm_threads" in r})
    print(f"TVM pool threads: {threads}; onnxruntime intra-op threads: {args.threads}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "started": started,
            "git": git_state(),
            "threads": args.threads,
            "blocks": args.blocks,
            "rtol": args.rtol,
            "atol": args.atol,
            "models": rows,
            "geomean_ratio": gm,
            "failed": failed,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
