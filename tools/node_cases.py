"""Run ONNX node conformance cases whose name matches a pattern through nnxc (dev tool).

    python tools/node_cases.py 'test_reduce_sum'      # regex on the case name
    python tools/node_cases.py relu -v                 # show each failure's traceback

Each case goes through ``compiler.onnx_backend`` (import, passes, lower, build, run) and is
compared like onnx's backend runner, exactly as ``tests/compiler/test_onnx_backend.py``
does (this tool runs that module's code); it prints PASS/FAIL per case and a summary of
failures by cause.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_MODULE = Path(__file__).resolve().parents[1] / "tests" / "compiler" / "test_onnx_backend.py"


def main() -> None:
    spec = importlib.util.spec_from_file_location("nnxc_onnx_conformance", _MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    args = sys.argv[1:]
    if "--update-xfail" in args:
        raise SystemExit("use: python tests/compiler/test_onnx_backend.py --update-xfail")
    module.main(args or ["."])


if __name__ == "__main__":
    main()
