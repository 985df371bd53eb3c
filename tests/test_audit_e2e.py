"""The audit trail (our `getprocesseventsmsg` extension), read with our SDK."""

from __future__ import annotations

import time

from colonies.client import Client, func_spec
from tests.conftest import ColonyKeys, ServerProc


def test_trail_records_who_did_what(server: ServerProc, colony: ColonyKeys) -> None:
    with Client("127.0.0.1", server.port, prvkey=colony.user_prvkey) as user:
        ex = user.with_key(colony.executor_prvkey)
        p = user.submit(func_spec("f", colony.name, colony.executor_type, maxexectime=1, maxretries=1))
        first = ex.assign(colony.name, 5)
        assert first.processid == p.processid
        deadline = time.monotonic() + 10
        while user.get_process(p.processid).state != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        again = ex.assign(colony.name, 5)
        ex.close(again.processid, ["ok"])
        trail = user.process_events(p.processid)
    events = [e.event for e in trail]
    assert events == ["submitted", "assigned", "requeued", "assigned", "closed"]
    assert trail[0].actorid == p.initiatorid
    assert trail[1].actorid == first.assignedexecutorid
    assert "deadline" in trail[2].detail
    assert [e.seq for e in trail] == sorted(e.seq for e in trail)
