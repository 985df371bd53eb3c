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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from colonies.client.sync import Client
from colonies.protocol.crypto import generate_prvkey, id_of

CI = os.environ.get("CI") == "true"


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
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
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
