"""Generators, crons, logs, retention and workflow resolution (tests/test_schedules.py) re-run on PostgreSQL.

Every test there that uses the `w` world runs here unchanged, with `w` rebuilt on a fresh PostgreSQL
database; the pure-computation tests are not repeated.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import pytest

from colonies.clock import FakeClock, to_datetime
from colonies.config import Config
from colonies.model import Colony, Executor, ExecutorState, User
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.services import Services
from tests import test_schedules as base
from tests.conftest import PgDatabase

for _name, _obj in list(vars(base).items()):
    if _name.startswith("test_") and callable(_obj) and "w" in inspect.signature(_obj).parameters:
        globals()[_name] = _obj


@pytest.fixture
async def w(pg_database: PgDatabase) -> AsyncIterator[base.World]:
    from colonies.storage.postgres import PostgresStorage

    storage = PostgresStorage(dsn=pg_database.dsn)
    await storage.open()
    clock = FakeClock(base.T0)
    s = Services(Config(db_type="postgresql"), storage, clock)
    user, executor = id_of(generate_prvkey()), id_of(generate_prvkey())
    await storage.add_colony(Colony(colonyid=id_of(generate_prvkey()), name=base.COLONY))
    await storage.add_user(User(colonyname=base.COLONY, userid=user, name="alice"))
    await storage.add_executor(Executor(executorid=executor, executortype="test", executorname="exec",
                                        colonyname=base.COLONY, state=ExecutorState.APPROVED,
                                        commissiontime=to_datetime(base.T0)))
    yield base.World(s, clock, user, executor, pg_database.dsn)
    await storage.close()
