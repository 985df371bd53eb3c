"""An operator's day against a real server: through our CLI, and, for every step, with the payload the
original Go CLI sends for its default flag values.

The Go toolchain cannot fetch modules on this machine, so the Go CLI itself is not built here. Instead
each `go_*` helper below builds the message the Go CLI would sign for that command — the same
structs (`pkg/core`, `pkg/rpc`), marshalled with every field, zero values included, and the flag
defaults of `internal/cli/*.go` — and sends it unstamped (no timestamp or nonce, as Go sends it). The
defaults checked, with where they come from:

* `function exec`: `--maxwaittime -1 --maxexectime -1 --maxretries -1`, priority 0, args as strings,
  `kwargs {}`, `env {}`, label "", node name "", `fs {mount "", snapshots null, dirs null}`,
  `conditions.executornames/dependencies null`, gpu zero (function.go).
* `function submit` / `workflow submit` / `cron add` / `generator add`: a spec file unmarshalled into
  FunctionSpec, so missing fields are Go zero values: `maxexectime 0`, `maxretries 0`,
  `maxwaittime 0`, `args/kwargs/env null`; a workflow's specs keep `conditions.colonyname ""`.
* `executor add/create`: the whole Executor struct, state 0, zero times, `capabilities {hardware null,
  software null}`, `allocations {projects null}` (executor.go).
* `process assign --timeout 100`; `process ps*`/`workflow ps*`/`cron ls`/`generator ls` `--count 20`
  (DefaultCount); `log get --count 100 --latest` (since 0); `log search --days 1 --count 10`;
  `process removeall` with no state flag sends `state -1` (NOTSET), `workflow removeall` too.
* `attribute add`: attribute type OUT (1), state 0, target colony and process graph filled in.
* `cron add`: `--interval -1` beside a cron expression, `--cron ""` beside an interval, `random
  false`, `waitforprevprocessgraph false`, zero `nextrun`/`lastrun`; `cron remove` sends `all false`.
* `generator add`: `--timeout -1` (no timeout), zero `firstpack`/`lastrun`; `generator remove`
  sends `all false`.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx

from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.protocol.envelope import decode_reply, encode_request
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import cli_env, run_cli_inprocess, wait_until

ZERO_TIME = "0001-01-01T00:00:00Z"
COUNT = 20  # the Go CLI's DefaultCount


# -- the Go CLI's payloads ---------------------------------------------------------------------------------------
def go_conditions(colony: str, executortype: str) -> dict[str, Any]:
    return {"colonyname": colony, "executornames": None, "executortype": executortype, "dependencies": None,
            "nodes": 0, "cpu": "", "processes": 0, "processespernode": 0, "mem": "", "storage": "",
            "gpu": {"name": "", "mem": "", "count": 0, "nodecount": 0}, "walltime": 0}


def go_exec_spec(funcname: str, colony: str, executortype: str, args: list[str]) -> dict[str, Any]:
    """`colonies function exec --func F --targettype T --args A,B` with every other flag at its default."""
    return {"nodename": "", "funcname": funcname, "args": args, "kwargs": {}, "priority": 0, "maxwaittime": -1,
            "maxexectime": -1, "maxretries": -1, "conditions": go_conditions(colony, executortype), "label": "",
            "fs": {"mount": "", "snapshots": None, "dirs": None}, "env": {}}


def go_file_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec file as Go's json.Unmarshal into FunctionSpec leaves it: absent fields are zero values."""
    zero: dict[str, Any] = {"nodename": "", "funcname": "", "args": None, "kwargs": None, "priority": 0,
                            "maxwaittime": 0, "maxexectime": 0, "maxretries": 0, "label": "",
                            "fs": {"mount": "", "snapshots": None, "dirs": None}, "env": None}
    conditions = {**go_conditions("", ""), **spec.get("conditions", {})}
    return {**zero, **spec, "conditions": conditions}


def go_workflow(colony: str, specs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"colonyname": colony, "functionspecs": [go_file_spec(s) for s in specs]}


def go_executor(colony: str, executorid: str, name: str, executortype: str) -> dict[str, Any]:
    return {"executorid": executorid, "executortype": executortype, "executorname": name, "colonyname": colony,
            "state": 0, "requirefuncreg": False, "commissiontime": ZERO_TIME, "lastheardfromtime": ZERO_TIME,
            "capabilities": {"hardware": None, "software": None}, "allocations": {"projects": None}}


class GoCLI:
    """Signs a message as the Go CLI does (no timestamp or nonce) and posts it to /api."""

    def __init__(self, server: ServerProc) -> None:
        self.url = f"{server.url}/api"

    def send(self, prvkey: str, msgtype: str, **fields: Any) -> Any:
        body = encode_request({"msgtype": msgtype, **fields}, prvkey)
        r = httpx.post(self.url, content=body, timeout=30)
        _, payload, is_error = decode_reply(r.content)
        assert r.status_code == 200 and not is_error, f"{msgtype} refused ({r.status_code}): {payload!r}"
        return json.loads(payload) if payload.strip() else None


# -- our CLI -----------------------------------------------------------------------------------------------------
def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args} exit {r.returncode}: {r.stdout}{r.stderr}"
    return r.stdout


def cli_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(ok(run_cli_inprocess(env, *args, "--json")))


def test_operator_day(server: ServerProc, tmp_path: Path) -> None:  # one day, in order
    go = GoCLI(server)
    srv = server.server_prvkey
    base = cli_env(server, ColonyKeys("day", "", "", ""))

    # 08:00 keys, colony, users --------------------------------------------------------------------------
    gen = ok(run_cli_inprocess(base, "security", "generate"))
    colony_prv = re.search(r"PrvKey:\s+(\S+)", gen).group(1)  # type: ignore[union-attr]
    env = {**base, "COLONIES_COLONY_PRVKEY": colony_prv}
    assert cli_json(env, "colony", "add", "--name", "day")["colonyid"] == id_of(colony_prv)
    go_colony_prv = generate_prvkey()
    assert go.send(srv, "addcolonymsg", colony={"colonyid": id_of(go_colony_prv), "name": "day-go"})["name"] == "day-go"
    assert {c["name"] for c in cli_json(env, "colony", "ls")} == {"day", "day-go"}
    assert {c["name"] for c in go.send(srv, "getcoloniesmsg")} == {"day", "day-go"}

    user_prv, go_user_prv = generate_prvkey(), generate_prvkey()
    ok(run_cli_inprocess(env, "user", "add", "--name", "alice", "--userid", id_of(user_prv)))
    go.send(colony_prv, "addusermsg", user={"colonyname": "day", "userid": id_of(go_user_prv), "name": "bob",
                                            "email": "", "phone": ""})
    env["COLONIES_PRVKEY"] = user_prv
    assert {u["name"] for u in cli_json(env, "user", "ls")} == {"alice", "bob"}
    assert go.send(go_user_prv, "getusermsg", colonyname="day", name="alice")["userid"] == id_of(user_prv)
    ok(run_cli_inprocess(env, "colony", "check", "--name", "day"))
    assert go.send(go_user_prv, "getcolonymsg", colonyname="day")["name"] == "day"

    # 08:30 executors -------------------------------------------------------------------------------------
    ok(run_cli_inprocess(env, "executor", "create", "--name", "w1", "--type", "daywork", "--approve",
                         "--keypath", str(tmp_path / "w1.key"), "--idpath", str(tmp_path / "w1.id")))
    w1 = (tmp_path / "w1.key").read_text()
    w2 = generate_prvkey()  # `executor add --executorid ID --name w2 --type daywork` then `executor approve`
    added = go.send(colony_prv, "addexecutormsg", executor=go_executor("day", id_of(w2), "w2", "daywork"))
    assert added["state"] == 0
    go.send(colony_prv, "approveexecutormsg", colonyname="day", executorname="w2")
    xs = cli_json(env, "executor", "ls")
    assert {(x["executorname"], x["state"]) for x in xs} == {("w1", 1), ("w2", 1)}
    assert len(go.send(user_prv, "getexecutorsmsg", colonyname="day")) == 2
    w1env = {**env, "COLONIES_PRVKEY": w1, "COLONIES_EXECUTOR_PRVKEY": w1, "COLONIES_EXECUTOR_NAME": "w1"}
    ok(run_cli_inprocess(w1env, "function", "register", "--name", "report"))
    go.send(w2, "addfunctionmsg", fun={"functionid": "", "executorname": "w2", "executortype": "",
                                       "colonyname": "day", "funcname": "report", "counter": 0,
                                       "minwaittime": 0, "maxwaittime": 0, "minexectime": 0, "maxexectime": 0,
                                       "avgwaittime": 0, "avgexectime": 0})
    assert {f["executorname"] for f in cli_json(env, "function", "ls")} == {"w1", "w2"}

    # 09:00 a process through our CLI: submit, assign, log, attribute, close, read ---------------------------
    p = cli_json(env, "function", "exec", "--func", "report", "--type", "daywork", "--args", "007", "--no-wait")
    assert p["spec"]["args"] == ["007"]
    got = cli_json(w1env, "process", "assign", "--timeout", "5")
    assert got["processid"] == p["processid"]
    ok(run_cli_inprocess(w1env, "log", "add", "-p", p["processid"], "--msg", "cli says hello"))
    attr = cli_json(w1env, "attribute", "add", "-p", p["processid"], "--key", "rows", "--value", "12")
    ok(run_cli_inprocess(w1env, "process", "close", "-p", p["processid"], "--out", "done"))
    assert ok(run_cli_inprocess(env, "process", "get", "-p", p["processid"], "--out")) == "done\n"
    assert "cli says hello" in cli_json(env, "log", "get", "-p", p["processid"])[0]["message"]
    assert cli_json(env, "attribute", "get", "-i", attr["attributeid"])["value"] == "12"

    # ... and the same with the Go CLI's payloads
    gp = go.send(user_prv, "submitfuncspecmsg", spec=go_exec_spec("report", "day", "daywork", ["007"]))
    assert (gp["spec"]["maxexectime"], gp["spec"]["maxretries"], gp["spec"]["maxwaittime"]) == (-1, -1, -1)
    assert gp["spec"]["args"] == ["007"] and gp["state"] == 0
    waiting = go.send(user_prv, "getprocessesmsg", colonyname="day", count=COUNT, state=0, executortype="",
                      label="", initiator="")
    assert [x["processid"] for x in waiting] == [gp["processid"]]
    assigned = go.send(w2, "assignprocessmsg", colonyname="day", timeout=100, availablecpu="", availablemem="")
    assert assigned["processid"] == gp["processid"]
    go.send(w2, "addlogmsg", processid=gp["processid"], message="go says hello\n")
    go_attr = go.send(w2, "addattributemsg", attribute={
        "attributeid": "", "targetid": gp["processid"], "targetcolonyname": "day", "targetprocessgraphid": "",
        "state": 0, "attributetype": 1, "key": "rows", "value": "7"})
    go.send(w2, "closesuccessfulmsg", processid=gp["processid"], out=["done"])
    assert go.send(user_prv, "getprocessmsg", processid=gp["processid"])["out"] == ["done"]
    logs = go.send(user_prv, "getlogsmsg", colonyname="day", processid=gp["processid"], executorname="",
                   count=100, since=0, latest=True)
    assert [entry["message"] for entry in logs] == ["go says hello\n"]
    found = go.send(user_prv, "searchlogsmsg", colonyname="day", text="hello", days=1, count=10)
    assert len(found) == 2
    assert go.send(user_prv, "getattributemsg", attributeid=go_attr["attributeid"])["value"] == "7"

    # 10:00 a spec file, a failure ------------------------------------------------------------------------
    spec = {"funcname": "report", "conditions": {"executortype": "daywork"}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    p = cli_json(env, "function", "submit", "--spec", str(tmp_path / "spec.json"))
    cli_json(w1env, "process", "assign", "--timeout", "5")
    ok(run_cli_inprocess(w1env, "process", "fail", "-p", p["processid"], "--error", "disk full"))
    gp = go.send(user_prv, "submitfuncspecmsg", spec=go_file_spec({**spec, "conditions": {
        "colonyname": "day", "executortype": "daywork"}}))
    assert gp["spec"]["maxexectime"] == 0  # Go's zero: no limit here, not "time out at once"
    go.send(w2, "assignprocessmsg", colonyname="day", timeout=100, availablecpu="", availablemem="")
    go.send(w2, "closefailedmsg", processid=gp["processid"], errors=["disk full"])
    failed = go.send(user_prv, "getprocessesmsg", colonyname="day", count=COUNT, state=3, executortype="",
                     label="", initiator="")
    assert len(failed) == 2 and all(x["errors"] == ["disk full"] for x in failed)
    assert len(cli_json(env, "process", "psf")) == 2

    # 11:00 workflows ---------------------------------------------------------------------------------------
    nodes = [
        {"nodename": "extract", "funcname": "report", "conditions": {"executortype": "daywork", "dependencies": []}},
        {"nodename": "load", "funcname": "report",
         "conditions": {"executortype": "daywork", "dependencies": ["extract"]}},
    ]
    (tmp_path / "wf.json").write_text(json.dumps(nodes))
    g = cli_json(env, "workflow", "submit", "--spec", str(tmp_path / "wf.json"))
    go_g = go.send(user_prv, "submitworkflowspecmsg", spec=go_workflow("day", nodes))
    for _ in range(4):  # both graphs, roots first, run by w1 through our CLI
        q = cli_json(w1env, "process", "assign", "--timeout", "5")
        ok(run_cli_inprocess(w1env, "process", "close", "-p", q["processid"], "--out", q["spec"]["nodename"]))
    assert cli_json(env, "workflow", "get", "-i", g["processgraphid"])["processgraph"]["state"] == 2
    assert go.send(user_prv, "getprocessgraphmsg", processgraphid=go_g["processgraphid"])["state"] == 2
    done = go.send(user_prv, "getprocessgraphsmsg", colonyname="day", count=COUNT, state=2)
    assert {x["processgraphid"] for x in done} == {g["processgraphid"], go_g["processgraphid"]}

    # 12:00 crons -------------------------------------------------------------------------------------------
    cron = cli_json(env, "cron", "add", "--name", "hourly", "--spec", str(tmp_path / "wf.json"),
                    "--cron", "0 0 * * * *")
    wf_text = json.dumps(go_workflow("day", nodes))
    go_cron = go.send(user_prv, "addcronmsg", cron={
        "cronid": "", "initiatorid": "", "initiatorname": "", "colonyname": "day", "name": "go-hourly",
        "cronexpression": "0 0 * * * *", "interval": -1, "random": False, "nextrun": ZERO_TIME,
        "lastrun": ZERO_TIME, "workflowspec": wf_text, "prevprocessgraphid": "", "waitforprevprocessgraph": False,
        "checkerperiod": 0})
    go_every = go.send(user_prv, "addcronmsg", cron={
        "cronid": "", "initiatorid": "", "initiatorname": "", "colonyname": "day", "name": "go-every",
        "cronexpression": "", "interval": 3600, "random": False, "nextrun": ZERO_TIME, "lastrun": ZERO_TIME,
        "workflowspec": wf_text, "prevprocessgraphid": "", "waitforprevprocessgraph": False, "checkerperiod": 0})
    ok(run_cli_inprocess(env, "cron", "run", "-i", cron["cronid"]))
    go.send(user_prv, "runcronmsg", cronid=go_cron["cronid"])
    crons = go.send(user_prv, "getcronsmsg", colonyname="day", count=COUNT)
    assert {c["name"] for c in crons} == {"hourly", "go-hourly", "go-every"}
    assert go.send(user_prv, "getcronmsg", cronid=go_every["cronid"])["interval"] == 3600
    wait_until(lambda: len(go.send(user_prv, "getprocessgraphsmsg", colonyname="day", count=COUNT, state=0)) >= 2,
               what="the two cron runs' workflows")
    ok(run_cli_inprocess(env, "cron", "remove", "-i", cron["cronid"]))
    for c in (go_cron, go_every):
        go.send(user_prv, "removecronmsg", cronid=c["cronid"], all=False)
    assert cli_json(env, "cron", "ls") == []

    # 13:00 generators (`generator add` without --timeout sends -1: no timeout) --------------------------------
    gen_cli = cli_json(env, "generator", "add", "--name", "batch", "--spec", str(tmp_path / "wf.json"),
                       "--trigger", "2")
    go_gen = go.send(user_prv, "addgeneratormsg", generator={
        "generatorid": "", "initiatorid": "", "initiatorname": "", "colonyname": "day", "name": "go-batch",
        "workflowspec": wf_text, "trigger": 2, "timeout": -1, "firstpack": ZERO_TIME, "lastrun": ZERO_TIME,
        "queuesize": 0, "checkerperiod": 0})
    before = len(go.send(user_prv, "getprocessgraphsmsg", colonyname="day", count=100, state=0))
    ok(run_cli_inprocess(env, "generator", "pack", "-i", gen_cli["generatorid"], "--arg", "a"))
    ok(run_cli_inprocess(env, "generator", "pack", "-i", gen_cli["generatorid"], "--arg", "b"))
    for arg in ("a", "b"):
        go.send(user_prv, "packgeneratormsg", generatorid=go_gen["generatorid"], arg=arg)
    wait_until(lambda: len(go.send(user_prv, "getprocessgraphsmsg", colonyname="day", count=100,
                                   state=0)) >= before + 2, what="both generators to fire")
    assert go.send(user_prv, "getgeneratormsg", generatorid=go_gen["generatorid"])["timeout"] <= 0
    assert len(go.send(user_prv, "getgeneratorsmsg", colonyname="day", count=COUNT)) == 2
    assert cli_json(env, "generator", "get", "--name", "batch")["generatorid"] == gen_cli["generatorid"]
    ok(run_cli_inprocess(env, "generator", "remove", "-i", gen_cli["generatorid"]))
    go.send(user_prv, "removegeneratormsg", generatorid=go_gen["generatorid"], all=False)
    assert cli_json(env, "generator", "ls") == []

    # 16:00 pause, stats, clean up --------------------------------------------------------------------------
    go.send(colony_prv, "pauseassignmentsmsg", colonyname="day")
    assert cli_json(env, "process", "status")["ispaused"] is True
    ok(run_cli_inprocess(env, "process", "resume"))
    assert go.send(user_prv, "getpausestatusmsg", colonyname="day")["ispaused"] is False
    assert go.send(user_prv, "getcolonystatsmsg", colonyname="day")["successfulprocesses"] >= 2
    assert go.send(srv, "getstatisticsmsg")["colonies"] == 2
    loose = go.send(user_prv, "submitfuncspecmsg", spec=go_exec_spec("report", "day", "daywork", []))
    go.send(user_prv, "cancelprocessmsg", processid=loose["processid"])
    go.send(colony_prv, "removeallprocessesmsg", colonyname="day", state=-1)  # `process removeall`
    go.send(colony_prv, "removeallprocessgraphsmsg", colonyname="day", state=-1)  # `workflow removeall`
    assert cli_json(env, "process", "pss") == [] and cli_json(env, "workflow", "psw") == []
    go.send(colony_prv, "rejectexecutormsg", colonyname="day", executorname="w2")
    go.send(colony_prv, "removeexecutormsg", colonyname="day", executorname="w2")
    ok(run_cli_inprocess(env, "executor", "remove", "--name", "w1"))
    go.send(colony_prv, "removeusermsg", colonyname="day", name="bob")
    go.send(srv, "removecolonymsg", colonyname="day-go")
    ok(run_cli_inprocess(env, "colony", "remove", "--name", "day"))
    assert cli_json(env, "colony", "ls") == []


def test_go_payloads_are_signed_without_freshness_stamps(server: ServerProc) -> None:
    """The payloads above carry no timestamp or nonce, as the Go CLI's do (so the server's default,
    which accepts unstamped signatures, is what they exercise)."""
    body = json.loads(encode_request({"msgtype": "getcoloniesmsg"}, server.server_prvkey))
    assert set(json.loads(base64.b64decode(body["payload"]))) == {"msgtype"}
    assert GoCLI(server).send(server.server_prvkey, "getcoloniesmsg") == []
