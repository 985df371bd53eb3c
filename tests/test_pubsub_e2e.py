"""Realtime: pycolonies' wait(), subscribeprocessesmsg with our SDK, membership on subscriptions."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pycolonies import Colonies, func_spec

from colonies.client.realtime import subscribe_processes
from colonies.errors import ClientError
from colonies.protocol.crypto import generate_prvkey
from tests.conftest import ColonyKeys, ServerProc, setup_colony


def test_pycolonies_wait_returns_when_process_succeeds(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    p = c.submit_func_spec(func_spec("f", [], colony.name, colony.executor_type), colony.user_prvkey)

    def work() -> None:
        got = c.assign(colony.name, 5, colony.executor_prvkey)
        time.sleep(0.2)
        c.close(got.processid, ["ok"], colony.executor_prvkey)

    t = threading.Thread(target=work)
    t.start()
    start = time.monotonic()
    done = c.wait(p, 10, colony.user_prvkey)
    t.join()
    assert done.state == 2 and done.output == ["ok"]
    assert time.monotonic() - start < 5


def test_wait_on_finished_process_returns_at_once(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    p = c.submit_func_spec(func_spec("f", [], colony.name, colony.executor_type), colony.user_prvkey)
    got = c.assign(colony.name, 5, colony.executor_prvkey)
    c.close(got.processid, [], colony.executor_prvkey)
    start = time.monotonic()
    assert c.wait(p, 10, colony.user_prvkey).state == 2
    assert time.monotonic() - start < 2


async def test_subscribe_processes_sees_each_state(server: ServerProc, colony: ColonyKeys) -> None:
    seen: list[str] = []

    async def listen() -> None:
        async for p in subscribe_processes("127.0.0.1", server.port, colony.user_prvkey, colony.name,
                                           colony.executor_type, 0, 3):
            seen.append(p.processid)
            if len(seen) == 3:
                return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.3)
    c = Colonies("127.0.0.1", server.port)
    ids = [(await asyncio.to_thread(c.submit_func_spec, func_spec("f", [], colony.name, colony.executor_type),
                                    colony.user_prvkey)).processid for _ in range(3)]
    await asyncio.wait_for(task, 10)
    assert seen == ids


async def test_subscription_ends_cleanly_at_timeout(server: ServerProc, colony: ColonyKeys) -> None:
    start = time.monotonic()
    frames = [p async for p in subscribe_processes("127.0.0.1", server.port, colony.user_prvkey, colony.name,
                                                   colony.executor_type, 2, 1)]
    assert frames == []
    assert 0.8 < time.monotonic() - start < 4


async def test_subscription_requires_membership(server: ServerProc, colony: ColonyKeys) -> None:
    other = setup_colony(server, name="other")
    with pytest.raises(ClientError) as err:
        async for _ in subscribe_processes("127.0.0.1", server.port, other.user_prvkey, colony.name,
                                           colony.executor_type, 0, 2):
            pass
    assert err.value.status == 403
    with pytest.raises(ClientError):
        async for _ in subscribe_processes("127.0.0.1", server.port, generate_prvkey(), colony.name,
                                           colony.executor_type, 0, 2):
            pass


def test_channels_with_pycolonies(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    spec = func_spec("chat", [], colony.name, colony.executor_type)
    spec.channels = ["chat"]
    p = c.submit_func_spec(spec, colony.user_prvkey)
    c.assign(colony.name, 5, colony.executor_prvkey)
    c.channel_append(p.processid, "chat", 1, "hello", colony.user_prvkey)
    c.channel_append(p.processid, "chat", 1, "hi back", colony.executor_prvkey, in_reply_to=1)
    entries = c.channel_read(p.processid, "chat", 0, 0, colony.user_prvkey)
    assert [e["payload"] for e in entries] == [b"hello", b"hi back"]
    got = c.subscribe_channel(p.processid, "chat", colony.executor_prvkey, after_seq=0, timeout=1)
    assert [e["payload"] for e in got] == [b"hello", b"hi back"]
    # Another member of the colony that is neither initiator nor assigned executor is refused.
    other = setup_colony(server, name="other2")
    with pytest.raises(Exception):  # noqa: B017 - pycolonies raises a bare Exception
        c.channel_read(p.processid, "chat", 0, 0, other.user_prvkey)
    with pytest.raises(Exception):  # noqa: B017
        c.channel_read(p.processid, "undeclared", 0, 0, colony.user_prvkey)
