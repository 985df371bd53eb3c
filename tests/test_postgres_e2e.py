"""The pycolonies end-to-end suites (test_e2e_pycolonies.py, test_workflows_e2e.py) re-run unchanged
against servers on PostgreSQL.

The SDK suite talks to replica A while a second replica B runs on the same database, so deadlines are
applied by two replicas at once (expire takes rows with SKIP LOCKED) and A's events reach B.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import test_e2e_pycolonies as sdk_suite
from tests import test_workflows_e2e as workflow_suite
from tests.conftest import PgDatabase, ServerProc, fresh_pg_database, make_server

pytestmark = pytest.mark.e2e

for _suite in (sdk_suite, workflow_suite):
    for _name, _obj in list(vars(_suite).items()):
        if _name.startswith("test_") and callable(_obj):
            globals()[_name] = _obj

# Fixtures the SDK suite's tests request (module-level there); `srv` is replaced below.
col = sdk_suite.col
sdk = sdk_suite.sdk


def _pg_env(db: PgDatabase) -> dict[str, str]:
    return {**db.server_env(), "COLONIES_ETCD_ENDPOINTS": ""}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with fresh_pg_database() as db:
        a = make_server(tmp_path_factory.mktemp("pg-a"), _pg_env(db))
        b = make_server(tmp_path_factory.mktemp("pg-b"), {**_pg_env(db), "COLONIES_SERVER_ID": a.env["COLONIES_SERVER_ID"]})
        a.start()
        try:
            b.start()
            try:
                yield a
            finally:
                b.stop()
        finally:
            a.stop()


@pytest.fixture
def server(tmp_path: Path, pg_database: PgDatabase) -> Iterator[ServerProc]:
    s = make_server(tmp_path, _pg_env(pg_database))
    s.start()
    try:
        yield s
    finally:
        s.stop()
