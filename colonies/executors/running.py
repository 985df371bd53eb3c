"""One assignment of a process to this executor: run its function, watch the process, report.

* Deadline: with `maxexectime`, the function is stopped when it has run that long (timed from the
  moment the assignment arrived, so the server's deadline has always passed first; clocks are never
  compared). The server then re-queues or fails the process; the kit reports nothing for it.
* Cancel, removal, re-queue: every `watch` seconds (and whenever the process log is refused) the
  process is read back; once it is no longer RUNNING on this executor under this attempt (cancelled,
  removed, failed by its workflow, re-queued after this executor was removed, taken by another
  attempt), the function is stopped the same way. Polling was chosen over a pubsub subscription per
  process: it needs no socket per running process, also notices removals and re-assignments (which
  emit no event), and doubles as the heartbeat; the price is up to `watch` seconds of latency.
* Stopping: an async function's task is cancelled (it may clean up for `stop_grace` seconds). A sync
  function runs in a thread of its own, which Python cannot kill: its `Context` is marked cancelled
  (`ctx.cancelled`, `ctx.wait()`, `ctx.raise_if_cancelled()`), its slot is freed at once, and whatever
  it returns later is dropped. A sync function that never looks at its context runs on in the
  background until it returns; make long sync work check `ctx`, or wrap it in an async function
  that runs a subprocess (cancelling that kills the child, as the command executor does).
* Fence: close and fail carry the attempt (`Process.retries` at assignment); the server refuses a
  stale attempt's result (403), which the kit then drops, never re-sends.
* Data: a process with `spec.fs` has its snapshots and dirs staged around the function (staging.py).
* Output: what the function prints or logs goes to the process log while it runs (capture.py), and
  every `heartbeat` seconds without another call the process is read, as a sign of life.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from colonies.errors import ArgumentError, ClientError, ProcessFailed, TransportError
from colonies.executors.capture import SINK, Sink
from colonies.executors.context import Context
from colonies.executors.functions import FunctionDef
from colonies.executors.retry import RetryPolicy
from colonies.executors.staging import Staging, wants_staging
from colonies.model import Process, ProcessState

if TYPE_CHECKING:
    from colonies.executors.kit import Executor

log = logging.getLogger("colonies.executor")
REPORT_RETRY_S = 30.0  # how long a close/fail is re-sent when no reply comes back


class _Stopped(Exception):
    """The process was stopped while its function ran (internal)."""


def as_output(result: Any) -> list[Any]:
    return [] if result is None else list(result) if isinstance(result, (list, tuple)) else [result]


def _in_thread(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
    """Run a sync function in a daemon thread of its own (in a copy of this context, so its output
    capture follows it); an abandoned thread never holds up the executor's exit."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def deliver(value: Any, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is None:
            fut.set_result(value)
        else:
            fut.set_exception(error)

    def target() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = context.run(fn, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - handed to the loop as the function's failure
            error = exc
        except BaseException as exc:  # noqa: BLE001 - SystemExit and the like: a failure, not ours
            error = RuntimeError(f"the function raised {type(exc).__name__}: {exc}")
        try:
            loop.call_soon_threadsafe(deliver, value, error)
        except RuntimeError:  # the loop is closed: the executor has stopped
            pass

    threading.Thread(target=target, name=f"colonies-{getattr(fn, '__name__', 'fn')}", daemon=True).start()
    return fut


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # an abandoned call's failure is expected: no "never retrieved" warning


class ProcessRun:
    def __init__(self, ex: Executor, process: Process, fdef: FunctionDef | None, resumed: bool = False) -> None:
        self.ex, self.p, self.fdef = ex, process, fdef
        maxexec = process.spec.maxexectime
        # (a resumed run gets the whole maxexectime again: the server's deadline, which has not moved,
        # passes first, and the watch below stops the function then)
        self.ctx = Context(process, ex.name, time.monotonic() + maxexec if maxexec > 0 else None)
        self.ctx.resumed = resumed
        self.stopped = asyncio.Event()
        self.sink = Sink()
        self.pid = process.processid
        self.staging = Staging(process, self.ctx, self.stopped, ex.fs_root, ex.filesystem, self.sink.write,
                               ex.stop_grace, resumed) if wants_staging(process) else None

    def stop(self, reason: str) -> None:
        if self.stopped.is_set():
            return
        self.ctx.cancel(reason)
        self.stopped.set()
        log.warning("process %s: %s; stopping its function", self.pid[:12], reason)
        self.sink.write(f"[colonies] {reason}; the function is stopped and its result dropped\n")

    async def run(self) -> None:
        SINK.set(self.sink)  # this task's context (and the thread it hands a sync function to)
        pump = asyncio.create_task(self._pump())
        left = self.ctx.time_left()
        timer = None
        if left is not None:
            reason = f"the execution deadline passed (maxexectime {self.p.spec.maxexectime} s)"
            timer = asyncio.get_running_loop().call_later(left, self.stop, reason)
        try:
            ok, payload = await self._outcome()
        finally:
            if timer is not None:
                timer.cancel()
            await self._finish(pump)
        if self.stopped.is_set():
            self.ex.dropped += 1
            return
        attempt, ex = self.ctx.attempt, self.ex
        if ok:
            ex.completed += 1
            await self._report(lambda: ex.client.close(self.pid, payload, attempt=attempt))
        else:
            ex.failed += 1
            await self._report(lambda: ex.client.fail(self.pid, payload, attempt=attempt))

    # -- the function, with retries -------------------------------------------------------------------
    async def _outcome(self) -> tuple[bool, list[Any]]:
        """(True, output) or (False, errors); anything when stopped (the caller drops it)."""
        fdef = self.fdef
        if fdef is None:
            return False, [f"executor {self.ex.name} has no function {self.p.spec.funcname!r}"]
        try:
            args, kwargs = await self._arguments(fdef)
        except ArgumentError as exc:
            return False, [str(exc)]
        if self.staging is not None:
            return await self.staging.around(lambda: self._attempts(fdef, args, kwargs))
        return await self._attempts(fdef, args, kwargs)

    async def _attempts(self, fdef: FunctionDef, args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> tuple[bool, list[Any]]:
        while True:
            try:
                return True, as_output(await self._call(fdef, args, kwargs))
            except _Stopped:
                return False, []
            except ProcessFailed as exc:  # the function's own report: its lines, as they are
                return False, [] if self.stopped.is_set() else list(exc.errors)
            except Exception as exc:  # noqa: BLE001 - the function's failure is the process'
                error = traceback.format_exc(limit=20)
                policy = fdef.retry
                if self.stopped.is_set():
                    return False, []
                if policy is None or not policy.retries_on(exc) or self.ctx.retry >= policy.retries:
                    if self.ctx.retry:
                        error += f"(failed after {self.ctx.retry} retries)\n"
                    return False, [error]
                wait = policy.wait_before(self.ctx.retry + 1)
                left = self.ctx.time_left()
                if left is not None and wait >= left:
                    return False, [error + f"(not retried: waiting {wait:g} s would pass the deadline, "
                                           f"{left:.1f} s left)\n"]
                self.ctx.retry += 1
                await self._note_retry(policy, exc, wait)
                try:
                    await asyncio.wait_for(self.stopped.wait(), wait)
                    return False, []  # stopped during the backoff
                except TimeoutError:
                    pass

    async def _arguments(self, fdef: FunctionDef) -> tuple[tuple[Any, ...], dict[str, Any]]:
        p = self.p
        args, kwargs = list(p.spec.args or []), dict(p.spec.kwargs or {})
        by_node: dict[str, list[Any]] | None = None
        if fdef.parents == "kwargs" and p.parents:
            by_node = {}
            for parent_id in p.parents:
                try:
                    parent = await self.ex.client.get_process(parent_id)
                except ClientError as exc:
                    raise ArgumentError(f"could not read parent process {parent_id}: {exc.message}") from None
                by_node[parent.spec.nodename or parent_id] = list(parent.output or [])
        elif p.input:
            args = list(p.input) + args
        return fdef.arguments(args, kwargs, by_node, self.ctx)

    async def _call(self, fdef: FunctionDef, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.stopped.is_set():
            raise _Stopped
        inner: asyncio.Future[Any]
        inner = asyncio.ensure_future(fdef.fn(*args, **kwargs)) if fdef.is_async else _in_thread(fdef.fn, args, kwargs)
        waiter = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait([inner, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not self.stopped.is_set():
            return inner.result()
        if fdef.is_async:
            inner.cancel()
            await asyncio.wait([inner], timeout=self.ex.stop_grace)
        inner.add_done_callback(_retrieve)
        raise _Stopped

    async def _note_retry(self, policy: RetryPolicy, exc: Exception, wait: float) -> None:
        """Each retry goes to the process log and becomes an ERR attribute kit.retry.<attempt>.<n>."""
        note = f"retry {self.ctx.retry}/{policy.retries} in {wait:g} s after {type(exc).__name__}: {exc}"
        log.info("process %s: %s", self.pid[:12], note)
        self.sink.write(f"[colonies] {note}\n")
        key = f"kit.retry.{self.ctx.attempt}.{self.ctx.retry}"
        try:
            await self.ex.client.add_attribute(self.pid, key, note[:4000], attributetype=2,
                                               attempt=self.ctx.attempt)
        except ClientError as err:
            log.warning("process %s: could not record the retry: %s", self.pid[:12], err)

    # -- watching the process, output, heartbeat ------------------------------------------------------
    def _lost(self, current: Process) -> str:
        """Why this assignment is over, from the server's copy of the process ("" if it is not)."""
        if current.state == ProcessState.CANCELLED:
            return "the process was cancelled"
        if current.state != ProcessState.RUNNING:
            return f"the process is {ProcessState(current.state).name} on the server"
        if current.assignedexecutorid != self.ex.executor_id:
            return "the process was assigned to another executor"
        if current.retries != self.ctx.attempt:
            return f"the process was re-queued (attempt {current.retries} now runs, this was {self.ctx.attempt})"
        return ""

    async def _pump(self) -> None:
        """Send captured output about once a second; read the process every `watch` seconds (sooner
        when a log is refused), which is also the heartbeat when nothing else was sent."""
        ex = self.ex
        now = time.monotonic()
        last_call, next_read = now, now + ex.watch
        while not self.stopped.is_set():
            await asyncio.sleep(max(0.01, min(1.0, ex.heartbeat, ex.watch)))
            try:
                try:
                    if await self._flush():
                        last_call = time.monotonic()
                except ClientError as exc:
                    if isinstance(exc, TransportError):
                        raise
                    next_read = 0.0  # refused: look at the process now
                now = time.monotonic()
                if now >= next_read or now - last_call >= ex.heartbeat:
                    current = await ex.client.get_process(self.pid)
                    last_call = time.monotonic()
                    next_read = last_call + ex.watch
                    reason = self._lost(current)
                    if reason:
                        self.stop(reason)
            except ClientError as exc:
                if exc.status in (403, 404):  # removed, or this executor is no longer a member
                    self.stop(f"the process is no longer readable ({exc.message})")
                else:
                    log.warning("process %s: %s", self.pid[:12], exc)
            except Exception as exc:  # noqa: BLE001 - never let logging or a heartbeat break the run
                log.warning("process %s: %s", self.pid[:12], exc)

    async def _flush(self, final: bool = False) -> bool:
        lines = self.sink.take(final)
        if not lines:
            return False
        await self.ex.client.add_log(self.pid, "\n".join(lines) + "\n")
        return True

    async def _finish(self, pump: asyncio.Task[None]) -> None:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        try:
            await self._flush(final=True)
        except Exception as exc:  # noqa: BLE001 - the result is reported all the same
            log.warning("process %s: could not send its log: %s", self.pid[:12], exc)

    async def _report(self, call: Callable[[], Awaitable[None]]) -> None:
        """Send a result; when no reply came back (the server restarting, a network blip), send it again
        for about REPORT_RETRY_S. A repeat of a close that did land is refused, which ends it."""
        delay, give_up = 0.25, time.monotonic() + REPORT_RETRY_S
        resent = False
        while True:
            try:
                await call()
                return
            except TransportError as exc:
                resent = True
                if time.monotonic() + delay > give_up:
                    log.warning("could not report result, giving up: %s", exc)
                    return
                log.info("could not report result (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except ClientError as exc:
                if resent:  # most likely an earlier send landed and this repeat is refused
                    log.info("process %s: a repeated result was refused (%s)", self.pid[:12], exc)
                    return
                # A stale attempt (403: the deadline passed, the process went to another attempt) or a
                # cancel: the result is dropped, never re-sent.
                self.ex.dropped += 1
                log.warning("process %s: result refused, dropped: %s", self.pid[:12], exc)
                return
