"""Process channels: small in-memory message logs between a process' initiator and its executor.

As in the original, channels live in the memory of one server (they are not durable) and are named
in the process spec (`spec.channels`). Memory is bounded and freed (README "Security and limits"):

* a message's payload is at most `message_bytes` (413);
* a channel keeps at most `entries` messages and `channel_bytes`; past either, the oldest are dropped
  (a ring, as the original's 10,000-entry log);
* all the channels of one colony hold at most `colony_bytes`; past it, appends are refused (413) until
  processes end, so one tenant cannot take another's memory;
* each caller may append `rate` messages per second, in bursts of `burst` (429);
* a process' channels are freed `grace_s` after it ends (SUCCESS, FAILED, CANCELLED), so readers can
  drain them, and at once when it or its colony is removed. Appends to an ended process are refused.

Sizes count the decoded payload plus a fixed overhead per entry and per channel (the Python objects
around them), so empty messages are not free either.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from colonies.clock import NS
from colonies.config import Config
from colonies.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, TooManyRequests
from colonies.model import Process, ProcessState, Wire
from colonies.scheduler import EventBus, Subscription
from colonies.storage.base import Storage

ENTRY_TYPES = {"": "data", "data": "data", "end": "end", "error": "error"}
ENDED = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED)
ENTRY_OVERHEAD = 256  # bytes charged per message on top of its payload
CHANNEL_OVERHEAD = 1024  # bytes charged per channel
MAX_BUCKETS = 10_000  # idle rate buckets are pruned past this many callers


@dataclass(frozen=True)
class ChannelLimits:
    message_bytes: int = 1024 * 1024
    channel_bytes: int = 8 * 1024 * 1024
    colony_bytes: int = 64 * 1024 * 1024
    entries: int = 10_000
    channels_per_process: int = 100
    rate: float = 100.0  # appends per second per caller; 0 = unlimited
    burst: int = 500
    grace_s: float = 30.0

    @classmethod
    def from_config(cls, c: Config) -> ChannelLimits:
        return cls(message_bytes=c.channel_max_message_bytes, channel_bytes=c.channel_max_bytes,
                   colony_bytes=c.channel_colony_max_bytes, rate=c.channel_rate, burst=c.channel_burst,
                   grace_s=c.channel_grace_s)


class MsgEntry(Wire):
    sequence: int = 0
    inreplyto: int = 0
    timestamp: datetime = datetime(1, 1, 1, tzinfo=UTC)
    senderid: str = ""
    payload: str = ""  # base64, as the original's []byte
    type: str = "data"


def _cost(e: MsgEntry) -> int:
    """The bytes an entry is charged: its decoded payload (exact for the validated base64) + overhead."""
    return len(e.payload) * 3 // 4 - e.payload[-2:].count("=") + ENTRY_OVERHEAD


class Channel:
    def __init__(self) -> None:
        self.entries: deque[MsgEntry] = deque()
        self.sent: set[tuple[str, int]] = set()  # (sender, sequence): a resend is a no-op
        self.bytes = CHANNEL_OVERHEAD
        self.closed = False
        self._changed = asyncio.Event()

    def after(self, seq: int, limit: int = 0) -> list[MsgEntry]:
        found = [e for e in self.entries if e.sequence > seq]
        return found[:limit] if limit > 0 else found

    def changed(self) -> asyncio.Event:
        """Set at the next append or when the channel is freed; take it before reading."""
        return self._changed

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


@dataclass
class _Held:
    """The channels of one process."""

    colony: str
    graph_id: str
    channels: dict[str, Channel] = field(default_factory=dict)
    cancels: list[Callable[[], None]] = field(default_factory=list)
    ending: asyncio.TimerHandle | None = None


@dataclass(frozen=True)
class ChannelStats:
    processes: int
    channels: int
    bytes: int


class ChannelHub:
    def __init__(self, limits: ChannelLimits | None = None, bus: EventBus | None = None,
                 now_ns: Callable[[], int] | None = None) -> None:
        self.limits = limits or ChannelLimits()
        self._bus = bus
        self._now = now_ns
        self._procs: dict[str, _Held] = {}
        self._colony_bytes: dict[str, int] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at seconds)

    # -- lookup -----------------------------------------------------------------------------------------
    def find(self, p: Process, name: str) -> Channel | None:
        _declared(p, name)
        held = self._procs.get(p.processid)
        return held.channels.get(name) if held is not None else None

    def open(self, p: Process, name: str) -> Channel:
        """The channel, created on first use; refused once the process has ended."""
        ch = self.find(p, name)
        if ch is not None:
            return ch
        _open_for_writing(p)
        held = self._procs.get(p.processid)
        if held is not None and len(held.channels) >= self.limits.channels_per_process:
            raise BadRequest("too many channels on this process")
        colony = p.spec.conditions.colonyname
        self._charge(colony, CHANNEL_OVERHEAD)
        if held is None:
            held = self._procs[p.processid] = _Held(colony, p.processgraphid)
            self._watch(p, held)
        ch = held.channels[name] = Channel()
        return ch

    # -- append -----------------------------------------------------------------------------------------
    async def append(self, p: Process, name: str, sender: str, sequence: int, inreplyto: int,
                     payload: str | list[int], kind: str) -> None:
        if kind not in ENTRY_TYPES:
            raise BadRequest(f"invalid channel payload type {kind!r}")
        data = self._payload(payload)
        _open_for_writing(p)
        self._take_token(sender)
        ch = self.open(p, name)
        if (sender, sequence) in ch.sent:
            return  # an idempotent resend
        entry = MsgEntry(sequence=sequence, inreplyto=inreplyto, senderid=sender, payload=data,
                         type=ENTRY_TYPES[kind], timestamp=datetime.now(UTC))
        cost = _cost(entry)
        drop, freed = self._room(ch, cost)
        colony = p.spec.conditions.colonyname
        self._charge(colony, cost - freed)
        for _ in range(drop):
            old = ch.entries.popleft()
            ch.sent.discard((old.senderid, old.sequence))
        ch.entries.append(entry)
        ch.sent.add((sender, sequence))
        ch.bytes += cost - freed
        ch.notify()

    def _payload(self, payload: str | list[int]) -> str:
        """The payload as base64 text; 413 past the message limit, 400 when it is not bytes."""
        limit = self.limits.message_bytes
        too_large = PayloadTooLarge(f"channel message payload exceeds {limit} bytes")
        if isinstance(payload, list):
            if len(payload) > limit:
                raise too_large
            try:
                return base64.b64encode(bytes(payload)).decode()
            except (ValueError, TypeError):
                raise BadRequest("payload bytes must be 0..255") from None
        if len(payload) > 4 * (limit // 3 + 1):
            raise too_large
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("channel payload is not base64") from None
        if len(raw) > limit:
            raise too_large
        return payload

    def _room(self, ch: Channel, cost: int) -> tuple[int, int]:
        """How many oldest entries to drop, and the bytes that frees, to fit one of `cost`."""
        lim = self.limits
        if cost + CHANNEL_OVERHEAD > lim.channel_bytes:
            raise PayloadTooLarge(f"channel message exceeds the channel limit of {lim.channel_bytes} bytes")
        drop = freed = 0
        held = len(ch.entries)
        oldest = iter(ch.entries)
        while drop < held and (ch.bytes - freed + cost > lim.channel_bytes or held - drop >= lim.entries):
            freed += _cost(next(oldest))
            drop += 1
        return drop, freed

    def _charge(self, colony: str, delta: int) -> None:
        held = self._colony_bytes.get(colony, 0)
        if delta > 0 and held + delta > self.limits.colony_bytes:
            raise PayloadTooLarge(f"the colony's channels are full ({self.limits.colony_bytes} bytes); "
                                  "they are freed when processes end")
        self._colony_bytes[colony] = held + delta

    def _take_token(self, caller: str) -> None:
        lim = self.limits
        if lim.rate <= 0 or self._now is None:
            return
        now = self._now() / NS
        tokens, at = self._buckets.get(caller, (float(lim.burst), now))
        tokens = min(float(lim.burst), tokens + max(now - at, 0.0) * lim.rate)
        if tokens < 1.0:
            self._buckets[caller] = (tokens, now)
            raise TooManyRequests(f"channel append rate exceeds {lim.rate:g}/s (burst {lim.burst})")
        self._buckets[caller] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_BUCKETS:
            full = lim.burst / lim.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}

    # -- lifetime ---------------------------------------------------------------------------------------
    def _watch(self, p: Process, held: _Held) -> None:
        """Free the channels when the process ends (the event bus tells us)."""
        if self._bus is None:
            return
        for state in ENDED:
            held.cancels.append(self._bus.subscribe(Subscription(
                colony=held.colony, executor_type="", state=state, process_id=p.processid,
                callback=lambda q: self.ended(q.processid))))

    def ended(self, process_id: str) -> None:
        """The process ended: free its channels after the grace period."""
        held = self._procs.get(process_id)
        if held is None or held.ending is not None:
            return
        if self.limits.grace_s <= 0:
            self.forget(process_id)
            return
        held.ending = asyncio.get_running_loop().call_later(self.limits.grace_s, self.forget, process_id)

    def forget(self, process_id: str) -> None:
        """Free a process' channels now; their subscribers get the end of the stream."""
        held = self._procs.pop(process_id, None)
        if held is None:
            return
        if held.ending is not None:
            held.ending.cancel()
        # Unhook from the bus on the next loop turn: we may be inside its publish of the end, iterating
        # the very list of this process' subscribers.
        asyncio.get_running_loop().call_soon(_run_all, held.cancels)
        for ch in held.channels.values():
            self._colony_bytes[held.colony] = self._colony_bytes.get(held.colony, 0) - ch.bytes
            ch.entries.clear()
            ch.sent.clear()
            ch.closed = True
            ch.notify()
        if self._colony_bytes.get(held.colony, 0) <= 0:
            self._colony_bytes.pop(held.colony, None)

    def forget_colony(self, colony: str) -> None:
        for pid in [pid for pid, held in self._procs.items() if held.colony == colony]:
            self.forget(pid)

    async def sweep(self, storage: Storage, colony: str | None = None, graph_id: str | None = None) -> None:
        """Free the channels of processes that are gone, and start the grace of those that ended unseen
        (on another replica, or between a lookup and a channel's creation). Optionally one colony's or
        one workflow's only."""
        pids = [pid for pid, held in self._procs.items()
                if (colony is None or held.colony == colony) and (graph_id is None or held.graph_id == graph_id)
                and held.ending is None]
        for pid in pids:
            p = await storage.get_process(pid, attributes=False)
            if p is None:
                self.forget(pid)
            elif p.state in ENDED:
                self.ended(pid)

    def stats(self, colony: str | None = None) -> ChannelStats:
        procs = [h for h in self._procs.values() if colony is None or h.colony == colony]
        held = [ch for h in procs for ch in h.channels.values()]
        total = sum(self._colony_bytes.values()) if colony is None else self._colony_bytes.get(colony, 0)
        return ChannelStats(processes=len(procs), channels=len(held), bytes=total)


def _run_all(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        call()


def _declared(p: Process, name: str) -> None:
    if name not in (p.spec.channels or []):
        raise NotFound(f"channel {name} not found on process {p.processid}")


def _open_for_writing(p: Process) -> None:
    if p.state in ENDED:
        raise BadRequest(f"process is {ProcessState(p.state).name}: its channels are closed")


def check_access(p: Process, signer: str) -> None:
    """Only the process' initiator and its assigned executor use its channels."""
    if signer not in (p.initiatorid, p.assignedexecutorid):
        raise Forbidden("access denied, only the initiator or the assigned executor may use this channel")


def entries_json(entries: list[MsgEntry]) -> list[dict[str, Any]]:
    import msgspec

    return msgspec.to_builtins(entries)  # type: ignore[no-any-return]
