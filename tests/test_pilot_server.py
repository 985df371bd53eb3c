"""What pilot slots need from the server and the SDK, without Slurm: the assign filter on maxexectime
(availableexectime) on every storage backend and over HTTP, and the SDK over a Unix socket."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from colonies.client.asyncio import AsyncClient
from colonies.client.core import func_spec
from colonies.errors import ClientError
from colonies.storage.base import ClaimRequest, Storage
from tests.conftest import ColonyKeys, ServerProc
from tests.test_storage_contract import T0, backend, proc  # noqa: F401
from tests.test_storage_contract import req as claim_req

COLONY, TYPE = "c1", "t"


def fitting(seconds: int, name: str = "e1") -> ClaimRequest:
    return dataclasses.replace(claim_req(name), max_exec_s=seconds)


async def test_a_claim_with_max_exec_takes_only_processes_that_fit(backend: Storage) -> None:  # noqa: F811
    """0 < maxexectime <= max_exec_s: a process without a limit never fits a bounded slot."""
    unlimited, long, short = proc(maxexectime=-1), proc(maxexectime=100), proc(maxexectime=10)
    named = proc(maxexectime=20)
    named.spec.conditions.executornames = ["e1"]
    await backend.add_processes([unlimited, long, short, named])
    got = await backend.claim(fitting(50), T0 + 1)
    assert got is not None and got.processid == short.processid
    got = await backend.claim(fitting(50), T0 + 2)  # a process targeted at the slot by name, too
    assert got is not None and got.processid == named.processid
    assert await backend.claim(fitting(50), T0 + 3) is None
    got = await backend.claim(fitting(100), T0 + 4)
    assert got is not None and got.processid == long.processid
    assert await backend.claim(fitting(10**6), T0 + 5) is None  # the unlimited one fits no bound
    got = await backend.claim(claim_req("e2"), T0 + 6)  # without a bound: anything
    assert got is not None and got.processid == unlimited.processid


def test_assign_availableexectime_over_http(server: ServerProc, colony: ColonyKeys) -> None:
    user = server.client(colony.user_prvkey)
    ex = server.client(colony.executor_prvkey)
    try:
        long = user.submit(func_spec("f", colony.name, colony.executor_type, maxexectime=60)).processid
        short = user.submit(func_spec("f", colony.name, colony.executor_type, maxexectime=5)).processid
        assert ex.assign(colony.name, -1, exectime=30).processid == short
        with pytest.raises(ClientError) as err:
            ex.assign(colony.name, -1, exectime=30)
        assert err.value.status == 404
        assert ex.assign(colony.name, -1).processid == long
    finally:
        user.close_client()
        ex.close_client()


def test_a_long_poll_with_availableexectime_waits_for_a_process_that_fits(server: ServerProc,
                                                                          colony: ColonyKeys) -> None:
    """A submitted process that does not fit leaves the long-poll parked; the next that fits ends it."""
    async def main() -> str:
        ex = AsyncClient("127.0.0.1", server.port, prvkey=colony.executor_prvkey)
        user = ex.with_key(colony.user_prvkey)
        try:
            poll = asyncio.ensure_future(ex.assign(colony.name, 10, exectime=30))
            await asyncio.sleep(0.3)
            await user.submit(func_spec("f", colony.name, colony.executor_type, maxexectime=600))
            await asyncio.sleep(0.5)
            assert not poll.done()
            fits = await user.submit(func_spec("f", colony.name, colony.executor_type, maxexectime=20))
            got = await asyncio.wait_for(poll, 5)
            assert got.processid == fits.processid
            return got.processid
        finally:
            await ex.aclose()

    assert asyncio.run(main())
