"""The converted-model corpus (benchmarks/nnef_models.py), made once per pytest session and
kept under its base temp folder."""

from __future__ import annotations

import pytest

from benchmarks.nnef_models import NnefModels


@pytest.fixture(scope="session")
def nnef_models(tmp_path_factory: pytest.TempPathFactory) -> NnefModels:
    folder = tmp_path_factory.getbasetemp() / "nnef_models"
    folder.mkdir(parents=True, exist_ok=True)
    return NnefModels(folder)
