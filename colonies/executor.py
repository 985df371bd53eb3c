"""Write an executor in a few lines: declare functions, then pull work and run it.

    ex = Executor(colony="dev", prvkey=key, name="worker-1", executortype="python")

    @ex.function
    def add(a: int, b: int) -> int:
        return a + b

    ex.run()   # until SIGTERM/SIGINT

`run()` pulls with `slots` concurrent long-polls, runs each process' function (sync functions in a
thread), closes it with the return value as output (a list or tuple is the output list), or closes it
as failed with the traceback. On SIGTERM/SIGINT it stops pulling, lets running work finish, then exits.

While a function runs:
* what it prints (stdout and stderr) and what it logs through `logging` goes to the process' log
  (`addlogmsg`), in batches about once a second. The capture follows the process through a context
  variable, so concurrent slots keep their output apart; threads the function starts itself are not
  followed. The output is still echoed to the executor's own terminal.
* every `heartbeat` seconds without another call, the executor reads the process (`getprocessmsg`):
  any authenticated call is a sign of life to the server, so a long job's executor is not removed as
  stale. (A process' own `maxexectime` is a hard limit that no heartbeat extends.)

`colonies executor run module[:object]` loads an Executor from a module and fills in whatever it left
empty (colony, key, name, type, server) from flags and COLONIES_* variables; see `configure()`.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import importlib.util
import inspect
import io
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from colonies.client.asyncio import AsyncClient
from colonies.errors import ClientError, TransportError
from colonies.model import Process
from colonies.protocol.crypto import generate_prvkey, id_of

log = logging.getLogger("colonies.executor")
REPORT_RETRY_S = 30.0  # how long a close/fail is re-sent when no reply comes back


# -- per-process output capture ----------------------------------------------------------------------------
class _Sink:
    """Lines written while one process runs; taken in batches for the process log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._partial = ""

    def write(self, text: str) -> None:
        with self._lock:
            self._partial += text
            if "\n" in self._partial:
                *done, self._partial = self._partial.split("\n")
                self._lines.extend(done)

    def take(self, final: bool = False) -> list[str]:
        with self._lock:
            out, self._lines = self._lines, []
            if final and self._partial:
                out.append(self._partial)
                self._partial = ""
            return out


_SINK: contextvars.ContextVar[_Sink | None] = contextvars.ContextVar("colonies_process_output", default=None)


class _Tee(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: copies writes to the running process' sink, if any."""

    def __init__(self, orig: TextIO) -> None:
        self.orig = orig

    def write(self, s: str) -> int:
        sink = _SINK.get()
        if sink is not None:
            sink.write(s)
        return self.orig.write(s)

    def flush(self) -> None:
        self.orig.flush()

    def isatty(self) -> bool:
        return self.orig.isatty()

    def fileno(self) -> int:
        return self.orig.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.orig, "encoding", "utf-8"))


class _LogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink = _SINK.get()
        if sink is not None and not record.name.startswith(("colonies.", "httpx", "httpcore")):
            try:
                sink.write(self.format(record) + "\n")
            except Exception:  # noqa: BLE001 - logging must never break the function
                self.handleError(record)


_capture_lock = threading.Lock()
_captured = False


def install_capture() -> None:
    """Route print/logging output of running processes to their sinks (idempotent)."""
    global _captured
    with _capture_lock:
        if _captured:
            return
        _captured = True
        if not isinstance(sys.stdout, _Tee):
            sys.stdout = _Tee(sys.stdout)
        if not isinstance(sys.stderr, _Tee):
            sys.stderr = _Tee(sys.stderr)
        handler = _LogHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)


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
    ) -> None:
        self.colony = colony
        self.prvkey = prvkey
        self.name = name
        self.executortype = executortype or "python"
        self._type_given = bool(executortype)
        self.slots = max(1, slots)
        self.poll_timeout = poll_timeout
        self.heartbeat = heartbeat
        self.capture_output = capture_output
        self.host, self.port, self.tls = host, port, tls
        self._client = client
        self.functions: dict[str, Callable[..., Any]] = {}
        self._stopping: asyncio.Event | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.completed = 0
        self.failed = 0

    @property
    def executor_id(self) -> str:
        return id_of(self.prvkey)

    # -- declaring functions ----------------------------------------------------------------------------
    def function(self, fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Decorator: serve `fn` under its name (or `name`)."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            self.functions[name or f.__name__] = f
            return f

        return register(fn) if fn is not None else register

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
    ) -> Executor:
        """Fill in what the executor left empty; `slots` and `heartbeat`, when given, override."""
        self.colony = self.colony or colony
        self.prvkey = self.prvkey or prvkey
        self.name = self.name or name
        if not self._type_given and executortype:
            self.executortype, self._type_given = executortype, True
        self.host = self.host if self.host is not None else host
        self.port = self.port if self.port is not None else port
        self.tls = self.tls if self.tls is not None else tls
        if slots:
            self.slots = max(1, slots)
        if heartbeat:
            self.heartbeat = heartbeat
        return self

    # -- lifecycle --------------------------------------------------------------------------------------
    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            self._client = AsyncClient(
                self.host or "127.0.0.1", self.port or 50080, prvkey=self.prvkey, tls=bool(self.tls)
            )
        return self._client

    async def register(self, colony_prvkey: str) -> None:
        """Add this executor to the colony and approve it, signing with the colony owner's key."""
        if not self.prvkey:
            self.prvkey = generate_prvkey()  # a fresh identity, made known by the owner below
        if not self.name:
            self.name = f"{self.executortype}-{socket.gethostname()}-{secrets.token_hex(3)}"
        owner = self.client.with_key(colony_prvkey)
        try:
            await owner.add_executor(self.colony, self.executor_id, self.name, self.executortype)
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

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def run_async(self, until_idle: bool = False, colony_prvkey: str = "") -> None:
        """Pull and run work until `stop()`; with `until_idle`, return once no work is left.

        With `colony_prvkey`, add and approve this executor first (see `register`).
        """
        self._stopping = asyncio.Event()
        if colony_prvkey:
            await self.register(colony_prvkey)
        if not self.prvkey:
            raise ValueError(
                "the executor has no private key: give one, or the colony owner's key to make one"
            )
        if self.capture_output:
            install_capture()
        await self.announce()
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

    # -- the pull loop ----------------------------------------------------------------------------------
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
            except Exception as exc:  # noqa: BLE001 - connection trouble: back off and retry
                log.warning("assign failed: %s", exc)
                await asyncio.sleep(1)
                continue
            # Running work is shielded: a stop lets it finish and report (run_async awaits it).
            task = asyncio.ensure_future(self._execute(process))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            await asyncio.shield(task)

    async def _execute(self, p: Process) -> None:
        sink = _Sink()
        _SINK.set(sink)  # this task's context (and the thread it hands a sync function to)
        pump = asyncio.create_task(self._pump(p.processid, sink))
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
        except Exception:  # noqa: BLE001 - the function's failure is the process'
            self.failed += 1
            await self._finish(pump, p.processid, sink)
            errors = [traceback.format_exc(limit=20)]
            await self._report(lambda: self.client.fail(p.processid, errors))
            return
        out = [] if result is None else list(result) if isinstance(result, (list, tuple)) else [result]
        self.completed += 1
        await self._finish(pump, p.processid, sink)
        await self._report(lambda: self.client.close(p.processid, out))

    async def _pump(self, process_id: str, sink: _Sink) -> None:
        """Send captured output about once a second; read the process as a heartbeat when quiet."""
        last_call = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, self.heartbeat))
            try:
                if await self._flush(process_id, sink):
                    last_call = time.monotonic()
                elif time.monotonic() - last_call >= self.heartbeat:
                    await self.client.get_process(process_id)
                    last_call = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - never let logging or a heartbeat break the run
                log.warning("process %s: %s", process_id[:12], exc)

    async def _flush(self, process_id: str, sink: _Sink, final: bool = False) -> bool:
        lines = sink.take(final)
        if not lines:
            return False
        await self.client.add_log(process_id, "\n".join(lines) + "\n")
        return True

    async def _finish(self, pump: asyncio.Task[None], process_id: str, sink: _Sink) -> None:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        try:
            await self._flush(process_id, sink, final=True)
        except Exception as exc:  # noqa: BLE001 - the result is reported all the same
            log.warning("process %s: could not send its log: %s", process_id[:12], exc)

    async def _report(self, call: Callable[[], Awaitable[None]]) -> None:
        """Send a result; when no reply came back (the server restarting, a network blip), send it again
        for about REPORT_RETRY_S. A repeat of a close that did land is refused, which ends it."""
        delay, give_up = 0.25, time.monotonic() + REPORT_RETRY_S
        while True:
            try:
                await call()
                return
            except TransportError as exc:
                if time.monotonic() + delay > give_up:
                    log.warning("could not report result, giving up: %s", exc)
                    return
                log.info("could not report result (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except ClientError as exc:
                # Typically: the deadline passed and the process went to another executor.
                log.warning("could not report result: %s", exc)
                return


def load_executor(target: str) -> Executor:
    """The Executor declared in `module`, `module:object` or `path/to/file.py[:object]`.

    Without an object name, the module must hold exactly one Executor instance. An object that is a
    callable (not an Executor) is called with no arguments to make one.
    """
    modname, _, objname = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if modname.endswith(".py") or os.sep in modname:
        path = os.path.abspath(modname)
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot load {modname}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(modname)
    if objname:
        obj = getattr(module, objname, None)
        if obj is None:
            raise ValueError(f"module {modname} has no {objname!r}")
        if not isinstance(obj, Executor) and callable(obj):
            obj = obj()
        if not isinstance(obj, Executor):
            raise ValueError(f"{target} is not a colonies.Executor")
        return obj
    found = [v for v in vars(module).values() if isinstance(v, Executor)]
    if len(found) != 1:
        raise ValueError(
            f"module {modname} declares {len(found)} Executor instances; name one as {modname}:object"
        )
    return found[0]
