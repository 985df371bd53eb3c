"""Cross-replica wakeups over PostgreSQL LISTEN/NOTIFY.

Every replica sets `bus.forward`: each local event (a process changed state) is sent as a small JSON
`NOTIFY colonies_events` carrying what a waiter needs to decide whether to wake (process id, colony,
executor type, state, waitforparents, target names, whether cpu/mem/location conditions apply) and the
sender's replica id. Every replica LISTENs on one dedicated connection and feeds other replicas' events
to `bus.publish(p, local=False)`: a minimal Process wakes parked assigns at once; when a `/pubsub`
subscriber wants the process, the full process is read from storage first. Colony-wide wakes
(resume, colony removed) and revocations (an executor rejected or removed: its parked polls end and
membership caches are dropped) travel the same way.

Delivery is best effort, like the in-memory bus: a notification lost while the connection is being
re-established only delays a parked assign until its own timeout. The LISTEN connection must be a
direct (session) connection, not PgBouncer in transaction mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any, NamedTuple

import asyncpg  # type: ignore[import-untyped]
import orjson

from colonies.model import Conditions, FunctionSpec, Process
from colonies.scheduler import EventBus
from colonies.storage.base import Storage

log = logging.getLogger("colonies.cluster_events")

CHANNEL = "colonies_events"
MAX_PAYLOAD = 7900  # PostgreSQL's limit is 8000 bytes
MAX_BATCH = 256
RECONNECT_ATTEMPTS = 5
RECONNECT_ROUNDS = 60  # about 2 minutes of backoff for the LISTEN connection


def encode(replica: str, p: Process) -> str:
    c = p.spec.conditions
    msg: dict[str, Any] = {"r": replica, "p": p.processid, "c": c.colonyname, "t": c.executortype, "s": p.state,
                           "w": p.waitforparents, "n": c.executornames or [],
                           "x": bool(c.cpu or c.mem or c.locationname)}
    text = orjson.dumps(msg).decode()
    if len(text.encode()) > MAX_PAYLOAD:
        # Too many target names: drop them and wake every waiter of the type instead (they re-check).
        msg["n"], msg["x"] = [], True
        text = orjson.dumps(msg).decode()
    return text


def encode_wake(replica: str, colony: str) -> str:
    """A colony-wide wake (EventBus.wake_colony: the colony was resumed or removed)."""
    return orjson.dumps({"r": replica, "k": "wake", "c": colony}).decode()


class Revoke(NamedTuple):
    """An executor was rejected or removed (EventBus.revoke)."""

    colony: str
    executor_name: str


def encode_revoke(replica: str, colony: str, executor_name: str) -> str:
    return orjson.dumps({"r": replica, "k": "revoke", "c": colony, "e": executor_name}).decode()


def decode(payload: str) -> tuple[str, Process | str | Revoke]:
    """(sender replica id, a minimal Process that drives EventBus.publish the same way the full one
    would), or (sender, colony name) for a colony-wide wake, or (sender, Revoke)."""
    m = orjson.loads(payload)
    if m.get("k") == "wake":
        return m["r"], str(m["c"])
    if m.get("k") == "revoke":
        return m["r"], Revoke(str(m["c"]), str(m["e"]))
    cond = Conditions(colonyname=m["c"], executortype=m["t"], executornames=m["n"] or None,
                      locationname="*" if m["x"] else "")
    return m["r"], Process(processid=m["p"], state=m["s"], waitforparents=m["w"], spec=FunctionSpec(conditions=cond))


class ClusterEvents:
    """Forwards local bus events to the other replicas and publishes theirs locally."""

    def __init__(self, dsn: str, bus: EventBus, storage: Storage, replica_id: str | None = None) -> None:
        self.dsn = dsn
        self.bus = bus
        self.storage = storage
        self.replica_id = replica_id or uuid.uuid4().hex
        self.received = 0
        self.sent = 0
        self._con: asyncpg.Connection | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100_000)
        self._sender: asyncio.Task[None] | None = None
        self._fetches: set[asyncio.Task[None]] = set()
        self._connecting = asyncio.Lock()

    async def start(self) -> None:
        await self._connect()
        self.bus.forward = self._forward
        self.bus.forward_wake = self._forward_wake
        self.bus.forward_revoke = self._forward_revoke
        self._sender = asyncio.create_task(self._send_loop(), name="cluster-events-sender")

    async def stop(self) -> None:
        if self.bus.forward == self._forward:
            self.bus.forward = None
        if self.bus.forward_wake == self._forward_wake:
            self.bus.forward_wake = None
        if self.bus.forward_revoke == self._forward_revoke:
            self.bus.forward_revoke = None
        if self._sender is not None:
            sender, self._sender = self._sender, None
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        for t in list(self._fetches):
            t.cancel()
        if self._con is not None:
            con, self._con = self._con, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(con.close(), 5)

    async def _connect(self) -> None:
        async with self._connecting:
            if self._con is not None and not self._con.is_closed():
                return
            con = await asyncpg.connect(self.dsn, statement_cache_size=0, timeout=10)
            await con.add_listener(CHANNEL, self._on_notify)
            con.add_termination_listener(self._on_terminated)
            self._con = con

    def _drop(self) -> None:
        """Forget the current connection (its termination callback is then ignored)."""
        con, self._con = self._con, None
        if con is not None and not con.is_closed():
            con.terminate()

    def _on_terminated(self, con: object) -> None:
        """The LISTEN connection died (database restart, network): reconnect in the background."""
        if self._sender is None or con is not self._con:
            return  # stopping, or an old connection
        self._con = None
        task = asyncio.get_running_loop().create_task(self._reconnect(), name="cluster-events-reconnect")
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _reconnect(self) -> None:
        for attempt in range(RECONNECT_ROUNDS):
            if self._sender is None or self._con is not None:
                return
            try:
                await self._connect()
                log.warning("cluster events: LISTEN connection re-established")
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning("cluster events: reconnect failed (%s), attempt %d", e, attempt + 1)
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        log.error("cluster events: gave up reconnecting; cross-replica wakeups are off until restart")

    # -- outgoing ------------------------------------------------------------------------------------------
    def _forward(self, p: Process) -> None:
        self._send(encode(self.replica_id, p))

    def _forward_wake(self, colony: str) -> None:
        self._send(encode_wake(self.replica_id, colony))

    def _forward_revoke(self, colony: str, executor_name: str) -> None:
        self._send(encode_revoke(self.replica_id, colony, executor_name))

    def _send(self, payload: str) -> None:
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("cluster events: send queue full, dropping an event")

    async def _send_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for attempt in range(RECONNECT_ATTEMPTS):
                try:
                    if self._con is None or self._con.is_closed():
                        await self._connect()
                    assert self._con is not None
                    await self._con.execute("SELECT pg_notify($1, x) FROM unnest($2::text[]) AS x", CHANNEL, batch)
                    self.sent += len(batch)
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                    log.warning("cluster events: send failed (%s), attempt %d", e, attempt + 1)
                    self._drop()
                    await asyncio.sleep(0.2 * (attempt + 1))

    # -- incoming ------------------------------------------------------------------------------------------
    def _on_notify(self, con: object, pid: int, channel: str, payload: str) -> None:
        try:
            replica, p = decode(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("cluster events: bad payload %r", payload[:200])
            return
        if replica == self.replica_id:
            return
        self.received += 1
        if isinstance(p, Revoke):
            self.bus.revoke(p.colony, p.executor_name, local=False)
        elif isinstance(p, str):
            self.bus.wake_colony(p, local=False)
        elif self._has_subscribers(p):
            task = asyncio.get_running_loop().create_task(self._publish_full(p))
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)
        else:
            self.bus.publish(p, local=False)

    def _has_subscribers(self, p: Process) -> bool:
        c = p.spec.conditions
        # EventBus keeps subscriptions in these two maps; a subscriber gets the full process.
        return bool(self.bus._by_process.get(p.processid) or self.bus._by_type.get((c.colonyname, c.executortype)))

    async def _publish_full(self, minimal: Process) -> None:
        try:
            full = await self.storage.get_process(minimal.processid)
        except Exception as e:  # noqa: BLE001 - fall back to the wake-only event
            log.warning("cluster events: fetch %s failed: %s", minimal.processid, e)
            full = None
        # The stored row may already be newer than the event; a later event then follows anyway.
        self.bus.publish(full if full is not None else minimal, local=False)
