"""One runner for the periodic steps: names its tasks, survives a failing step (or item) and logs it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from colonies.errors import ColoniesError

log = logging.getLogger("colonies.loops")

Step = Callable[[int], Awaitable[None]]


async def isolated(what: str, action: Awaitable[object]) -> bool:
    """Run one item of a step (one cron, one generator): a failure is logged and reported as False, so
    the step goes on with the next item. A protocol error is a warning; anything else is a bug (traceback)."""
    try:
        await action
        return True
    except ColoniesError as exc:
        log.warning("%s failed: %s", what, exc.message)
    except Exception:
        log.exception("%s failed", what)
    return False


@dataclass
class Loop:
    name: str
    period_s: float
    step: Step
    leader_only: bool = False
    failures: int = 0
    runs: int = 0


class Runner:
    def __init__(self, now_ns: Callable[[], int], is_leader: Callable[[], bool]) -> None:
        self._now = now_ns
        self._is_leader = is_leader
        self.loops: list[Loop] = []
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, name: str, period_s: float, step: Step, leader_only: bool = False) -> None:
        self.loops.append(Loop(name, period_s, step, leader_only))

    async def tick_all(self) -> None:
        """Run every step once, now (tests use this with a fake clock)."""
        for loop in self.loops:
            await self._run_once(loop)

    async def _run_once(self, loop: Loop) -> None:
        if loop.leader_only and not self._is_leader():
            return
        try:
            await loop.step(self._now())
            loop.runs += 1
        except Exception:
            loop.failures += 1
            log.exception("background step %s failed; it will run again", loop.name)

    async def _forever(self, loop: Loop) -> None:
        while True:
            await asyncio.sleep(loop.period_s)
            await self._run_once(loop)

    def start(self) -> None:
        for loop in self.loops:
            self._tasks.append(asyncio.create_task(self._forever(loop), name=f"loop:{loop.name}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks.clear()

    def dead(self) -> list[str]:
        return [t.get_name() for t in self._tasks if t.done()]
