"""`colonies blueprint ...` as a user runs it, against a real server on loopback: definitions with the colony
owner's key, blueprints from the original's JSON files with a member's key, tables of desired vs observed
state, `set` by dotted path, history, reconcile, and `doctor` finding what is wrong and then nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import cli_env, run_cli_inprocess

cli = run_cli_inprocess
HANDLER = "docker-reconciler"


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}\n{r.stderr}"
    return r.stdout


def js(r: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(r))


def failed(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    return r.stderr


@pytest.fixture
def env(server: ServerProc, colony: ColonyKeys) -> dict[str, str]:
    return cli_env(server, colony)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """The original's example files (examples/blueprints/), as its CLI reads them: no colony names."""
    definition: dict[str, Any] = {"metadata": {"name": "executor-deployment"}, "spec": {
        "group": "compute.colonies.io", "version": "v1", "scope": "Namespaced",
        "names": {"kind": "ExecutorDeployment", "plural": "executordeployments", "singular": "executordeployment"},
        "schema": {"type": "object", "required": ["image", "executorType"], "properties": {
            "image": {"type": "string"}, "replicas": {"type": "number"}, "executorType": {"type": "string"},
            "env": {"type": "object"}}},
        "handler": {"executorType": HANDLER, "functionName": "reconcile"}}}
    web: dict[str, Any] = {"kind": "ExecutorDeployment", "metadata": {"name": "web-server-deployment", "locationname": "edge"},
           "handler": {"executorName": "my-docker-reconciler"},  # an old field the original ignores too
           "spec": {"image": "nginx:1.21", "replicas": 2, "executorType": "container-executor",
                    "env": {"TZ": "UTC"}}}
    paths = {}
    for name, doc in (("definition", definition), ("web", web),
                      ("web3", {**web, "spec": {**web["spec"], "replicas": 3}}),
                      ("bad", {**web, "metadata": {"name": "bad"}, "spec": {**web["spec"], "replicas": "two"}})):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        paths[name] = str(path)
    return paths


def test_definitions_blueprints_set_history_reconcile(env: dict[str, str], colony: ColonyKeys,
                                                       files: dict[str, str]) -> None:
    assert "No blueprint definitions in colony testcolony" in cli(env, "blueprint", "definition", "ls").stderr
    out = ok(cli(env, "blueprint", "definition", "add", "--spec", files["definition"]))
    assert out.strip() == ("Blueprint definition executor-deployment (kind ExecutorDeployment) added to colony "
                           "testcolony")
    # A member may not add definitions (the command uses the colony owner's key: hide it).
    no_owner = {**env, "COLONIES_COLONY_PRVKEY": env["COLONIES_PRVKEY"]}
    assert "not colony owner" in failed(cli(no_owner, "blueprint", "definition", "add", "--spec", files["definition"]))
    table = ok(cli(env, "blueprint", "definition", "ls"))
    assert "executor-deployment" in table and HANDLER in table and "compute.colonies.io/v1" in table
    d = js(cli(env, "blueprint", "definition", "get", "--name", "executor-deployment", "--json"))
    assert d["spec"]["handler"] == {"executorType": HANDLER, "functionName": "reconcile"}
    assert '"required"' in ok(cli(env, "blueprint", "definition", "get", "-n", "executor-deployment"))

    added = js(cli(env, "blueprint", "add", "--spec", files["web"], "--json"))
    assert added["metadata"]["colonyname"] == "testcolony" and added["metadata"]["generation"] == 1
    assert "spec.replicas: 'two' is not of type 'number'" in failed(cli(env, "blueprint", "add", "--spec", files["bad"]))
    listed = ok(cli(env, "blueprint", "ls"))
    assert "web-server-deployment" in listed and "edge" in listed and "replicas=2" in listed, listed
    assert js(cli(env, "blueprint", "ls", "--kind", "Nope", "--json")) == []
    got = ok(cli(env, "blueprint", "get", "--name", "web-server-deployment"))
    assert "Desired (spec)" in got and '"image": "nginx:1.21"' in got

    # update from a file, set by dotted path (JSON values, else strings), force a generation.
    assert "generation 2" in ok(cli(env, "blueprint", "update", "--spec", files["web3"]))
    assert "generation 3" in ok(cli(env, "blueprint", "set", "-n", "web-server-deployment", "--key", "spec.replicas",
                                    "--value", "4"))
    ok(cli(env, "blueprint", "set", "-n", "web-server-deployment", "--key", "env.TZ", "--value", "Europe/Oslo"))
    spec = js(cli(env, "blueprint", "get", "-n", "web-server-deployment", "--json"))["spec"]
    assert (spec["replicas"], spec["env"]) == (4, {"TZ": "Europe/Oslo"})
    assert "invalid key: env.LANG: env has no field 'LANG'" in failed(
        cli(env, "blueprint", "set", "-n", "web-server-deployment", "--key", "env.LANG", "--value", "x"))
    assert "generation 5" in ok(cli(env, "blueprint", "update", "--spec", files["web3"], "--force-generation"))

    history = js(cli(env, "blueprint", "history", "-n", "web-server-deployment", "--json"))
    assert [h["generation"] for h in history] == [5, 4, 3, 2, 1]
    assert [h["generation"] for h in js(cli(env, "blueprint", "history", "-n", "web-server-deployment", "-l", "2",
                                            "--json"))] == [5, 4]
    one = ok(cli(env, "blueprint", "history", "-n", "web-server-deployment", "--generation", "3"))
    assert "generation 3" in one and '"replicas": 4' in one
    assert "generation 9 not found" in failed(cli(env, "blueprint", "history", "-n", "web-server-deployment",
                                                  "-g", "9"))
    assert "update" in ok(cli(env, "blueprint", "history", "-n", "web-server-deployment"))

    p = js(cli(env, "blueprint", "reconcile", "-n", "web-server-deployment", "--force", "--json"))
    assert p["spec"]["kwargs"] == {"kind": "ExecutorDeployment", "blueprintName": "web-server-deployment",
                                   "force": True}
    assert "Reconcile process" in ok(cli(env, "blueprint", "reconcile", "-n", "web-server-deployment"))

    assert "refused" not in ok(cli(env, "blueprint", "remove", "-n", "web-server-deployment"))
    assert "not found" in failed(cli(env, "blueprint", "get", "-n", "web-server-deployment"))
    ok(cli(env, "blueprint", "definition", "remove", "-n", "executor-deployment"))
    assert js(cli(env, "blueprint", "definition", "ls", "--json")) == []


def test_doctor(server: ServerProc, env: dict[str, str], colony: ColonyKeys, files: dict[str, str]) -> None:
    ok(cli(env, "blueprint", "definition", "add", "--spec", files["definition"]))
    ok(cli(env, "blueprint", "add", "--spec", files["web"]))
    # No handler executor yet: the handler check fails, the last reconcile waits for nobody.
    r = cli(env, "blueprint", "doctor")
    assert r.returncode == 1 and f"no approved executor of type {HANDLER} at location edge" in r.stdout
    report = json.loads(cli(env, "blueprint", "doctor", "--json").stdout)
    checks = {c["check"]: c for c in report[0]["checks"]}
    assert checks["definition"]["ok"] and checks["cron"]["ok"]
    assert checks["cron"]["message"] == "reconcile cron reconcile-ExecutorDeployment-edge exists"
    assert not checks["handler"]["ok"] and not checks["last reconcile"]["ok"] and not checks["replicas"]["ok"]
    assert checks["replicas"]["message"] == "0/2 executors running for this blueprint" and "status" not in checks

    # A reconciler at the site takes the process and succeeds; it runs 2 executors of this generation.
    key = generate_prvkey()
    with server.client(colony.colony_prvkey) as owner:
        owner.add_executor(colony.name, id_of(key), "reconciler-edge", HANDLER, location="Edge")
        owner.approve_executor(colony.name, "reconciler-edge")
        bp = owner.get_blueprint(colony.name, "web-server-deployment")
        _managed(owner, colony.name, "web-0", bp.blueprintid, 1)
    with server.client(key) as reconciler:
        p = reconciler.assign(colony.name, timeout=5)
        assert (p.spec.kwargs or {})["blueprintName"] == "web-server-deployment"
        reconciler.update_blueprint_status(colony.name, "web-server-deployment", {"replicas": 2, "generation": 1,
                                                                                  "error": "image not found"})
        reconciler.close(p.processid, ["ok"])
    report = json.loads(cli(env, "blueprint", "doctor", "--json").stdout)
    checks = {c["check"]: c for c in report[0]["checks"]}
    assert checks["status"] == {"check": "status", "ok": False, "message": "the last reconcile failed: image not found"}
    assert checks["replicas"]["message"] == "1/2 executors running for this blueprint"
    assert checks["handler"]["ok"] and checks["last reconcile"]["ok"]

    # It catches up: a second replica (started at a later generation still counts) and a clean status.
    with server.client(colony.colony_prvkey) as owner, server.client(key) as reconciler:
        _managed(owner, colony.name, "web-1", bp.blueprintid, 2)
        reconciler.update_blueprint_status(colony.name, "web-server-deployment", {"replicas": 2, "generation": 1})
    r = cli(env, "blueprint", "doctor", "--name", "web-server-deployment")
    assert r.returncode == 0, r.stdout
    assert "No issues found" in r.stdout and "reconciler-edge" in r.stdout and "SUCCESS" in r.stdout
    row = next(line for line in ok(cli(env, "blueprint", "ls")).splitlines() if "web-server-deployment" in line)
    assert row.count("replicas=2") == 2  # desired and observed


def _managed(owner: Any, colony: str, name: str, blueprint_id: str, gen: int) -> None:
    """Add and approve an executor that a reconciler runs for a blueprint (addexecutormsg with its id and
    generation, as the original's reconciler sends it)."""
    from colonies.client.core import Call

    msg = {"msgtype": "addexecutormsg", "executor": {
        "executorid": id_of(generate_prvkey()), "executorname": name, "executortype": "container-executor",
        "colonyname": colony, "blueprintid": blueprint_id, "blueprintgen": gen}}
    owner._run(Call(msg, None))
    owner.approve_executor(colony, name)
