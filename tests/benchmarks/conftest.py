"""The benchmark scripts' smoke tests share how a script is imported."""

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def script(monkeypatch):
    """Import a benchmark script as a module; its directory goes on sys.path, which the spawned children inherit."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module
