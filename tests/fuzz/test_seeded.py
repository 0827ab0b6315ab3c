"""The seeded fuzz run of ``make test``: a fixed set of mutated models per frontend, each
compiled (import, optimize, lower) in a resource-limited child; every one must compile or fail
with a one-line NnxcError. ``make fuzz`` runs the same mutators for minutes, with TVM builds.

Fixed by ``derandomize=True``: the same inputs on every run, so a red run is reproducible
(hypothesis prints the failing input's draws; ``make fuzz`` keeps such inputs as files).
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
from fuzz_harness import Worker
from fuzz_mutators import mutate
from fuzz_seeds import FRONTENDS, Seed, build_seeds
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

EXAMPLES = {"onnx": 300, "nnef": 300, "coreml": 300}
"""Inputs per frontend: about 60 s in all on 2 busy cores, most of it starting the child and
building the seeds."""


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[Seed]:
    return build_seeds(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def worker():
    with Worker("lower", timeout_s=60.0, memory_mb=4096) as w:
        yield w


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_mutated_models_compile_or_fail_cleanly(
    frontend: str, seeds: list[Seed], worker: Worker, tmp_path: Path
) -> None:
    pool = [s for s in seeds if s.frontend == frontend]
    counter = itertools.count()
    outcomes: Counter[str] = Counter()

    @settings(
        derandomize=True,
        max_examples=EXAMPLES[frontend],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: each crash restarts the child
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        seed = data.draw(st.sampled_from(pool))
        folder = tmp_path / f"case{next(counter)}"
        folder.mkdir()
        case = mutate(data.draw, seed, folder / "model")
        outcome = worker.run(case)
        outcomes[outcome.status] += 1
        assert not outcome.is_finding, (
            f"{seed.kind} seed {seed.name!r}: {outcome.summary()}\n{outcome.detail}"
        )

    check()
    # Both sides of the property were exercised: some mutants still compile, some are refused.
    assert outcomes["ok"] > 0 and outcomes["error"] > 0, outcomes
