import os
import sys

import pytest

_here = os.path.dirname(os.path.abspath(__file__))
# Test helpers (oputil, onnxutil) import by module name; the repository root holds
# benchmarks/ and tools/. The tests folder itself is not put on the path: its subfolders
# mirror the packages (tests/backends, ...) and would shadow them.
sys.path.insert(0, os.path.join(_here, "helpers"))
sys.path.insert(1, os.path.dirname(_here))


# -- GPU tests: @pytest.mark.gpu, skipped with the reason where no GPU is usable ------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gpu: needs an NVIDIA GPU (skipped with the reason where there is none)"
    )


_no_gpu: list[str | None] = []  # the reason, once asked
_gpu_outcomes: dict[str, str] = {}  # test id -> passed | failed | skipped
_gpu_skip_reasons: set[str] = set()


def no_gpu_reason() -> str | None:
    """Why cuda:0 cannot run CUDA artifacts here (no driver, a stub, no GPU...), or None."""
    if not _no_gpu:
        from compiler.devices import DeviceError, open_gpu

        try:
            open_gpu(0, ())
            _no_gpu.append(None)
        except DeviceError as e:
            _no_gpu.append(f"no GPU: {e}")
    return _no_gpu[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # a user property reaches the reports, also from xdist workers
        if item.get_closest_marker("gpu"):
            item.user_properties.append(("gpu", True))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        reason = no_gpu_reason()
        if reason:
            pytest.skip(reason)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if ("gpu", True) not in report.user_properties or _gpu_outcomes.get(report.nodeid) == "failed":
        return
    if report.skipped:
        _gpu_outcomes[report.nodeid] = "skipped"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _gpu_skip_reasons.add(reason.removeprefix("Skipped: "))
    elif report.failed:
        _gpu_outcomes[report.nodeid] = "failed"
    elif report.when == "call":
        _gpu_outcomes[report.nodeid] = "passed"


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's TerminalReporter
    """One line saying how many GPU tests ran, so that a run without a GPU cannot pass for one
    with."""
    if not _gpu_outcomes:
        return
    n = {k: list(_gpu_outcomes.values()).count(k) for k in ("passed", "failed", "skipped")}
    line = (
        f"GPU tests: {n['passed'] + n['failed']} ran ({n['passed']} passed, {n['failed']} "
        f"failed), {n['skipped']} skipped"
    )
    if _gpu_skip_reasons:
        line += ": " + "; ".join(sorted(_gpu_skip_reasons))
    terminalreporter.write_sep("=", line)
