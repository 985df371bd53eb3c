"""Leadership against a real etcd server (Debian etcd-server 3.4, started by scripts/services).

Skips when etcd is not reachable, except in CI (CI=true), where that is a failure. Every test uses
its own key prefix, so tests never see each other's leaders.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from colonies.cluster import EtcdLeadership, NodeInfo, SingleNode, create_leadership
from colonies.config import Config
from colonies.server.app import create_app
from colonies.storage.sqlite import SqliteStorage
from tests.conftest import etcd_endpoint
from tests.inproc import TestClient

TTL = 3  # seconds; small so failover tests stay short (production default: 5)


@pytest.fixture(scope="session")
def etcd() -> str:
    return f"http://{etcd_endpoint()}"


@pytest.fixture
def prefix() -> str:
    return f"/colonies-test/{uuid.uuid4().hex}"


def node(name: str, port: int) -> NodeInfo:
    return NodeInfo(name=name, host="127.0.0.1", apiport=port)


@pytest.fixture
async def pair(etcd: str, prefix: str) -> AsyncIterator[tuple[EtcdLeadership, EtcdLeadership]]:
    a = EtcdLeadership([etcd], node("a", 1001), ttl_s=TTL, prefix=prefix)
    b = EtcdLeadership([etcd], node("b", 1002), ttl_s=TTL, prefix=prefix)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def until(cond: object, timeout: float, what: str) -> float:
    """Poll `cond()` every 5 ms; the monotonic time it first held. Fails after `timeout` seconds."""
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Watch:
    """Samples is_leader() of several replicas every 2 ms and records each change with its time."""

    def __init__(self, *members: EtcdLeadership) -> None:
        self.members = members
        self.changes: list[tuple[float, str, bool]] = []
        self.both = 0  # samples in which more than one replica claimed leadership
        self._last = {m.node.name: m.is_leader() for m in self.members}
        self._task = asyncio.create_task(self._sample())

    def sample(self) -> None:
        states = {m.node.name: m.is_leader() for m in self.members}
        if sum(states.values()) > 1:
            self.both += 1
        for name, state in states.items():
            if state != self._last[name]:
                self.changes.append((time.monotonic(), name, state))
        self._last = states

    async def _sample(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.002)

    def first(self, name: str, state: bool) -> float:
        return next(t for t, n, s in self.changes if n == name and s == state)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self.sample()


def the_leader(a: EtcdLeadership, b: EtcdLeadership) -> tuple[EtcdLeadership, EtcdLeadership]:
    assert a.is_leader() != b.is_leader()
    return (a, b) if a.is_leader() else (b, a)


async def test_single_node_is_always_leader() -> None:
    lead = create_leadership(Config(port=1234, node_name="solo"))
    assert isinstance(lead, SingleNode)
    await lead.start()
    assert lead.is_leader() and lead.fencing_token() > 0
    assert lead.leader() == lead.nodes()[0] and lead.nodes()[0].name == "solo"
    assert lead.nodes()[0].apiport == 1234
    await lead.stop()


async def test_config_builds_etcd_leadership(etcd: str, prefix: str) -> None:
    cfg = Config.from_env({"COLONIES_ETCD_ENDPOINTS": etcd.removeprefix("http://"), "COLONIES_ETCD_TTL": "4",
                           "COLONIES_NODE_NAME": "n1", "COLONIES_ETCD_PREFIX": prefix,
                           "COLONIES_SERVER_PORT": "4321"})
    lead = create_leadership(cfg)
    assert isinstance(lead, EtcdLeadership) and lead.ttl_s == 4 and lead.node.name == "n1"
    await lead.start()
    try:
        await until(lead.is_leader, 5, "the only replica to lead")
        assert lead.leader() == NodeInfo(name="n1", host="127.0.0.1", apiport=4321)
    finally:
        await lead.stop()
    assert not lead.is_leader()


async def test_exactly_one_leader_and_both_registered(pair: tuple[EtcdLeadership, EtcdLeadership]) -> None:
    a, b = pair
    watch = Watch(a, b)
    await until(lambda: a.is_leader() or b.is_leader(), 5, "a leader")
    leader, follower = the_leader(a, b)
    await until(lambda: follower.leader() == leader.node, 5, "the follower to see the leader")
    await until(lambda: len(follower.nodes()) == 2, 5, "both registrations")
    await a.refresh()
    assert [n.name for n in a.nodes()] == ["a", "b"]
    assert leader.fencing_token() > 0 and follower.fencing_token() == 0
    # Stable: nobody changes their mind over a few keepalive periods (bounded by one TTL).
    start = time.monotonic()
    while time.monotonic() - start < TTL:
        assert leader.is_leader() and not follower.is_leader()
        await asyncio.sleep(0.05)
    await watch.close()
    assert watch.both == 0


async def test_stopping_the_leader_hands_over(pair: tuple[EtcdLeadership, EtcdLeadership]) -> None:
    a, b = pair
    await until(lambda: a.is_leader() or b.is_leader(), 5, "a leader")
    old, new = the_leader(a, b)
    first_token = old.fencing_token()
    watch = Watch(a, b)
    stopped = time.monotonic()
    await old.stop()
    took_over = await until(new.is_leader, TTL, "the other replica to take over")
    await watch.close()
    assert watch.both == 0
    assert watch.first(old.node.name, False) < watch.first(new.node.name, True)
    assert new.fencing_token() > first_token
    print(f"graceful handover: {took_over - stopped:.2f} s")
    await until(lambda: [n.name for n in new.nodes()] == [new.node.name], 2 * TTL, "the stopped node to leave")


async def test_dead_leader_steps_down_before_successor_starts(
        pair: tuple[EtcdLeadership, EtcdLeadership]) -> None:
    a, b = pair
    await until(lambda: a.is_leader() or b.is_leader(), 5, "a leader")
    old, new = the_leader(a, b)
    first_token = old.fencing_token()
    lease = old.lease_id
    watch = Watch(a, b)
    # Simulate a dead (or hung) leader: its keepalive task stops and its lease is NOT revoked.
    assert old._task is not None
    old._task.cancel()
    died = time.monotonic()
    took_over = await until(new.is_leader, TTL + 3, "the other replica to take over")
    await watch.close()
    deposed = watch.first(old.node.name, False)
    assert deposed < took_over
    assert watch.first(new.node.name, True) > deposed
    assert watch.both == 0
    assert new.fencing_token() > first_token
    assert not old.is_leader()
    print(f"dead leader (lease {lease:x}): deposed after {deposed - died:.2f} s, "
          f"successor after {took_over - died:.2f} s (TTL {TTL} s)")
    assert took_over - died <= TTL + 2


async def test_default_ttl_failover_within_ten_seconds(etcd: str, prefix: str) -> None:
    a = EtcdLeadership([etcd], node("a", 1), prefix=prefix)  # default TTL 5 s
    b = EtcdLeadership([etcd], node("b", 2), prefix=prefix)
    await a.start()
    await until(a.is_leader, 5, "a to lead")
    await b.start()
    await until(lambda: b.leader() == a.node, 5, "b to see a")
    assert a._task is not None
    a._task.cancel()  # dies without revoking
    died = time.monotonic()
    try:
        took_over = await until(b.is_leader, 10, "b to take over within 10 s")
        print(f"failover with the default TTL: {took_over - died:.2f} s")
    finally:
        await a.stop()
        await b.stop()


async def test_etcd_unreachable_means_not_leader(prefix: str) -> None:
    lead = EtcdLeadership(["http://127.0.0.1:9"], node("x", 1), ttl_s=2, prefix=prefix)
    await lead.start()
    try:
        await asyncio.sleep(0)  # let the task try once; leadership must never be claimed
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            assert not lead.is_leader()
            await asyncio.sleep(0.05)
        assert lead.leader() is None
    finally:
        await lead.stop()


def test_only_the_leader_app_runs_leader_only_loops(etcd: str, prefix: str, tmp_path: Path) -> None:
    """Two in-process servers sharing nothing but etcd (each its own SQLite file): the runner of
    only one of them runs crons and generators; both run deadlines. Stopping it hands them over."""

    def app(name: str) -> TestClient:
        cfg = Config(db_path=str(tmp_path / f"{name}.db"), etcd_endpoints=etcd, etcd_prefix=prefix,
                     etcd_ttl_s=TTL, node_name=name, cron_period_ms=50, generator_period_ms=50,
                     timeout_period_ms=50)
        return TestClient(create_app(cfg, SqliteStorage(cfg.db_path)))

    def runs(tc: TestClient, loop: str) -> int:
        return int(next(lp.runs for lp in tc.app.state.runner.loops if lp.name == loop))  # type: ignore[attr-defined]

    def leading(tc: TestClient) -> bool:
        return bool(tc.app.state.services.is_leader())  # type: ignore[attr-defined]

    def wait(cond: object, timeout: float, what: str) -> None:
        assert callable(cond)
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    with app("a") as a, app("b") as b:
        wait(lambda: leading(a) or leading(b), 5, "a leader")
        leader, follower = (a, b) if leading(a) else (b, a)
        base = runs(leader, "crons")
        wait(lambda: runs(leader, "crons") >= base + 5 and runs(follower, "deadlines") >= 5, 5, "loops to run")
        assert runs(follower, "crons") == 0 and runs(follower, "generators") == 0
        assert runs(leader, "generators") > 0 and runs(leader, "deadlines") > 0
        leader.__exit__(None, None, None)  # graceful shutdown: the runner stops, then the lease is revoked
        wait(lambda: runs(follower, "crons") >= 3, TTL + 2, "the follower to take over the crons")
        assert leading(follower)
