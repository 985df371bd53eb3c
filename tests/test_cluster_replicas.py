"""Three server replicas on one PostgreSQL database and one etcd, as real processes on loopback.

Kill -9 the leader while crons fire: a new leader continues them, with no duplicate firing and no
missed run; getclustermsg shows the replicas and the leader. Skips without PostgreSQL or etcd,
except in CI, where that fails (conftest.need_service).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from colonies.model import ProcessGraph
from colonies.protocol.crypto import id_of
from tests.conftest import ColonyKeys, PgDatabase, ServerProc, etcd_endpoint, make_server, setup_colony

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
T = TypeVar("T")
TTL = 3  # lease TTL of the replicas, seconds
FAILOVER_BOUND = TTL + 2.0  # lease expiry + follower poll + one cron tick, with slack for a loaded CI


def poll(what: Callable[[], T | None], timeout: float, message: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = what()
        except Exception:  # noqa: BLE001 - a replica may be between states; try again
            found = None
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s: {message}")


@pytest.fixture
def replicas(tmp_path: Path, pg_database: PgDatabase) -> Iterator[list[ServerProc]]:
    ep = etcd_endpoint()
    prefix = f"/colonies-test/{uuid.uuid4().hex}"
    procs: list[ServerProc] = []
    try:
        for i in range(3):
            d = tmp_path / f"r{i}"
            d.mkdir()
            env = {**pg_database.server_env(), "COLONIES_ETCD_ENDPOINTS": f"http://{ep}",
                   "COLONIES_ETCD_TTL": str(TTL), "COLONIES_ETCD_PREFIX": prefix, "COLONIES_NODE_NAME": f"r{i}",
                   "COLONIES_CRON_CHECKER_PERIOD": "100", "COLONIES_LOG_LEVEL": "INFO"}
            if procs:
                env["COLONIES_SERVER_ID"] = id_of(procs[0].server_prvkey)
            srv = make_server(d, env)
            if procs:
                srv.server_prvkey = procs[0].server_prvkey
            procs.append(srv)
            srv.start()
        yield procs
    finally:
        for srv in procs:
            srv.stop()


def cluster(srv: ServerProc) -> dict[str, Any]:
    with srv.client(srv.server_prvkey) as admin:
        return admin.get_cluster()


def workflow(colony: ColonyKeys) -> str:
    return json.dumps({"colonyname": colony.name, "functionspecs": [
        {"nodename": "tick", "funcname": "tick", "maxexectime": -1, "maxwaittime": -1,
         "conditions": {"colonyname": colony.name, "executortype": colony.executor_type}}]})


def graph_times(srv: ServerProc, colony: ColonyKeys) -> list[float]:
    with srv.client(colony.user_prvkey) as c:
        graphs = cast(list[ProcessGraph], c.get_processgraphs(colony.name, count=100) or [])
    return sorted(g.submissiontime.timestamp() for g in graphs)


def test_kill_the_leader_while_crons_fire(replicas: list[ServerProc]) -> None:
    by_name = {f"r{i}": srv for i, srv in enumerate(replicas)}

    def complete() -> dict[str, Any] | None:
        c = cluster(replicas[0])
        return c if c["leader"]["name"] and len(c["nodes"]) == 3 else None

    info = poll(complete, 10, "three registered replicas and a leader")
    assert sorted(n["name"] for n in info["nodes"]) == ["r0", "r1", "r2"]
    assert all(n["apiport"] == by_name[n["name"]].port and n["host"] == "127.0.0.1" for n in info["nodes"])
    first_leader = info["leader"]["name"]
    for srv in replicas:  # every replica reports the same leader
        assert poll(lambda s=srv: bool(cluster(s)["leader"]["name"] == first_leader), 5,  # type: ignore[misc]
                    "agreement on the leader")

    # Two crons, each in its own colony so its graphs can be told apart: every second (interval), and
    # every 10 s by expression (fixed windows, to count one run per window across the failover).
    follower = next(s for n, s in by_name.items() if n != first_leader)
    every_s, every_10s = setup_colony(follower, "everysecond"), setup_colony(follower, "everytens")
    with follower.client(every_s.user_prvkey) as c:
        c.add_cron(every_s.name, "tick-1s", workflow(every_s), interval=1)
    with follower.client(every_10s.user_prvkey) as c:
        c.add_cron(every_10s.name, "tick-10s", workflow(every_10s), cronexpression="*/10 * * * * *")
    poll(lambda: len(graph_times(follower, every_10s)) >= 1, 15, "the 10 s cron to fire")
    poll(lambda: len(graph_times(follower, every_s)) >= 3, 10, "the 1 s cron to fire")

    leader = by_name[first_leader]
    leader.kill9()
    killed = time.time()
    t0 = time.monotonic()
    survivors = [s for s in replicas if s is not leader]

    def successor() -> str | None:
        name = str(cluster(survivors[0])["leader"]["name"])
        return name if name and name != first_leader else None

    new_leader = poll(successor, TTL + 5, "a new leader")
    failover = time.monotonic() - t0
    print(f"failover after kill -9 of the leader {first_leader}: {failover:.2f} s (new leader {new_leader})")
    assert failover <= TTL + 3
    assert cluster(survivors[1])["leader"]["name"] == new_leader
    poll(lambda: sorted(n["name"] for n in cluster(survivors[0])["nodes"]) == sorted(
        n for n, s in by_name.items() if s is not leader), TTL + 5, "the dead replica's registration to expire")

    # Let the crons run on: two more 10 s windows after the one the kill fell in.
    kill_window = int(killed // 10)
    poll(lambda: time.time() >= (kill_window + 3) * 10 + 1.0, 40, "two more 10 s windows")
    poll(lambda: int(graph_times(survivors[0], every_10s)[-1] // 10) >= kill_window + 2, 10,
         "the 10 s cron to fire in the last window")

    # Every 10 s window from the first fire to the last has exactly one graph: none missed, none twice.
    tens = graph_times(survivors[0], every_10s)
    windows = [int(t // 10) for t in tens]
    assert windows == list(range(windows[0], windows[-1] + 1)), f"10 s cron windows {windows}"

    # The every-second cron: no two fires closer than its interval (a double fire would be), it fired
    # after the kill, and its longest pause is bounded by the failover.
    secs = graph_times(survivors[0], every_s)
    gaps = [b - a for a, b in itertools.pairwise(secs)]
    assert min(gaps) >= 0.95, f"a duplicate fire: gaps {gaps}"
    assert any(t > killed + failover for t in secs), "the new leader did not continue the 1 s cron"
    assert max(gaps) <= FAILOVER_BOUND + 1.5, f"gaps {gaps}"
    after = [t for t in secs if t > killed]
    print(f"1 s cron: {len(secs)} fires, longest pause {max(gaps):.2f} s, "
          f"first fire after the kill {after[0] - killed:.2f} s later")
