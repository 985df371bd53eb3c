"""The executor kit, hardened (issue 10 items 11, 22-26), against a real server on loopback.

The attempt fence and deadlines (11, 23), cancels reaching a running function (23), retries with a
policy (22), parents' outputs by node name (24), type-hint conversion (25), and the identity kept in a
state directory across restarts (26). Executors run as `colonies executor run` subprocesses, except
where a test drives one assignment itself to make a late close happen for certain.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from colonies.client.core import func_spec
from colonies.errors import ArgumentError
from colonies.executor import Context, Executor, RetryPolicy
from colonies.executors import state
from colonies.executors.functions import FunctionDef
from colonies.model import FunctionSpec, WorkflowSpec
from colonies.protocol.crypto import id_of
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import (
    cli_env,
    env_without,
    process_in_state,
    run_cli,
    start_executor,
    stop,
    wait_until,
)

FINAL = {2, 3, 4}

MODULE = """
import asyncio, pathlib, time
from typing import Optional
from colonies.executor import Context, Executor, RetryPolicy

ex = Executor(executortype="hard")
FLAKY = RetryPolicy(retries=3, backoff="exponential", delay=0.05, max_delay=0.1, on=(ConnectionError,))

@ex.function
def overrun(marker: str) -> str:
    # maxexectime 3: the first attempt returns at 4.5 s, while the re-queued second one (from about
    # 3-4.2 s, for 2.5 s) still runs: the window in which a late close used to be accepted.
    p = pathlib.Path(marker)
    if not p.exists():
        p.write_text("first")
        time.sleep(4.5)
        pathlib.Path(marker + ".late").write_text("returned")
        return "late"
    time.sleep(2.5)
    return "current"

@ex.function
async def async_wait(marker: str) -> str:
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        pathlib.Path(marker).write_text("cancelled")
        raise
    return "slept"

@ex.function
def sync_wait(marker: str, ctx: Context) -> str:
    while not ctx.wait(0.05):
        pass
    pathlib.Path(marker).write_text(ctx.reason)
    return "noticed"

@ex.function
def info(ctx: Context) -> dict:
    return {"pid": ctx.processid, "attempt": ctx.attempt, "left": ctx.time_left(),
            "deadline": ctx.deadline.timestamp() if ctx.deadline else None}

@ex.function(retry=FLAKY)
def flaky(counter: str, fails: int) -> str:
    p = pathlib.Path(counter)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < fails:
        raise ConnectionError(f"flake {n + 1}")
    return f"ok after {n} failures"

@ex.function(retry=FLAKY)
def wrong() -> None:
    raise ValueError("not a flake")

@ex.function(retry=RetryPolicy(retries=5, backoff="fixed", delay=3, on=(ConnectionError,)))
def slow_retry() -> None:
    raise ConnectionError("down")

@ex.function
def emit(value: str) -> object:
    return __import__("json").loads(value)

@ex.function(parents="kwargs")
def combine(a: int, b: list, scale: int) -> int:
    return a * scale + sum(b)

@ex.function
def concat(*xs: int) -> list:
    return list(xs)

@ex.function
def typed(n: int, ratio: float, flag: bool, tags: list[str], opts: Optional[dict[str, int]] = None,
          label: str = "x") -> list:
    return [n + 1, ratio * 2, flag, tags, opts, label]
"""


def _module(tmp_path: Path) -> str:
    path = tmp_path / "hardmod.py"
    path.write_text(MODULE)
    return str(path)


def _events(c: Any, process_id: str) -> list[tuple[str, str]]:
    return [(e.event, e.actorid) for e in c.process_events(process_id)]


def _log_text(c: Any, colony: ColonyKeys, process_id: str) -> str:
    return "".join(e.message for e in c.get_logs(colony.name, process_id) or [])


# -- 11, 23: deadlines and the attempt fence ---------------------------------------------------------------
def test_overrun_with_two_slots_the_current_attempt_wins(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    """slots=2: the overrunning first attempt is stopped at its deadline, the re-queued process goes to
    the other slot of the same executor, and only the current attempt's result is recorded."""
    env = cli_env(server, colony)
    marker = tmp_path / "marker"
    ex = start_executor(env, tmp_path / "ex.log", _module(tmp_path), "--name", "two-slots", "--slots", "2")
    try:
        with server.client(colony.user_prvkey) as c:
            p = c.submit(func_spec("overrun", colony.name, "hard", args=[str(marker)], maxexectime=3,
                                   maxretries=3))
            done = wait_until(process_in_state(c, p.processid, FINAL), timeout=30, what="the second attempt")
            assert done.state == 2 and done.output == ["current"], done.errors
            assert done.retries == 1
            wait_until(Path(str(marker) + ".late").exists, what="the late first attempt to return")
            events = _events(c, p.processid)
            me = done.assignedexecutorid
            assert events == [("submitted", id_of(colony.user_prvkey)), ("assigned", me), ("requeued", ""),
                              ("assigned", me), ("closed", me)]
            assert "execution deadline passed" in (tmp_path / "ex.log").read_text()
            assert c.get_process(p.processid).output == ["current"]  # the late "late" never landed
    finally:
        stop(ex)


def test_a_late_close_of_a_stale_attempt_is_refused_and_dropped(server: ServerProc, colony: ColonyKeys) -> None:
    """The same identity holds two attempts of one process (the first one's deadline passed and the
    process was re-queued and assigned again). The first attempt's result arrives last: the kit sends
    it with its attempt while the current attempt still runs: the server refuses it, the kit drops it,
    and the current attempt's result is the one recorded."""

    async def scenario() -> tuple[int, int]:
        ex = Executor(colony=colony.name, prvkey=colony.executor_prvkey, port=server.port,
                      capture_output=False)
        ex.name = colony.executor_name

        @ex.function
        def job(tag: str) -> str:
            return tag

        try:
            user = ex.client.with_key(colony.user_prvkey)
            spec = func_spec("job", colony.name, colony.executor_type, args=["x"], maxexectime=1, maxretries=3)
            p = await user.submit(spec)
            first = await ex.client.assign(colony.name, 5)
            for _ in range(100):  # bounded: the deadline loop re-queues it within about 2 s
                if (await user.get_process(p.processid)).state == 0:
                    break
                await asyncio.sleep(0.05)
            second = await ex.client.assign(colony.name, 5)
            assert (first.retries, second.retries) == (0, 1)
            first.spec.args, second.spec.args = ["late"], ["current"]
            await ex._execute(first)  # the stale attempt's close arrives while the current one runs
            await ex._execute(second)
            got = await user.get_process(p.processid)
            assert got.state == 2 and got.output == ["current"]
            events = [e.event for e in await user.process_events(p.processid)]
            assert events == ["submitted", "assigned", "requeued", "assigned", "closed"]
            return ex.completed, ex.dropped
        finally:
            await ex.client.aclose()

    assert asyncio.run(scenario()) == (2, 1)


def test_context_gives_the_deadline_and_attempt(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    env = cli_env(server, colony)
    with server.client(colony.user_prvkey) as c:
        timed = c.submit(func_spec("info", colony.name, "hard", maxexectime=30))
        untimed = c.submit(func_spec("info", colony.name, "hard"))
        r = run_cli(env, "executor", "run", _module(tmp_path), "--until-idle", timeout=60)
        assert r.returncode == 0, r.stderr
        got = c.get_process(timed.processid)
        assert got.output is not None
        out = got.output[0]
        assert out["pid"] == timed.processid and out["attempt"] == 0
        assert 0 < out["left"] <= 30
        assert abs(out["deadline"] - (got.starttime.timestamp() + 30)) < 1  # the server's execdeadline
        assert (c.get_process(untimed.processid).output or [{}])[0]["deadline"] is None


def test_a_cancel_stops_async_and_sync_functions(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    env = cli_env(server, colony)
    ex = start_executor(env, tmp_path / "ex.log", _module(tmp_path), "--slots", "1", "--watch", "0.2")
    try:
        with server.client(colony.user_prvkey) as c:
            for fn in ("async_wait", "sync_wait"):
                marker = tmp_path / f"{fn}.marker"
                p = c.submit(func_spec(fn, colony.name, "hard", args=[str(marker)]))
                wait_until(process_in_state(c, p.processid, {1}), what=f"{fn} to run")
                c.cancel(p.processid)
                wait_until(marker.exists, what=f"{fn} to be stopped")
                assert [e for e, _ in _events(c, p.processid)] == ["submitted", "assigned", "cancelled"]
            assert (tmp_path / "async_wait.marker").read_text() == "cancelled"
            assert (tmp_path / "sync_wait.marker").read_text() == "the process was cancelled"
            # the one slot is free again
            q = c.submit(func_spec("emit", colony.name, "hard", args=["7"]))
            assert wait_until(process_in_state(c, q.processid, FINAL), what="the next process").output == [7]
        assert "result refused" not in (tmp_path / "ex.log").read_text()  # stopped: nothing was sent
    finally:
        stop(ex)


def test_removing_its_workflow_stops_a_running_function(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    """A failed leaf makes the workflow FAILED while a sibling still runs; removing the workflow then
    deletes the running process, and the executor stops that function (the process reads as 404)."""
    env = cli_env(server, colony)
    marker = tmp_path / "sibling.marker"
    ex = start_executor(env, tmp_path / "ex.log", _module(tmp_path), "--slots", "2", "--watch", "0.2")
    try:
        with server.client(colony.user_prvkey) as c:
            wf = WorkflowSpec(colonyname=colony.name, functionspecs=[
                func_spec("sync_wait", colony.name, "hard", nodename="sibling", args=[str(marker)]),
                func_spec("wrong", colony.name, "hard", nodename="leaf"),
            ])
            graph = c.submit_workflow(wf)
            wait_until(lambda: c.get_processgraph(graph.processgraphid).state == 3, what="the workflow to fail")
            sibling = next(p for p in (c.get_process(pid) for pid in graph.processids)
                           if p.spec.nodename == "sibling")
            wait_until(process_in_state(c, sibling.processid, {1}), what="the sibling to run")
            c.remove_processgraph(graph.processgraphid)
            wait_until(marker.exists, what="the sibling to be stopped")
        assert marker.read_text().startswith("the process is no longer readable")
    finally:
        stop(ex)


# -- 22: retries --------------------------------------------------------------------------------------------
def test_retries_follow_the_policy_and_are_in_the_audit_trail(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    env = cli_env(server, colony)
    with server.client(colony.user_prvkey) as c:
        ps = {
            "recovers": c.submit(func_spec("flaky", colony.name, "hard", args=[str(tmp_path / "c1"), 2])),
            "exhausted": c.submit(func_spec("flaky", colony.name, "hard", args=[str(tmp_path / "c2"), 9])),
            "other_error": c.submit(func_spec("wrong", colony.name, "hard")),
            "no_time": c.submit(func_spec("slow_retry", colony.name, "hard", maxexectime=2)),
        }
        r = run_cli(env, "executor", "run", _module(tmp_path), "--until-idle", timeout=60)
        assert r.returncode == 0, r.stderr
        got = {k: c.get_process(p.processid) for k, p in ps.items()}

        ok = got["recovers"]
        assert ok.state == 2 and ok.output == ["ok after 2 failures"]
        assert ok.retries == 0  # the server's re-queue count is not touched by kit retries
        retries = {a.key: a.value for a in ok.attributes if a.attributetype == 2}
        assert sorted(retries) == ["kit.retry.0.1", "kit.retry.0.2"]
        assert retries["kit.retry.0.1"].startswith("retry 1/3 in 0.05 s after ConnectionError: flake 1")
        assert retries["kit.retry.0.2"].startswith("retry 2/3 in 0.1 s after ConnectionError: flake 2")
        text = _log_text(c, colony, ok.processid)
        assert "retry 1/3" in text and "retry 2/3" in text
        assert [e for e, _ in _events(c, ok.processid)] == ["submitted", "assigned", "closed"]

        bad = got["exhausted"]
        assert bad.state == 3 and (tmp_path / "c2").read_text() == "4"  # 1 try + 3 retries
        assert "ConnectionError: flake 4" in bad.errors[0] and "failed after 3 retries" in bad.errors[0]
        assert len([a for a in bad.attributes if a.key.startswith("kit.retry.")]) == 3

        other = got["other_error"]
        assert other.state == 3 and "ValueError: not a flake" in other.errors[0]
        assert not [a for a in other.attributes if a.key.startswith("kit.retry.")]

        late = got["no_time"]
        assert late.state == 3 and "not retried: waiting 3 s would pass the deadline" in late.errors[0]


def test_retry_backoff() -> None:
    exp = RetryPolicy(retries=9, backoff="exponential", delay=0.5, max_delay=3)
    assert [exp.wait_before(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert [RetryPolicy(backoff="fixed", delay=2, max_delay=1).wait_before(n) for n in (1, 5)] == [1, 1]
    assert exp.retries_on(ValueError()) and not RetryPolicy(on=(KeyError,)).retries_on(ValueError())
    bad: dict[str, Any]
    for bad in ({"retries": -1}, {"backoff": "linear"}, {"factor": 0.5}, {"on": ()}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


# -- 24: parents' outputs by node name ------------------------------------------------------------------
def test_parents_outputs_as_keyword_arguments_by_node(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    env = cli_env(server, colony)

    def spec(node: str, fn: str, deps: list[str], **kw: Any) -> FunctionSpec:
        return func_spec(fn, colony.name, "hard", nodename=node, dependencies=deps, **kw)

    wf = WorkflowSpec(colonyname=colony.name, functionspecs=[
        spec("a", "emit", [], args=["2"]),
        spec("b", "emit", [], args=["[3, 4]"]),
        spec("by_name", "combine", ["a", "b"], kwargs={"scale": "10"}),
        spec("in_order", "concat", ["a", "b"]),
    ])
    with server.client(colony.user_prvkey) as c:
        graph = c.submit_workflow(wf)
        r = run_cli(env, "executor", "run", _module(tmp_path), "--until-idle", timeout=60)
        assert r.returncode == 0, r.stderr
        got = {p.spec.nodename: p for p in (c.get_process(pid) for pid in graph.processids)}
    assert got["by_name"].state == 2 and got["by_name"].output == [27], got["by_name"].errors  # 2*10 + 3+4
    assert got["in_order"].output == [2, 3, 4]  # the original's positional prepend stays the default


def test_parent_kwargs_values_and_clashes() -> None:
    def child(one: int, many: list[int], raw: Any = None, none: Any = None) -> None: ...

    fdef = FunctionDef.of(child, "child", None, "kwargs")
    ctx = Context(func_process(), "ex", None)
    outputs: dict[str, list[Any]] = {"one": ["5"], "many": [7], "raw": [1, 2], "none": []}
    assert fdef.arguments([], {}, outputs, ctx) == ((5, [7], [1, 2], []), {})
    with pytest.raises(ArgumentError, match="parent node 'one' clashes"):
        fdef.arguments([], {"one": 1}, {"one": [2]}, ctx)
    with pytest.raises(ValueError, match="parents must be one of"):
        FunctionDef.of(lambda: None, "f", None, "dict")


# -- 25: type hints check and convert ------------------------------------------------------------------
def test_type_hints_convert_args_and_fail_clearly(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    env = cli_env(server, colony)
    with server.client(colony.user_prvkey) as c:
        good = c.submit(func_spec("typed", colony.name, "hard", args=["41", "0.5", "true", ["a"]],
                                  kwargs={"opts": {"k": "3"}}))
        bad = c.submit(func_spec("typed", colony.name, "hard", args=["abc", "0.5", "true", []]))
        missing = c.submit(func_spec("typed", colony.name, "hard", args=["1"]))
        r = run_cli(env, "executor", "run", _module(tmp_path), "--until-idle", timeout=60)
        assert r.returncode == 0, r.stderr
        g, b, m = (c.get_process(p.processid) for p in (good, bad, missing))
    assert g.state == 2 and g.output == [42, 1.0, True, ["a"], {"k": 3}, "x"], g.errors
    assert b.state == 3 and b.errors == ["argument 'n': expected int, got 'abc'"]
    assert m.state == 3 and m.errors == ["arguments do not fit typed(): missing a required argument: 'ratio'"]


def func_process() -> Any:
    from colonies.model import Process

    return Process(processid="p")


def test_conversion_messages() -> None:
    def f(xs: list[int], o: int | None = None, *rest: float, **kw: bool) -> None: ...

    fdef = FunctionDef.of(f, "f", None, "positional")
    ctx = Context(func_process(), "ex", None)
    assert fdef.arguments([["1", 2]], {"o": None}, None, ctx) == (([1, 2], None), {})
    assert fdef.arguments([[], "3", "1.5"], {"flag": "false"}, None, ctx) == (([], 3, 1.5), {"flag": False})
    with pytest.raises(ArgumentError, match=r"argument 'xs': expected list\[int\], got \['1', 'x'\] \(.*\$\[1\]"):
        fdef.arguments([["1", "x"]], {}, None, ctx)
    with pytest.raises(ArgumentError, match=r"argument 'o': expected int \| None, got 'no'"):
        fdef.arguments([[]], {"o": "no"}, None, ctx)
    with pytest.raises(ArgumentError, match=r"argument 'rest\[0\]': expected float, got 'x'"):
        fdef.arguments([[], None, "x"], {}, None, ctx)


# -- 26: the identity survives restarts --------------------------------------------------------------------
ALLOWLIST = """
[executor]
type = "statecmd"

[commands.echo]
argv = ["echo"]
"""


def test_executor_run_without_a_key_reuses_its_identity(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    allowlist = tmp_path / "allowlist.toml"
    allowlist.write_text(ALLOWLIST)
    xdg = tmp_path / "xdg"
    env = cli_env(server, colony, XDG_STATE_HOME=str(xdg))
    ran_by = []
    with server.client(colony.user_prvkey) as c:
        for run_env in (env, env, env_without(env, "COLONIES_COLONY_PRVKEY")):  # the last without the owner
            p = c.submit(func_spec("echo", colony.name, "statecmd", args=["hi"]))
            r = run_cli(run_env, "executor", "run", "--commands", str(allowlist), "--until-idle")
            assert r.returncode == 0, r.stderr
            done = c.get_process(p.processid)
            assert done.state == 2, done.errors
            ran_by.append(done.assignedexecutorid)
        executors = [e for e in c.get_executors(colony.name) or [] if e.executortype == "statecmd"]
    assert len(set(ran_by)) == 1 and len(executors) == 1 and executors[0].executorid == ran_by[0]
    home = state.default_dir(colony.name, executors[0].executorname, {"XDG_STATE_HOME": str(xdg)})
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "prvkey").stat().st_mode) == 0o600
    assert id_of((home / "prvkey").read_text().strip()) == ran_by[0]
    info = json.loads((home / "executor.json").read_text())
    assert info["executorid"] == ran_by[0] and info["colony"] == colony.name


def test_state_dir_is_locked_and_explicit(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    allowlist = tmp_path / "allowlist.toml"
    allowlist.write_text(ALLOWLIST)
    env = cli_env(server, colony, XDG_STATE_HOME=str(tmp_path / "unused"))
    mine = tmp_path / "mine"
    r = run_cli(env, "executor", "run", "--commands", str(allowlist), "--until-idle", "--name", "kept",
                "--state-dir", str(mine))
    assert r.returncode == 0, r.stderr
    key = (mine / "prvkey").read_text().strip()
    with state.Identity(mine):  # as if another executor ran with it
        r = run_cli(env, "executor", "run", "--commands", str(allowlist), "--until-idle",
                    "--state-dir", str(mine))
    assert r.returncode == 1 and f"another executor (pid {os.getpid()}) runs with the identity" in r.stderr
    # the name comes back from the state directory, the key is the same
    no_owner = env_without(env, "COLONIES_COLONY_PRVKEY")
    r = run_cli(no_owner, "executor", "run", "--commands", str(allowlist), "--until-idle", "--state-dir", str(mine))
    assert r.returncode == 0, r.stderr
    assert "reusing identity" in r.stderr and id_of(key)[:12] in r.stderr
    assert not (tmp_path / "unused").exists()
    r = run_cli(no_owner, "executor", "run", "--commands", str(allowlist), "--until-idle",
                "--state-dir", str(tmp_path / "empty"))
    assert r.returncode == 1 and "no executor key" in r.stderr and not (tmp_path / "empty").exists()
