"""Peak memory of ``nnxc compile`` and of loading + running its artifact, against a budget.

Issue 11 asks that compiling a model peak at no more than 3x its weights plus 300 MB of
resident memory, and that loading an artifact map its weights rather than copy them. Each
measurement runs in a fresh child process (``--child``): a child's own ``VmHWM`` is the peak
of its new address space, which ``getrusage`` is not (Linux carries a parent's peak across
fork and exec). Children the compile starts (the linker) are counted by their own peak.

The compile child runs the CLI itself (``compiler.cli.main``), recording the resident size
after each stage (import, optimize, lower, build, export) so that a regression shows where.

Usage::

    python benchmarks/memory.py [--models resnet50,transformer] [--json out/memory.json]
    python benchmarks/memory.py --model-file path/to/model.onnx
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MB = 1 << 20
OVERHEAD = 300 * MB
"""What the budget allows besides 3x the weights: Python, onnx, numpy, TVM and LLVM themselves."""
DEFAULT_MODELS = ("resnet50", "transformer")


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field (VmRSS, VmHWM) in KiB; 0 where there is no procfs."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith(field + ":"))
    except (OSError, StopIteration):
        return 0


def _peak_bytes() -> int:
    """This process's peak resident size, or that of a child it ran (the linker), in bytes."""
    own = _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return 1024 * max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def weight_bytes(path: Path) -> int:
    """The bytes of the model's initializers as their dims and types declare them."""
    import onnx

    from compiler.frontends.onnx.loader import declared_bytes

    model = onnx.load(str(path), load_external_data=False)
    return sum(declared_bytes(t) for t in model.graph.initializer)


# -- the child processes --------------------------------------------------------------------------
def _child_compile(model: str, out: str) -> dict[str, Any]:
    """``nnxc compile model -o out`` in this process, with the resident size per stage."""
    from compiler import cli

    stages: dict[str, dict[str, int]] = {}
    say = cli._say

    def record(message: str) -> None:
        name, sep, _ = message.partition(": ")
        if sep and message.endswith(" s"):  # "build: 1.20 s": the stage just ended
            rss, hwm = _status_kib("VmRSS"), _status_kib("VmHWM")
            stages[name] = {"rss": 1024 * rss, "peak": 1024 * hwm}
        say(message)

    cli._say = record
    rc = cli.main(["compile", model, "-o", out])
    return {"rc": rc, "peak": _peak_bytes(), "stages": stages}


def _child_load(artifact: str) -> dict[str, Any]:
    """``compiler.load(artifact)`` and one run on random inputs: resident size after each."""
    import compiler
    from compiler.feeds import random_feeds

    base = 1024 * _status_kib("VmRSS")
    rt = compiler.load(artifact)
    loaded = 1024 * _status_kib("VmRSS")
    rt.run(random_feeds(rt.inputs, 0, batch=1))
    return {
        "before_load": base,
        "after_load": loaded,
        "after_run": 1024 * _status_kib("VmRSS"),
        "peak": _peak_bytes(),
    }


def _in_child(*args: str) -> dict[str, Any]:
    """Run this script's ``--child`` mode in a fresh interpreter; its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", result.name, *args]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")
        return json.loads(Path(result.name).read_text())


# -- measuring -----------------------------------------------------------------------------------
def measure(model: Path, workdir: Path) -> dict[str, Any]:
    """Compile ``model`` and load its artifact, each in a child; peaks against the budget."""
    workdir.mkdir(parents=True, exist_ok=True)
    artifact = workdir / f"{model.stem}.so"
    weights = weight_bytes(model)
    budget = 3 * weights + OVERHEAD
    comp = _in_child("compile", str(model), str(artifact))
    if comp["rc"] != 0:
        raise RuntimeError(f"nnxc compile {model} exited with {comp['rc']}")
    load = _in_child("load", str(artifact))
    return {
        "model": model.name,
        "model_bytes": model.stat().st_size,
        "weight_bytes": weights,
        "budget_bytes": budget,
        "compile_peak_bytes": comp["peak"],
        "compile_ok": comp["peak"] <= budget,
        "stages": comp["stages"],
        "artifact_bytes": artifact.stat().st_size,
        "load": load,
        "load_peak_bytes": load["peak"],
    }


def _mb(n: int) -> str:
    return f"{n / MB:.0f} MB"


def report(r: dict[str, Any]) -> str:
    stages = ", ".join(
        f"{k} {_mb(v['rss'])} (peak {_mb(v['peak'])})" for k, v in r["stages"].items()
    )
    load = r["load"]
    return (
        f"{r['model']}: weights {_mb(r['weight_bytes'])}; compile peak "
        f"{_mb(r['compile_peak_bytes'])} (budget {_mb(r['budget_bytes'])}: "
        f"{'ok' if r['compile_ok'] else 'OVER'})\n"
        f"  resident after each stage (peak so far): {stages}\n"
        f"  load: artifact {_mb(r['artifact_bytes'])}; resident {_mb(load['before_load'])} "
        f"before load, {_mb(load['after_load'])} after, {_mb(load['after_run'])} after one "
        f"run; peak {_mb(r['load_peak_bytes'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help="comma-separated models benchmarks/cpu.py prepares (random weights, cached)",
    )
    parser.add_argument("--model-file", help="measure this .onnx file instead of --models")
    parser.add_argument(
        "--workdir", type=Path, default=ROOT / "out" / "bench", help="models and artifacts"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    if args.child:
        result_file, mode, *rest = args.child
        result = _child_compile(*rest) if mode == "compile" else _child_load(*rest)
        Path(result_file).write_text(json.dumps(result))
        return 0
    if args.model_file:
        models = [Path(args.model_file)]
    else:
        from benchmarks.cpu import prepare

        models = [prepare(m, args.workdir) for m in args.models.split(",") if m]
    results = []
    for model in models:
        r = measure(model, args.workdir / "memory")
        print(report(r), flush=True)
        results.append(r)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r["compile_ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
