"""Reconcilers: a Python class that makes blueprints of one kind so, served by the executor kit.

    class Deploy(Reconciler):
        kind = "ExecutorDeployment"

        async def reconcile(self, bp: Blueprint, ctx: ReconcileContext) -> dict[str, Any]:
            ...                       # make bp.spec so; return what is observed (the blueprint's status)

        async def cleanup(self, ref: BlueprintRef, ctx: ReconcileContext) -> None:
            ...                       # the blueprint is gone: remove what was made for it

    ex = reconciler_executor(Deploy(), colony="dev", executortype="reconciler")   # or ex.reconciler(Deploy())
    ex.run()                          # or: colonies executor run mymodule:ex --type reconciler

The server submits, for the definition's handler (executorType, functionName), three kinds of process
(colonies/server/handlers_blueprints.py); this module serves all three:

* `functionName` with kwargs {"kind", "blueprintName"} (+ "force") on every add, spec change and
  `reconcileblueprintmsg`: the blueprint is read and `reconcile` is called with it;
* `functionName` with kwargs {"kind"} from the (kind, location) cron every reconcileInterval: every
  blueprint of the kind at the process' `conditions.locationname` is reconciled in turn (one failing does
  not stop the others), then `prune(live, ctx)` may remove what belongs to none of them;
* "cleanup" with {"kind", "blueprintName"} after a removal. The blueprint no longer exists then, so
  `cleanup` gets a BlueprintRef (colony, kind, name, location) and must find what to remove by itself:
  label what you make with the blueprint's name and id (as Kubernetes controllers do with owner labels).
  `ref.replaced_by` is the id of a blueprint of the same name added again meanwhile: spare its resources.

Status: what `reconcile` returns is written with `update_blueprint_status`, with `generation` (the
metadata.generation it reconciled: desired vs observed is metadata.generation vs status.generation) and
`reconciledAt` added. An exception is retried with the reconciler's `retry` policy (the kit's RetryPolicy,
waits in the process log); when retries are spent (or on ProcessFailed, which is not retried) the previous
status is kept with `error` (one line) and `errorAt` added, and the process fails with that line
(the traceback goes to the process log). Reconciles of one blueprint never overlap within an executor.
Reconcile processes have no deadline (maxexectime -1): on startup the executor resumes those an earlier run
of its identity was given and never finished (the kit's `resume`).

Location: the scheduler gives a process without a location to an executor at any location (as the
original's). A reconciler whose resources live where it runs (`local = True`, e.g. containers on its host)
therefore hands such work on: an executor at location X given a process for another location submits it
again, targeted by name at the approved executors of its type at that location, and closes its own (or
closes it with a note when there is none). Run one reconciler executor per (executor type, location): two at
one location would both act on it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

from colonies.blueprints import CLEANUP_FUNCTION
from colonies.clock import Clock, SystemClock, to_datetime
from colonies.errors import ClientError, ProcessFailed, TransportError
from colonies.executors.context import Context
from colonies.executors.kit import Executor
from colonies.executors.retry import RetryPolicy
from colonies.model import Blueprint, ExecutorState, ProcessState

if TYPE_CHECKING:
    from colonies.client.asyncio import AsyncClient

log = logging.getLogger("colonies.reconciler")
T = TypeVar("T")
STATUS_ATTEMPTS = 3  # a status write that got no reply is sent again this often
RESUME_MAX = 100     # processes of an earlier run looked for at startup


@dataclass(frozen=True)
class BlueprintRef:
    """A removed blueprint, as `cleanup` sees it."""

    colony: str
    kind: str
    name: str
    location: str = ""
    replaced_by: str = ""  # id of a blueprint of the same name that exists again now, else ""


@dataclass
class ReconcileContext:
    """One reconcile or cleanup process, as a reconciler sees it."""

    executor: Executor
    process: Context          # the kit's view of the process (ctx.process, ctx.cancelled...)
    colony: str
    location: str             # the process' conditions.locationname (the blueprints' location)
    kind: str
    force: bool = False       # `colonies blueprint reconcile --force`

    @property
    def client(self) -> AsyncClient:
        """The reconciler executor's client (a member of the colony: it may read and report)."""
        return self.executor.client


class Reconciler:
    """Subclass, set `kind`, implement `reconcile` (and usually `cleanup`); async or plain methods."""

    kind: ClassVar[str] = ""
    function_name: ClassVar[str] = "reconcile"  # the definition's handler.functionName
    local: ClassVar[bool] = False  # True: it acts on the host it runs on (see "Location" above)
    retry: RetryPolicy | None = RetryPolicy(retries=3, backoff="exponential", delay=1.0, max_delay=10.0)

    def reconcile(self, bp: Blueprint, ctx: ReconcileContext) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """Make `bp.spec` so; return the observed state (written as the blueprint's status)."""
        raise NotImplementedError

    def cleanup(self, ref: BlueprintRef, ctx: ReconcileContext) -> None | Awaitable[None]:
        """Remove what was made for a removed blueprint (default: nothing)."""
        return None

    def prune(self, live: list[Blueprint], ctx: ReconcileContext) -> None | Awaitable[None]:
        """After a kind-wide (cron) reconcile: remove what belongs to none of `live`, the blueprints of the
        kind at `ctx.location` (what a lost cleanup left). Default: nothing."""
        return None


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """A reconciler method, async or plain (a plain one runs in a thread)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    result = await asyncio.to_thread(fn, *args)
    return await result if inspect.isawaitable(result) else result


def status_of(bp: Blueprint) -> dict[str, Any]:
    """The blueprint's status as a dict ({} when it has none)."""
    return {} if bp.status is msgspec.UNSET else dict(bp.status)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, ProcessFailed) else f"{type(exc).__name__}: {text}"


class _Dispatch:
    """The functions a reconciler executor serves, dispatching on the process' kind."""

    def __init__(self, ex: Executor, clock: Clock) -> None:
        self.ex, self.clock = ex, clock
        self.by_kind: dict[str, Reconciler] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def add(self, r: Reconciler) -> None:
        if not r.kind:
            raise ValueError(f"{type(r).__name__} has no kind: set the class attribute `kind`")
        if r.kind in self.by_kind:
            raise ValueError(f"executor {self.ex.name or '(unnamed)'} already reconciles kind {r.kind}")
        existing = self.ex.functions.get(r.function_name)
        if existing is not None and getattr(existing, "__self__", None) is not self:
            raise ValueError(f"the executor already serves a function {r.function_name!r}")
        self.by_kind[r.kind] = r
        self.ex.function(self.reconcile, name=r.function_name)

    # -- what the kit calls ---------------------------------------------------------------------------------
    async def reconcile(self, *_input: Any, ctx: Context, **kwargs: Any) -> Any:
        # (positional: a cron-fired process gets the previous round's output as its input; not used)
        r, rc, name = self._start(ctx, kwargs)
        if self._elsewhere(r, rc):
            return await self._hand_on(rc)
        if name:
            return await self._reconcile_named(r, rc, name)
        return await self._reconcile_kind(r, rc)

    async def cleanup(self, *_input: Any, ctx: Context, **kwargs: Any) -> Any:
        r, rc, name = self._start(ctx, kwargs)
        if not name:
            raise ProcessFailed("cleanup needs kwargs.blueprintName")
        if self._elsewhere(r, rc):
            return await self._hand_on(rc)
        async with self._lock(rc.colony, name):
            replaced_by = ""
            try:
                replaced_by = (await rc.client.get_blueprint(rc.colony, name)).blueprintid
            except ClientError as exc:
                if exc.status != 404:
                    raise
            ref = BlueprintRef(rc.colony, rc.kind, name, rc.location, replaced_by)
            await self._attempts(r, f"cleanup {rc.kind} {name}", lambda: _call(r.cleanup, ref, rc))
        log.info("cleaned up %s %s", rc.kind, name)
        return None

    async def resume_mine(self, ex: Executor) -> None:
        """Startup: run again the reconciles and cleanups an earlier run of this executor was given and never
        finished (they have no deadline, so nothing else would ever re-queue them)."""
        running = await ex.client.get_processes(ex.colony, state=ProcessState.RUNNING, count=RESUME_MAX,
                                                executortype=ex.executortype) or []
        for p in running:
            if p.assignedexecutorid == ex.executor_id and p.spec.funcname in ex.functions:
                log.info("resuming %s process %s an earlier run of this executor left", p.spec.funcname, p.processid)
                ex.resume(p)

    # -- the parts -----------------------------------------------------------------------------------------
    def _start(self, ctx: Context, kwargs: dict[str, Any]) -> tuple[Reconciler, ReconcileContext, str]:
        kind = str(kwargs.get("kind") or "")
        if not kind and len(self.by_kind) == 1:
            kind = next(iter(self.by_kind))
        r = self.by_kind.get(kind)
        if r is None:
            served = ", ".join(sorted(self.by_kind)) or "none"
            raise ProcessFailed(f"executor {self.ex.name} reconciles no kind {kind!r} (it reconciles {served})")
        cond = ctx.process.spec.conditions
        rc = ReconcileContext(self.ex, ctx, cond.colonyname or self.ex.colony, cond.locationname, kind,
                              bool(kwargs.get("force")))
        return r, rc, str(kwargs.get("blueprintName") or "")

    def _elsewhere(self, r: Reconciler, rc: ReconcileContext) -> bool:
        return r.local and rc.location != (self.ex.location or "")

    async def _hand_on(self, rc: ReconcileContext) -> dict[str, Any]:
        """Submit this process again for the approved executors of this type at its location."""
        where = rc.location or "no location"
        executors = await rc.client.get_executors(rc.colony) or []
        names = sorted(e.executorname for e in executors if e.executortype == self.ex.executortype
                       and e.locationname == rc.location and e.state == ExecutorState.APPROVED)
        if not names:
            log.warning("%s work for %s: no %s executor there to hand it to", rc.kind, where, self.ex.executortype)
            return {"handedOn": [], "reason": f"no approved {self.ex.executortype} executor at {where}"}
        spec = rc.process.process.spec
        again = msgspec.structs.replace(spec, conditions=msgspec.structs.replace(spec.conditions, executornames=names))
        p = await rc.client.submit(again)
        log.info("%s work for %s handed on to %s (process %s)", rc.kind, where, ", ".join(names), p.processid)
        return {"handedOn": names, "processid": p.processid}

    def _lock(self, colony: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((colony, name), asyncio.Lock())

    async def _reconcile_named(self, r: Reconciler, rc: ReconcileContext, name: str) -> dict[str, Any] | None:
        async with self._lock(rc.colony, name):
            try:
                bp = await rc.client.get_blueprint(rc.colony, name)
            except ClientError as exc:
                if exc.status != 404:
                    raise
                log.info("blueprint %s is gone: nothing to reconcile (its cleanup follows)", name)
                return None
            if bp.kind != rc.kind:
                raise ProcessFailed(f"blueprint {name} is of kind {bp.kind}, not {rc.kind}")
            return await self._reconcile(r, rc, bp)

    async def _reconcile_kind(self, r: Reconciler, rc: ReconcileContext) -> dict[str, Any]:
        listed = await rc.client.get_blueprints(rc.colony, rc.kind, rc.location) or []
        live = [bp for bp in listed if bp.kind == rc.kind and bp.metadata.locationname == rc.location]
        results: dict[str, Any] = {}
        failed: list[str] = []
        for bp in live:
            async with self._lock(rc.colony, bp.metadata.name):
                try:
                    results[bp.metadata.name] = await self._reconcile(r, rc, bp)
                except ProcessFailed as exc:
                    failed.append(exc.errors[0])
        try:
            await _call(r.prune, live, rc)
        except Exception as exc:  # noqa: BLE001 - pruning is best effort; the next round tries again
            log.warning("prune %s: %s", rc.kind, _one_line(exc))
        where = f" at {rc.location}" if rc.location else ""
        log.info("reconciled %d %s blueprint(s)%s, %d failed", len(live) - len(failed), rc.kind, where, len(failed))
        if failed:
            raise ProcessFailed(f"{len(failed)} of {len(live)} {rc.kind} blueprint(s){where} failed: "
                                + "; ".join(failed))
        return results

    async def _reconcile(self, r: Reconciler, rc: ReconcileContext, bp: Blueprint) -> dict[str, Any]:
        what = f"reconcile {bp.kind} {bp.metadata.name}"
        try:
            status = await self._attempts(r, what, lambda: _call(r.reconcile, bp, rc))
            if not isinstance(status, dict):
                raise ProcessFailed(f"{what}: {type(r).__name__}.reconcile returned {type(status).__name__}, "
                                    "not a dict")
        except ProcessFailed as exc:
            error = {**status_of(bp), "error": exc.errors[0][:2000], "errorAt": self._now()}
            await self._write_status(rc, bp, error)
            raise
        status = {**status, "generation": bp.metadata.generation, "reconciledAt": self._now()}
        status.pop("error", None)
        status.pop("errorAt", None)
        await self._write_status(rc, bp, status)
        log.info("%s: generation %d, status written", what, bp.metadata.generation)
        return status

    async def _attempts(self, r: Reconciler, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`, retried on exceptions by `r.retry`; ProcessFailed with one line when it gives up."""
        policy, n = r.retry, 0
        while True:
            try:
                return await attempt()
            except ProcessFailed as exc:
                raise ProcessFailed(f"{what}: {exc.errors[0]}") from None
            except Exception as exc:  # noqa: BLE001 - the reconciler's failure, retried or reported
                if policy is not None and policy.retries_on(exc) and n < policy.retries:
                    n += 1
                    wait = policy.wait_before(n)
                    log.warning("%s: retry %d/%d in %g s after %s", what, n, policy.retries, wait, _one_line(exc))
                    await asyncio.sleep(wait)
                    continue
                log.error("%s failed:\n%s", what, traceback.format_exc(limit=20).rstrip())
                after = f" (after {n} retries)" if n else ""
                raise ProcessFailed(f"{what}: {_one_line(exc)}{after}") from None

    async def _write_status(self, rc: ReconcileContext, bp: Blueprint, status: dict[str, Any]) -> None:
        for attempt in range(STATUS_ATTEMPTS):
            try:
                await rc.client.update_blueprint_status(rc.colony, bp.metadata.name, status)
                return
            except TransportError:
                if attempt == STATUS_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
            except ClientError as exc:
                if exc.status == 404:  # removed meanwhile: its cleanup follows
                    return
                raise

    def _now(self) -> str:
        return to_datetime(self.clock.now_ns()).isoformat().replace("+00:00", "Z")


def _dispatch(ex: Executor, clock: Clock | None = None) -> _Dispatch:
    existing = ex.functions.get(CLEANUP_FUNCTION)
    if existing is not None:
        owner = getattr(existing, "__self__", None)
        if isinstance(owner, _Dispatch):
            return owner
        raise ValueError(f"the executor already serves a function {CLEANUP_FUNCTION!r}")
    d = _Dispatch(ex, clock or SystemClock())
    ex.function(d.cleanup, name=CLEANUP_FUNCTION)
    ex.on_startup(d.resume_mine)
    return d


def attach(ex: Executor, r: Reconciler, clock: Clock | None = None) -> Reconciler:
    """Serve `r` on `ex`: its `function_name` and "cleanup" (shared by every reconciler of `ex`)."""
    _dispatch(ex, clock).add(r)
    return r


def reconciler_executor(*reconcilers: Reconciler, clock: Clock | None = None, **kwargs: Any) -> Executor:
    """An Executor serving `reconcilers` (kwargs as Executor's). Its type defaults to "reconciler", which
    `colonies executor run --type` / COLONIES_EXECUTOR_TYPE may override."""
    ex = Executor(**kwargs)
    if not kwargs.get("executortype"):
        ex.executortype = "reconciler"  # a default: configure() may still set another
    for r in reconcilers:
        attach(ex, r, clock)
    return ex
