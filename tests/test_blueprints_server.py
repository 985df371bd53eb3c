"""Blueprints on a real server (both backends), driven by pycolonies 1.0.25's blueprint calls and our SDK:
the reconcile process each change submits (funcname, kwargs, executor type, location), the cleanup on
remove, the reconcile cron of (kind, location) that lives exactly as long as its blueprints, the location a
blueprint creates, schema validation naming the field, generation and history, roles, limits, and what
removing a colony leaves (nothing).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from pycolonies import Colonies, ColoniesConnectionError

from colonies.blueprints import blueprint, blueprint_definition
from colonies.client.core import Call
from colonies.client.sync import Client
from colonies.errors import ClientError
from colonies.model import Process
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.server import blueprint_schema
from tests.conftest import ColonyKeys, ServerProc, fresh_pg_database, make_server, setup_colony

_names = itertools.count()
_HEX64 = re.compile(r"[0-9a-f]{64}")
HANDLER = "docker-reconciler"

# The original's example definition (examples/blueprints/executor-deployment-definition.json), as its CLI
# sends it: the colony filled in, no top-level kind.
DEFINITION: dict[str, Any] = {
    "metadata": {"name": "executor-deployment"},
    "spec": {
        "group": "compute.colonies.io", "version": "v1", "scope": "Namespaced",
        "names": {"kind": "ExecutorDeployment", "plural": "executordeployments", "singular": "executordeployment"},
        "schema": {
            "type": "object",
            "properties": {
                "image": {"type": "string", "description": "Container image to deploy"},
                "replicas": {"type": "number", "description": "Number of executor replicas to run", "default": 1},
                "executorType": {"type": "string"},
                "env": {"type": "object", "properties": {}},
                "ports": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "port": {"type": "number"},
                    "protocol": {"type": "string", "enum": ["TCP", "UDP"]}}}},
            },
            "required": ["image", "executorType"],
        },
        "handler": {"executorType": HANDLER, "functionName": "reconcile"},
    },
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with contextlib.ExitStack() as stack:
        env = {"COLONIES_CRON_CHECKER_PERIOD": "100"}
        if request.param == "postgresql":
            env.update({**stack.enter_context(fresh_pg_database()).server_env(), "COLONIES_ETCD_ENDPOINTS": ""})
        s = make_server(tmp_path_factory.mktemp(f"blueprints-{request.param}"), env)
        s.start()
        stack.callback(s.stop)
        yield s


@pytest.fixture
def col(srv: ServerProc) -> ColonyKeys:
    return setup_colony(srv, name=f"bp{next(_names)}")


@pytest.fixture
def py(srv: ServerProc) -> Colonies:
    return Colonies("127.0.0.1", srv.port)


@pytest.fixture
def owner(srv: ServerProc, col: ColonyKeys) -> Iterator[Client]:
    with srv.client(col.colony_prvkey) as c:
        yield c


@pytest.fixture
def user(srv: ServerProc, col: ColonyKeys) -> Iterator[Client]:
    with srv.client(col.user_prvkey) as c:
        yield c


def status_of(c: Client, msg: dict[str, Any]) -> tuple[int, str]:
    try:
        c._run(Call(msg, Any))
    except ClientError as e:
        return e.status, e.message
    return 200, ""


def definition(colony: str) -> dict[str, Any]:
    d = copy.deepcopy(DEFINITION)
    d["metadata"]["colonyname"] = colony
    return d


def deployment(colony: str, name: str, location: str = "", **spec: Any) -> dict[str, Any]:
    meta = {"name": name, "colonyname": colony, **({"locationname": location} if location else {})}
    return {"kind": "ExecutorDeployment", "metadata": meta,
            "spec": {"image": "nginx:1.21", "executorType": "container-executor", "replicas": 2, **spec}}


def waiting(user: Client, colony: str) -> list[Process]:
    """The colony's waiting processes for the handler, oldest first."""
    found = user.get_processes(colony, state=0, count=100, executortype=HANDLER)
    return sorted(found, key=lambda p: p.submissiontime)


def crons(user: Client, colony: str) -> dict[str, Any]:
    return {c.name: c for c in user.get_crons(colony)}


def test_pycolonies_calls_and_what_each_change_submits(srv: ServerProc, col: ColonyKeys, py: Colonies,
                                                        user: Client) -> None:
    d = py.add_blueprint_definition(definition(col.name), col.colony_prvkey)
    assert _HEX64.fullmatch(d["blueprintdefinitionid"]) and d["kind"] == "BlueprintDefinition"
    assert d["spec"]["handler"] == DEFINITION["spec"]["handler"] and d["spec"]["schema"] == DEFINITION["spec"]["schema"]
    assert py.get_blueprint_definition(col.name, "executor-deployment", col.user_prvkey) == d
    assert py.get_blueprint_definitions(col.name, col.executor_prvkey) == [d]

    added = py.add_blueprint(deployment(col.name, "web", location="edge"), col.user_prvkey)
    md = added["metadata"]
    assert _HEX64.fullmatch(added["blueprintid"]) and md["generation"] == 1 and "status" not in added
    assert md["createdAt"] == md["updatedAt"] != "0001-01-01T00:00:00Z"
    assert (md["name"], md["colonyname"], md["locationname"]) == ("web", col.name, "edge")

    # One reconcile process, for the handler's executor type at the blueprint's location.
    [p] = waiting(user, col.name)
    assert md["lastReconciliationProcess"] == p.processid
    assert (p.spec.funcname, p.spec.kwargs, p.spec.nodename) == (
        "reconcile", {"kind": "ExecutorDeployment", "blueprintName": "web"}, f"{HANDLER}-reconcile")
    assert (p.spec.conditions.executortype, p.spec.conditions.locationname) == (HANDLER, "edge")
    assert (p.initiatorid, p.initiatorname, p.spec.maxexectime, p.spec.maxretries) == (
        id_of(col.user_prvkey), f"{col.name}-user", -1, -1)
    # The reconcile cron of (kind, location), and the location the blueprint names.
    cron = crons(user, col.name)["reconcile-ExecutorDeployment-edge"]
    assert (cron.interval, cron.waitforprevprocessgraph) == (60, True)
    [node] = json.loads(cron.workflowspec)["functionspecs"]
    assert (node["funcname"], node["kwargs"], node["conditions"]["executortype"], node["conditions"]["locationname"]) \
        == ("reconcile", {"kind": "ExecutorDeployment"}, HANDLER, "edge")
    assert user.get_location(col.name, "edge").description == "Auto-created from blueprint web"

    got = py.get_blueprint(col.name, "web", col.executor_prvkey)
    assert got == added
    assert py.get_blueprints(col.name, col.user_prvkey, kind="ExecutorDeployment", location="edge") == [got]
    assert py.get_blueprints(col.name, col.user_prvkey, kind="Other") == []

    # A spec change: generation 2, history, one more process. The same spec again: nothing new.
    changed = {**got, "spec": {**got["spec"], "replicas": 3}}
    updated = py.update_blueprint(changed, col.user_prvkey)
    assert updated["metadata"]["generation"] == 2 and updated["spec"]["replicas"] == 3
    assert updated["metadata"]["createdAt"] == md["createdAt"]
    assert len(waiting(user, col.name)) == 2
    assert py.update_blueprint(changed, col.user_prvkey)["metadata"]["generation"] == 2
    assert len(waiting(user, col.name)) == 2
    forced = py.update_blueprint(changed, col.user_prvkey, force_generation=True)
    assert forced["metadata"]["generation"] == 3 and len(waiting(user, col.name)) == 3

    # Status: stored, seen on get, generation and history untouched; an update without status keeps it.
    assert py.update_blueprint_status(col.name, "web", {"ready": 3, "pods": ["a", "b", "c"]},
                                      col.executor_prvkey) == {}
    got = py.get_blueprint(col.name, "web", col.user_prvkey)
    assert got["status"] == {"ready": 3, "pods": ["a", "b", "c"]} and got["metadata"]["generation"] == 3
    assert py.update_blueprint({**changed, "metadata": got["metadata"]}, col.user_prvkey)["status"] == got["status"]
    history = py.get_blueprint_history(added["blueprintid"], col.user_prvkey)
    assert [(h["generation"], h["changetype"]) for h in history] == [(3, "update"), (2, "update"), (1, "create")]
    assert history[-1]["spec"] == added["spec"] and history[0]["changedby"] == id_of(col.user_prvkey)
    assert py.get_blueprint_history(added["blueprintid"], col.user_prvkey, limit=1) == history[:1]

    # reconcile: one process, returned; force passes force: true and bumps the generation.
    rec = py.reconcile_blueprint(col.name, "web", col.executor_prvkey)
    assert rec["spec"]["kwargs"] == {"kind": "ExecutorDeployment", "blueprintName": "web"}
    assert user.get_process(rec["processid"]).initiatorname == "executor-1"
    forced_p = py.reconcile_blueprint(col.name, "web", col.user_prvkey, force=True)
    assert forced_p["spec"]["kwargs"] == {"kind": "ExecutorDeployment", "blueprintName": "web", "force": True}
    after = py.get_blueprint(col.name, "web", col.user_prvkey)
    assert after["metadata"]["generation"] == 4 and after["metadata"]["lastReconciliationProcess"] == forced_p["processid"]
    assert after["status"] == got["status"]
    assert len(waiting(user, col.name)) == 5

    # remove: a cleanup process, the cron goes with the last blueprint of (kind, location), history too.
    assert py.remove_blueprint(col.name, "web", col.user_prvkey) == {}
    cleanup = waiting(user, col.name)[-1]
    assert (cleanup.spec.funcname, cleanup.spec.kwargs, cleanup.spec.nodename) == (
        "cleanup", {"blueprintName": "web", "kind": "ExecutorDeployment"}, f"{HANDLER}-cleanup")
    assert (cleanup.spec.conditions.executortype, cleanup.spec.conditions.locationname) == (HANDLER, "edge")
    assert "reconcile-ExecutorDeployment-edge" not in crons(user, col.name)
    with pytest.raises(ColoniesConnectionError, match="blueprint web not found"):
        py.get_blueprint(col.name, "web", col.user_prvkey)
    with pytest.raises(ColoniesConnectionError, match="not found"):
        py.get_blueprint_history(added["blueprintid"], col.user_prvkey)
    assert py.remove_blueprint_definition(col.name, "executor-deployment", col.colony_prvkey) == {}
    assert py.get_blueprint_definitions(col.name, col.user_prvkey) == []


def test_one_cron_per_kind_and_location(srv: ServerProc, col: ColonyKeys, owner: Client, user: Client) -> None:
    owner.add_blueprint_definition(definition(col.name))
    owner.add_blueprint_definition(blueprint_definition(col.name, "Volume", "storage-reconciler", reconcile_interval=1))
    for name, location in (("a", "hpc"), ("b", "hpc"), ("c", "")):
        user.add_blueprint(deployment(col.name, name, location))
    user.add_blueprint(blueprint(col.name, "Volume", "v", {"size": "1Gi"}))
    assert sorted(crons(user, col.name)) == ["reconcile-ExecutorDeployment", "reconcile-ExecutorDeployment-hpc",
                                             "reconcile-Volume"]
    assert crons(user, col.name)["reconcile-Volume"].interval == 1  # the handler's reconcileInterval
    user.remove_blueprint(col.name, "a")
    assert "reconcile-ExecutorDeployment-hpc" in crons(user, col.name)  # b is still there
    user.remove_blueprint(col.name, "b")
    assert sorted(crons(user, col.name)) == ["reconcile-ExecutorDeployment", "reconcile-Volume"]

    # The cron fires: a reconcile of the whole kind (kwargs {"kind"}), not again while it waits.
    deadline = time.monotonic() + 10
    fired: list[Process] = []
    while time.monotonic() < deadline and not fired:
        fired = [p for p in user.get_processes(col.name, state=0, executortype="storage-reconciler")
                 if "blueprintName" not in (p.spec.kwargs or {})]
        time.sleep(0.1)
    assert len(fired) == 1 and fired[0].spec.kwargs == {"kind": "Volume"} and fired[0].processgraphid
    time.sleep(1.5)
    assert len([p for p in user.get_processes(col.name, state=0, executortype="storage-reconciler")
                if "blueprintName" not in (p.spec.kwargs or {})]) == 1  # waitforprevprocessgraph

    # The definition cannot go while blueprints of its kind exist.
    assert status_of(owner, {"msgtype": "removeblueprintdefinitionmsg", "namespace": col.name,
                             "name": "volumes.colonies.io"}) == (
        409, (f"blueprint definition volumes.colonies.io is in use: 1 blueprint(s) of kind Volume exist in colony "
             f"{col.name}"))
    user.remove_blueprint(col.name, "v")
    owner.remove_blueprint_definition(col.name, "volumes.colonies.io")


def test_a_bad_spec_is_a_400_naming_the_field(col: ColonyKeys, owner: Client, user: Client) -> None:
    owner.add_blueprint_definition(definition(col.name))
    bad: dict[str, dict[str, Any]] = {
        "spec.image is required": {"executorType": "x"},
        "spec.replicas: 'three' is not of type 'number'": {"replicas": "three"},
        "spec.ports[1].protocol: 'SCTP' is not one of ['TCP', 'UDP']": {
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "SCTP"}]},
        "spec.ports[0].port: '80' is not of type 'number'": {"ports": [{"port": "80"}]},
    }
    for message, spec in bad.items():
        bp = deployment(col.name, "w")
        bp["spec"] = {k: v for k, v in {**bp["spec"], **spec}.items() if not (k == "image" and "image" in message)}
        status, text = status_of(user, {"msgtype": "addblueprintmsg", "blueprint": bp})
        assert (status, text) == (400, f"blueprint validation failed: {message}"), (message, text)
    assert user.get_blueprints(col.name) == [] and crons(user, col.name) == {}
    user.add_blueprint(deployment(col.name, "w"))
    # An update is checked too, and changes nothing when refused.
    refused = deployment(col.name, "w", replicas="many")
    assert status_of(user, {"msgtype": "updateblueprintmsg", "blueprint": refused}) == (
        400, "blueprint validation failed: spec.replicas: 'many' is not of type 'number'")
    assert user.get_blueprint(col.name, "w").spec["replicas"] == 2

    # A kind without a definition, a kind or location change, unknown names.
    assert status_of(user, {"msgtype": "addblueprintmsg", "blueprint": {**deployment(col.name, "x"), "kind": "Nope"}}) \
        == (400, f"no blueprint definition of kind Nope in colony {col.name}")
    assert status_of(user, {"msgtype": "updateblueprintmsg", "blueprint": deployment(col.name, "w", "moved")})[1] \
        .startswith("blueprint.metadata.locationname cannot change")
    assert status_of(user, {"msgtype": "updateblueprintmsg", "blueprint": deployment(col.name, "nobody")}) == (
        404, f"blueprint nobody not found in colony {col.name}")
    assert status_of(user, {"msgtype": "addblueprintmsg", "blueprint": deployment(col.name, "w")}) == (
        409, f"a blueprint named w already exists in colony {col.name}")
    for msg in ({"msgtype": "removeblueprintmsg", "namespace": col.name, "name": "nobody"},
                {"msgtype": "reconcileblueprintmsg", "namespace": col.name, "name": "nobody"},
                {"msgtype": "updateblueprintstatusmsg", "colonyname": col.name, "blueprintname": "nobody",
                 "status": {}},
                {"msgtype": "getblueprintdefinitionmsg", "colonyname": col.name, "name": "nobody"}):
        assert status_of(user, msg)[0] == 404, msg


def test_definitions_schemas_and_limits(col: ColonyKeys, owner: Client, user: Client) -> None:
    def add_def(**change: Any) -> tuple[int, str]:
        d = blueprint_definition(col.name, "K", HANDLER, name=f"k{next(_names)}")
        body = {"msgtype": "addblueprintdefinitionmsg", "blueprintdefinition": msgspec.to_builtins(d)}
        for path, value in change.items():
            node = body["blueprintdefinition"]
            *parents, last = path.split("__")
            for p in parents:
                node = node[p]
            node[last] = value
        return status_of(owner, body)

    assert add_def(spec__schema={"type": "objekt"})[1].startswith(
        "blueprintdefinition.spec.schema.type is not a valid JSON Schema")
    assert add_def(spec__schema={"properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}) == (
        400, ("blueprintdefinition.spec.schema.properties.name: the keyword 'pattern' is not supported (regular "
             "expressions could stall the server)"))
    assert add_def(spec__names__kind="P", spec__schema={"properties": {"pattern": {"type": "string"}}})[0] == 200
    assert add_def(spec__schema={"$ref": "http://127.0.0.1:9/x.json"}) == (
        400, "blueprintdefinition.spec.schema.$ref: only local references (#...) are supported")
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(blueprint_schema.MAX_SCHEMA_DEPTH // 2):
        deep = {"type": "object", "properties": {"a": deep}}  # 2 levels each
    assert add_def(spec__schema=deep)[1] == (
        f"blueprintdefinition.spec.schema is nested deeper than {blueprint_schema.MAX_SCHEMA_DEPTH} levels")
    assert add_def(spec__handler__executorType="")[1] == "blueprintdefinition.spec.handler.executorType is required"
    assert add_def(spec__names__kind="")[1] == "blueprintdefinition.spec.names.kind is required"
    assert add_def(metadata__name="x" * 257)[1] == "blueprintdefinition.metadata.name is longer than 256 characters"
    assert add_def(spec__handler__reconcileInterval=-1)[0] == 400
    assert add_def()[0] == 200
    assert add_def() == (409, f"colony {col.name} already has a blueprint definition of kind K")

    # Without a schema any spec goes; size and depth limits hold for spec and status.
    owner.add_blueprint_definition(blueprint_definition(col.name, "Free", HANDLER))
    user.add_blueprint(blueprint(col.name, "Free", "f", {"anything": [1, {"goes": True}]}))
    big = {"blob": "x" * blueprint_schema.MAX_DOC_BYTES}
    assert status_of(user, {"msgtype": "addblueprintmsg", "blueprint": blueprint(col.name, "Free", "g", big)}) == (
        400, f"blueprint.spec is larger than {blueprint_schema.MAX_DOC_BYTES} bytes of JSON")
    nested: Any = 1
    for _ in range(blueprint_schema.MAX_DOC_DEPTH + 1):
        nested = [nested]
    assert status_of(user, {"msgtype": "updateblueprintstatusmsg", "colonyname": col.name, "blueprintname": "f",
                            "status": {"n": nested}}) == (
        400, f"status is nested deeper than {blueprint_schema.MAX_DOC_DEPTH} levels")
    assert status_of(user, {"msgtype": "addblueprintmsg", "blueprint": blueprint(col.name, "Free", "", {})}) == (
        400, "blueprint.metadata.name is required")


def test_roles(srv: ServerProc, col: ColonyKeys, owner: Client, user: Client) -> None:
    owner.add_blueprint_definition(definition(col.name))
    # The colony owner adds, reads, updates and removes blueprints, but is no member: no status, no reconcile.
    added = owner.add_blueprint(deployment(col.name, "o"))
    [p] = waiting(user, col.name)
    assert (p.initiatorid, p.initiatorname) == (id_of(col.colony_prvkey), "")
    assert owner.get_blueprint(col.name, "o") == added
    assert owner.update_blueprint(deployment(col.name, "o", replicas=5)).metadata.generation == 2
    assert len(owner.get_blueprint_history(added.blueprintid)) == 2
    assert status_of(owner, {"msgtype": "updateblueprintstatusmsg", "colonyname": col.name, "blueprintname": "o",
                             "status": {"x": 1}})[0] == 403
    assert status_of(owner, {"msgtype": "reconcileblueprintmsg", "namespace": col.name, "name": "o"})[0] == 403
    # Members may not add or remove definitions; a pending executor and strangers may do nothing.
    assert status_of(user, {"msgtype": "addblueprintdefinitionmsg",
                            "blueprintdefinition": definition(col.name)})[0] == 403
    assert status_of(user, {"msgtype": "removeblueprintdefinitionmsg", "namespace": col.name,
                            "name": "executor-deployment"})[0] == 403
    pending = generate_prvkey()
    owner.add_executor(col.name, id_of(pending), "pending", "t")
    other = setup_colony(srv, name=f"other{next(_names)}")
    for key in (pending, other.colony_prvkey, other.user_prvkey):
        with srv.client(key) as c:
            for msg in ({"msgtype": "getblueprintmsg", "namespace": col.name, "name": "o"},
                        {"msgtype": "getblueprintsmsg", "namespace": col.name},
                        {"msgtype": "getblueprintdefinitionsmsg", "colonyname": col.name},
                        {"msgtype": "getblueprinthistorymsg", "blueprintid": added.blueprintid},
                        {"msgtype": "addblueprintmsg", "blueprint": deployment(col.name, "s")},
                        {"msgtype": "removeblueprintmsg", "namespace": col.name, "name": "o"}):
                assert status_of(c, msg)[0] == 403, (msg, key == pending)
    owner.remove_blueprint(col.name, "o")


def test_executors_carry_their_blueprint(srv: ServerProc, col: ColonyKeys, py: Colonies, user: Client) -> None:
    key = generate_prvkey()
    executor = {"executorname": "web-0", "executorid": id_of(key), "colonyname": col.name,
                "executortype": "container-executor", "blueprintid": "ab" * 32, "blueprintgen": 3}
    added = py.add_executor(executor, col.colony_prvkey)
    assert (added["blueprintid"], added["blueprintgen"]) == ("ab" * 32, 3)
    got = py.get_executor(col.name, "web-0", col.user_prvkey)
    assert (got["blueprintid"], got["blueprintgen"]) == ("ab" * 32, 3)
    assert user.get_executor(col.name, "web-0").blueprintgen == 3
    plain = py.get_executor(col.name, col.executor_name, col.user_prvkey)
    assert "blueprintid" not in plain and "blueprintgen" not in plain  # omitted when empty, as the original


def test_removing_a_colony_removes_its_blueprints(srv: ServerProc) -> None:
    keys = setup_colony(srv, name=f"gone{next(_names)}")
    with srv.client(keys.colony_prvkey) as owner, srv.client(keys.user_prvkey) as user:
        owner.add_blueprint_definition(definition(keys.name))
        user.add_blueprint(deployment(keys.name, "web", "edge"))
    with srv.client(srv.server_prvkey) as admin:
        admin.remove_colony(keys.name)
    again = setup_colony(srv, name=keys.name)
    with srv.client(again.colony_prvkey) as owner, srv.client(again.user_prvkey) as user:
        assert user.get_blueprints(keys.name) == [] and user.get_blueprint_definitions(keys.name) == []
        assert crons(user, keys.name) == {} and user.get_locations(keys.name) == []
        owner.add_blueprint_definition(definition(keys.name))  # the names are free again
        assert user.add_blueprint(deployment(keys.name, "web")).metadata.generation == 1
