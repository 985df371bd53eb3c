"""The executor's health file (colonies/health.py) and the key file of `colonies executor run`.

Against a real server: an idle executor touches its health file at every answer to its long-poll; one
whose only slot runs a long process keeps it fresh too; once the server is gone the file goes stale and
`python -m colonies.health` says so. `--prvkey-file` reads a key that others may not read, and refuses one
they may.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from colonies.client.core import func_spec
from colonies.executor import Executor
from colonies.health import age, check
from colonies.protocol.crypto import generate_prvkey
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import cli_env, env_without, run_cli

POLL_S = 1


def executor(server: ServerProc, colony: ColonyKeys, health: Path) -> Executor:
    ex = Executor(colony=colony.name, prvkey=colony.executor_prvkey, executortype=colony.executor_type,
                  host="127.0.0.1", port=server.port, poll_timeout=POLL_S, health_file=health)

    @ex.function
    def nap(seconds: float) -> str:
        time.sleep(seconds)
        return "rested"

    return ex


async def wait_for(cond: object, timeout: float, what: str) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def health_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "colonies.health", *args], capture_output=True, text=True,
                          timeout=30, check=False)


async def test_idle_executor_touches_at_every_poll_and_goes_stale_without_server(
        server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    health = tmp_path / "alive"
    assert health_cli(str(health)).returncode == 1  # not there before the executor announced itself
    ex = executor(server, colony, health)
    task = asyncio.create_task(ex.run_async())
    try:
        await wait_for(health.exists, 15, "the health file")
        first = health.stat().st_mtime_ns
        await wait_for(lambda: health.stat().st_mtime_ns > first, 3 * POLL_S, "a touch after an empty poll")
        ok = health_cli("--max-age", "5", str(health))
        assert ok.returncode == 0, ok.stderr
        server.stop()  # no more answers: no more touches
        await asyncio.sleep(0.5)
        stopped = health.stat().st_mtime_ns
        await asyncio.sleep(3 * POLL_S)
        assert health.stat().st_mtime_ns == stopped
        assert "last touched" in check(health, max_age=2)
        stale = health_cli("--max-age", "2", str(health))
        assert stale.returncode == 1 and "last touched" in stale.stderr
    finally:
        ex.stop()
        await asyncio.wait_for(task, 20)
        await ex.client.aclose()


async def test_busy_slot_keeps_the_file_fresh(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    health = tmp_path / "alive"
    ex = executor(server, colony, health)  # one slot: while it runs `nap`, nothing polls
    task = asyncio.create_task(ex.run_async())
    try:
        await wait_for(health.exists, 15, "the health file")
        with server.client(colony.user_prvkey) as user:
            p = user.submit(func_spec("nap", colony.name, colony.executor_type, args=[4 * POLL_S]))
            await wait_for(lambda: user.get_process(p.processid).state == 1, 10, "the process to run")
            ages = []
            while user.get_process(p.processid).state == 1:
                seconds = age(health)
                assert seconds is not None
                ages.append(seconds)
                await asyncio.sleep(0.1)
            assert user.get_process(p.processid).state == 2
        assert len(ages) > 20
        assert max(ages) < 2 * POLL_S, ages  # without the ticker it would reach the nap's 4 s
    finally:
        ex.stop()
        await asyncio.wait_for(task, 20)
        await ex.client.aclose()


def test_prvkey_file(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    env = env_without(cli_env(server, colony), "COLONIES_COLONY_PRVKEY")  # the executor is approved already
    module = tmp_path / "onefunc.py"
    module.write_text("from colonies import Executor\nex = Executor()\n\n@ex.function\ndef one() -> int:\n"
                      "    return 1\n")
    key = tmp_path / "key"
    key.write_text(colony.executor_prvkey + "\n")
    key.chmod(0o644)
    r = run_cli({**env, "COLONIES_EXECUTOR_PRVKEY_FILE": str(key)}, "executor", "run", str(module),
                "--type", colony.executor_type, "--until-idle")
    assert r.returncode == 1 and "readable by others (mode 0644)" in r.stderr, r.stderr
    key.chmod(0o440)
    with server.client(colony.user_prvkey) as user:
        p = user.submit(func_spec("one", colony.name, colony.executor_type))
        r = run_cli({**env, "COLONIES_EXECUTOR_PRVKEY_FILE": str(key)}, "executor", "run", str(module),
                    "--type", colony.executor_type, "--until-idle")
        assert r.returncode == 0, r.stderr
        done = user.get_process(p.processid)
        assert done.state == 2 and done.output == [1]
    both = run_cli({**env, "COLONIES_EXECUTOR_PRVKEY_FILE": str(key), "COLONIES_EXECUTOR_PRVKEY": generate_prvkey()},
                   "executor", "run", str(module), "--until-idle")
    assert both.returncode == 1 and "not both" in both.stderr
    key.write_text("not a key")
    bad = run_cli({**env, "COLONIES_EXECUTOR_PRVKEY_FILE": str(key)}, "executor", "run", str(module), "--until-idle")
    assert bad.returncode == 1 and "does not hold a private key" in bad.stderr
