"""A real server per test, on SQLite and on PostgreSQL (skipped locally without it, required in CI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProc, make_server

LOOP_PERIOD_MS = 200  # the deadline loop's period


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProc]:
    env = {"COLONIES_TIMEOUT_CHECKER_PERIOD": str(LOOP_PERIOD_MS)}
    if request.param == "postgresql":
        env.update(request.getfixturevalue("pg_database").server_env())
    srv = make_server(tmp_path, env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
