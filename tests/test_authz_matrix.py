"""The authorization matrix: every /api message type × every kind of caller, generated from one table
(§2.1 with the §11 fixes). A cell is either "refused" (exactly 403) or "allowed" (anything but 403:
the call may still fail for a domain reason, e.g. 404 for a name that does not exist).

Adding a message type to `dispatch.HANDLERS` without a row in RULES fails `test_every_handler_has_a_row`
and that type's cells. tests/test_roles.py keeps its hand-picked refusals and positive controls.

Refused cells send a message that points at colony A's real objects (refusals change nothing). Allowed
cells of destructive types send a variant that leaves the shared world intact (ALLOWED_VARIANT), e.g.
closing a freshly assigned process rather than the world's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from colonies.client.core import Call
from colonies.client.sync import Client
from colonies.errors import ClientError
from colonies.model import File, Ref
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.server.dispatch import HANDLERS
from tests.conftest import ServerProc, make_server

A, B, TYPE, IDLE = "colony-a", "colony-b", "test", "idle"

# -- callers -----------------------------------------------------------------------------------------------------
SERVER = "server"                       # the server owner
OWNER, OWNER_B = "owner_a", "owner_b"   # colony owner of A (this colony) / of B (another)
USER, USER_B = "user", "user_b"         # a user of A / of B
EXE = "exe"                             # approved executor of A, assigned to the running process
EXE2 = "exe2"                           # approved executor of A, not assigned
PENDING, REJECTED, REMOVED = "pending", "rejected", "removed"            # executors of A
EXE_B, PENDING_B, REJECTED_B, REMOVED_B = "exe_b", "pending_b", "rejected_b", "removed_b"  # of B
STRANGER = "stranger"                   # an unknown key
CALLERS = (SERVER, OWNER, OWNER_B, USER, USER_B, EXE, EXE2, PENDING, REJECTED, REMOVED, EXE_B, PENDING_B,
           REJECTED_B, REMOVED_B, STRANGER)

# -- role rules (§2) ---------------------------------------------------------------------------------------------
S = frozenset({SERVER})                                   # server owner
CO = frozenset({OWNER})                                   # colony owner (not a member!)
M = frozenset({USER, EXE, EXE2})                          # approved member
M_ANY = M | {PENDING, REJECTED, REMOVED}                  # member in any executor state (M*)
EXECUTOR = frozenset({EXE, EXE2})                         # an approved executor
ASSIGNED = frozenset({EXE})                               # the executor the process is assigned to
SELF = frozenset({EXE})                                   # the executor named in the message (executor-1)
CHANNEL = frozenset({USER, EXE})                          # the process' initiator or assigned executor

RULES: dict[str, frozenset[str]] = {
    # colonies / server
    "addcolonymsg": S, "removecolonymsg": S, "getcoloniesmsg": S, "getcolonymsg": M,
    "getcolonystatsmsg": M, "getstatisticsmsg": S, "getclustermsg": S, "changecolonyidmsg": CO,
    "changeserveridmsg": S,
    # executors / users
    "addexecutormsg": CO, "approveexecutormsg": CO, "rejectexecutormsg": CO, "removeexecutormsg": CO,
    "getexecutorsmsg": M_ANY, "getexecutormsg": M, "getexecutorbyidmsg": M,
    "reportallocationmsg": SELF, "updateexecutormsg": SELF,
    "changeexecutoridmsg": frozenset({EXE, EXE2, PENDING, REJECTED, REMOVED}),
    "addusermsg": CO, "getusersmsg": M_ANY, "getusermsg": M_ANY, "getuserbyidmsg": M_ANY,
    "removeusermsg": CO, "changeuseridmsg": frozenset({USER}),
    # processes
    "submitfuncspecmsg": M, "assignprocessmsg": EXECUTOR, "getprocessmsg": M, "getprocessesmsg": M,
    "getprocesshistmsg": M, "closesuccessfulmsg": ASSIGNED, "closefailedmsg": ASSIGNED,
    "setoutputmsg": ASSIGNED, "cancelprocessmsg": M, "removeprocessmsg": M, "removeallprocessesmsg": CO,
    "pauseassignmentsmsg": CO, "resumeassignmentsmsg": CO, "getpausestatusmsg": M_ANY,
    "addattributemsg": ASSIGNED, "getattributemsg": M, "addfunctionmsg": SELF, "getfunctionsmsg": M,
    "removefunctionmsg": SELF, "getprocesseventsmsg": M,
    # workflows
    "submitworkflowspecmsg": M, "getprocessgraphmsg": M, "getprocessgraphsmsg": M,
    "removeprocessgraphmsg": M, "removeallprocessgraphsmsg": CO, "cancelprocessgraphmsg": M,
    "addchildmsg": ASSIGNED,
    # generators, crons, logs
    "addgeneratormsg": M, "getgeneratormsg": M, "resolvegeneratormsg": M, "getgeneratorsmsg": M,
    "packgeneratormsg": M, "removegeneratormsg": M, "addcronmsg": M, "getcronmsg": M, "getcronsmsg": M,
    "runcronmsg": M, "removecronmsg": M, "addlogmsg": ASSIGNED, "addexecutorlogmsg": SELF, "getlogsmsg": M,
    "searchlogsmsg": M,
    # channels (process initiator or assigned executor)
    "channelappendmsg": CHANNEL, "channelreadmsg": CHANNEL,
    # files and snapshots: users and approved executors (§7.1), the owner's key alone is not a member
    "addfilemsg": M, "getfilemsg": M, "getfilesmsg": M, "getfilelabelsmsg": M, "removefilemsg": M,
    "createsnapshotmsg": M, "getsnapshotmsg": M, "getsnapshotsmsg": M, "removesnapshotmsg": M,
    "removeallsnapshotmsg": M,
    # locations: the colony owner adds and removes; members read, executors in any state too (§7.1)
    "addlocationmsg": CO, "removelocationmsg": CO, "getlocationsmsg": M_ANY, "getlocationmsg": M_ANY,
    # blueprints: the colony owner adds and removes definitions; members and the owner read them and work
    # with blueprints; only members report status and reconcile (§2.1, §7.1)
    "addblueprintdefinitionmsg": CO, "removeblueprintdefinitionmsg": CO, "getblueprintdefinitionmsg": M | CO,
    "getblueprintdefinitionsmsg": M | CO, "addblueprintmsg": M | CO, "getblueprintmsg": M | CO,
    "getblueprintsmsg": M | CO, "updateblueprintmsg": M | CO, "removeblueprintmsg": M | CO,
    "getblueprinthistorymsg": M | CO, "updateblueprintstatusmsg": M, "reconcileblueprintmsg": M,
}


def _spec(colony: str, etype: str = IDLE, name: str = "n") -> dict[str, Any]:
    """No executor serves type IDLE, so processes submitted by the sweep are never assigned."""
    return {"nodename": name, "funcname": "f", "maxexectime": -1, "maxwaittime": -1, "maxretries": -1,
            "conditions": {"colonyname": colony, "executortype": etype}}


def _workflow(colony: str, etype: str = IDLE) -> dict[str, Any]:
    return {"colonyname": colony, "functionspecs": [_spec(colony, etype)]}


@dataclass
class World:
    srv: ServerProc
    keys: dict[str, str]
    clients: dict[str, Client] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def call(self, role: str, msg: dict[str, Any]) -> Any:
        return self.clients[role]._run(Call(msg, Any))

    def status(self, role: str, msg: dict[str, Any]) -> int:
        try:
            self.call(role, msg)
        except ClientError as e:
            return e.status
        return 200

    # Fresh objects for allowed cells of destructive types.
    def fresh_running(self) -> str:
        """A standalone process of type TYPE assigned to EXE (nothing else of that type waits)."""
        pid = self.call(USER, {"msgtype": "submitfuncspecmsg", "spec": _spec(A, TYPE)})["processid"]
        got = self.call(EXE, {"msgtype": "assignprocessmsg", "colonyname": A, "timeout": 5})
        assert got["processid"] == pid
        return str(pid)

    def fresh_waiting(self) -> str:
        return str(self.call(USER, {"msgtype": "submitfuncspecmsg", "spec": _spec(A)})["processid"])

    def fresh_graph(self) -> str:
        return str(self.call(USER, {"msgtype": "submitworkflowspecmsg", "spec": _workflow(A)})["processgraphid"])

    def fresh_file(self) -> str:
        return self.clients[USER].add_file(File(**_file(A))).fileid

    def fresh_snapshot(self) -> str:
        return self.clients[USER].create_snapshot(A, FS_LABEL, f"s-{uuid.uuid4().hex[:8]}").snapshotid

    def fresh_location(self) -> str:
        return self.clients[OWNER].add_location(A, f"l-{uuid.uuid4().hex[:8]}").name

    def fresh_blueprint(self) -> str:
        return self.clients[USER].add_blueprint(_blueprint(f"b-{uuid.uuid4().hex[:8]}")).metadata.name

    def fresh_definition(self) -> str:
        return self.clients[OWNER].add_blueprint_definition(_definition(f"K{uuid.uuid4().hex[:8]}")).metadata.name


FS_LABEL = "/authz"
SITE = "site"
KIND, BLUEPRINT = "Authz", "bp"


def _definition(kind: str) -> dict[str, Any]:
    """Reconciled by executors of type IDLE: nothing the sweep submits is ever assigned."""
    return {"metadata": {"name": f"d-{kind}", "colonyname": A},
            "spec": {"names": {"kind": kind}, "handler": {"executorType": IDLE, "functionName": "reconcile"}}}


def _blueprint(name: str) -> dict[str, Any]:
    return {"kind": KIND, "metadata": {"name": name, "colonyname": A}, "spec": {"n": 1}}


def _file(colony: str) -> dict[str, Any]:
    return {"colonyname": colony, "label": FS_LABEL, "name": "f", "size": 1, "checksum": "ab" * 32,
            "checksumalg": "SHA256", "ref": Ref(protocol="s3")}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    srv = make_server(tmp_path_factory.mktemp("authz"))
    srv.start()
    keys = {role: generate_prvkey() for role in CALLERS if role != SERVER}
    keys[SERVER] = srv.server_prvkey
    admin = Client("127.0.0.1", srv.port, prvkey=srv.server_prvkey)
    w = World(srv, keys, {role: admin.with_key(k) for role, k in keys.items()})
    try:
        admin.add_colony(id_of(keys[OWNER]), A)
        admin.add_colony(id_of(keys[OWNER_B]), B)
        for colony, owner, user, exes in (
                (A, OWNER, USER, ((EXE, "executor-1"), (EXE2, "executor-2"), (PENDING, "pending"),
                                  (REJECTED, "rejected"), (REMOVED, "removed"))),
                (B, OWNER_B, USER_B, ((EXE_B, "executor-1"), (PENDING_B, "pending"), (REJECTED_B, "rejected"),
                                      (REMOVED_B, "removed")))):
            o = w.clients[owner]
            o.add_user(colony, id_of(keys[user]), f"{colony}-user")
            for role, name in exes:
                o.add_executor(colony, id_of(keys[role]), name, TYPE)
            o.approve_executor(colony, exes[0][1])
            if colony == A:
                o.approve_executor(colony, "executor-2")
            o.reject_executor(colony, "rejected")
            o.remove_executor(colony, "removed")
        # The running process is a workflow root (so addchild applies), assigned to EXE.
        graph = w.call(USER, {"msgtype": "submitworkflowspecmsg", "spec": _workflow(A, TYPE)})["processgraphid"]
        running = w.call(EXE, {"msgtype": "assignprocessmsg", "colonyname": A, "timeout": 5})
        assert running["processgraphid"] == graph
        w.ids.update(running=running["processid"], graph=graph, waiting=w.fresh_waiting())
        w.ids["attribute"] = w.call(EXE, {"msgtype": "addattributemsg", "attribute": {
            "targetid": w.ids["running"], "key": "k", "value": "v", "attributetype": 1}})["attributeid"]
        w.ids["function"] = w.call(EXE, {"msgtype": "addfunctionmsg", "fun": {
            "colonyname": A, "executorname": "executor-1", "funcname": "echo"}})["functionid"]
        w.ids["generator"] = w.clients[USER].add_generator(A, "gen", _json(_workflow(A)), 10).generatorid
        w.ids["cron"] = w.clients[USER].add_cron(A, "cron", _json(_workflow(A)), interval=3600).cronid
        w.ids["file"], w.ids["snapshot"] = w.fresh_file(), w.fresh_snapshot()
        w.ids["location"] = w.clients[OWNER].add_location(A, SITE, "the world's site", 10.5, 59.25).name
        w.clients[OWNER].add_blueprint_definition(_definition(KIND))
        w.ids["blueprint"] = w.clients[USER].add_blueprint(_blueprint(BLUEPRINT)).blueprintid
        yield w
    finally:
        admin.close_client()
        srv.stop()


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj)


def generic(w: World, msgtype: str) -> dict[str, Any]:
    """A message of `msgtype` pointing at colony A's real objects (Go-style decoding ignores the fields
    a type does not have, so one dict serves every type)."""
    new_id = id_of(generate_prvkey())
    ids = w.ids
    return {
        "msgtype": msgtype, "colonyname": A, "executorname": "executor-1", "name": f"{A}-user",
        "processid": ids["running"], "processgraphid": ids["graph"], "attributeid": ids["attribute"],
        "functionid": ids["function"], "executorid": id_of(w.keys[EXE]), "userid": id_of(w.keys[USER]),
        "colonyid": new_id, "serverid": new_id, "timeout": -1, "count": 10, "state": 0, "seconds": 60,
        "parentprocessid": ids["running"], "childprocessid": "", "insert": False,
        "generatorid": ids["generator"], "generatorname": "gen", "cronid": ids["cron"], "arg": "x",
        "colony": {"colonyid": new_id, "name": f"new-{uuid.uuid4().hex[:8]}"},
        "executor": {"colonyname": A, "executorid": new_id, "executorname": f"e-{new_id[:8]}", "executortype": TYPE},
        "user": {"colonyname": A, "userid": new_id, "name": f"u-{new_id[:8]}"},
        "attribute": {"targetid": ids["running"], "key": f"k-{new_id[:8]}", "value": "v", "attributetype": 1},
        "fun": {"colonyname": A, "executorname": "executor-1", "funcname": f"f-{new_id[:8]}"},
        "generator": {"colonyname": A, "name": f"g-{new_id[:8]}", "workflowspec": _json(_workflow(A)),
                      "trigger": 5, "timeout": 60},
        "cron": {"colonyname": A, "name": f"c-{new_id[:8]}", "workflowspec": _json(_workflow(A)), "interval": 3600},
        "spec": {**_spec(A), **_workflow(A)}, "out": ["x"], "errors": ["x"], "message": "hello",
        "text": "hello", "days": 1, "allocations": {}, "capabilities": {}, "payload": "aGk=", "sequence": 1,
        "afterseq": 0, "limit": 10,
        "fileid": ids["file"], "label": FS_LABEL, "snapshotid": ids["snapshot"], "latest": True,
        "file": {**_file(A), "ref": {"protocol": "s3"}},
        "location": {"colonyname": A, "name": f"l-{new_id[:8]}", "description": "d", "long": 1.5, "lat": -2.5},
        "namespace": A, "blueprintname": BLUEPRINT, "blueprintid": ids["blueprint"], "status": {"seen": 1},
        "kind": "", "force": False, "forcegeneration": False,
        "blueprintdefinition": _definition(f"K{new_id[:8]}"), "blueprint": _blueprint(BLUEPRINT),
    }


def _running_variant(w: World, msg: dict[str, Any]) -> dict[str, Any]:
    return {**msg, "processid": w.fresh_running()}


def _remove_function(w: World, msg: dict[str, Any]) -> dict[str, Any]:
    f = w.call(EXE, {"msgtype": "addfunctionmsg", "fun": {"colonyname": A, "executorname": "executor-1",
                                                         "funcname": f"tmp-{uuid.uuid4().hex[:8]}"}})
    return {**msg, "functionid": f["functionid"]}


# Allowed cells of destructive types: a variant that keeps the world as it is.
ALLOWED_VARIANT: dict[str, Callable[[World, dict[str, Any]], dict[str, Any]]] = {
    "removecolonymsg": lambda w, m: {**m, "colonyname": "no-such-colony"},
    "changeserveridmsg": lambda w, m: {**m, "serverid": "not-an-id"},
    "changecolonyidmsg": lambda w, m: {**m, "colonyid": "not-an-id"},
    "changeuseridmsg": lambda w, m: {**m, "userid": "not-an-id"},
    "changeexecutoridmsg": lambda w, m: {**m, "executorid": "not-an-id"},
    "approveexecutormsg": lambda w, m: {**m, "executorname": "nobody"},
    "rejectexecutormsg": lambda w, m: {**m, "executorname": "nobody"},
    "removeexecutormsg": lambda w, m: {**m, "executorname": "nobody"},
    "removeusermsg": lambda w, m: {**m, "name": "nobody"},
    "removeallprocessesmsg": lambda w, m: {**m, "state": 3},
    "removeallprocessgraphsmsg": lambda w, m: {**m, "state": 3},
    "closesuccessfulmsg": _running_variant,
    "closefailedmsg": _running_variant,
    "cancelprocessmsg": lambda w, m: {**m, "processid": w.fresh_waiting()},
    "removeprocessmsg": lambda w, m: {**m, "processid": w.fresh_waiting()},
    "removeprocessgraphmsg": lambda w, m: {**m, "processgraphid": w.fresh_graph()},
    "cancelprocessgraphmsg": lambda w, m: {**m, "processgraphid": w.fresh_graph()},
    "removefunctionmsg": _remove_function,
    "removegeneratormsg": lambda w, m: {**m, "generatorid": w.clients[USER].add_generator(
        A, f"g-{uuid.uuid4().hex[:8]}", _json(_workflow(A)), 10).generatorid},
    "removecronmsg": lambda w, m: {**m, "cronid": w.clients[USER].add_cron(
        A, f"c-{uuid.uuid4().hex[:8]}", _json(_workflow(A)), interval=3600).cronid},
    "removefilemsg": lambda w, m: {**m, "fileid": w.fresh_file()},
    "createsnapshotmsg": lambda w, m: {**m, "name": f"s-{uuid.uuid4().hex[:8]}"},
    "removesnapshotmsg": lambda w, m: {**m, "snapshotid": w.fresh_snapshot()},
    "getlocationmsg": lambda w, m: {**m, "name": SITE},
    "removelocationmsg": lambda w, m: {**m, "name": w.fresh_location()},
    "getblueprintmsg": lambda w, m: {**m, "name": BLUEPRINT},
    "reconcileblueprintmsg": lambda w, m: {**m, "name": BLUEPRINT},
    "addblueprintmsg": lambda w, m: {**m, "blueprint": _blueprint(f"b-{uuid.uuid4().hex[:8]}")},
    "removeblueprintmsg": lambda w, m: {**m, "name": w.fresh_blueprint()},
    "removeblueprintdefinitionmsg": lambda w, m: {**m, "name": w.fresh_definition()},
}


def test_every_handler_has_a_row() -> None:
    assert set(HANDLERS) - set(RULES) == set(), "message types without an authorization rule"
    assert set(RULES) - set(HANDLERS) == set(), "rules for message types that are not served"


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("msgtype", sorted(HANDLERS))
def test_matrix(world: World, msgtype: str, caller: str) -> None:
    allowed = caller in RULES[msgtype]
    msg = generic(world, msgtype)
    if allowed and msgtype in ALLOWED_VARIANT:
        msg = ALLOWED_VARIANT[msgtype](world, msg)
    status = world.status(caller, msg)
    if msgtype == "pauseassignmentsmsg" and status == 200:
        assert world.status(caller, {**msg, "msgtype": "resumeassignmentsmsg"}) == 200
    if allowed:
        assert status != 403, f"{caller} was refused {msgtype}"
        assert status != 500, f"{caller} got a 500 for {msgtype}"
    else:
        assert status == 403, f"{caller} got {status} for {msgtype}, expected 403"


def test_world_is_intact(world: World) -> None:
    """Run last in the module: the sweep changed nothing it was not allowed to."""
    p = world.call(USER, {"msgtype": "getprocessmsg", "processid": world.ids["running"]})
    assert p["state"] == 1 and p["assignedexecutorid"] == id_of(world.keys[EXE])
    states = {e["executorname"]: e["state"] for e in world.call(USER, {"msgtype": "getexecutorsmsg", "colonyname": A})
              if e["executorname"] in ("executor-1", "executor-2", "pending", "rejected", "removed")}
    assert states == {"executor-1": 1, "executor-2": 1, "pending": 0, "rejected": 2, "removed": 3}
    assert world.call(USER, {"msgtype": "getpausestatusmsg", "colonyname": A})["ispaused"] is False
    site = world.call(USER, {"msgtype": "getlocationmsg", "colonyname": A, "name": SITE})
    assert (site["description"], site["long"], site["lat"]) == ("the world's site", 10.5, 59.25)
    bp = world.call(USER, {"msgtype": "getblueprintmsg", "namespace": A, "name": BLUEPRINT})
    assert (bp["blueprintid"], bp["spec"], bp["metadata"]["generation"]) == (world.ids["blueprint"], {"n": 1}, 1)
    names = sorted(c["name"] for c in world.call(SERVER, {"msgtype": "getcoloniesmsg"}))
    assert A in names and B in names
