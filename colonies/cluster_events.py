"""Cross-replica wakeups over PostgreSQL LISTEN/NOTIFY.

Every replica sets `bus.forward`: each local event (a process changed state) is sent as a small JSON
`NOTIFY colonies_events` carrying what a waiter needs to decide whether to wake (process id, colony,
executor type, state, waitforparents, target names, whether cpu/mem/location conditions apply) and the
sender's replica id. Every replica LISTENs on one dedicated connection and feeds other replicas' events
to `bus.publish(p, local=False)`: a minimal Process wakes parked assigns at once; when a `/pubsub`
subscriber wants the process, the full process is read from storage first. Colony-wide wakes
(resume, colony removed) and revocations (an executor rejected or removed: its parked polls end and
membership caches are dropped) travel the same way.

With /metrics on, each replica's count changes (colonies.storage.tally) go along too: numbered per
replica, riding on the next process event when there is one (the usual case: a handler publishes right
after its storage call), otherwise sent on their own. A receiver that sees a gap in a sender's numbers,
or whose LISTEN connection had to be re-established, reads the counts from the database again.

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
from colonies.storage.tally import Delta, Tally

log = logging.getLogger("colonies.cluster_events")

CHANNEL = "colonies_events"
MAX_PAYLOAD = 7900  # PostgreSQL's limit is 8000 bytes
MAX_BATCH = 256
COUNTS_BUDGET = 6000  # bytes of count changes per message (the rest of MAX_PAYLOAD is the event)
RECONNECT_ATTEMPTS = 5
RECONNECT_ROUNDS = 60  # about 2 minutes of backoff for the LISTEN connection


def encode(replica: str, p: Process, counts: dict[str, Any] | None = None) -> str:
    c = p.spec.conditions
    msg: dict[str, Any] = {"r": replica, "p": p.processid, "c": c.colonyname, "t": c.executortype, "s": p.state,
                           "w": p.waitforparents, "n": c.executornames or [],
                           "x": bool(c.cpu or c.mem or c.locationname)}
    if counts:
        msg.update(counts)
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


def encode_counts(replica: str, counts: dict[str, Any]) -> str:
    """Count changes on their own (no process event to ride on)."""
    return orjson.dumps({"r": replica, "k": "tally", **counts}).decode()


def counts_message(seq: int, deltas: list[Delta], heard: dict[str, int]) -> dict[str, Any]:
    return {"q": seq, "d": deltas, "h": heard}


def decode_counts(m: dict[str, Any]) -> tuple[int, list[Delta], dict[str, int]] | None:
    """The count changes a message carries, if any: (sequence number, deltas, signs of life)."""
    if "q" not in m:
        return None
    deltas = [(int(k), str(c), str(t), int(s), int(n), str(i)) for k, c, t, s, n, i in m.get("d", [])]
    return int(m["q"]), deltas, {str(i): int(ts) for i, ts in m.get("h", {}).items()}


def decode(payload: str) -> tuple[str, Process | str | Revoke]:
    """(sender replica id, a minimal Process that drives EventBus.publish the same way the full one
    would), or (sender, colony name) for a colony-wide wake, or (sender, Revoke)."""
    return decode_message(orjson.loads(payload))


def decode_message(m: dict[str, Any]) -> tuple[str, Process | str | Revoke]:
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
        self.tally: Tally | None = storage.tally
        self._counts_due = False
        self._reseed: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._connect()
        self.bus.forward = self._forward
        self.bus.forward_wake = self._forward_wake
        self.bus.forward_revoke = self._forward_revoke
        if self.tally is not None:
            self.tally.forward = self._counts_ready
        self._sender = asyncio.create_task(self._send_loop(), name="cluster-events-sender")

    async def stop(self) -> None:
        if self.bus.forward == self._forward:
            self.bus.forward = None
        if self.bus.forward_wake == self._forward_wake:
            self.bus.forward_wake = None
        if self.bus.forward_revoke == self._forward_revoke:
            self.bus.forward_revoke = None
        if self.tally is not None and self.tally.forward == self._counts_ready:
            self.tally.forward = None
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
                self._seed_again("the LISTEN connection was re-established")  # notifications may be lost
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning("cluster events: reconnect failed (%s), attempt %d", e, attempt + 1)
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        log.error("cluster events: gave up reconnecting; cross-replica wakeups are off until restart")

    # -- outgoing ------------------------------------------------------------------------------------------
    def _forward(self, p: Process) -> None:
        chunks = self._count_chunks()
        if len(chunks) == 1:  # the count changes of the operation that published this event, usually
            text = encode(self.replica_id, p, chunks[0])
            if len(text.encode()) <= MAX_PAYLOAD:
                self._send(text)
                return
        for chunk in chunks:
            self._send(encode_counts(self.replica_id, chunk))
        self._send(encode(self.replica_id, p))

    def _counts_ready(self) -> None:
        """Local count changes wait: they go with the next event, or on their own right after."""
        if not self._counts_due:
            self._counts_due = True
            asyncio.get_running_loop().call_soon(self._flush_counts)

    def _flush_counts(self) -> None:
        self._counts_due = False
        for chunk in self._count_chunks():
            self._send(encode_counts(self.replica_id, chunk))

    def _count_chunks(self) -> list[dict[str, Any]]:
        """The waiting count changes as numbered messages of at most COUNTS_BUDGET bytes each."""
        tally = self.tally
        if tally is None or not (tally.outbox or tally.heard_out):
            return []
        deltas, heard = tally.take_outbox()
        items: list[tuple[Delta | None, str, int]] = [(d, "", 0) for d in deltas]
        items += [(None, i, ts) for i, ts in heard.items()]
        chunks: list[dict[str, Any]] = []
        part: list[Delta] = []
        part_heard: dict[str, int] = {}
        size = 0
        for d, ident, ts in items:
            n = len(orjson.dumps(d)) + 1 if d is not None else len(ident) + 24
            if size + n > COUNTS_BUDGET and (part or part_heard):
                chunks.append(counts_message(tally.next_seq(), part, part_heard))
                part, part_heard, size = [], {}, 0
            if d is not None:
                part.append(d)
            else:
                part_heard[ident] = ts
            size += n
        chunks.append(counts_message(tally.next_seq(), part, part_heard))
        return chunks

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
            m = orjson.loads(payload)
            if m["r"] == self.replica_id:
                return
            counts = decode_counts(m)
            replica, p = ("", "") if m.get("k") == "tally" else decode_message(m)
        except (ValueError, KeyError, TypeError):
            log.warning("cluster events: bad payload %r", payload[:200])
            return
        self.received += 1
        if counts is not None and self.tally is not None and not self.tally.remote(str(m["r"]), *counts):
            self._seed_again(f"count changes of replica {m['r']} were lost")
        if not replica:
            return
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

    def _seed_again(self, why: str) -> None:
        """Read the counts from the database again (once at a time)."""
        if self.tally is None or (self._reseed is not None and not self._reseed.done()):
            return
        log.warning("cluster events: %s; reading the counts for /metrics again", why)
        self._reseed = asyncio.get_running_loop().create_task(self._reseed_counts(), name="cluster-events-reseed")
        self._fetches.add(self._reseed)
        self._reseed.add_done_callback(self._fetches.discard)

    async def _reseed_counts(self) -> None:
        try:
            await self.storage.seed_tally()
        except Exception as e:  # noqa: BLE001 - the counts stay as they were; the next gap tries again
            log.warning("cluster events: reading the counts failed: %s", e)

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
