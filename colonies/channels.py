"""Process channels: small in-memory message logs between a process' initiator and its executor.

As in the original, channels live in the memory of one server (they are not durable) and are named
in the process spec (`spec.channels`). Limits: 10,000 entries per channel (oldest dropped), 100
channels per process.
"""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from datetime import UTC, datetime
from typing import Any

from colonies.errors import BadRequest, Forbidden, NotFound
from colonies.model import Process, Wire

MAX_ENTRIES = 10_000
MAX_CHANNELS = 100
ENTRY_TYPES = {"": "data", "data": "data", "end": "end", "error": "error"}


class MsgEntry(Wire):
    sequence: int = 0
    inreplyto: int = 0
    timestamp: datetime = datetime(1, 1, 1, tzinfo=UTC)
    senderid: str = ""
    payload: str = ""  # base64, as the original's []byte
    type: str = "data"


class Channel:
    def __init__(self) -> None:
        self.entries: deque[MsgEntry] = deque(maxlen=MAX_ENTRIES)
        self.changed = asyncio.Condition()

    def after(self, seq: int, limit: int = 0) -> list[MsgEntry]:
        found = [e for e in self.entries if e.sequence > seq]
        return found[:limit] if limit > 0 else found


class ChannelHub:
    def __init__(self) -> None:
        self._channels: dict[tuple[str, str], Channel] = {}

    def channel(self, p: Process, name: str) -> Channel:
        if name not in (p.spec.channels or []):
            raise NotFound(f"channel {name} not found on process {p.processid}")
        key = (p.processid, name)
        ch = self._channels.get(key)
        if ch is None:
            if sum(1 for pid, _ in self._channels if pid == p.processid) >= MAX_CHANNELS:
                raise BadRequest("too many channels on this process")
            ch = self._channels[key] = Channel()
        return ch

    async def append(self, p: Process, name: str, sender: str, sequence: int, inreplyto: int,
                     payload: str | list[int], kind: str) -> None:
        if kind not in ENTRY_TYPES:
            raise BadRequest(f"invalid channel payload type {kind!r}")
        if isinstance(payload, list):
            try:
                data = base64.b64encode(bytes(payload)).decode()
            except ValueError:
                raise BadRequest("payload bytes must be 0..255") from None
        else:
            data = payload
        ch = self.channel(p, name)
        if any(e.sequence == sequence and e.senderid == sender for e in ch.entries):
            return  # an idempotent resend
        ch.entries.append(MsgEntry(sequence=sequence, inreplyto=inreplyto, senderid=sender, payload=data,
                                   type=ENTRY_TYPES[kind], timestamp=datetime.now(UTC)))
        async with ch.changed:
            ch.changed.notify_all()

    def forget(self, process_id: str) -> None:
        for key in [k for k in self._channels if k[0] == process_id]:
            del self._channels[key]


def check_access(p: Process, signer: str) -> None:
    """Only the process' initiator and its assigned executor use its channels."""
    if signer not in (p.initiatorid, p.assignedexecutorid):
        raise Forbidden("access denied, only the initiator or the assigned executor may use this channel")


def entries_json(entries: list[MsgEntry]) -> list[dict[str, Any]]:
    import msgspec

    return msgspec.to_builtins(entries)  # type: ignore[no-any-return]
