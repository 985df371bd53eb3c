"""Assignment wakeups and process events, in memory, driven by events (never by polling).

* Assign long-polls park a `Waiter` per (colony, executor type). A new WAITING process wakes one
  waiter (FIFO), or every waiter that could be meant when the process targets names, resources or a
  location. A woken waiter that is cancelled before it claims passes the wake on, so none is lost.
* Process subscriptions (`/pubsub`) register a callback per process id or per (colony, executor type).
* `EventBus.publish` is the one entry point; a cluster backend also feeds remote events into it.
* `EventBus.revoke` ends the parked polls of an executor that was rejected or removed (here and, via
  the cluster backend, on every replica): its waiters fire marked `revoked`, and re-check membership.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from colonies.errors import ColoniesError
from colonies.model import Process, ProcessState
from colonies.resources import parse_cpu, parse_mem

Key = tuple[str, str]  # (colony, executor type)

# Set by the HTTP layer for a long-poll request: a coroutine that returns when the client goes away.
DISCONNECTED: ContextVar[Callable[[], Awaitable[Any]] | None] = ContextVar("disconnected", default=None)


class ClientGone(Exception):
    """The long-polling client disconnected."""


async def wait_wake(future: asyncio.Future[None], timeout: float) -> bool:
    """Wait for a wake-up; False at the timeout. Raises ClientGone if the client disconnects.
    The disconnect watcher is only armed here, when a request really has to wait."""
    gone = DISCONNECTED.get()
    if gone is None:
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            return False
    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({future, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if future.done():
        return True
    if watcher.done() and not watcher.cancelled():
        raise ClientGone()
    return False


@dataclass(eq=False)
class Waiter:
    colony: str
    executor_type: str
    executor_name: str
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    revoked: bool = False  # woken because the executor was rejected or removed

    def fire(self) -> bool:
        if self.future.done():
            return False
        self.future.set_result(None)
        return True


def _needs_resources(cpu: str, mem: str) -> bool:
    """Whether a process asks for cpu or memory. Stored specs are normalised, so "no requirement" reads
    "0m" / "0Mi": only a non-zero value restricts which waiters can claim it (and so wakes them all)."""
    try:
        return bool(parse_cpu(cpu) or parse_mem(mem))
    except ColoniesError:
        return True


ProcessCallback = Callable[[Process], None]


@dataclass(eq=False)
class Subscription:
    """A `/pubsub` process subscription: a process id, or any process of (colony, type)."""

    colony: str
    executor_type: str
    state: int
    callback: ProcessCallback
    process_id: str = ""


class EventBus:
    def __init__(self) -> None:
        # FIFO per key; an OrderedDict (values unused) so that unpark is O(1) wherever the waiter sits:
        # a re-parked waiter that claims at once is removed from the tail of a possibly long queue.
        self._waiters: dict[Key, OrderedDict[Waiter, None]] = {}
        self._by_process: dict[str, list[Subscription]] = {}
        self._by_type: dict[Key, list[Subscription]] = {}
        self.published = 0
        # Set by a cluster backend: carries each local event to the other replicas, which feed it
        # back in with `publish(p, local=False)`.
        self.forward: Callable[[Process], None] | None = None
        self.forward_wake: Callable[[str], None] | None = None  # wake_colony, to the other replicas
        self.forward_revoke: Callable[[str, str], None] | None = None  # revoke, to the other replicas
        # Called on every revocation, local or remote (the Guard drops its membership cache).
        self.on_revoke: list[Callable[[str, str], None]] = []

    # -- assign waiters ------------------------------------------------------------------------------
    def park(self, colony: str, executor_type: str, executor_name: str) -> Waiter:
        w = Waiter(colony, executor_type, executor_name)
        self._waiters.setdefault((colony, executor_type), OrderedDict())[w] = None
        return w

    def unpark(self, w: Waiter, consumed: bool) -> None:
        """Remove a waiter. If it was woken but did not use the wake, pass the wake on."""
        q = self._waiters.get((w.colony, w.executor_type))
        if q is not None:
            q.pop(w, None)
            if not q:
                del self._waiters[(w.colony, w.executor_type)]
        if w.future.done() and not consumed:
            self.wake(w.colony, w.executor_type)

    def wake(self, colony: str, executor_type: str, names: list[str] | None = None,
             everyone: bool = False) -> int:
        q = self._waiters.get((colony, executor_type))
        if not q:
            return 0
        woken = 0
        targets = {n for n in names or [] if n and n != "*"}
        for w in q:  # fire() only schedules callbacks, so q does not change during this loop
            if targets and w.executor_name not in targets:
                continue
            if w.fire():
                woken += 1
                if not everyone and not targets:
                    break
        return woken

    def wake_colony(self, colony: str, local: bool = True) -> None:
        """Wake every waiter of `colony` (it was resumed or removed), here and on the other replicas."""
        if local and self.forward_wake is not None:
            self.forward_wake(colony)
        for (c, _t), q in list(self._waiters.items()):
            if c == colony:
                for w in list(q):
                    w.fire()

    def revoke(self, colony: str, executor_name: str, local: bool = True) -> int:
        """The executor was rejected or removed: end its parked polls (here and on the other replicas)."""
        if local and self.forward_revoke is not None:
            self.forward_revoke(colony, executor_name)
        for listener in self.on_revoke:
            listener(colony, executor_name)
        woken = 0
        for (c, _t), q in list(self._waiters.items()):
            if c == colony:
                for w in list(q):
                    if w.executor_name == executor_name:
                        w.revoked = True
                        woken += w.fire()
        return woken

    def waiting(self) -> int:
        return sum(len(q) for q in self._waiters.values())

    def parked(self) -> dict[Key, int]:
        """Parked assign long-polls per (colony, executor type)."""
        return {k: len(q) for k, q in self._waiters.items()}

    # -- subscriptions -------------------------------------------------------------------------------
    def subscribe(self, sub: Subscription) -> Callable[[], None]:
        if sub.process_id:
            self._by_process.setdefault(sub.process_id, []).append(sub)
            bucket = self._by_process
            key: object = sub.process_id
        else:
            self._by_type.setdefault((sub.colony, sub.executor_type), []).append(sub)
            bucket = self._by_type  # type: ignore[assignment]
            key = (sub.colony, sub.executor_type)

        def cancel() -> None:
            subs = bucket.get(key)  # type: ignore[call-overload]
            if subs and sub in subs:
                subs.remove(sub)
                if not subs:
                    del bucket[key]  # type: ignore[arg-type]

        return cancel

    # -- events ----------------------------------------------------------------------------------------
    def publish(self, p: Process, local: bool = True) -> None:
        """A process changed state: wake assigners and notify subscribers (and other replicas)."""
        self.published += 1
        if local and self.forward is not None:
            self.forward(p)
        c = p.spec.conditions
        if p.state == ProcessState.WAITING and not p.waitforparents:
            special = bool(c.locationname) or _needs_resources(c.cpu, c.mem)
            self.wake(c.colonyname, c.executortype, c.executornames, everyone=special)
        for sub in self._by_process.get(p.processid, ()):
            if sub.state == p.state and (not sub.executor_type or sub.executor_type == c.executortype):
                sub.callback(p)
        for sub in self._by_type.get((c.colonyname, c.executortype), ()):
            if sub.state == p.state:
                sub.callback(p)

    def publish_all(self, processes: list[Process]) -> None:
        for p in processes:
            self.publish(p)
