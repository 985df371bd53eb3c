"""Acknowledged writes survive kill -9, and concurrent assigns never hand out a process twice."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from colonies.client.core import func_spec
from colonies.errors import ClientError
from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ColonyKeys, ServerProc

pytestmark = pytest.mark.e2e


def test_acknowledged_submits_survive_kill9(server: ServerProc, colony: ColonyKeys) -> None:
    n = 50
    with server.client(colony.user_prvkey) as c:
        ids = {c.submit(func_spec("f", colony.name, colony.executor_type)).processid for _ in range(n)}
    server.kill9()
    server.start()
    with server.client(colony.user_prvkey) as c:
        stored = {p.processid for p in c.get_processes(colony.name, state=0, count=100) or []}
        assert stored == ids
        for pid in list(ids)[:5]:
            assert c.get_process(pid).state == 0
    # An assignment made before the crash survives too.
    with server.client(colony.executor_prvkey) as e:
        p = e.assign(colony.name, 5)
    server.kill9()
    server.start()
    with server.client(colony.user_prvkey) as c:
        again = c.get_process(p.processid)
        assert again.state == 1 and again.assignedexecutorid == id_of(colony.executor_prvkey)


def test_racing_assigns_hand_out_each_process_once(server: ServerProc, colony: ColonyKeys) -> None:
    total, workers = 300, 8
    keys = [generate_prvkey() for _ in range(workers)]
    with server.client(server.server_prvkey) as admin:
        owner = admin.with_key(colony.colony_prvkey)
        for i, key in enumerate(keys):
            owner.add_executor(colony.name, id_of(key), f"racer-{i}", colony.executor_type)
            owner.approve_executor(colony.name, f"racer-{i}")
        user = admin.with_key(colony.user_prvkey)
        submitted = {user.submit(func_spec("f", colony.name, colony.executor_type)).processid
                     for _ in range(total)}

    got: list[list[str]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def racer(i: int) -> None:
        try:
            with server.client(keys[i]) as c:
                start.wait()
                while True:
                    try:
                        got[i].append(c.assign(colony.name, -1).processid)
                    except ClientError as e:
                        if e.status == 404:
                            return
                        raise
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    counts = Counter(pid for lst in got for pid in lst)
    assert [pid for pid, k in counts.items() if k > 1] == []
    assert set(counts) == submitted
    assert sum(1 for lst in got if lst) > 1, "only one racer ever won; the race was not a race"
