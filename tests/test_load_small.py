"""Long-poll load, small and bounded: 500 parked assigns on a real server, 50 submits.

Correctness only (every process assigned exactly once, every parked request answered); the timing
figures live in bench/load_longpoll.py and are never asserted.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import msgspec

from colonies.client import func_spec
from colonies.model import FunctionSpec, Process, ProcessState
from colonies.protocol import envelope
from colonies.scheduler import EventBus
from colonies.server.handlers_processes import normalize_spec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from bench_core import COLONY, setup
from load_longpoll import ETYPE, post, raise_nofile, read_reply

from tests.conftest import ServerProc

PARKED, SUBMITS, EXECUTORS, TIMEOUT_S = 500, 50, 5, 4


async def _scenario(srv: ServerProc) -> tuple[list[tuple[int, str]], list[str]]:
    keys = await setup(srv.port, srv.server_prvkey, {ETYPE: EXECUTORS})
    assign = [post(envelope.encode_request({"msgtype": "assignprocessmsg", "colonyname": COLONY,
                                            "timeout": TIMEOUT_S, "availablecpu": "", "availablemem": ""}, prv))
              for prv in keys.executors[ETYPE]]
    version = post(envelope.encode_request({"msgtype": "versionmsg"}, keys.user))
    dec = msgspec.json.Decoder(dict)
    opened = 0
    sem = asyncio.Semaphore(100)

    async def parked(i: int) -> tuple[int, str]:
        nonlocal opened
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(version)
            assert (await read_reply(r))[0] == 200
        opened += 1
        try:
            w.write(assign[i % EXECUTORS])
            status, body = await asyncio.wait_for(read_reply(r), TIMEOUT_S + 10)
            return status, dec.decode(envelope.decode_reply(body)[1]).get("processid", "") if status == 200 else ""
        finally:
            w.close()

    tasks = [asyncio.ensure_future(parked(i)) for i in range(PARKED)]
    t0 = time.monotonic()
    while opened < PARKED and time.monotonic() - t0 < 10:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the last assigns reach the server and park
    spec = msgspec.to_builtins(func_spec("load", COLONY, ETYPE))
    submit = post(envelope.encode_request({"msgtype": "submitfuncspecmsg", "spec": spec}, keys.user))
    submitted: list[str] = []
    r, w = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        for _ in range(SUBMITS):
            w.write(submit)
            status, body = await read_reply(r)
            assert status == 200
            submitted.append(dec.decode(envelope.decode_reply(body)[1])["processid"])
            await asyncio.sleep(0.01)
    finally:
        w.close()
    return list(await asyncio.gather(*tasks)), submitted


def test_parked_longpolls_each_process_assigned_once(server: ServerProc) -> None:
    raise_nofile()
    answers, submitted = asyncio.run(_scenario(server))
    got = [pid for status, pid in answers if status == 200]
    assert len(answers) == PARKED
    assert sorted(got) == sorted(submitted)  # every process to exactly one parked connection
    assert len(set(got)) == SUBMITS
    assert [s for s, _ in answers].count(404) == PARKED - SUBMITS  # the others time out cleanly


def _process(cpu: str = "", mem: str = "", location: str = "") -> Process:
    spec = msgspec.convert(msgspec.to_builtins(func_spec("f", COLONY, ETYPE)), FunctionSpec)
    spec.conditions.cpu, spec.conditions.mem, spec.conditions.locationname = cpu, mem, location
    return Process(processid="p", spec=normalize_spec(spec), state=ProcessState.WAITING)


def test_plain_process_wakes_one_waiter_resources_wake_all() -> None:
    """A normalised spec without requirements reads cpu "0m" / mem "0Mi": it must wake one parked
    waiter, not all of them (which made every submit cost O(parked) claims)."""

    async def woken(p: Process) -> int:
        bus = EventBus()
        waiters = [bus.park(COLONY, ETYPE, f"e{i}") for i in range(20)]
        bus.publish(p)
        return sum(w.future.done() for w in waiters)

    assert asyncio.run(woken(_process())) == 1
    assert asyncio.run(woken(_process(cpu="500m"))) == 20
    assert asyncio.run(woken(_process(mem="1Gi"))) == 20
    assert asyncio.run(woken(_process(location="eu"))) == 20


def test_unpark_anywhere_keeps_fifo_order() -> None:
    async def order() -> list[str]:
        bus = EventBus()
        ws = [bus.park(COLONY, ETYPE, f"e{i}") for i in range(5)]
        bus.unpark(ws[2], consumed=True)  # a waiter from the middle goes (timeout, disconnect)
        bus.unpark(ws[4], consumed=True)  # and one from the tail (re-parked, then claimed at once)
        fired = []
        for _ in range(3):
            bus.wake(COLONY, ETYPE)
            fired += [w.executor_name for w in ws if w.future.done() and w.executor_name not in fired]
        return fired

    assert asyncio.run(order()) == ["e0", "e1", "e3"]
