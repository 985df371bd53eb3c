"""The executor kit end to end: `colonies executor run` processes against a real server.

Covers: an executor killed with -9 mid-process (another one finishes the process after the deadline),
SIGTERM finishing the running process and taking no more, per-process capture of print/logging output
with concurrent slots, exceptions as failed closes, and the command (allowlist) executor.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from colonies.client.core import func_spec
from colonies.executor import Executor
from colonies.executors.running import ProcessRun
from colonies.model import Process
from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import (
    cli_env,
    env_without,
    file_contains,
    process_in_state,
    run_cli,
    start_executor,
    stop,
    wait_until,
)

MODULE = """
import logging, os, pathlib, time
from colonies import Executor

ex = Executor(executortype="kit")

@ex.function
def once_slow(marker: str) -> str:
    p = pathlib.Path(marker)
    if not p.exists():
        p.write_text(str(os.getpid()))
        time.sleep(60)  # the first executor to run this is killed here
    return f"done by {os.getpid()}"

@ex.function
def gated(gate: str, tag: str) -> str:
    print(f"start {tag}")
    deadline = time.monotonic() + 20
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    logging.getLogger("job").warning("end %s", tag)
    return tag

@ex.function
def boom() -> None:
    print("about to fail")
    raise ValueError("kaboom")
"""

FINAL = {2, 3, 4}


def _module(tmp_path: Path) -> str:
    path = tmp_path / "kitmod.py"
    path.write_text(MODULE)
    return str(path)


def test_kill9_mid_process_then_another_executor_finishes_it(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    env = cli_env(server, colony)
    module = _module(tmp_path)
    first = start_executor(env, tmp_path / "a.log", module, "--name", "kit-a")
    second = None
    try:
        with server.client(colony.user_prvkey) as c:
            spec = func_spec(
                "once_slow", colony.name, "kit", args=[str(tmp_path / "marker")], maxexectime=2, maxretries=3
            )
            p = c.submit(spec)
            running = wait_until(process_in_state(c, p.processid, {1}), what="the first executor to start it")
            # Killed only once the function itself has begun (it writes the marker, then sleeps).
            wait_until((tmp_path / "marker").exists, what="the function to start")
            first.kill()
            first.wait(10)
            second = start_executor(env, tmp_path / "b.log", module, "--name", "kit-b")
            done = wait_until(process_in_state(c, p.processid, FINAL), timeout=30, what="the retry")
            assert done.state == 2, done.errors
            assert done.output == [f"done by {second.pid}"]
            assert done.assignedexecutorid != running.assignedexecutorid
            assert done.retries >= 1
    finally:
        stop(first)
        if second is not None:
            stop(second)


def test_sigterm_finishes_running_work_and_takes_no_more(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    env = cli_env(server, colony)
    log = tmp_path / "ex.log"
    gate = tmp_path / "gate"
    ex = start_executor(env, log, _module(tmp_path), "--slots", "1")
    try:
        with server.client(colony.user_prvkey) as c:
            p1 = c.submit(func_spec("gated", colony.name, "kit", args=[str(gate), "first"]))
            wait_until(process_in_state(c, p1.processid, {1}), what="the process to run")
            p2 = c.submit(func_spec("gated", colony.name, "kit", args=[str(gate), "second"]))
            ex.send_signal(signal.SIGTERM)
            wait_until(file_contains(log, "stopping: finishing running work"), what="the stop to be noticed")
            gate.touch()
            assert ex.wait(20) == 0
            done = c.get_process(p1.processid)
            assert done.state == 2 and done.output == ["first"]
            assert c.get_process(p2.processid).state == 0  # left for another executor
    finally:
        stop(ex)


def test_output_goes_to_each_process_log_and_exceptions_fail(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    env = cli_env(server, colony)
    gate = tmp_path / "gate"
    ex = start_executor(env, tmp_path / "ex.log", _module(tmp_path), "--slots", "2")
    try:
        with server.client(colony.user_prvkey) as c:
            px = c.submit(func_spec("gated", colony.name, "kit", args=[str(gate), "x"]))
            py = c.submit(func_spec("gated", colony.name, "kit", args=[str(gate), "y"]))
            bad = c.submit(func_spec("boom", colony.name, "kit"))
            for p in (px, py):  # both run at once, in two slots
                wait_until(process_in_state(c, p.processid, {1}), what="two slots running")
            gate.touch()
            for p in (px, py, bad):
                wait_until(process_in_state(c, p.processid, FINAL), what="the processes to finish")
            for p, tag, other in ((px, "x", "y"), (py, "y", "x")):
                text = "".join(entry.message for entry in c.get_logs(colony.name, p.processid) or [])
                assert f"start {tag}" in text and f"end {tag}" in text
                assert f"start {other}" not in text
            failed = c.get_process(bad.processid)
            assert failed.state == 3
            assert "ValueError: kaboom" in failed.errors[0] and "Traceback" in failed.errors[0]
            assert "about to fail" in "".join(e.message for e in c.get_logs(colony.name, bad.processid) or [])
    finally:
        stop(ex)


def test_a_result_reaches_a_restarted_server(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    """The server is killed (-9) while a function runs and is back a second later: the executor's close
    got no reply, so it is sent again until it lands; the process succeeds on its first assignment."""
    env = cli_env(server, colony)
    gate = tmp_path / "gate"
    ex = start_executor(env, tmp_path / "ex.log", _module(tmp_path))
    try:
        with server.client(colony.user_prvkey) as c:
            p = c.submit(func_spec("gated", colony.name, "kit", args=[str(gate), "r"]))
            wait_until(process_in_state(c, p.processid, {1}), what="the process to run")
        server.kill9()
        gate.touch()  # the function returns while the server is down
        time.sleep(1.5)
        server.start()
        with server.client(colony.user_prvkey) as c:
            done = wait_until(process_in_state(c, p.processid, FINAL), what="the result to land")
            assert done.state == 2 and done.output == ["r"] and done.retries == 0
            assert [e.event for e in c.process_events(p.processid)] == ["submitted", "assigned", "closed"]
    finally:
        stop(ex)


ALLOWLIST = """
[executor]
type = "cmd"

[commands.echo]
argv = ["echo"]

[commands.nap]
argv = ["sleep"]
timeout = 0.3

[commands.broken]
argv = ["sh", "-c", "echo oops >&2; exit 3"]
args = false

[commands.lines]
argv = ["sort"]
stdin = true
output = "lines"
"""


def test_command_executor_runs_only_allowed_commands_with_argv(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    allowlist = tmp_path / "allowlist.toml"
    allowlist.write_text(ALLOWLIST)
    env = cli_env(server, colony)
    tricky = "; touch " + str(tmp_path / "pwned") + " $(whoami)"
    with server.client(colony.user_prvkey) as c:
        ps = {
            "echo": c.submit(func_spec("echo", colony.name, "cmd", args=[tricky, 42])),
            "nap": c.submit(func_spec("nap", colony.name, "cmd", args=["5"])),
            "broken": c.submit(func_spec("broken", colony.name, "cmd")),
            "lines": c.submit(func_spec("lines", colony.name, "cmd", args=["b\nc\na\n"])),
            "rm": c.submit(func_spec("rm", colony.name, "cmd", args=["-rf", str(tmp_path)])),
            "extra": c.submit(func_spec("broken", colony.name, "cmd", args=["x"])),
        }
        r = run_cli(env, "executor", "run", "--commands", str(allowlist), "--until-idle", timeout=30)
        assert r.returncode == 0, r.stderr
        got = {name: c.get_process(p.processid) for name, p in ps.items()}
    assert got["echo"].state == 2 and got["echo"].output == [f"{tricky} 42"]
    assert not (tmp_path / "pwned").exists()  # never through a shell
    assert got["nap"].state == 3 and "timed out after 0.3 s" in got["nap"].errors[0]
    assert got["broken"].state == 3 and "exit status 3" in got["broken"].errors[0]
    assert "oops" in got["broken"].errors[0]
    assert got["lines"].state == 2 and got["lines"].output == ["a", "b", "c"]
    assert got["rm"].state == 3 and "has no function 'rm'" in got["rm"].errors[0]
    assert tmp_path.exists()
    assert got["extra"].state == 3 and "takes no args" in got["extra"].errors[0]


async def test_quiet_long_job_sends_heartbeats_and_output_batches() -> None:
    key = generate_prvkey()

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        async def get_process(self, process_id: str) -> Process:
            self.calls.append(("heartbeat", process_id))
            return Process(processid=process_id, state=1, assignedexecutorid=id_of(key))

        async def add_log(self, process_id: str, message: str) -> None:
            self.calls.append(("log", message))

    rec = Recorder()
    fake: Any = rec
    ex = Executor(colony="c", prvkey=key, name="n", client=fake, heartbeat=0.05)
    run = ProcessRun(ex, Process(processid="p1"), None)
    run.sink.write("hello\nwor")
    pump = asyncio.create_task(run._pump())
    try:
        for _ in range(400):  # bounded: at most ~4 s
            if sum(kind == "heartbeat" for kind, _ in rec.calls) >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    assert rec.calls[0] == ("log", "hello\n")  # whole lines first; "wor" waits for the final flush
    assert [c for c in rec.calls if c[0] == "heartbeat"][:2] == [("heartbeat", "p1")] * 2
    assert not run.stopped.is_set()  # still RUNNING here under this attempt
    assert run.sink.take(final=True) == ["wor"]


def test_an_approved_executor_runs_without_the_owner_key(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    allowlist = tmp_path / "allowlist.toml"
    allowlist.write_text(ALLOWLIST)
    env = env_without(cli_env(server, colony), "COLONIES_COLONY_PRVKEY")
    r = run_cli(env, "executor", "run", "--commands", str(allowlist), "--until-idle")
    assert r.returncode == 1 and r.stderr.startswith("error: no executor key")
    r = run_cli(
        {**env, "COLONIES_EXECUTOR_PRVKEY": generate_prvkey()},
        "executor",
        "run",
        "--commands",
        str(allowlist),
        "--until-idle",
    )
    assert r.returncode == 1 and "is not an approved member of colony" in r.stderr
    with server.client(colony.user_prvkey) as c:
        p = c.submit(func_spec("echo", colony.name, colony.executor_type, args=["hi"]))
        env["COLONIES_EXECUTOR_PRVKEY"] = colony.executor_prvkey  # added and approved by the fixture
        r = run_cli(env, "executor", "run", "--commands", str(allowlist), "--until-idle")
        assert r.returncode == 0, r.stderr
        done = c.get_process(p.processid)
    assert done.state == 2 and done.output == ["hi"]
    assert done.assignedexecutorid == id_of(colony.executor_prvkey)


def test_register_again_with_the_same_key_and_refuse_a_name_taken_by_another(
    server: ServerProc, colony: ColonyKeys
) -> None:
    """Restarting an executor re-registers it (the owner is not a member, so the check uses the
    executor's own key); the same name with another key is refused with a clear message."""
    from colonies.errors import ClientError

    async def scenario() -> None:
        key = generate_prvkey()
        for _ in range(2):
            ex = Executor(colony=colony.name, prvkey=key, name="restarts", executortype="kit", port=server.port)
            await ex.register(colony.colony_prvkey)
            await ex.client.aclose()
        thief = Executor(colony=colony.name, prvkey=generate_prvkey(), name="restarts", executortype="kit",
                         port=server.port)
        try:
            with pytest.raises(ClientError, match="taken by another key") as err:
                await thief.register(colony.colony_prvkey)
            assert err.value.status == 409
        finally:
            await thief.client.aclose()

    asyncio.run(scenario())


def test_an_executor_registers_at_its_location_and_takes_work_sent_there(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    """`executor run --location` (COLONIES_EXECUTOR_LOCATION) registers the executor at that site, so a
    process whose conditions name the site runs there; the kit's own `Executor(location=...)` likewise."""
    env = {**cli_env(server, colony), "COLONIES_EXECUTOR_LOCATION": "hpc-1"}
    ex = start_executor(env, tmp_path / "ex.log", _module(tmp_path), "--name", "at-hpc")
    try:
        with server.client(colony.user_prvkey) as c:
            spec = func_spec("gated", colony.name, "kit", args=[str(tmp_path / "open"), "there"])
            spec.conditions.locationname = "hpc-1"
            (tmp_path / "open").touch()
            p = c.submit(spec)
            wait_until(process_in_state(c, p.processid, {2}), what="the process sent to hpc-1 to end")
            executors = {e.executorname: e for e in c.get_executors(colony.name)}
            assert executors["at-hpc"].locationname == "hpc-1"
            assert c.get_process(p.processid).assignedexecutorid == executors["at-hpc"].executorid
    finally:
        stop(ex)

    async def in_code() -> None:
        kit = Executor(colony=colony.name, name="at-edge", executortype="kit", port=server.port,
                       location="edge")
        await kit.register(colony.colony_prvkey)
        await kit.client.aclose()

    asyncio.run(in_code())
    with server.client(colony.user_prvkey) as c:
        assert {e.executorname: e.locationname for e in c.get_executors(colony.name)}["at-edge"] == "edge"
