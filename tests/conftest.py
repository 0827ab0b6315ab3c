import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
# Test helpers (oputil, onnxutil) import by module name; the repository root holds
# benchmarks/ and tools/. The tests folder itself is not put on the path: its subfolders
# mirror the packages (tests/backends, ...) and would shadow them.
sys.path.insert(0, os.path.join(_here, "helpers"))
sys.path.insert(1, os.path.dirname(_here))
