"""What pilot slots need from the server and the SDK, without Slurm: the assign filter on maxexectime
(availableexectime) on every storage backend and over HTTP, and the SDK through the relay's Unix socket."""

from __future__ import annotations

import asyncio
import dataclasses
import stat
import time
from pathlib import Path

import pytest

from colonies.client.asyncio import AsyncClient
from colonies.client.core import func_spec
from colonies.client.sync import Client
from colonies.errors import ClientError, TransportError
from colonies.executors.kit import Executor
from colonies.executors.pilot_config import has_pilot, load_pilot
from colonies.executors.relay import Relay
from colonies.protocol.crypto import generate_prvkey
from colonies.storage.base import ClaimRequest, Storage
from tests.conftest import ColonyKeys, ServerProc, free_port
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


# -- the relay ---------------------------------------------------------------------------------------------
def relayed(server: ServerProc, sock: Path) -> Relay:
    return Relay(f"http://127.0.0.1:{server.port}/api", unix=str(sock))


def test_the_sdk_through_a_relay_socket_long_polls_stay_long(server: ServerProc, colony: ColonyKeys,
                                                             tmp_path: Path) -> None:
    """Both clients over the relay's Unix socket; an assign parks for its whole timeout, answers a
    submit at once, and a slot that hangs up does not leave a claim behind it."""
    sock = tmp_path / "r.sock"

    async def main() -> None:
        relay = relayed(server, sock)
        await relay.start()
        ex = AsyncClient(prvkey=colony.executor_prvkey, socket=str(sock))
        user = ex.with_key(colony.user_prvkey)
        try:
            assert stat.S_IMODE(sock.stat().st_mode) == 0o600
            t0 = time.monotonic()
            with pytest.raises(ClientError) as err:
                await ex.assign(colony.name, 2)
            assert err.value.status == 404 and time.monotonic() - t0 >= 1.9  # parked the whole 2 s
            poll = asyncio.ensure_future(ex.assign(colony.name, 10))
            await asyncio.sleep(0.5)
            pid = (await user.submit(func_spec("f", colony.name, colony.executor_type))).processid
            t1 = time.monotonic()
            assert (await asyncio.wait_for(poll, 5)).processid == pid and time.monotonic() - t1 < 1.0
            await ex.close(pid, ["ok"])
            # a long-poll the slot gives up: its request to the server goes too, so it claims nothing
            gone = asyncio.ensure_future(ex.assign(colony.name, 10))
            await asyncio.sleep(0.5)
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
            await asyncio.sleep(0.5)
            later = (await user.submit(func_spec("f", colony.name, colony.executor_type))).processid
            assert (await ex.assign(colony.name, 5)).processid == later
            assert relay.stats.forwarded >= 5 and relay.stats.failed == 0

            def sync_read() -> int:  # the sync client (ColonyFS staging uses it) through the socket too
                with Client(prvkey=colony.user_prvkey, socket=str(sock)) as c:
                    return c.get_process(later).state
            assert await asyncio.to_thread(sync_read) == 1
        finally:
            await ex.aclose()
            await relay.close()
        async with AsyncClient(prvkey=colony.user_prvkey, socket=str(sock)) as c:
            with pytest.raises(TransportError):  # the relay is gone: no reply at all
                await c.get_process("0" * 64)

    asyncio.run(main())


def test_a_relay_whose_server_is_down_answers_as_a_transport_error(tmp_path: Path, colony_free_port: int) -> None:
    """The slot must read "server unreachable" as a transport error (and re-send a close), not as the
    server refusing it."""
    sock = tmp_path / "r.sock"

    async def main() -> None:
        relay = Relay(f"http://127.0.0.1:{colony_free_port}/api", unix=str(sock))
        await relay.start()
        try:
            async with AsyncClient(prvkey=generate_prvkey(), socket=str(sock)) as c:
                with pytest.raises(TransportError) as err:
                    await c.get_process("0" * 64)
            assert "502" in err.value.message and relay.stats.failed == 1
        finally:
            await relay.close()

    asyncio.run(main())


def test_a_relay_socket_path_too_long_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="longer than"):
        Relay("http://127.0.0.1:1/api", unix="/tmp/" + "x" * 120)


@pytest.fixture
def colony_free_port() -> int:
    return free_port()


# -- the [pilot] table and the slots' walltime arithmetic ----------------------------------------------------
def test_the_pilot_table_is_checked_and_says_what_fits(tmp_path: Path) -> None:
    path = tmp_path / "slurm.toml"
    path.write_text('[pilot]\nwalltime = 600\nheadroom = 30\nslot_poll = 10\n')
    cfg = load_pilot(str(path))
    assert has_pilot(str(path)) and cfg.longest == 600 - 30 - 10 - 5 and cfg.slots == 4
    assert cfg.fits(555) and not cfg.fits(556) and not cfg.fits(-1) and not cfg.fits(0)
    for bad, why in (("walltime = 40\nheadroom = 30", "leaves no time"), ("relay = \"udp://x:1\"", "pilot.relay"),
                     ("nodes = 2\nlauncher = \"none\"", "nodes > 1"), ("slots = 3", "unknown pilot setting"),
                     ("sbatch_options = [\"exclusive\"]", "sbatch options"), ("max_queued = 0", "max_queued")):
        path.write_text(f"[pilot]\n{bad}\n")
        with pytest.raises(ValueError, match=why):
            load_pilot(str(path))
    path.write_text("[slurm]\n")
    assert not has_pilot(str(path))


def test_a_slot_asks_only_for_what_fits_before_its_end_and_stops_near_it() -> None:
    ex = Executor(poll_timeout=10)
    assert ex._poll() == (10, 0)  # no end: the usual long-poll, any process
    for left in (100.5, 12.5, 3.5):
        ex.until = time.monotonic() + left
        timeout, exectime = ex._poll()
        assert 1 <= timeout <= min(10, left / 2) and exectime >= 1, (left, timeout, exectime)
        assert left - 2 < timeout + exectime <= left  # taken at the end of the poll, it still ends in time
    ex.until = time.monotonic() + 1.5
    assert ex._poll() == (0, 0)  # too little left for any process: the slot stops pulling
