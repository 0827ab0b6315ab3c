"""The fuzz campaign (``make fuzz``): mutate seed models of every frontend for some minutes and
compile each in a resource-limited child; report executions and findings.

A finding is an input for which ``nnxc compile`` did something other than succeed or raise a
one-line ``NnxcError``: another exception, a signal, a hang, or running out of its memory
bound. Each distinct finding (by status, exception type and innermost nnxc frame) is written
to ``OUT/findings/<frontend>-<n>/`` as the input plus ``error.txt``; ``OUT/summary.json``
holds the counts. Exit status 1 when there are findings.

Usage: python tests/fuzz/campaign.py [--minutes 10] [--mode compile|lower] [--out out/fuzz]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(1, str(_HERE.parents[1]))

from fuzz_harness import Outcome, Tally, Worker  # noqa: E402
from fuzz_mutators import mutate  # noqa: E402
from fuzz_seeds import FRONTENDS, Seed, build_seeds  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hseed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import FlakyStrategyDefinition  # noqa: E402

REPORT_EVERY_S = 30
ROUND = 20
"""Examples per hypothesis run; the campaign runs rounds in turn per frontend until time
is up, each round with its own seed."""


def _save(out: Path, frontend: str, n: int, case: Path, outcome: Outcome, seed: Seed) -> Path:
    folder = out / "findings" / f"{frontend}-{n:03d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if case.is_dir():
        shutil.copytree(case, folder / case.name)
    elif case.exists():
        shutil.copy2(case, folder / case.name)
    (folder / "error.txt").write_text(
        f"seed: {seed.kind} {seed.name}\ninput: {case.name}\nstatus: {outcome.status}\n"
        f"signature: {outcome.signature()}\n{outcome.type}: {outcome.message}\n\n"
        f"{outcome.detail}\n"
    )
    return folder


def run_round(
    worker: Worker,
    frontend: str,
    seeds: list[Seed],
    round_seed: int,
    scratch: Path,
    tally: Tally,
    out: Path,
    stop_at: float,
) -> None:
    """ROUND mutated inputs of ``frontend``, each compiled by ``worker``."""
    counter = [0]

    @settings(
        max_examples=ROUND,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hseed(round_seed)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        if time.monotonic() > stop_at:
            return
        counter[0] += 1
        seed = data.draw(st.sampled_from(seeds))
        case_dir = scratch / f"{frontend}-{round_seed}-{counter[0]}"
        case_dir.mkdir()
        try:
            try:
                case = mutate(data.draw, seed, case_dir / "model")
            except Exception as e:  # noqa: BLE001 - a bug of the fuzzer: say so, go on
                print(f"  mutator error on {seed.kind} {seed.name}: {type(e).__name__}: {e}")
                return
            outcome = worker.run(case)
            if tally.add(frontend, outcome):
                where = _save(out, frontend, len(tally.findings), case, outcome, seed)
                print(f"  NEW finding [{frontend}] {outcome.summary()} -> {where}", flush=True)
        finally:
            shutil.rmtree(case_dir, ignore_errors=True)

    try:
        one()
    except FlakyStrategyDefinition as e:
        # A round cut short by the clock draws nothing; any other case is a mutator drawing
        # from something that changed between runs: a bug of the fuzzer, not of nnxc.
        if time.monotonic() < stop_at:
            print(f"  round {round_seed} ({frontend}) ended early: {e}".splitlines()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the campaign")
    parser.add_argument(
        "--mode",
        choices=("compile", "lower"),
        default="compile",
        help="compile: import, optimize, lower and build with TVM; lower: stop before the build",
    )
    parser.add_argument("--out", type=Path, default=Path("out/fuzz"), help="where findings go")
    parser.add_argument(
        "--frontends", default=",".join(FRONTENDS), help="comma-separated: onnx,nnef,coreml"
    )
    parser.add_argument("--seed", type=int, default=0, help="first hypothesis seed")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per input")
    parser.add_argument("--memory-mb", type=int, default=4096, help="address-space bound")
    parser.add_argument("--no-zoo", action="store_true", help="hand-written seeds only")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # coremltools' progress bars, building seeds
    warnings.filterwarnings("ignore")  # PyTorch's tracer warnings, exporting zoo seeds

    frontends = tuple(f for f in args.frontends.split(",") if f)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    seeds = build_seeds(args.out / "seeds", frontends, zoo=not args.no_zoo)
    by_frontend = {f: [s for s in seeds if s.frontend == f] for f in frontends}
    print(
        f"seeds: {', '.join(f'{f} {len(s)}' for f, s in by_frontend.items())} "
        f"({time.monotonic() - t0:.0f} s)",
        flush=True,
    )
    stop_at = time.monotonic() + args.minutes * 60
    tally = Tally()
    started = said = time.monotonic()
    round_seed = args.seed
    with (
        Worker(args.mode, args.timeout, args.memory_mb) as worker,
        tempfile.TemporaryDirectory(prefix="nnxc-fuzz-") as tmp,
    ):
        try:
            while time.monotonic() < stop_at:
                for frontend in frontends:
                    if time.monotonic() >= stop_at:
                        break
                    run_round(
                        worker,
                        frontend,
                        by_frontend[frontend],
                        round_seed,
                        Path(tmp),
                        tally,
                        args.out,
                        stop_at,
                    )
                round_seed += 1
                if time.monotonic() - said < REPORT_EVERY_S:
                    continue
                said = time.monotonic()
                runs = ", ".join(f"{f} {n}" for f, n in tally.executions.items())
                found = len(tally.findings)
                minutes = (said - started) / 60
                print(f"[{minutes:5.1f} min] executions: {runs}; findings: {found}", flush=True)
        except KeyboardInterrupt:
            print("interrupted: the summary covers the inputs run so far", flush=True)
        restarts = worker.restarts
    elapsed = time.monotonic() - started
    summary = {
        "minutes": round(elapsed / 60, 2),
        "mode": args.mode,
        "seeds": {f: [f"{s.kind}:{s.name}" for s in v] for f, v in by_frontend.items()},
        "executions": tally.executions,
        "outcomes": tally.statuses,
        "worker_restarts": restarts,
        "findings": [
            {"frontend": f, "signature": sig, "summary": o.summary()}
            for sig, (f, o) in tally.findings.items()
        ],
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"campaign: {elapsed / 60:.1f} min, mode {args.mode}")
    for f in frontends:
        print(f"  {f}: {tally.executions.get(f, 0)} executions, {tally.statuses.get(f, {})}")
    print(f"findings: {len(tally.findings)} (written under {args.out / 'findings'})")
    for sig, (_, o) in tally.findings.items():
        print(f"  {sig}: {o.summary()}")
    return 1 if tally.findings else 0


if __name__ == "__main__":
    sys.exit(main())
