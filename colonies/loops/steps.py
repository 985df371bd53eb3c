"""The periodic steps. Each takes the services and `now` (Unix ns), and does one bounded pass."""

from __future__ import annotations

import logging

from colonies.clock import NS
from colonies.loops.runner import isolated
from colonies.model import Executor
from colonies.services import Services

log = logging.getLogger("colonies.loops")


async def deadlines(s: Services, now: int) -> None:
    """Exec and wait deadlines (§4.4); safe on every replica, each change is one transaction."""
    while True:
        changed = await s.storage.expire(now)
        s.bus.publish_all(changed)
        if len(changed) < 1000:
            return


async def stale_executors(s: Services, now: int) -> None:
    """Soft-remove executors silent for longer than the stale duration; re-queue their work."""
    for e in await s.storage.stale_executors(now - s.config.stale_executor_s * NS):
        log.info("removing stale executor %s/%s", e.colonyname, e.executorname)
        await isolated(f"removing stale executor {e.colonyname}/{e.executorname}", _remove_stale(s, e, now))


async def _remove_stale(s: Services, e: Executor, now: int) -> None:
    """One stale executor: removed, its parked polls ended (as a removal by its owner), its work re-queued."""
    requeued = await s.storage.remove_executor(e.colonyname, e.executorname, now)
    s.guard.forget()
    s.bus.revoke(e.colonyname, e.executorname)
    for pid in requeued:
        p = await s.storage.get_process(pid)
        if p is not None:
            s.bus.publish(p)
