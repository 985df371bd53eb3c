"""What every handler gets: config, storage, clock, event bus and the authorization guard."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from colonies.channels import ChannelHub
from colonies.clock import Clock
from colonies.cluster import Leadership, SingleNode, local_node
from colonies.config import Config
from colonies.errors import BadRequest
from colonies.metrics import Metrics
from colonies.protocol.crypto import sha3_hex
from colonies.scheduler import EventBus
from colonies.security import Guard
from colonies.storage.base import Storage

_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Services:
    config: Config
    storage: Storage
    clock: Clock
    bus: EventBus = field(default_factory=EventBus)
    channels: ChannelHub = field(default_factory=ChannelHub)
    guard: Guard = field(init=False)
    leadership: Leadership | None = None
    metrics: Metrics | None = None  # with COLONIES_METRICS: what /metrics reports (colonies.metrics)

    def __post_init__(self) -> None:
        self.guard = Guard(self.storage, self.clock.now_ns)
        self.bus.on_revoke.append(self.guard.forget_revoked)  # revocations here or on another replica
        if self.leadership is None:
            self.leadership = SingleNode(local_node(self.config))

    def is_leader(self) -> bool:
        """Whether leader-only work (crons, generators, retention, stale cleanup) may run here now."""
        assert self.leadership is not None
        return self.leadership.is_leader()

    def now(self) -> int:
        return self.clock.now_ns()


def new_id() -> str:
    """A server-generated id: SHA3-256 of a random UUID (§1.4)."""
    return sha3_hex(str(uuid.uuid4()).encode())


def check_id(value: str, what: str) -> str:
    if not _ID.match(value or ""):
        raise BadRequest(f"invalid {what}: must be 64 lowercase hex characters")
    return value


def check_name(value: str, what: str) -> str:
    if not value or len(value) > 256:
        raise BadRequest(f"invalid {what}: must be 1 to 256 characters")
    return value


def check_text(value: str | None, what: str, limit: int, required: bool = False) -> str:
    """A string field (null is ""): at most `limit` characters, no NUL (PostgreSQL text cannot hold one)."""
    value = value or ""
    if required and not value:
        raise BadRequest(f"{what} is required")
    if len(value) > limit:
        raise BadRequest(f"{what} is longer than {limit} characters")
    if "\x00" in value:
        raise BadRequest(f"{what} contains a NUL character")
    return value
