"""Helpers for the CLI and executor-kit tests: run `colonies` as a user does, start executor processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import ColonyKeys, ServerProc

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def cli_env(server: ServerProc, colony: ColonyKeys, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in server.env.items() if not k.startswith("COLONIES_")}
    env.update(
        {
            "COLONIES_SERVER_HOST": "127.0.0.1",
            "COLONIES_SERVER_PORT": str(server.port),
            "COLONIES_TLS": "false",
            "COLONIES_COLONY_NAME": colony.name,
            "COLONIES_COLONY_PRVKEY": colony.colony_prvkey,
            "COLONIES_PRVKEY": colony.user_prvkey,
            "COLONIES_SERVER_PRVKEY": server.server_prvkey,
            "COLONIES_LOG_LEVEL": "INFO",
            "COLUMNS": "250",
            "PYTHONPATH": str(ROOT),
            # identities kept by `executor run` without a key stay in the test's directory
            "XDG_STATE_HOME": str(server.db_path.parent / "xdg-state"),
            **extra,
        }
    )
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "colonies", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def start_executor(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "colonies", "executor", "run", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def wait_until(check: Callable[[], T | None], timeout: float = 20, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (bounded; backs off to 100 ms)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def process_in_state(client: Any, process_id: str, states: set[int]) -> Callable[[], Any]:
    def check() -> Any:
        p = client.get_process(process_id)
        return p if p.state in states else None

    return check


def file_contains(path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.exists() and text in path.read_text(errors="replace")


def env_without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


def run_cli_inprocess(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`colonies ARGS` through the same `main()` in this process: the same exit statuses and output as a
    subprocess, without paying the interpreter start-up per call (that keeps the suite fast)."""
    import contextlib
    import io
    import os
    from unittest import mock

    from colonies.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with (
        mock.patch.dict(os.environ, env, clear=True),
        mock.patch.object(sys, "argv", ["colonies", *args]),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    rc = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(["colonies", *args], rc, out.getvalue(), err.getvalue())
