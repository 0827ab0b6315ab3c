"""The child process that compiles fuzzed models, one after another, under resource limits.

Run by ``fuzz_harness.Worker``, never by hand. It reads one JSON request per line on stdin
(``{"path": ...}``) and answers one JSON line on the protocol pipe (the original stdout; fd 1
then points at stderr, so that libraries printing to stdout cannot corrupt the protocol). Its
address space is bounded by ``RLIMIT_AS``, so a model that allocates without bound ends in a
MemoryError (or the process dying) instead of taking the machine; a hang is cut off by the
parent (by CPU time), after ``faulthandler`` has written every thread's stack to stderr on
the parent's SIGUSR1.

Running in a child is what lets the fuzzer see signals (a segfault in TVM, an abort in a C++
parser) as findings without dying itself.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import resource
import signal
import sys
import traceback
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]


def _compile(path: str, mode: str, target: str) -> None:
    """What ``nnxc compile`` does to a model: import, optimize, lower; ``compile`` also builds
    with TVM (the artifact is not written), ``import`` only imports."""
    from compiler import driver
    from compiler.options import CompileOptions

    if mode == "compile":
        driver.compile(path, target=target)
        return
    if mode == "import":
        driver.import_model(path)
        return
    opts = CompileOptions.from_kwargs(target=target)
    driver._import_and_lower(path, opts, driver.Stages(None, ()))  # silent stages


def _selftest(what: str) -> None:
    """Misbehave on purpose, so that tests can check the harness sees each kind of finding."""
    if what == "signal":
        import ctypes

        ctypes.string_at(0)
    elif what == "hang":
        while True:
            pass
    elif what == "memory":
        _ = bytearray(8 << 30)  # fine without the bound (pages stay untouched)
    elif what == "exception":
        raise KeyError("selftest")
    elif what == "multiline":
        from compiler.errors import NnxcError

        raise NnxcError("first line\nsecond line")


def _answer(request: dict, mode: str, target: str) -> dict:
    from compiler.errors import NnxcError

    try:
        if "selftest" in request:
            _selftest(request["selftest"])
        else:
            _compile(request["path"], request.get("mode", mode), target)
    except NnxcError as e:
        return {"status": "error", "type": type(e).__name__, "message": str(e)}
    except MemoryError as e:
        return {
            "status": "memory",
            "type": "MemoryError",
            "message": str(e),
            "traceback": traceback.format_exc()[-6000:],
        }
    except BaseException as e:  # noqa: BLE001 - any other exception is the finding we look for
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        return {
            "status": "exception",
            "type": type(e).__name__,
            "message": str(e)[:2000],
            "traceback": traceback.format_exc()[-6000:],
        }
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("import", "lower", "compile"), default="lower")
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--memory-mb", type=int, default=4096)
    parser.add_argument("--light", action="store_true", help="skip preloading TVM (selftests)")
    args = parser.parse_args()

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, str(_ROOT))
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    faulthandler.enable(sys.stderr)
    faulthandler.register(signal.SIGUSR1, sys.stderr, all_threads=True)  # the parent: a hang

    if not args.light:
        # Import everything a compile needs before the limit applies (TVM maps ~1 GiB).
        import tvm  # noqa: F401

        import backends.tvm  # noqa: F401
        from compiler.frontends.base import frontends

        frontends()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit = args.memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    proto.write(json.dumps({"status": "ready", "pid": os.getpid()}) + "\n")

    for line in sys.stdin:
        request = json.loads(line)
        print(f"--- case {request.get('path')}", file=sys.stderr, flush=True)
        # A hang dumps the stacks shortly before the parent kills this process.
        answer = _answer(request, args.mode, args.target)
        proto.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
