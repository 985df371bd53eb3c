"""Issue 10, the CLI items: string args (13), one id convention (15), hints for unserved types and
timed-out waits (17), what `process removeall` leaves (20), tables at 80 columns (21), and the
commands and flags the original has (executor create, colony check, database, monitor, --out, ...).

Every test runs `colonies` against a real server on loopback (in-process `main()` unless it needs a
terminal width or stdin, then a subprocess).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import cli_env, run_cli, run_cli_inprocess, start_executor, stop

cli = run_cli_inprocess


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}"
    return r.stdout


def _submit(env: dict[str, str], *args: str) -> dict[str, object]:
    """`function exec --no-wait --json`: the submitted process."""
    out = _ok(cli(env, "function", "exec", "--func", "f", "--no-wait", "--json", *args))
    return dict(json.loads(out))


def _queue(server: ServerProc, colony: ColonyKeys, executortype: str, *args: str) -> str:
    """Set-up: a process submitted with the SDK (not the CLI under test); its id."""
    from colonies.client.core import func_spec

    with server.client(colony.user_prvkey) as c:
        return str(c.submit(func_spec("f", colony.name, executortype, args=list(args))).processid)


def _workflow_file(tmp_path: Path, executortype: str) -> Path:
    specs = [
        {"nodename": "a", "funcname": "f", "conditions": {"executortype": executortype, "dependencies": []}},
        {"nodename": "b", "funcname": "f", "conditions": {"executortype": executortype, "dependencies": ["a"]}},
    ]
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(specs))
    return path


# -- 13: --args are strings; typed values through --args-json / --kwargs-json ---------------------------------
def test_args_stay_strings_and_json_options_carry_types(server: ServerProc, colony: ColonyKeys) -> None:
    env = cli_env(server, colony)
    r = cli(env, "function", "exec", "--func", "f", "--type", "nobody", "--timeout", "0.1",
            "--args", "01234", "--args", "1e3", "--args", "nan", "--kwargs", "n=007", "--kwargs", "mode:fast")
    assert r.returncode == 1  # nobody serves it: it stays queued
    spec = json.loads(_ok(cli(env, "process", "psw", "--json")))[0]["spec"]
    assert spec["args"] == ["01234", "1e3", "nan"]
    assert spec["kwargs"] == {"n": "007", "mode": "fast"}  # key=value, or the original's key:value

    p = _submit(env, "--type", "test", "--args", "x", "--args-json", '[1, 2.5, true, "01234"]',
                "--kwargs-json", '{"n": 3, "tags": ["a"]}')
    spec = p["spec"]
    assert isinstance(spec, dict)
    assert spec["args"] == ["x", 1, 2.5, True, "01234"] and spec["kwargs"] == {"n": 3, "tags": ["a"]}

    bad = cli(env, "function", "exec", "--func", "f", "--type", "test", "--args-json", '{"a": 1}')
    assert bad.returncode == 1 and "--args-json must be a JSON array" in bad.stderr
    bad = cli(env, "function", "exec", "--func", "f", "--type", "test", "--kwargs-json", "[1")
    assert bad.returncode == 1 and "--kwargs-json is not valid JSON" in bad.stderr
    assert "--args-json" in _ok(cli(env, "function", "exec", "--help"))


# -- 15: -i and the original's long flag on every command that names one object -------------------------------
def test_one_id_convention(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    env = cli_env(server, colony)
    pid = _queue(server, colony, "test")
    for flag in ("-p", "-i", "--processid"):
        assert json.loads(_ok(cli(env, "process", "get", flag, pid, "--json")))["processid"] == pid

    wf = _workflow_file(tmp_path, "test")
    gid = json.loads(_ok(cli(env, "workflow", "submit", "--spec", str(wf), "--json")))["processgraphid"]
    for flag in ("-i", "--workflowid", "--processgraphid"):
        got = json.loads(_ok(cli(env, "workflow", "get", flag, gid, "--json")))
        assert got["processgraph"]["processgraphid"] == gid

    cron = json.loads(_ok(cli(env, "cron", "add", "--name", "c", "--spec", str(wf), "--interval", "3600",
                              "--json")))
    for flag in ("-i", "--cronid"):
        assert json.loads(_ok(cli(env, "cron", "get", flag, cron["cronid"], "--json")))["name"] == "c"
    gen = json.loads(_ok(cli(env, "generator", "add", "--name", "g", "--spec", str(wf), "--trigger", "5",
                             "--json")))
    for flag in ("-i", "--generatorid"):
        assert json.loads(_ok(cli(env, "generator", "get", flag, gen["generatorid"], "--json")))["name"] == "g"
    _ok(cli(env, "process", "cancel", "-i", pid))
    _ok(cli(env, "process", "remove", "--processid", pid))
    _ok(cli(env, "workflow", "cancel", "--workflowid", gid))
    _ok(cli(env, "workflow", "remove", "-i", gid))


# -- 17: a hint when nobody serves the type; a timed-out exec says what it left behind -------------------------
def test_submitting_to_an_unserved_type_warns_but_submits(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    env = cli_env(server, colony)
    r = cli(env, "function", "exec", "--func", "f", "--type", "nobody", "--no-wait", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == 0
    assert "warning: no approved executor of type 'nobody' in colony testcolony" in r.stderr

    served = cli(env, "function", "exec", "--func", "f", "--type", "test", "--no-wait")  # executor-1 serves it
    assert served.returncode == 0 and served.stderr == ""

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"funcname": "f", "conditions": {"executortype": "nobody"}}))
    r = cli(env, "function", "submit", "--spec", str(spec))
    assert r.returncode == 0 and "type 'nobody'" in r.stderr
    r = cli(env, "workflow", "submit", "--spec", str(_workflow_file(tmp_path, "nobody")))
    assert r.returncode == 0 and r.stderr.count("type 'nobody'") == 1

    # A rejected executor does not count as serving its type.
    _ok(cli(env, "executor", "reject", "--name", colony.executor_name))
    r = cli(env, "function", "exec", "--func", "f", "--type", "test", "--no-wait")
    assert r.returncode == 0 and "type 'test'" in r.stderr


def test_exec_that_times_out_says_the_process_is_still_queued(server: ServerProc, colony: ColonyKeys) -> None:
    env = cli_env(server, colony)
    r = cli(env, "function", "exec", "--func", "f", "--type", "nobody", "--timeout", "0.3")
    assert r.returncode == 1
    pid = re.search(r"process ([0-9a-f]{64}) is still WAITING", r.stderr)
    assert pid, r.stderr
    pid_s = pid.group(1)
    assert f"colonies process get -p {pid_s} --wait" in r.stderr
    assert f"colonies process cancel -p {pid_s}" in r.stderr and "not cancelled" in r.stderr
    assert json.loads(_ok(cli(env, "process", "get", "-p", pid_s, "--json")))["state"] == 0


# -- 20: what removeall leaves, and why -----------------------------------------------------------------------
def test_removeall_says_how_many_workflow_processes_it_left(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    env = cli_env(server, colony)
    for _ in range(2):
        _queue(server, colony, "nobody")
    _ok(cli(env, "workflow", "submit", "--spec", str(_workflow_file(tmp_path, "nobody"))))
    r = cli(env, "process", "removeall")
    assert r.returncode == 0, r.stderr
    assert "Removed 2 processes of colony testcolony" in r.stdout
    assert "2 processes left: they belong to workflows" in r.stderr
    assert "colonies workflow removeall" in r.stderr

    # Without a member's key it cannot count, and says so.
    no_member = {k: v for k, v in env.items() if k != "COLONIES_PRVKEY"}
    r = cli(no_member, "process", "removeall", "--waiting")
    assert r.returncode == 0 and "colonies workflow removeall" in r.stderr

    _ok(cli(env, "workflow", "removeall"))
    assert json.loads(_ok(cli(env, "process", "psw", "--json"))) == []
    both = cli(env, "process", "removeall", "--waiting", "--failed")
    assert both.returncode == 1 and "pick one state" in both.stderr


# -- 21: tables at 80 columns ---------------------------------------------------------------------------------
def test_tables_fit_80_columns_without_breaking_states(server: ServerProc, colony: ColonyKeys) -> None:
    env = cli_env(server, colony, COLUMNS="80")
    pids = [_queue(server, colony, "nobody", "hello world") for _ in range(2)]
    _ok(cli(env, "process", "cancel", "-p", pids[0]))
    for args, words in (
        (("process", "psw"), ["WAITING"]),
        (("process", "psc"), ["CANCELLED"]),
        (("executor", "ls"), ["APPROVED"]),
    ):
        out = _ok(run_cli(env, *args))
        lines = out.splitlines()
        assert all(len(line) <= 80 for line in lines), out
        for word in words:
            assert any(word in line for line in lines), out  # never folded ("WAITI" / "NG")
        assert "WAITI " not in out and "CANCE " not in out
    shown = _ok(run_cli(env, "process", "get", "-p", pids[1]))  # a field table folds, never widens
    assert all(len(line) <= 80 for line in shown.splitlines()) and "WAITING" in shown, shown
    psw = _ok(run_cli(env, "process", "psw"))
    assert pids[1][:12] + "…" in psw and pids[1] not in psw  # ids cut to fit
    full = _ok(run_cli(env, "process", "psw", "--full"))
    assert pids[1] in full  # the whole id, however wide


# -- parity: process get --out, exec/submit --env --label --maxwaittime, ps --label --initiator ---------------
def test_process_get_out_prints_only_the_output(server: ServerProc, colony: ColonyKeys) -> None:
    env = cli_env(server, colony)
    pid = _queue(server, colony, "test")
    ex = {**env, "COLONIES_PRVKEY": colony.executor_prvkey}
    assigned = json.loads(_ok(cli(ex, "process", "assign", "--timeout", "5", "--json")))
    assert assigned["processid"] == pid
    _ok(cli(ex, "process", "close", "-p", pid, "--out", "first line", "--out-json", '[2, {"k": 1}]'))
    assert _ok(cli(env, "process", "get", "-p", pid, "--out")) == 'first line\n2\n{"k": 1}\n'
    assert _ok(cli(env, "process", "get", "-p", pid, "--wait", "--out")) == 'first line\n2\n{"k": 1}\n'


def test_exec_and_submit_flags_and_ps_filters(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    env = cli_env(server, colony)
    p = _submit(env, "--type", "nobody", "--env", "A=1", "--env", "B=x=y", "--label", "nightly",
                "--maxwaittime", "30")
    spec = p["spec"]
    assert isinstance(spec, dict)
    assert spec["env"] == {"A": "1", "B": "x=y"} and spec["label"] == "nightly" and spec["maxwaittime"] == 30

    (tmp_path / "s.json").write_text(json.dumps({"funcname": "g", "conditions": {"executortype": "nobody"},
                                                 "env": {"A": "0"}}))
    r = cli(env, "function", "submit", "--spec", str(tmp_path / "s.json"), "--env", "C=3", "--label", "adhoc",
            "--maxwaittime", "5", "--json")
    spec = json.loads(_ok(r))["spec"]
    assert spec["env"] == {"A": "0", "C": "3"} and spec["label"] == "adhoc" and spec["maxwaittime"] == 5

    labelled = json.loads(_ok(cli(env, "process", "psw", "--label", "nightly", "--json")))
    assert [x["spec"]["funcname"] for x in labelled] == ["f"]
    mine = json.loads(_ok(cli(env, "process", "psw", "--initiator", f"{colony.name}-user", "--json")))
    assert len(mine) == 2
    assert json.loads(_ok(cli(env, "process", "psw", "--executortype", "other", "--json"))) == []


FOLLOW_MODULE = """
from colonies import Executor

ex = Executor(executortype="followkit")

@ex.function
def talk(n):
    for i in range(int(n)):
        print(f"step {i}", flush=True)
    return "done"
"""


def test_exec_follow_streams_the_log_then_prints_the_output(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    (tmp_path / "followkit.py").write_text(FOLLOW_MODULE)
    env = cli_env(server, colony)
    proc = start_executor({**env, "XDG_STATE_HOME": str(tmp_path / "state")}, tmp_path / "executor.log",
                          str(tmp_path / "followkit.py"), "--name", "follow-1")
    try:
        r = cli(env, "function", "exec", "--func", "talk", "--type", "followkit", "--args", "3", "--follow",
                "--timeout", "30")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "done\n"  # stdout stays the output; the log goes to stderr
        assert all(f"step {i}" in r.stderr for i in range(3))
    finally:
        stop(proc)


# -- parity: executor create, executor ls --filter/--all/--full, colony check ---------------------------------
def test_executor_create_writes_key_and_id_and_ls_filters(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    env = cli_env(server, colony)
    key, idf = tmp_path / "gpu.prvkey", tmp_path / "gpu.id"
    out = _ok(cli(env, "executor", "create", "--name", "gpu-1", "--type", "gpu", "--keypath", str(key),
                  "--idpath", str(idf), "--approve"))
    assert "Executor gpu-1 added (APPROVED)" in out
    prv = key.read_text()
    assert idf.read_text() == id_of(prv) and stat.S_IMODE(key.stat().st_mode) == 0o600
    # The new key is the executor's: it can read the colony.
    as_exec = json.loads(_ok(cli({**env, "COLONIES_PRVKEY": prv}, "executor", "get", "--name", "gpu-1", "--json")))
    assert as_exec["executorid"] == id_of(prv) and as_exec["state"] == 1

    again = cli(env, "executor", "create", "--name", "gpu-2", "--type", "gpu", "--keypath", str(key),
                "--idpath", str(tmp_path / "other.id"))
    assert again.returncode == 1 and "exists" in again.stderr and key.read_text() == prv
    assert not (tmp_path / "other.id").exists()
    refused = cli({**env, "COLONIES_COLONY_PRVKEY": generate_prvkey()}, "executor", "create", "--name", "gpu-3",
                  "--type", "gpu", "--keypath", str(tmp_path / "k3"), "--idpath", str(tmp_path / "i3"))
    assert refused.returncode == 1 and not (tmp_path / "k3").exists() and not (tmp_path / "i3").exists()

    def names(*a: str) -> list[str]:
        return [x["executorname"] for x in json.loads(_ok(cli(env, "executor", "ls", "--json", *a)))]

    assert names("--filter", "GPU") == ["gpu-1"] and names("-f", "executor-") == [colony.executor_name]
    assert names("--type", "test") == [colony.executor_name]
    _ok(cli(env, "executor", "remove", "--name", "gpu-1"))
    assert "gpu-1" not in names() and "gpu-1" in names("--all")
    full = _ok(cli(env, "executor", "ls", "--full"))
    assert "CommissionTime" in full and id_of(colony.executor_prvkey) in full


def test_colony_check(server: ServerProc, colony: ColonyKeys) -> None:
    env = cli_env(server, colony)
    assert _ok(cli(env, "colony", "check", "--name", colony.name)).strip() == f"Colony {colony.name} exists"
    r = cli(env, "colony", "check", "--name", "nowhere")
    assert r.returncode == 1 and "colony nowhere not found" in r.stderr


# -- parity: database create/drop, monitor start --------------------------------------------------------------
def test_database_create_and_drop_sqlite(tmp_path: Path) -> None:
    from colonies.storage.sqlite import SqliteStorage
    from tests.conftest import run_async

    db = tmp_path / "fresh.db"
    server_id = id_of(generate_prvkey())
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONIES_")}
    env |= {"COLONIES_DB_TYPE": "sqlite", "COLONIES_DB_PATH": str(db), "COLONIES_SERVER_ID": server_id}
    out = _ok(run_cli(env, "database", "create"))
    assert out.startswith(f"Database ready: SQLite {db}, schema version ")

    async def stored_id() -> str:
        s = SqliteStorage(str(db))
        await s.open()
        try:
            return await s.get_server_id()
        finally:
            await s.close()

    assert run_async(stored_id) == server_id
    r = subprocess.run([*_colonies(), "database", "drop"], env=env, input="no\n", capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 1 and "Aborted" in r.stdout and db.exists()
    assert _ok(run_cli(env, "database", "drop", "--yes")).strip() == f"Database {db} removed"
    assert not db.exists()
    r = run_cli(env, "database", "drop", "--yes")
    assert r.returncode == 1 and "no database at" in r.stderr


def test_database_on_postgresql_migrates_and_leaves_drop_to_postgresql() -> None:
    from urllib.parse import urlparse

    from tests.conftest import pg_dsn

    u = urlparse(pg_dsn())
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONIES_")}
    env |= {"COLONIES_DB_TYPE": "postgresql", "COLONIES_DB_HOST": u.hostname or "", "COLONIES_DB_PORT": str(u.port),
            "COLONIES_DB_USER": u.username or "", "COLONIES_DB_PASSWORD": u.password or "",
            "COLONIES_DB_NAME": u.path.lstrip("/")}
    r = run_cli(env, "database", "create")  # no COLONIES_SERVER_ID: the shared test database keeps its owner
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Database ready: PostgreSQL ")
    r = run_cli(env, "database", "drop", "--yes")
    assert r.returncode == 1 and "dropdb" in r.stderr


def test_monitor_start_points_to_metrics(server: ServerProc, colony: ColonyKeys) -> None:
    r = cli(cli_env(server, colony), "monitor", "start")
    assert r.returncode == 1 and "/metrics" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _colonies() -> list[str]:
    import sys

    return [sys.executable, "-m", "colonies"]


@pytest.mark.parametrize("flag", ["--waitprevious", "--waitprev"])
def test_cron_wait_previous_flag_of_the_original(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path, flag: str
) -> None:
    env = cli_env(server, colony)
    cron = json.loads(_ok(cli(env, "cron", "add", "--name", "w", "--spec", str(_workflow_file(tmp_path, "x")),
                              "--interval", "60", flag, "--json")))
    assert cron["waitforprevprocessgraph"] is True
