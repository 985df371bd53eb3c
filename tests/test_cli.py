"""The `colonies` CLI as a user runs it, against a real server on loopback.

`--help`, the error paths and the identity commands run `python -m colonies` as subprocesses. The
longer scenarios call the same `main()` in-process (`cli`), which keeps the suite fast; the executor
they talk to is always a real `colonies executor run` subprocess. Each test checks exit statuses,
`--json` output and, once per area, a rendered table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import ROOT, cli_env, env_without, run_cli, run_cli_inprocess, start_executor, stop

MODULE = """
from colonies import Executor

ex = Executor(executortype="kit", slots=2)

@ex.function
def add(a, b):
    print(f"adding {a} and {b}")
    return a + b

@ex.function
def echo(*args):
    return list(args)

@ex.function
def chatty(n):
    import time
    for i in range(int(n)):
        print(f"line {i}", flush=True)
        time.sleep(0.3)  # the work: output arrives over a second or so
"""


cli = run_cli_inprocess


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    return r.stdout


def test_help_is_fast_and_names_env_variables() -> None:
    exe = Path(sys.executable).parent / "colonies"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "colonies"]
    best_wall = best_cpu = float("inf")
    for _ in range(10):  # the best of up to 10 runs: a busy machine only ever adds time
        before = os.times()
        t0 = time.perf_counter()
        r = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=30, check=False)
        best_wall = min(best_wall, time.perf_counter() - t0)
        after = os.times()
        best_cpu = min(best_cpu, after.children_user - before.children_user + after.children_system
                       - before.children_system)
        assert r.returncode == 0
        if best_wall < 0.3:
            break
    # Wall time is what a user feels; on a machine busier than its cores (other test suites running),
    # the child's CPU time stands in for it.
    busy = os.getloadavg()[0] > (os.cpu_count() or 1)
    assert best_wall < 0.3 or (busy and best_cpu < 0.3), (
        f"colonies --help took {best_wall * 1000:.0f} ms at best ({best_cpu * 1000:.0f} ms CPU)"
    )
    for group in (
        "server",
        "colony",
        "user",
        "executor",
        "function",
        "process",
        "workflow",
        "generator",
        "cron",
        "log",
        "attribute",
        "security",
        "cluster",
        "config",
        "version",
    ):
        assert group in r.stdout
    ps_help = subprocess.run(
        [*cmd, "process", "ps", "--help"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    assert "COLONIES_COLONY_NAME" in ps_help and "COLONIES_PRVKEY" in ps_help
    root_help = r.stdout
    assert (
        "COLONIES_SERVER_HOST" in root_help
        and "COLONIES_SERVER_PORT" in root_help
        and "COLONIES_TLS" in root_help
    )


def test_identities_tables_and_json(server: ServerProc, colony: ColonyKeys) -> None:
    env = cli_env(server, colony)  # a few calls as subprocesses, the rest in-process
    assert _ok(run_cli(env, "server", "alive")).strip() == "Server is alive"
    assert json.loads(_ok(cli(env, "server", "status", "--json")))["backends"][0]["port"] == server.port
    assert json.loads(_ok(cli(env, "server", "stats", "--json")))["colonies"] == 1

    cols = json.loads(_ok(run_cli(env, "colony", "ls", "--json")))
    assert [(c["name"], c["colonyid"]) for c in cols] == [(colony.name, id_of(colony.colony_prvkey))]

    user_key = generate_prvkey()
    _ok(cli(env, "user", "add", "--name", "bob", "--userid", id_of(user_key), "--email", "bob@example.com"))
    bob = json.loads(_ok(cli(env, "user", "get", "--name", "bob", "--json")))
    assert bob["userid"] == id_of(user_key) and bob["email"] == "bob@example.com"
    _ok(cli(env, "user", "remove", "--name", "bob"))
    assert "bob" not in {u["name"] for u in json.loads(_ok(cli(env, "user", "ls", "--json")))}

    exec_key = generate_prvkey()
    added = json.loads(
        _ok(
            cli(
                env,
                "executor",
                "add",
                "--name",
                "worker-9",
                "--type",
                "gpu",
                "--executorid",
                id_of(exec_key),
                "--json",
            )
        )
    )
    assert added["state"] == 0
    approved = json.loads(_ok(cli(env, "executor", "add", "--name", "worker-10", "--type", "gpu", "--executorid",
                                  id_of(generate_prvkey()), "--approve", "--json")))
    assert approved["state"] == 1 and approved["executorname"] == "worker-10"
    assert json.loads(_ok(cli(env, "executor", "get", "--name", "worker-10", "--json")))["state"] == 1
    _ok(cli(env, "executor", "approve", "--name", "worker-9"))
    assert json.loads(_ok(cli(env, "executor", "get", "--name", "worker-9", "--json")))["state"] == 1
    _ok(cli(env, "executor", "reject", "--name", "worker-9"))
    assert json.loads(_ok(cli(env, "executor", "get", "--name", "worker-9", "--json")))["state"] == 2

    table = _ok(run_cli(env, "executor", "ls"))  # the rendered table
    lines = table.splitlines()
    assert lines[0].strip() == "Executors"
    header = next(line for line in lines if "Name" in line)
    assert all(col in header for col in ("Name", "Type", "ExecutorId", "State"))
    row = next(line for line in lines if "executor-1" in line)
    assert "APPROVED" in row and colony.executor_type in row
    assert "REJECTED" in next(line for line in lines if "worker-9" in line)
    _ok(cli(env, "executor", "remove", "--name", "worker-9"))
    assert "worker-9" not in _ok(cli(env, "executor", "ls"))  # removed ones only with --all, as in the original
    removed = next(line for line in _ok(cli(env, "executor", "ls", "--all")).splitlines() if "worker-9" in line)
    assert "UNREGISTERED" in removed  # executors are soft-deleted, as in the original

    assert _ok(cli(env, "security", "id", "--prvkey", exec_key)).strip() == id_of(exec_key)
    out = _ok(cli(env, "process", "status", "--json"))
    assert json.loads(out)["ispaused"] is False


def test_errors_are_one_line_without_traceback(server: ServerProc, colony: ColonyKeys) -> None:
    env = cli_env(server, colony)
    r = run_cli(env, "process", "get", "-p", "0" * 64)
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    assert "Traceback" not in r.stderr

    r = run_cli(env, "--verbose", "process", "get", "-p", "0" * 64)
    assert r.returncode == 1 and "Traceback" in r.stderr

    r = run_cli(env_without(env, "COLONIES_PRVKEY"), "process", "psw")
    assert r.returncode == 1
    assert r.stderr.strip() == "error: no private key: set COLONIES_PRVKEY or pass --prvkey"

    r = run_cli({**env, "COLONIES_SERVER_PORT": "1"}, "colony", "ls")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "cannot reach the server at 127.0.0.1:1" in r.stderr

    r = run_cli(env, "server", "stats", "--server-prvkey", colony.user_prvkey)
    assert r.returncode == 1 and "not server owner" in r.stderr


@pytest.fixture
def kit(server: ServerProc, colony: ColonyKeys, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A `kit` executor serving MODULE, started with `colonies executor run` and the owner's key."""
    (tmp_path / "clikit.py").write_text(MODULE)
    env = cli_env(server, colony)
    proc = start_executor(env, tmp_path / "executor.log", str(tmp_path / "clikit.py"), "--name", "kit-1")
    try:
        yield env
    finally:
        stop(proc)


def test_function_exec_submit_and_process_commands(kit: dict[str, str], tmp_path: Path) -> None:
    env = kit
    r = cli(env, "function", "exec", "--func", "add", "--args-json", "[2, 3]", "--type", "kit")
    assert _ok(r).strip() == "5"
    r = cli(env, "function", "exec", "--func", "add", "--args", "01234", "--args", "1e3", "--type", "kit")
    assert _ok(r).strip() == "012341e3"  # --args are strings, as in the original CLI

    spec = {
        "funcname": "echo",
        "args": ["hello", 7],
        "conditions": {"executortype": "kit"},
        "maxexectime": 10,
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    submitted = json.loads(
        _ok(cli(env, "function", "submit", "--spec", str(tmp_path / "spec.json"), "--json"))
    )
    pid = submitted["processid"]
    done = json.loads(_ok(cli(env, "process", "get", "-p", pid, "--wait", "--timeout", "20", "--json")))
    assert done["state"] == 2 and done["out"] == ["hello", 7]

    pss = json.loads(_ok(cli(env, "process", "pss", "--json")))
    assert {p["spec"]["funcname"] for p in pss} == {"add", "echo"}
    add_pid = next(p["processid"] for p in pss if p["spec"]["args"] == [2, 3])
    logs = json.loads(_ok(cli(env, "log", "get", "-p", add_pid, "--json")))
    assert "adding 2 and 3" in "".join(entry["message"] for entry in logs)
    assert "adding 2 and 3" in _ok(cli(env, "log", "search", "--text", "adding"))

    fns = json.loads(_ok(cli(env, "function", "ls", "--json")))
    assert {(f["funcname"], f["executorname"]) for f in fns} >= {("add", "kit-1"), ("echo", "kit-1")}

    table = _ok(cli(env, "process", "get", "-p", pid))
    assert "SUCCESS" in table and "ProcessId" in table

    chatty = json.loads(
        _ok(cli(env, "function", "exec", "--func", "chatty", "--args", "3", "--type", "kit", "--json"))
    )
    followed = _ok(cli(env, "log", "get", "-p", chatty["processid"], "--follow", "--timeout", "20"))
    assert all(f"line {i}" in followed for i in range(3))

    ps = cli(env, "process", "ps", "--follow", "--timeout", "0.5")
    assert _ok(ps).lstrip().startswith("Running processes")

    # A process nobody serves: cancel and remove it.
    spec["conditions"] = {"executortype": "nobody"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    pid = json.loads(_ok(cli(env, "function", "submit", "--spec", str(tmp_path / "spec.json"), "--json")))[
        "processid"
    ]
    assert pid in {p["processid"] for p in json.loads(_ok(cli(env, "process", "psw", "--json")))}
    _ok(cli(env, "process", "cancel", "-p", pid))
    assert json.loads(_ok(cli(env, "process", "get", "-p", pid, "--json")))["state"] == 4
    _ok(cli(env, "process", "remove", "-p", pid))
    assert cli(env, "process", "get", "-p", pid).returncode == 1


def test_workflow_submit_wait_draw_and_export(kit: dict[str, str], tmp_path: Path) -> None:
    env = kit
    specs = [
        {
            "nodename": "a",
            "funcname": "echo",
            "args": ["a"],
            "conditions": {"executortype": "kit", "dependencies": []},
        },
        {
            "nodename": "b",
            "funcname": "echo",
            "args": ["b"],
            "conditions": {"executortype": "kit", "dependencies": ["a"]},
        },
        {
            "nodename": "c",
            "funcname": "echo",
            "args": ["c"],
            "conditions": {"executortype": "kit", "dependencies": ["a"]},
        },
        {
            "nodename": "d",
            "funcname": "echo",
            "args": ["d"],
            "conditions": {"executortype": "kit", "dependencies": ["b", "c"]},
        },
    ]
    (tmp_path / "wf.json").write_text(
        json.dumps({"colonyname": env["COLONIES_COLONY_NAME"], "functionspecs": specs})
    )
    graph = json.loads(
        _ok(
            cli(
                env,
                "workflow",
                "submit",
                "--spec",
                str(tmp_path / "wf.json"),
                "--wait",
                "--timeout",
                "30",
                "--json",
            )
        )
    )
    assert graph["state"] == 2 and len(graph["processids"]) == 4
    gid = graph["processgraphid"]

    got = json.loads(_ok(cli(env, "workflow", "get", "-i", gid, "--json")))
    d = next(p for p in got["processes"] if p["spec"]["nodename"] == "d")
    assert sorted(d["in"]) == ["a", "a", "b", "c"] and d["out"][-1] == "d"  # b's and c's output, then its arg

    mermaid = _ok(cli(env, "workflow", "get", "-i", gid, "--mermaid"))
    assert mermaid.startswith("flowchart TD") and mermaid.count(" --> ") == 4
    assert '["d<br/>SUCCESS"]' in mermaid
    dot = _ok(cli(env, "workflow", "get", "-i", gid, "--dot"))
    assert dot.startswith("digraph workflow {") and dot.count(" -> ") == 4

    drawn = _ok(cli(env, "workflow", "get", "-i", gid))
    assert drawn.index("after b, c") > drawn.index("after a")  # d drawn below b and c
    assert drawn.count("SUCCESS") == 5  # the graph and its four nodes

    assert gid in {g["processgraphid"] for g in json.loads(_ok(cli(env, "workflow", "pss", "--json")))}
    _ok(cli(env, "workflow", "remove", "-i", gid))
    assert cli(env, "workflow", "get", "-i", gid).returncode == 1


def test_generators_and_crons(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    env = cli_env(server, colony)
    wf = [{"funcname": "echo", "conditions": {"executortype": "nobody"}}]
    (tmp_path / "wf.json").write_text(json.dumps(wf))
    gen = json.loads(
        _ok(
            cli(
                env,
                "generator",
                "add",
                "--name",
                "batch",
                "--spec",
                str(tmp_path / "wf.json"),
                "--trigger",
                "10",
                "--json",
            )
        )
    )
    _ok(cli(env, "generator", "pack", "-i", gen["generatorid"], "--arg", "x"))
    by_name = json.loads(_ok(cli(env, "generator", "get", "--name", "batch", "--json")))
    assert by_name["generatorid"] == gen["generatorid"] and by_name["trigger"] == 10
    assert [g["name"] for g in json.loads(_ok(cli(env, "generator", "ls", "--json")))] == ["batch"]
    _ok(cli(env, "generator", "remove", "-i", gen["generatorid"]))
    assert json.loads(_ok(cli(env, "generator", "ls", "--json"))) == []

    cron = json.loads(
        _ok(
            cli(
                env,
                "cron",
                "add",
                "--name",
                "hourly",
                "--spec",
                str(tmp_path / "wf.json"),
                "--cron",
                "0 0 * * * *",
                "--json",
            )
        )
    )
    assert json.loads(_ok(cli(env, "cron", "get", "-i", cron["cronid"], "--json")))["name"] == "hourly"
    _ok(cli(env, "cron", "run", "-i", cron["cronid"]))
    assert "hourly" in _ok(cli(env, "cron", "ls"))
    _ok(cli(env, "cron", "remove", "-i", cron["cronid"]))
    assert json.loads(_ok(cli(env, "cron", "ls", "--json"))) == []


def test_readme_first_command_is_still_valid() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "colonies", "dev", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert r.returncode == 0 and "--once" in r.stdout


def _dev(tmp_path: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONIES_")}
    return subprocess.run([sys.executable, "-m", "colonies", "dev", "--once", "--port", str(port),
                           "--dir", str(tmp_path / "dev")], capture_output=True, text=True, timeout=90,
                          cwd=tmp_path, env=env, check=False)


def test_colonies_dev_runs_real_work_and_prints_where_to_look(tmp_path: Path) -> None:
    """The README's main command: server, keys, colony, demo executor, a first process that succeeds and
    a workflow to watch, with the dashboard link and the env file; a second run reuses the keys."""
    from tests.conftest import free_port

    port = free_port()
    r = _dev(tmp_path, port)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "First process finished: SUCCESS" in r.stdout
    assert f"Dashboard:         http://127.0.0.1:{port}/#/workflow/" in r.stdout
    assert "sign in with COLONIES_USER_PRVKEY" in r.stdout
    assert "COLONIES_USER_PRVKEY=" in (tmp_path / "dev" / "dev.env").read_text()
    again = _dev(tmp_path, port)  # same keys and database: the colony already exists
    assert again.returncode == 0 and "First process finished: SUCCESS" in again.stdout, again.stderr


def test_colonies_dev_on_a_busy_port_says_so(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = _dev(tmp_path, busy.getsockname()[1])
    assert r.returncode == 1 and "is in use: pass --port" in r.stderr and "Traceback" not in r.stderr
