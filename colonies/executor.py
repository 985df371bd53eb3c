"""Write an executor in a few lines: declare functions, then pull work and run it.

    ex = Executor(colony="dev", prvkey=key, name="worker-1", executortype="python")

    @ex.function
    def add(a: int, b: int) -> int:
        return a + b

    ex.run()   # until SIGTERM/SIGINT

`run()` pulls with `slots` concurrent long-polls, runs each process' function (sync functions in a
thread), closes it with the return value as output (a list or tuple is the output list), or closes it
as failed with the traceback. On SIGTERM/SIGINT it stops pulling, lets running work finish, then exits.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import traceback
from collections.abc import Callable
from typing import Any

from colonies.client.asyncio import AsyncClient
from colonies.errors import ClientError
from colonies.model import Process
from colonies.protocol.crypto import id_of

log = logging.getLogger("colonies.executor")


class Executor:
    def __init__(self, colony: str, prvkey: str, name: str, executortype: str = "python",
                 host: str = "127.0.0.1", port: int = 50080, tls: bool = False, slots: int = 1,
                 poll_timeout: int = 10, client: AsyncClient | None = None) -> None:
        self.colony = colony
        self.prvkey = prvkey
        self.executor_id = id_of(prvkey)
        self.name = name
        self.executortype = executortype
        self.slots = max(1, slots)
        self.poll_timeout = poll_timeout
        self._client_args = (host, port, tls)
        self._client = client
        self.functions: dict[str, Callable[..., Any]] = {}
        self._stopping: asyncio.Event | None = None
        self.completed = 0
        self.failed = 0

    # -- declaring functions -------------------------------------------------------------------------
    def function(self, fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Decorator: serve `fn` under its name (or `name`)."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            self.functions[name or f.__name__] = f
            return f

        return register(fn) if fn is not None else register

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            host, port, tls = self._client_args
            self._client = AsyncClient(host, port, prvkey=self.prvkey, tls=tls)
        return self._client

    async def register(self, colony_prvkey: str) -> None:
        """Add this executor to the colony and approve it, signing with the colony owner's key."""
        owner = self.client.with_key(colony_prvkey)
        try:
            await owner.add_executor(self.colony, self.executor_id, self.name, self.executortype)
        except ClientError as exc:
            if "already exists" not in exc.message:
                raise
        await owner.approve_executor(self.colony, self.name)

    async def announce(self) -> None:
        """Register the declared function names (informational, with per-function statistics)."""
        known = {f.funcname for f in await self.client.get_functions(self.colony, self.name) or []}
        for fname in self.functions:
            if fname not in known:
                await self.client.add_function(self.colony, self.name, fname)

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def run_async(self, until_idle: bool = False) -> None:
        """Pull and run work until `stop()`; with `until_idle`, return once no work is left."""
        self._stopping = asyncio.Event()
        await self.announce()
        workers = [asyncio.create_task(self._slot(until_idle), name=f"slot-{i}") for i in range(self.slots)]
        stopper = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait([*workers, stopper], return_when=asyncio.FIRST_COMPLETED)
            if until_idle:
                await asyncio.gather(*workers)
        finally:
            self._stopping.set()
            for w in workers:
                w.cancel()  # cancels idle long-polls; running work is shielded below
            await asyncio.gather(*workers, return_exceptions=True)
            stopper.cancel()

    def run(self, until_idle: bool = False) -> None:
        """Blocking entry point with SIGTERM/SIGINT handling."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self.stop)
                except (NotImplementedError, RuntimeError):
                    pass
            try:
                await self.run_async(until_idle=until_idle)
            finally:
                await self.client.aclose()

        asyncio.run(main())

    # -- the pull loop ------------------------------------------------------------------------------------------
    async def _slot(self, until_idle: bool) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                process = await self.client.assign(self.colony, -1 if until_idle else self.poll_timeout)
            except ClientError as exc:
                if exc.status == 404:
                    if until_idle:
                        return
                    continue
                log.warning("assign failed: %s", exc)
                await asyncio.sleep(1)
                continue
            except Exception as exc:  # connection trouble: back off and retry
                log.warning("assign failed: %s", exc)
                await asyncio.sleep(1)
                continue
            # Running work is shielded: a stop lets it finish and report.
            await asyncio.shield(self._execute(process))

    async def _execute(self, p: Process) -> None:
        fn = self.functions.get(p.spec.funcname)
        try:
            if fn is None:
                raise LookupError(f"executor {self.name} has no function {p.spec.funcname!r}")
            args = list(p.spec.args or [])
            if p.input:
                args = list(p.input) + args
            kwargs = dict(p.spec.kwargs or {})
            if inspect.iscoroutinefunction(fn):
                result = await fn(*args, **kwargs)
            else:
                result = await asyncio.to_thread(fn, *args, **kwargs)
        except Exception:
            self.failed += 1
            await self._report(self.client.fail(p.processid, [traceback.format_exc(limit=20)]))
            return
        out = [] if result is None else list(result) if isinstance(result, (list, tuple)) else [result]
        self.completed += 1
        await self._report(self.client.close(p.processid, out))

    async def _report(self, call: Any) -> None:
        try:
            await call
        except ClientError as exc:
            # Typically: the deadline passed and the process went to another executor.
            log.warning("could not report result: %s", exc)
