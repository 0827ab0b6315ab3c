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
from compiler.feeds import load_npz, random_feeds
from compiler.ir.dot import DEFAULT_MAX_NODES
from compiler.ir.graph import walk
from compiler.ir.types import IRTypeError
from compiler.ir.types import dtype as dtype_of
from compiler.options import CompileOptions, parse_shape_binding


def _say(message: str) -> None:
    """A progress line on stderr, above any progress bar (tqdm's write moves bars down)."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
    sys.stderr.flush()


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
    from compiler.driver import _stages
    from compiler.driver import compile as compile_model

    out = Path(args.output) if args.output else default_artifact(args.model)
    opts = options_from_args(args)
    target = opts.pop("target")
    shapes = opts.pop("input_shapes")
    t0 = time.perf_counter()
    say = None if args.quiet else _say
    cm = compile_model(args.model, target, shapes, progress=say, **opts)
    stage, _ = _stages(say, ("export",))
    stage("export", lambda: cm.export(out))
    total = time.perf_counter() - t0
    meta = cm.metadata
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {total:.1f} s")
    print("  inputs:  " + "; ".join(str(t) for t in meta.inputs))
    print("  outputs: " + "; ".join(str(t) for t in meta.outputs))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from backends.tvm.tuning import summary
    from compiler.driver import tune
    from compiler.remote import remote_from_args

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
        remote=remote_from_args(args),
        **opts,
    )
    print(f"tuned {args.model} in {time.perf_counter() - t0:.0f} s: {summary(reports)}")
    print(f"  records: {records} (build with: nnxc compile {args.model} --records {records})")
    return 0


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
    from compiler.remote import open_runtime_from_args

    rt = open_runtime_from_args(args.artifact, args, threads=args.threads, device=args.device)
    if args.inputs:
        feeds = load_npz(args.inputs)
    else:
        feeds = random_feeds(rt.inputs, args.seed)
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


def cmd_bench(args: argparse.Namespace) -> int:
    from compiler.benchmark import bench

    defaults = CompileOptions()
    options = {
        k: v for k, v in options_from_args(args).items() if v != getattr(defaults, k) and v != {}
    }
    runtime = _remote_bench_runtime(args)
    if args.inputs is None and not args.quiet:
        _say(f"no --inputs: using random inputs (seed {args.seed})")
    report = bench(
        args.model,
        runtime=runtime,
        runs=args.runs,
        budget_s=args.budget,
        warmup=args.warmup,
        threads=args.threads,
        batch=args.batch,
        inputs=args.inputs,
        seed=args.seed,
        device=args.device,
        compare=args.compare,
        quiet=args.quiet,
        progress=None if args.quiet else _say,
        **options,
    )
    print("\n".join(report.lines()))
    if args.json:
        _write_json(args.json, report.as_dict())
        print(f"wrote {args.json}")
    return 0


def _remote_bench_runtime(args: argparse.Namespace) -> Any:
    """The artifact opened on the remote that --rpc/--rpc-tracker name, or None."""
    from compiler.artifact import is_artifact
    from compiler.remote import open_runtime_from_args, remote_from_args

    if remote_from_args(args) is None:
        return None
    if args.compare:
        raise NnxcError("--compare runs onnxruntime on this machine: not with --rpc/--rpc-tracker")
    if not is_artifact(args.model):
        raise NnxcError(f"{args.model}: a remote runs artifacts: nnxc compile it first")
    return open_runtime_from_args(args.model, args, args.threads, args.device)


def cmd_verify(args: argparse.Namespace) -> int:
    from compiler.verification import verify

    opts = options_from_args(args)
    target = opts.pop("target")
    shapes = opts.pop("input_shapes")
    report = verify(
        args.model,
        target,
        shapes,
        inputs=load_npz(args.inputs) if args.inputs else None,
        seed=args.seed,
        rtol=args.rtol,
        atol=args.atol,
        reference=args.reference,
        bisect=args.bisect,
        progress=None if args.quiet else _say,
        **opts,
    )
    print("\n".join(report.lines()))
    if args.json:
        _write_json(args.json, report.to_json())
        print(f"wrote {args.json}")
    return 0 if report.ok else 1


def _write_json(path: str, data: Any) -> None:
    """Whole or not at all: written beside ``path`` (its folder made) and renamed over it."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise NnxcError(f"cannot write {path}: {e.strerror or e}") from None


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
        if args.graph:
            raise NnxcError(
                f"--graph draws a model's IR; {args.model} is a compiled artifact, which keeps "
                "no IR: give the model it was compiled from"
            )
        meta = read_metadata(args.model)
        if args.json:
            print(json.dumps(json.loads(meta.to_json()), indent=2, sort_keys=True))
            return 0
        _print_metadata(args.model, meta)
        return 0

    from compiler.driver import import_model, optimize
    from compiler.ir.text import print_graph
    from compiler.limits import memory_limit

    if args.graph:
        from compiler.ir.dot import picture_format

        picture_format(args.graph)  # a bad suffix fails before the passes run
        if args.graph_max_nodes < 1:
            raise NnxcError(f"--graph-max-nodes must be 1 or more, not {args.graph_max_nodes}")
    opts = CompileOptions.from_kwargs(**options_from_args(args))
    with memory_limit(opts.max_memory):
        graph, source = import_model(args.model, opts.input_shapes or None, None, opts.function)
        optimize(graph, opts, out=sys.stderr if args.json else sys.stdout)
    nodes = list(walk(graph))
    hist = Counter(n.op for n in nodes)
    if args.graph:
        from compiler.ir.dot import render, to_dot

        render(to_dot(graph, args.graph_max_nodes), args.graph)
        drawn = min(len(nodes), args.graph_max_nodes)
        _say(f"wrote {args.graph} ({drawn} of {len(nodes)} nodes drawn)")
    if args.json:
        summary = {
            "format": source.format,
            "name": source.name,
            "nodes": len(nodes),
            "constants": len(graph.constants()),
            "inputs": [f"{v.name}: {v.type}" for v in graph.inputs],
            "outputs": [f"{n}: {v.type}" for n, v in zip(graph.output_names, graph.outputs)],
            "ops": dict(hist.most_common()),
        }
        print(json.dumps(summary, indent=2))
        return 0
    print(print_graph(graph, large_constants="elide"))
    print(
        f"\n# {source.format} {source.name}: {len(nodes)} nodes, {len(graph.constants())} constants"
    )
    for op, n in hist.most_common():
        print(f"#   {op:<24} {n}")
    return 0


def _print_metadata(path: str, meta: Any) -> None:
    print(f"nnxc artifact {path}")
    print(f"  built by:  nnxc {meta.nnxc_version}, TVM {meta.tvm_version}")
    print(f"  target:    {_describe_target(meta.target)}")
    if meta.target.get("kind") == "cuda":
        from backends.tvm.cuda.fatbin import read_cuda_contents

        print(f"  CUDA code: {read_cuda_contents(path).describe()}")
    print(f"  source:    {meta.source_format} {meta.source_name} sha256 {meta.source_sha256}")
    for t in meta.inputs:
        print(f"  input      {t}")
    for t in meta.outputs:
        print(f"  output     {t}")
    for key, value in meta.extra.items():
        text = f"{len(value)} labels" if key == "labels" else value
        print(f"  {key + ':':<10} {text}")


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from compiler.frontends.base import formats_text
    from compiler.remote import add_rpc_arguments
    from compiler.verification import DEFAULT_ATOL, DEFAULT_RTOL, REFERENCES

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
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress lines or bars (bars show only when stderr is a terminal)",
    )
    add_compile_options(p)
    p.set_defaults(fn=cmd_compile)

    p = sub.add_parser(
        "tune",
        help="search faster kernels with MetaSchedule, for nnxc compile --records",
        description="Tune the model's kernels with TVM's MetaSchedule, measuring candidates "
        "on this machine (or on the servers of an RPC tracker: --rpc-tracker, --rpc-key), and "
        "keep the records in a folder; nnxc compile --records DIR then "
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
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress lines or bars (bars of trials per task and overall, with an ETA, "
        "show only when stderr is a terminal)",
    )
    add_compile_options(p, skip=("records",))
    add_rpc_arguments(p, server=False)
    p.set_defaults(fn=cmd_tune)

    p = sub.add_parser(
        "run",
        help="run a compiled artifact",
        description="Run an artifact on inputs from an .npz file (keyed by the "
        "model's input names), or on random inputs. A classifier's best classes are printed "
        "with their labels. Loading an artifact runs its code: run trusted artifacts only "
        "(nnxc checks that the file is a whole nnxc artifact, not that it is safe). With "
        "--rpc or --rpc-tracker it runs on a TVM RPC server, the inputs and outputs sent over "
        "the connection.",
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
    add_rpc_arguments(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser(
        "bench",
        help="measure a model's or an artifact's latency, optionally against onnxruntime",
        description="Measure latency and throughput: warm-up runs, then timed runs until "
        "--runs or --budget; prints min/median/p90/p99/max latency (ms) and inferences per "
        "second (with --batch B, samples per second too). A model (any format) is compiled "
        "in memory first, with the compile options below; an artifact is loaded (which runs "
        "its code: trusted artifacts only). --compare onnxruntime times onnxruntime on the "
        "same inputs with the same thread count, interleaved in blocks in this process, and "
        "prints the ratio of medians and the largest difference of outputs. With --rpc or "
        "--rpc-tracker, an artifact is timed on the remote device (each run's time includes "
        "sending the inputs and reading the outputs back).",
    )
    p.add_argument("model", help=f"a model ({formats_text()}) or an artifact (.so)")
    p.add_argument(
        "--runs",
        type=int,
        metavar="N",
        help="stop after N timed runs of each runtime (with --budget: whichever comes first)",
    )
    p.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="stop the timed runs after this long (default: 10 s unless --runs is given)",
    )
    p.add_argument(
        "--warmup", type=int, default=3, metavar="N", help="untimed runs before timing (default 3)"
    )
    p.add_argument(
        "--threads",
        type=int,
        help="threads of nnxc's runtime and onnxruntime's intra-op pool (default: all cores)",
    )
    p.add_argument(
        "--batch",
        type=int,
        metavar="B",
        help="size of the inputs' symbolic leading (batch) dim: a model is compiled with it "
        "bound, an artifact gets random inputs of that batch; adds samples/s",
    )
    p.add_argument("--inputs", metavar="FILE.npz", help=".npz with one array per model input")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument(
        "--device",
        metavar="DEV",
        help="cpu, cuda or cuda:N (default: the artifact's kind; a model given cuda is "
        "compiled for cuda)",
    )
    p.add_argument(
        "--compare",
        choices=["onnxruntime"],
        help="also time onnxruntime (CPU) on the same ONNX model and inputs, interleaved",
    )
    p.add_argument(
        "--json", metavar="FILE", help="write every figure, the settings and the machine facts"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines or bar")
    add_compile_options(p)
    add_rpc_arguments(p)
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser(
        "verify",
        help="compile a model and check its outputs against a reference",
        description="Compile the model (same options as compile; CPU by default), run it on "
        "inputs from an .npz file or on seeded random inputs, and compare every output with a "
        "reference: onnxruntime for ONNX models when it is installed, else nnxc's reference "
        "interpreter running the optimized IR (always for NNEF and Core ML). Prints the max "
        "abs and rel error of each output and pass/fail; exit status 0 when every output is "
        "within tolerance (|got - ref| <= atol + rtol * |ref|), 1 when not.",
    )
    p.add_argument("model", help=f"the model ({formats_text()})")
    p.add_argument("--inputs", metavar="FILE.npz", help=".npz with one array per model input")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random inputs (without --inputs)"
    )
    p.add_argument(
        "--rtol", type=float, default=DEFAULT_RTOL, help=f"relative tolerance ({DEFAULT_RTOL:g})"
    )
    p.add_argument(
        "--atol", type=float, default=DEFAULT_ATOL, help=f"absolute tolerance ({DEFAULT_ATOL:g})"
    )
    p.add_argument(
        "--reference",
        choices=REFERENCES,
        default="auto",
        help="what to compare with (default auto: onnxruntime for ONNX models when installed, "
        "else the reference interpreter)",
    )
    p.add_argument(
        "--bisect",
        action="store_true",
        help="when outputs differ, find the first IR node (in the optimized IR's order) whose "
        "compiled output differs from the reference interpreter's evaluation of that node on "
        "the same operands (within atol + rtol * max|value|), by building the graph once more "
        "with every top-level tensor value as an output; values inside if/loop regions are not "
        "compared (their node's outputs are)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    add_compile_options(p)
    p.set_defaults(fn=cmd_verify)

    p = sub.add_parser(
        "inspect",
        help="show a model's IR after the passes, or an artifact's metadata",
        description="For a model: the IR after the pass pipeline and "
        "an op histogram, or (--graph) a picture of that IR. For an artifact: its metadata.",
    )
    p.add_argument("model", help=f"a model ({formats_text()}) or an artifact (.so)")
    p.add_argument(
        "--graph",
        metavar="FILE",
        help="also draw the IR after the passes to FILE: .dot (Graphviz text), or .svg/.png "
        "(rendered by Graphviz's dot program, which must be installed); ops are boxes with "
        "their output types and attributes, constants are folded into their users' labels, "
        "if/loop regions are clusters",
    )
    p.add_argument(
        "--graph-max-nodes",
        type=int,
        default=DEFAULT_MAX_NODES,
        metavar="N",
        help="draw at most N op nodes (the first N, in the text's order); a note node says "
        f"how many more were left out (default {DEFAULT_MAX_NODES})",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of text: an artifact's whole metadata; for a model, its "
        "format, name, node and constant counts, inputs, outputs and op histogram "
        "(no IR text)",
    )
    add_compile_options(p)
    p.set_defaults(fn=cmd_inspect)
    return parser


def _version() -> str:
    from compiler import __version__

    return f"nnxc {__version__}"


def main(argv: list[str] | None = None) -> int:
    from compiler.lean_imports import install

    install()  # the nnxc process loads TVM without PyTorch's 210 MB (compiler/lean_imports.py)
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
