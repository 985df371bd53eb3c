"""The executor kit's core: declare functions, register, pull work with slots, drain on SIGTERM.

    ex = Executor(colony="dev", prvkey=key, name="worker-1", executortype="python")

    @ex.function
    def add(a: int, b: int) -> int:
        return a + b

    ex.run()   # until SIGTERM/SIGINT

`run()` pulls with `slots` concurrent long-polls and hands each assigned process to a `ProcessRun`
(colonies/executors/running.py): it runs the function (sync functions in a thread of their own), with
retries, its deadline, cancel detection, and output capture, then closes the process with the return
value as output (a list or tuple is the output list), or fails it. On SIGTERM/SIGINT the executor
stops pulling, lets running work finish, then exits. With `until` (a time.monotonic() deadline, as a
pilot slot's walltime) each assign asks only for processes whose maxexectime fits in what is left
(the server's `availableexectime` filter); with `idle_timeout` the executor stops after that long
without work; with `socket` it reaches the server through a relay's Unix socket (relay.py).

`colonies executor run module[:object]` loads an Executor from a module and fills in whatever it left
empty (colony, key, name, type, server) from flags and COLONIES_* variables; see `configure()`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import httpx

from colonies.client.asyncio import AsyncClient
from colonies.client.sync import Client
from colonies.errors import ClientError
from colonies.executors.capture import install_capture
from colonies.executors.functions import FunctionDef
from colonies.executors.retry import RetryPolicy, as_policy
from colonies.executors.running import ProcessRun
from colonies.health import HealthFile
from colonies.model import Process
from colonies.protocol.crypto import generate_prvkey, id_of

if TYPE_CHECKING:
    from colonies.executors.reconciler import Reconciler
    from colonies.fs import AsyncFileSystem

log = logging.getLogger("colonies.executor")
F = TypeVar("F", bound=Callable[..., Any])


class Executor:
    def __init__(
        self,
        colony: str = "",
        prvkey: str = "",
        name: str = "",
        executortype: str = "",
        host: str | None = None,
        port: int | None = None,
        tls: bool | None = None,
        slots: int = 1,
        poll_timeout: int = 10,
        client: AsyncClient | None = None,
        heartbeat: float = 60.0,
        capture_output: bool = True,
        watch: float = 5.0,
        stop_grace: float = 5.0,
        fs_dir: str | Path | None = None,
        health_file: str | Path | None = None,
        location: str = "",
        socket: str = "",
        until: float | None = None,
        idle_timeout: float = 0.0,
    ) -> None:
        self.colony = colony
        self.prvkey = prvkey
        self.name = name
        self.executortype = executortype or "python"
        self._type_given = bool(executortype)
        self.location = location  # the site it registers at (locationname; processes target it by conditions)
        self.slots = max(1, slots)
        self.poll_timeout = poll_timeout
        self.heartbeat = heartbeat
        self.watch = watch  # seconds between reads of a running process (cancel/re-queue detection)
        self.stop_grace = stop_grace  # how long a cancelled async function may take to clean up
        self.capture_output = capture_output
        # working directories of processes with spec.fs (staging.py); None: a temp dir made on first use
        self.fs_dir = Path(fs_dir).expanduser() if fs_dir else None
        self._fs_temp: Path | None = None
        self._fs: AsyncFileSystem | None = None
        self._fs_client: Client | None = None
        # touched while the pull loop is alive, for container health checks (colonies/health.py)
        self.health = HealthFile(health_file) if health_file else None
        self.host, self.port, self.tls = host, port, tls
        self.socket = socket  # reach the server through a relay's Unix socket instead (client/asyncio.py)
        # time.monotonic() by which every process taken must be done (a pilot slot's walltime): a slot
        # asks only for processes whose maxexectime fits in what is left, and stops pulling near it
        self.until = until
        self.idle_timeout = idle_timeout  # > 0: stop once no process has run for this many seconds
        self._last_busy = time.monotonic()
        self._client = client
        self.functions: dict[str, Callable[..., Any]] = {}
        self.defs: dict[str, FunctionDef] = {}
        self._stopping: asyncio.Event | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._runs: set[ProcessRun] = set()
        self._startup: list[Callable[[Executor], Awaitable[None]]] = []
        self._resumed: collections.deque[Process] = collections.deque()  # see resume()
        self.completed = 0
        self.failed = 0
        self.dropped = 0  # results not reported: the process was stopped, or the server refused them

    @property
    def executor_id(self) -> str:
        return id_of(self.prvkey)

    # -- declaring functions ----------------------------------------------------------------------------
    @overload
    def function(self, fn: F, *, name: str | None = None, retry: RetryPolicy | int | None = None,
                 parents: str = "positional") -> F: ...

    @overload
    def function(self, fn: None = None, *, name: str | None = None, retry: RetryPolicy | int | None = None,
                 parents: str = "positional") -> Callable[[F], F]: ...

    def function(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        retry: RetryPolicy | int | None = None,
        parents: str = "positional",
    ) -> F | Callable[[F], F]:
        """Decorator: serve `fn` under its name (or `name`).

        `retry`: a RetryPolicy (or a number of retries) for exceptions the function raises.
        `parents`: "positional" (default: a workflow child's parents' outputs come first in its args)
        or "kwargs" (each parent's output as a keyword argument named by the parent's node).
        """
        policy = as_policy(retry)

        def register(f: F) -> F:
            fname = name or f.__name__
            self.defs[fname] = FunctionDef.of(f, fname, policy, parents)
            self.functions[fname] = f
            return f

        return register(fn) if fn is not None else register

    def reconciler(self, r: Reconciler) -> Reconciler:
        """Serve a blueprint reconciler: its reconcile function and "cleanup" (colonies/executors/reconciler.py)."""
        from colonies.executors.reconciler import attach

        return attach(self, r)

    # -- configuration ----------------------------------------------------------------------------------
    def configure(
        self,
        *,
        colony: str = "",
        prvkey: str = "",
        name: str = "",
        executortype: str = "",
        host: str | None = None,
        port: int | None = None,
        tls: bool | None = None,
        slots: int | None = None,
        heartbeat: float | None = None,
        watch: float | None = None,
        fs_dir: str | Path | None = None,
        health_file: str | Path | None = None,
        location: str = "",
        socket: str = "",
    ) -> Executor:
        """Fill in what the executor left empty; `slots`, `heartbeat`, `watch`, `fs_dir` and `health_file`,
        when given, override."""
        self.colony = self.colony or colony
        self.prvkey = self.prvkey or prvkey
        self.name = self.name or name
        self.location = self.location or location
        if not self._type_given and executortype:
            self.executortype, self._type_given = executortype, True
        self.host = self.host if self.host is not None else host
        self.port = self.port if self.port is not None else port
        self.tls = self.tls if self.tls is not None else tls
        self.socket = self.socket or socket
        if slots:
            self.slots = max(1, slots)
        if heartbeat:
            self.heartbeat = heartbeat
        if watch:
            self.watch = watch
        if fs_dir:
            self.fs_dir = Path(fs_dir).expanduser()
        if health_file:
            self.health = HealthFile(health_file)
        return self

    # -- lifecycle --------------------------------------------------------------------------------------
    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            self._client = AsyncClient(
                self.host or "127.0.0.1", self.port or 50080, prvkey=self.prvkey, tls=bool(self.tls),
                socket=self.socket,
            )
        return self._client

    def fs_root(self) -> Path:
        """Where the working directories of processes with spec.fs go: `fs_dir`, or a temp dir of this
        executor (made on first use, removed at exit when nothing was kept in it)."""
        if self.fs_dir is not None:
            self.fs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            return self.fs_dir
        if self._fs_temp is None:
            self._fs_temp = Path(tempfile.mkdtemp(prefix="colonies-fs-"))
        return self._fs_temp

    def filesystem(self) -> AsyncFileSystem:
        """The colony's files through this executor's object store (AWS_S3_* or COLONIES_FS_DIR in its
        environment); ConfigError when it has none. Made on first use."""
        if self._fs is None:
            from colonies.fs import AsyncFileSystem, store_from_env

            store = store_from_env(os.environ)
            url = httpx.URL(self.client.url)
            client = Client(url.host, url.port or 50080, prvkey=self.prvkey, tls=url.scheme == "https",
                            socket=self.socket)
            self._fs, self._fs_client = AsyncFileSystem(client, self.colony, store=store), client
        return self._fs

    async def register(self, colony_prvkey: str) -> None:
        """Add this executor to the colony and approve it, signing with the colony owner's key."""
        if not self.prvkey:
            self.prvkey = generate_prvkey()  # a fresh identity, made known by the owner below
        if not self.name:
            self.name = f"{self.executortype}-{socket.gethostname()}-{secrets.token_hex(3)}"
        owner = self.client.with_key(colony_prvkey)
        try:
            await owner.add_executor(self.colony, self.executor_id, self.name, self.executortype,
                                     location=self.location)
        except ClientError as exc:
            if "already exists" not in exc.message:
                raise
            # Owners are not members (protocol §2), so look with this executor's own key: any
            # registered executor, pending included, may list the colony's executors.
            try:
                listed = await self.client.get_executors(self.colony) or []
            except ClientError:
                listed = []  # our key is not registered there: the name belongs to another key
            existing = next((e for e in listed if e.executorname == self.name), None)
            if existing is None or existing.executorid != self.executor_id:
                raise ClientError(
                    409,
                    f"executor name {self.name!r} is taken by another key in colony "
                    f"{self.colony}; choose another name",
                ) from None
            if existing.executortype != self.executortype:
                raise ClientError(
                    409,
                    f"executor {self.name!r} is registered with type {existing.executortype!r}, "
                    f"not {self.executortype!r}; choose another name or key",
                ) from None
        await owner.approve_executor(self.colony, self.name)

    async def announce(self) -> None:
        """Register the declared function names (informational, with per-function statistics)."""
        try:
            me = await self.client.get_executor_by_id(self.colony, self.executor_id)
        except ClientError as exc:
            raise ClientError(
                exc.status,
                f"executor {self.executor_id[:12]}… is not an approved member of colony "
                f"{self.colony}: add it (colonies executor add --approve), or give the "
                f"colony owner's key ({exc.message})",
            ) from None
        self.name = me.executorname
        known = {f.funcname for f in await self.client.get_functions(self.colony, self.name) or []}
        for fname in self.functions:
            if fname not in known:
                await self.client.add_function(self.colony, self.name, fname)

    def on_startup(self, hook: Callable[[Executor], Awaitable[None]]) -> Callable[[Executor], Awaitable[None]]:
        """Await `hook(self)` once the executor is announced, before its slots pull work: the place to
        look for work an earlier run of this executor left running, and `resume` it."""
        self._startup.append(hook)
        return hook

    def resume(self, process: Process) -> None:
        """Run again a process that is already assigned to this executor (an earlier run's, found by a
        startup hook): the next free slot takes it before pulling new work, and runs its function as for
        a new assignment of the same attempt, with `ctx.resumed` True. Its spec.fs is not staged again:
        the working directory is kept as the earlier run left it (and synced up and cleaned as usual)."""
        self._resumed.append(process)

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    def abandon(self, reason: str) -> None:
        """Stop now, without finishing the running processes: their functions are stopped and their
        results dropped, so they stay RUNNING on the server until it takes them back (their deadline, or
        this executor's removal, which re-queues them at once). For an executor whose host is going away
        (a pilot slot whose allocation is cancelled), where a drain could not finish anyway."""
        for run in list(self._runs):
            run.stop(reason)
        self.stop()

    async def run_async(self, until_idle: bool = False, colony_prvkey: str = "") -> None:
        """Pull and run work until `stop()`; with `until_idle`, return once no work is left.

        With `colony_prvkey`, add and approve this executor first (see `register`).
        """
        self._stopping = asyncio.Event()
        self._last_busy = time.monotonic()
        if colony_prvkey:
            await self.register(colony_prvkey)
        if not self.prvkey:
            raise ValueError(
                "the executor has no private key: give one, or the colony owner's key to make one"
            )
        if self.capture_output:
            install_capture()
        await self.announce()
        for hook in self._startup:
            await hook(self)
        log.info(
            "executor %s (%s) serving %s in colony %s with %d slot(s)",
            self.name,
            self.executortype,
            ", ".join(sorted(self.functions)),
            self.colony,
            self.slots,
        )
        workers = [asyncio.create_task(self._slot(until_idle), name=f"slot-{i}") for i in range(self.slots)]
        stopper = asyncio.create_task(self._stopping.wait())
        alive = asyncio.create_task(self._alive(), name="health") if self.health else None
        idle = asyncio.create_task(self._idle(), name="idle") if self.idle_timeout > 0 else None
        try:
            await asyncio.wait([*workers, stopper], return_when=asyncio.FIRST_COMPLETED)
            if until_idle:
                await asyncio.gather(*workers)
        finally:
            self._stopping.set()
            for w in workers:
                w.cancel()  # cancels idle long-polls; running work is shielded below
            await asyncio.gather(*workers, return_exceptions=True)
            stopper.cancel()
            if self._running:
                log.info("waiting for %d running process(es) to finish", len(self._running))
                await asyncio.gather(*self._running, return_exceptions=True)
            for task in (alive, idle):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            self._close_fs()

    def _close_fs(self) -> None:
        if self._fs_client is not None:
            self._fs_client.close_client()
            self._fs, self._fs_client = None, None
        if self._fs_temp is not None:
            with contextlib.suppress(OSError):
                self._fs_temp.rmdir()  # only when empty: kept working directories stay
            self._fs_temp = None

    def run(self, until_idle: bool = False, colony_prvkey: str = "") -> None:
        """Blocking entry point with SIGTERM/SIGINT handling."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self._on_signal)
                except (NotImplementedError, RuntimeError):
                    pass
            try:
                await self.run_async(until_idle=until_idle, colony_prvkey=colony_prvkey)
            finally:
                await self.client.aclose()

        asyncio.run(main())

    def _on_signal(self) -> None:
        log.info("stopping: finishing running work, pulling no more")
        self.stop()

    async def _alive(self) -> None:
        """Touch the health file now, then every poll timeout while processes run (the slots, busy with
        them, do not poll)."""
        assert self.health is not None
        self.health.touch()
        while True:
            await asyncio.sleep(self.poll_timeout)
            if self._running:
                self.health.touch()

    async def _idle(self) -> None:
        """Stop the executor once no process has run for `idle_timeout` seconds."""
        step = min(1.0, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(step)
            if self._running:
                self._last_busy = time.monotonic()
            elif time.monotonic() - self._last_busy >= self.idle_timeout:
                log.info("no work for %g s (idle timeout): stopping", self.idle_timeout)
                self.stop()
                return

    def _poll(self) -> tuple[int, int]:
        """(long-poll timeout, seconds a process may take: 0 for any) for the next assign; (0, 0) when
        too little of `until` is left to take work. A process assigned at the very end of the long-poll
        must still end by `until`, so the poll's own length is kept back."""
        if self.until is None:
            return self.poll_timeout, 0
        left = self.until - time.monotonic()
        timeout = int(max(1.0, min(self.poll_timeout, left / 2)))
        exectime = int(left - timeout)
        return (timeout, exectime) if exectime >= 1 else (0, 0)

    # -- the pull loop ----------------------------------------------------------------------------------
    async def _slot(self, until_idle: bool) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            if self._resumed:
                await self._run_shielded(self._resumed.popleft(), resumed=True)
                continue
            timeout, exectime = self._poll()
            if timeout == 0:
                log.info("slot stops: too little time left for any process")
                return
            try:
                process = await self.client.assign(self.colony, -1 if until_idle else timeout, exectime=exectime)
            except ClientError as exc:
                if exc.status == 404:
                    if self.health:
                        self.health.touch()  # the server answered: no work within the poll timeout
                    if until_idle:
                        return
                    continue
                log.warning("assign failed: %s", exc)
                await asyncio.sleep(1)
                continue
            except Exception as exc:  # noqa: BLE001 - connection trouble: back off and retry
                log.warning("assign failed: %s", exc)
                await asyncio.sleep(1)
                continue
            if self.health:
                self.health.touch()
            await self._run_shielded(process)

    async def _run_shielded(self, process: Process, resumed: bool = False) -> None:
        # Running work is shielded: a stop lets it finish and report (run_async awaits it).
        task = asyncio.ensure_future(self._execute(process, resumed))
        self._running.add(task)
        task.add_done_callback(self._done)
        await asyncio.shield(task)

    def _done(self, task: asyncio.Future[None]) -> None:
        self._running.discard(task)
        self._last_busy = time.monotonic()

    async def _execute(self, p: Process, resumed: bool = False) -> None:
        run = ProcessRun(self, p, self.defs.get(p.spec.funcname), resumed=resumed)
        self._runs.add(run)
        try:
            await run.run()
        finally:
            self._runs.discard(run)
