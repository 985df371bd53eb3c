"""ruff and mypy --strict over the whole repository (STYLE.md: typed code, tests included)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)


def test_ruff() -> None:
    r = _run("ruff", "check", ".")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_mypy_strict() -> None:
    r = _run("mypy", "colonies", "tests", "bench", "examples")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
