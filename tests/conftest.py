"""Shared fixtures: a real server process on loopback (uvicorn + SQLite file), keys and a colony.

`server` starts `python -m colonies server start` in a subprocess, so tests can kill -9 it.
`colony` adds a colony with a user and an approved executor, and hands out their keys.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from colonies.client.sync import Client
from colonies.protocol.crypto import generate_prvkey, id_of

CI = os.environ.get("CI") == "true"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProc:
    port: int
    db_path: Path
    server_prvkey: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    verify: Any = True  # httpx `verify` for the health probe (an SSL context for a TLS server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "colonies", "server", "start"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5, verify=self.verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def client(self, prvkey: str) -> Client:
        return Client("127.0.0.1", self.port, prvkey=prvkey)


def make_server(tmp_path: Path, extra_env: dict[str, str] | None = None) -> ServerProc:
    server_prv = generate_prvkey()
    port = free_port()
    db = tmp_path / "colonies.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONIES_")}
    env.update({
        "COLONIES_SERVER_ID": id_of(server_prv),
        "COLONIES_SERVER_PORT": str(port),
        "COLONIES_DB_TYPE": "sqlite",
        "COLONIES_DB_PATH": str(db),
        "COLONIES_LOG_LEVEL": "WARNING",
        "COLONIES_TIMEOUT_CHECKER_PERIOD": "200",
        **(extra_env or {}),
    })
    return ServerProc(port=port, db_path=db, server_prvkey=server_prv, env=env, log_path=tmp_path / "server.log")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProc]:
    srv = make_server(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class ColonyKeys:
    name: str
    colony_prvkey: str
    user_prvkey: str
    executor_prvkey: str
    executor_name: str = "executor-1"
    executor_type: str = "test"
    extra: dict[str, str] = field(default_factory=dict)


def setup_colony(srv: ServerProc, name: str = "testcolony", executor_type: str = "test") -> ColonyKeys:
    keys = ColonyKeys(name=name, colony_prvkey=generate_prvkey(), user_prvkey=generate_prvkey(),
                      executor_prvkey=generate_prvkey(), executor_type=executor_type)
    with srv.client(srv.server_prvkey) as admin:
        admin.add_colony(id_of(keys.colony_prvkey), name)
        owner = admin.with_key(keys.colony_prvkey)
        owner.add_user(name, id_of(keys.user_prvkey), f"{name}-user")
        owner.add_executor(name, id_of(keys.executor_prvkey), keys.executor_name, executor_type)
        owner.approve_executor(name, keys.executor_name)
    return keys


@pytest.fixture
def colony(server: ServerProc) -> ColonyKeys:
    return setup_colony(server)


# -- external services (PostgreSQL, etcd): skip on a laptop without them, fail in CI -----------------------
PG_DSN_DEFAULT = "postgresql://colonies:colonies@127.0.0.1:5432/colonies"


def need_service(name: str, error: BaseException | str) -> None:
    """A required service is missing: fail in CI (CI=true), skip elsewhere (the dramatiq pattern)."""
    if CI:
        if isinstance(error, BaseException):
            raise error
        raise RuntimeError(f"{name} is required in CI: {error}")
    pytest.skip(f"{name} is not available: {error}")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop (own thread)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(timeout=60)


def _pg_probe(dsn: str) -> BaseException | None:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    async def probe() -> None:
        con = await asyncpg.connect(dsn, timeout=3, statement_cache_size=0)
        await con.close()

    try:
        run_async(probe)
    except Exception as e:  # noqa: BLE001 - any failure means "not available"
        return e
    return None


_pg_state: dict[str, BaseException | None] = {}


def pg_dsn() -> str:
    """The test PostgreSQL DSN (COLONIES_TEST_PG_DSN), probed once; skips or fails when unreachable."""
    dsn = os.environ.get("COLONIES_TEST_PG_DSN", PG_DSN_DEFAULT)
    if dsn not in _pg_state:
        _pg_state[dsn] = _pg_probe(dsn)
    err = _pg_state[dsn]
    if err is not None:
        need_service("PostgreSQL", err)
    return dsn


def etcd_endpoint() -> str:
    """The test etcd endpoint (COLONIES_TEST_ETCD, host:port); skips or fails when it does not answer."""
    ep = os.environ.get("COLONIES_TEST_ETCD", "127.0.0.1:2379")
    try:
        r = httpx.get(f"http://{ep}/health", timeout=2)
        if r.status_code != 200:
            need_service("etcd", f"/health answered {r.status_code}")
    except httpx.HTTPError as e:
        need_service("etcd", e)
    return ep


def dsn_with(dsn: str, **params: str) -> str:
    """`dsn` with query parameters added (asyncpg passes unknown ones as server settings)."""
    sep = "&" if "?" in dsn else "?"
    return dsn + sep + "&".join(f"{k}={v}" for k, v in params.items())


@dataclass
class PgDatabase:
    """A fresh, uniquely named database on the test server, dropped afterwards."""

    name: str
    dsn: str
    host: str
    port: int
    user: str
    password: str

    def server_env(self) -> dict[str, str]:
        return {"COLONIES_DB_TYPE": "postgresql", "COLONIES_DB_HOST": self.host, "COLONIES_DB_PORT": str(self.port),
                "COLONIES_DB_USER": self.user, "COLONIES_DB_PASSWORD": self.password, "COLONIES_DB_NAME": self.name}


def _pg_admin(dsn: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    async def run() -> None:
        con = await asyncpg.connect(dsn, timeout=5, statement_cache_size=0)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    run_async(run)


@contextmanager
def fresh_pg_database() -> Iterator[PgDatabase]:
    """A new, uniquely named database on the test PostgreSQL, dropped on exit."""
    from urllib.parse import urlsplit, urlunsplit

    base = pg_dsn()
    name = f"colonies_t_{os.getpid()}_{time.monotonic_ns()}"
    _pg_admin(base, f'CREATE DATABASE "{name}"')
    u = urlsplit(base)
    db = PgDatabase(name=name, dsn=urlunsplit(u._replace(path=f"/{name}")), host=u.hostname or "127.0.0.1",
                    port=u.port or 5432, user=u.username or "", password=u.password or "")
    try:
        yield db
    finally:
        _drop_pg_database(base, name)


def _drop_pg_database(base: str, name: str) -> None:
    """DROP … WITH (FORCE); retried a little, since without pg_signal_backend the role cannot end an
    autovacuum worker that happens to be on the database."""
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    for attempt in range(20):
        try:
            _pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.InsufficientPrivilegeError:
            if attempt == 19:
                raise
            time.sleep(0.25)


@pytest.fixture
def pg_database() -> Iterator[PgDatabase]:
    with fresh_pg_database() as db:
        yield db


# ColonyFS fixtures (s3_server: moto on loopback, local_store_dir), shared by every test module
from tests.fs_support import local_store_dir, moto_endpoint, s3_server  # noqa: F401
