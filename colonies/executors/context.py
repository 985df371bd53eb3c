"""The context a running function may ask for: its process, deadline, and whether it was stopped.

    @ex.function
    def crunch(n: int, ctx: Context) -> int:
        for i in range(n):
            if ctx.cancelled:          # or ctx.raise_if_cancelled()
                break
            ctx.wait(0.5)              # a sleep that ends early when the process is stopped
        return i

A parameter annotated `Context` (any name) is filled in by the kit; callers never pass it.

For a process with `spec.fs` (see staging.py), `ctx.workdir` is its working directory, where the
snapshots and synced dirs are (None otherwise), and `ctx.fs` the colony's files (an AsyncFileSystem).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from colonies.errors import Cancelled
from colonies.model import Process

if TYPE_CHECKING:
    from colonies.fs import AsyncFileSystem


class Context:
    """One assignment of a process to this executor, as the running function sees it."""

    def __init__(self, process: Process, executor_name: str, deadline: float | None) -> None:
        self.process = process
        self.processid = process.processid
        self.executor_name = executor_name
        self.attempt = process.retries  # the server's attempt fence (see Executor._report)
        self.retry = 0  # retries of this function within this assignment (RetryPolicy)
        self._deadline = deadline  # time.monotonic() value, or None without maxexectime
        self._stop = threading.Event()
        self.reason = ""
        self.workdir: Path | None = None  # set when the process has spec.fs (its data is staged there)
        self.fs: AsyncFileSystem | None = None  # the colony's files, with the executor's object store
        self.resumed = False  # True when a restarted executor runs it again (Executor.resume)

    @property
    def deadline(self) -> datetime | None:
        """When the server takes the process back (its `execdeadline`), or None without a limit."""
        return self.process.execdeadline if self._deadline is not None else None

    def time_left(self) -> float | None:
        """Seconds until the deadline (never negative), or None without one."""
        return None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)

    @property
    def cancelled(self) -> bool:
        """True once the process is stopped: deadline passed, cancelled, removed or re-assigned."""
        return self._stop.is_set()

    def raise_if_cancelled(self) -> None:
        if self._stop.is_set():
            raise Cancelled(self.reason)

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds (thread-safe); True, early, if the process is stopped."""
        return self._stop.wait(timeout)

    def cancel(self, reason: str) -> None:
        """Called by the kit: mark the process stopped, with why."""
        if not self._stop.is_set():
            self.reason = reason
            self._stop.set()
