"""The ``nnxc`` command: compile, tune, run and inspect models.

Errors a user can act on print as one line (``nnxc: error: ...``) with exit status 1;
``--debug`` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import NnxcError
from compiler.ir.graph import walk
from compiler.ir.types import IRTypeError
from compiler.ir.types import dtype as dtype_of
from compiler.options import CompileOptions, parse_shape_binding


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- options shared with the API --------------------------------------------------------------
def add_compile_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per CompileOptions field (but those in ``skip``), with the field's own help."""
    for f in fields(CompileOptions):
        if f.name in skip:
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        default = f.default if f.default is not MISSING else None
        if f.type in ("bool", bool):
            # A field on by default gets a --no-... flag that turns it off.
            action = "store_false" if f.default is True else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=f.metadata["help"])
        elif f.metadata.get("parse") == "shape":
            parser.add_argument(
                flag,
                dest=f.name,
                action="append",
                default=[],
                metavar="NAME=D0,D1,...",
                help=f.metadata["help"],
            )
        else:
            parser.add_argument(
                flag,
                dest=f.name,
                default=default,
                metavar=f.metadata.get("metavar"),
                help=f.metadata["help"],
            )


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(CompileOptions):
        value = getattr(args, f.name)
        kind = f.metadata.get("parse")
        if kind == "shape":
            value = dict(parse_shape_binding(v) for v in value)
        elif kind == "list":
            if value is None:
                value = None if f.name == "passes" else []
            elif isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
        out[f.name] = value
    return out


# -- commands ---------------------------------------------------------------------------------
def default_artifact(model: str) -> Path:
    """MODEL's path with its format's suffix replaced by .so (a folder: beside it)."""
    from compiler.frontends.base import frontend_for

    path = Path(model)
    try:
        stem = frontend_for(model).stem(path)
    except NnxcError:
        stem = path.stem
    return path.with_name(stem + ".so")


def cmd_compile(args: argparse.Namespace) -> int:
    from compiler.driver import compile as compile_model

    out = Path(args.output) if args.output else default_artifact(args.model)
    opts = options_from_args(args)
    target = opts.pop("target")
    shapes = opts.pop("input_shapes")
    t0 = time.perf_counter()
    cm = compile_model(args.model, target, shapes, progress=None if args.quiet else _say, **opts)
    if not args.quiet:
        _say("export...")
    cm.export(out)
    total = time.perf_counter() - t0
    meta = cm.metadata
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {total:.1f} s")
    print("  inputs:  " + "; ".join(str(t) for t in meta.inputs))
    print("  outputs: " + "; ".join(str(t) for t in meta.outputs))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from backends.tvm.tuning import summary
    from compiler.driver import tune

    opts = options_from_args(args)
    target = opts.pop("target")
    shapes = opts.pop("input_shapes")
    records = opts.pop("records")
    t0 = time.perf_counter()
    reports = tune(
        args.model,
        records,
        args.trials,
        target,
        shapes,
        progress=None if args.quiet else _say,
        seed=args.seed,
        **opts,
    )
    print(f"tuned {args.model} in {time.perf_counter() - t0:.0f} s: {summary(reports)}")
    print(f"  records: {records} (build with: nnxc compile {args.model} --records {records})")
    return 0


def _random_feeds(rt: Any, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for t in rt.inputs:
        if not all(isinstance(d, int) for d in t.shape):
            raise NnxcError(
                f"input {t} has symbolic dims: give --inputs, or compile with --input-shape"
            )
        if t.dtype.startswith("float"):
            feeds[t.name] = rng.standard_normal(t.shape).astype(t.dtype)
        elif t.dtype == "bool":
            feeds[t.name] = rng.integers(0, 2, t.shape).astype(bool)
        else:
            feeds[t.name] = rng.integers(0, 10, t.shape).astype(t.dtype)
    return feeds


def _load_npz(path: str) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise NnxcError(f"{p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError) as e:
        raise NnxcError(f"{p}: not a readable .npz file ({e})") from None


def _is_number(d: np.dtype) -> bool:
    """Numbers whose min/max/mean mean something: IR dtypes other than bool."""
    try:
        return not dtype_of(d).is_bool
    except IRTypeError:
        return False


def _summary(x: np.ndarray) -> str:
    flat = x.reshape(-1)
    head = np.array2string(flat[:5], precision=4, separator=", ")
    stats = ""
    if x.size and _is_number(x.dtype):
        wide = x.astype("float64")
        stats = f" min {wide.min():.4g} max {wide.max():.4g} mean {wide.mean():.4g}"
    return f"{x.dtype}{list(x.shape)}{stats} first {head}"


def cmd_run(args: argparse.Namespace) -> int:
    from compiler.runtime import load

    rt = load(args.artifact, threads=args.threads, device=args.device)
    if args.inputs:
        feeds = _load_npz(args.inputs)
    else:
        feeds = _random_feeds(rt, args.seed)
        _say(f"no --inputs: using random inputs (seed {args.seed})")
    outs = rt.run(feeds)
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        rt.run(feeds)
        times.append(time.perf_counter() - t)
    for name, x in outs.items():
        print(f"{name}: {_summary(x)}")
    if rt.labels:
        _print_top_classes(rt.labels, outs)
    if times:
        print(f"latency: median {np.median(times) * 1e3:.2f} ms over {len(times)} runs")
    if args.outputs:
        _write_npz(args.outputs, outs)
        print(f"wrote {args.outputs}")
    return 0


def _print_top_classes(labels: list, outs: dict[str, np.ndarray], top: int = 5) -> None:
    """A classifier's best classes: each output holding one score per label."""
    for name, x in outs.items():
        if x.ndim == 0 or x.shape[-1] != len(labels):
            continue
        scores = x.reshape(-1, len(labels))[0]
        best = np.argsort(-scores, kind="stable")[:top]
        ranked = ", ".join(f"{labels[i]} ({scores[i]:.4g})" for i in best)
        print(f"top classes of {name}: {ranked}")


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """np.savez appends .npz to names without it; write exactly the path given."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _describe_target(target: dict) -> str:
    """``cuda (archs sm_80, sm_90)``, or the LLVM target's JSON."""
    if target.get("kind") == "cuda":
        return f"cuda (archs {', '.join(target.get('archs') or [target.get('arch', '?')])})"
    return json.dumps(target, sort_keys=True)


def cmd_inspect(args: argparse.Namespace) -> int:
    from compiler.artifact import is_artifact, read_metadata

    if is_artifact(args.model):
        meta = read_metadata(args.model)
        print(f"nnxc artifact {args.model}")
        print(f"  built by:  nnxc {meta.nnxc_version}, TVM {meta.tvm_version}")
        print(f"  target:    {_describe_target(meta.target)}")
        if meta.target.get("kind") == "cuda":
            from backends.tvm.cuda.fatbin import read_cuda_contents

            print(f"  CUDA code: {read_cuda_contents(args.model).describe()}")
        print(f"  source:    {meta.source_format} {meta.source_name} sha256 {meta.source_sha256}")
        for t in meta.inputs:
            print(f"  input      {t}")
        for t in meta.outputs:
            print(f"  output     {t}")
        for key, value in meta.extra.items():
            text = f"{len(value)} labels" if key == "labels" else value
            print(f"  {key + ':':<10} {text}")
        return 0

    from compiler.driver import import_model, optimize
    from compiler.ir.text import print_graph
    from compiler.limits import memory_limit

    opts = CompileOptions.from_kwargs(**options_from_args(args))
    with memory_limit(opts.max_memory):
        graph, source = import_model(args.model, opts.input_shapes or None, None, opts.function)
        optimize(graph, opts, out=sys.stdout)
    print(print_graph(graph, large_constants="elide"))
    nodes = list(walk(graph))
    hist = Counter(n.op for n in nodes)
    print(
        f"\n# {source.format} {source.name}: {len(nodes)} nodes, {len(graph.constants())} constants"
    )
    for op, n in hist.most_common():
        print(f"#   {op:<24} {n}")
    return 0


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from compiler.frontends.base import formats_text

    parser = argparse.ArgumentParser(
        prog="nnxc",
        description="Compile neural-network models to native code through Apache TVM. "
        f"Model formats: {formats_text()}.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "compile",
        help="compile a model into a deployable shared library",
        description="Compile a model into one .so holding kernels, VM code, weights and metadata.",
    )
    p.add_argument("model", help=f"the model ({formats_text()})")
    p.add_argument("-o", "--output", help="the artifact to write (default: MODEL with .so)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    add_compile_options(p)
    p.set_defaults(fn=cmd_compile)

    p = sub.add_parser(
        "tune",
        help="search faster kernels with MetaSchedule, for nnxc compile --records",
        description="Tune the model's kernels with TVM's MetaSchedule, measuring candidates "
        "on this machine, and keep the records in a folder; nnxc compile --records DIR then "
        "builds each kernel with the fastest record. Our own schedules are measured first and "
        "kept among the records, so a tuned build is never slower, kernel by kernel. Each "
        "kernel taking 1% of the model's time or more gets 8 trials, the rest go by time "
        "(costliest kernels first). Tuning again with the same folder runs only the trials "
        "still missing. Give compile the same options.",
    )
    p.add_argument("model", help=f"the model ({formats_text()})")
    p.add_argument(
        "--trials",
        type=int,
        required=True,
        metavar="N",
        help="measured candidates in all, over all kernels (about 2 s each on 2 cores)",
    )
    p.add_argument(
        "--records",
        required=True,
        metavar="DIR",
        help="the folder of tuning records to write (made if missing, kept and extended if not)",
    )
    p.add_argument("--seed", type=int, help="seed of the search (default: random)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    add_compile_options(p, skip=("records",))
    p.set_defaults(fn=cmd_tune)

    p = sub.add_parser(
        "run",
        help="run a compiled artifact",
        description="Run an artifact on inputs from an .npz file (keyed by the "
        "model's input names), or on random inputs. A classifier's best classes are printed "
        "with their labels. Loading an artifact runs its code: run trusted artifacts only "
        "(nnxc checks that the file is a whole nnxc artifact, not that it is safe).",
    )
    p.add_argument("artifact", help="the .so written by nnxc compile")
    p.add_argument("--inputs", help=".npz with one array per model input")
    p.add_argument("--outputs", help="write the outputs to this .npz")
    p.add_argument(
        "--device",
        metavar="DEV",
        help="cpu, cuda or cuda:N (default: the artifact's kind: CPU code on the CPU, CUDA "
        "code on cuda:0)",
    )
    p.add_argument("--threads", type=int, help="threads for the runtime (default: all cores)")
    p.add_argument("--repeat", type=int, default=0, help="time this many extra runs")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser(
        "inspect",
        help="show a model's IR after the passes, or an artifact's metadata",
        description="For a model: the IR after the pass pipeline and "
        "an op histogram. For an artifact: its metadata.",
    )
    p.add_argument("model", help=f"a model ({formats_text()}) or an artifact (.so)")
    add_compile_options(p)
    p.set_defaults(fn=cmd_inspect)
    return parser


def _version() -> str:
    from compiler import __version__

    return f"nnxc {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except NnxcError as e:
        if args.debug:
            raise
        msg = str(e).strip()
        print(f"nnxc: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnxc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug of ours: still one line unless --debug
        if args.debug:
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(
            f"nnxc: internal error: {type(e).__name__}: {first} (--debug shows the traceback)",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
