"""The periodic steps. Each takes the services and `now` (Unix ns), and does one bounded pass."""

from __future__ import annotations

import logging

from colonies.clock import NS
from colonies.server.services import Services

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
        s.guard.forget()
        for pid in await s.storage.remove_executor(e.colonyname, e.executorname, now):
            p = await s.storage.get_process(pid)
            if p is not None:
                s.bus.publish(p)
