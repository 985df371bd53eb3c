"""The SDK core: builds signed requests and decodes replies. No I/O here.

Each API method returns a `Call`: the message to send and how to decode the reply. The shells in
`sync.py` (httpx) and `asyncio.py` (aiohttp) only send it, as the body `signed_envelope` builds.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from colonies.errors import ClientError, TransportError
from colonies.model import (
    Attribute,
    Blueprint,
    BlueprintDefinition,
    BlueprintHistory,
    Colony,
    Conditions,
    Cron,
    Executor,
    File,
    FileData,
    Function,
    FunctionSpec,
    Label,
    Location,
    Log,
    Process,
    ProcessEvent,
    ProcessGraph,
    ServerInfo,
    Snapshot,
    Statistics,
    User,
    WorkflowSpec,
)
from colonies.model import Generator as WorkflowGenerator  # not collections.abc.Generator
from colonies.protocol import crypto, envelope
from colonies.replay import stamp

T = TypeVar("T")
_enc = msgspec.json.Encoder()
_failure = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True)
class Call(Generic[T]):
    msg: dict[str, Any]
    reply: type[T] | Any
    timeout: float | None = None


HEADERS = {"Content-Type": "application/json"}


def signed_envelope(msg: dict[str, Any], prvkey: str) -> bytes:
    """The request body: `msg` with a fresh timestamp and nonce (colonies.replay), base64 encoded and
    signed with `prvkey`, which never leaves the process. An empty key sends it unsigned (versionmsg)."""
    payload = envelope._b64(_enc.encode(stamp(msg)))
    signature = crypto.sign(payload, prvkey) if prvkey else ""
    return _enc.encode({"payloadtype": msg["msgtype"], "payload": payload, "signature": signature})


def tls_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """`verify` for httpx, or `ssl` for aiohttp: True (system trust), False, or a CA bundle path turned
    into an SSL context (httpx deprecates passing the path itself)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def decode(call: Call[T], status: int, body: bytes) -> T:
    try:
        _, payload, is_error = envelope.decode_reply(body)
    except Exception as exc:  # noqa: BLE001 - whatever fails to decode is a bad reply
        if status in (502, 503, 504):  # a proxy or a pilot relay answered: the server was not reached
            raise TransportError(f"no reply from the server (HTTP {status} from a proxy or relay: "
                                 f"{body[:200].decode(errors='replace').strip()})") from None
        raise ClientError(status, f"invalid reply from server: {exc}") from None
    if is_error or status != 200:
        failure = _failure.decode(payload)
        raise ClientError(int(failure.get("status", status)), str(failure.get("message", "")))
    if call.reply is None:
        return None  # type: ignore[return-value]
    return msgspec.json.decode(payload, type=call.reply)


def func_spec(funcname: str, colony: str, executortype: str, args: list[Any] | None = None,
              kwargs: dict[str, Any] | None = None, priority: int = 0, maxexectime: int = -1,
              maxwaittime: int = -1, maxretries: int = -1, executornames: list[str] | None = None,
              env: dict[str, str] | None = None, label: str = "", nodename: str = "",
              dependencies: list[str] | None = None) -> FunctionSpec:
    """A FunctionSpec with the common fields; deadlines <= 0 mean no limit."""
    return FunctionSpec(
        nodename=nodename or funcname, funcname=funcname, args=args or [], kwargs=kwargs or {},
        priority=priority, maxexectime=maxexectime, maxwaittime=maxwaittime, maxretries=maxretries,
        env=env or {}, label=label,
        conditions=Conditions(colonyname=colony, executortype=executortype, executornames=executornames,
                              dependencies=dependencies or []),
    )


def _fenced(msg: dict[str, Any], attempt: int | None) -> dict[str, Any]:
    """`msg` with the attempt fence (our extension field `attempt`), when one is given."""
    return msg if attempt is None else {**msg, "attempt": attempt}


def _b(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


class ClientCore:
    """Every API call as data. Shells call `self._run(call)`."""

    # -- colonies, executors, users --------------------------------------------------------------------
    def add_colony(self, colony_id: str, name: str) -> Call[Colony]:
        return Call({"msgtype": "addcolonymsg", "colony": {"colonyid": colony_id, "name": name}}, Colony)

    def remove_colony(self, name: str) -> Call[None]:
        return Call({"msgtype": "removecolonymsg", "colonyname": name}, None)

    def get_colonies(self) -> Call[list[Colony]]:
        return Call({"msgtype": "getcoloniesmsg"}, list[Colony] | None)

    def get_colony(self, name: str) -> Call[Colony]:
        return Call({"msgtype": "getcolonymsg", "colonyname": name}, Colony)

    def colony_stats(self, name: str) -> Call[Statistics]:
        return Call({"msgtype": "getcolonystatsmsg", "colonyname": name}, Statistics)

    def statistics(self) -> Call[Statistics]:
        return Call({"msgtype": "getstatisticsmsg"}, Statistics)

    def add_executor(self, colony: str, executor_id: str, name: str, executortype: str,
                     location: str = "", blueprint_id: str = "", blueprint_gen: int = 0) -> Call[Executor]:
        """Add an executor (colony owner). `blueprint_id`/`blueprint_gen`: the blueprint that manages it and
        the generation it was started for (a reconciler's executors; omitted when empty)."""
        e: dict[str, Any] = {"colonyname": colony, "executorid": executor_id, "executorname": name,
                             "executortype": executortype, "locationname": location}
        if blueprint_id:
            e["blueprintid"] = blueprint_id
        if blueprint_gen:
            e["blueprintgen"] = blueprint_gen
        return Call({"msgtype": "addexecutormsg", "executor": e}, Executor)

    def approve_executor(self, colony: str, name: str) -> Call[None]:
        return Call({"msgtype": "approveexecutormsg", "colonyname": colony, "executorname": name}, None)

    def reject_executor(self, colony: str, name: str) -> Call[None]:
        return Call({"msgtype": "rejectexecutormsg", "colonyname": colony, "executorname": name}, None)

    def remove_executor(self, colony: str, name: str) -> Call[None]:
        return Call({"msgtype": "removeexecutormsg", "colonyname": colony, "executorname": name}, None)

    def report_allocation(self, colony: str, executor_name: str, projects: dict[str, Any]) -> Call[None]:
        """Report this executor's allocations (`Executor.allocations.projects`; the executor itself signs)."""
        return Call({"msgtype": "reportallocationmsg", "colonyname": colony, "executorname": executor_name,
                     "allocations": {"projects": projects}}, None)

    def get_executors(self, colony: str) -> Call[list[Executor]]:
        return Call({"msgtype": "getexecutorsmsg", "colonyname": colony}, list[Executor] | None)

    def get_executor(self, colony: str, name: str) -> Call[Executor]:
        return Call({"msgtype": "getexecutormsg", "colonyname": colony, "executorname": name}, Executor)

    def add_user(self, colony: str, user_id: str, name: str, email: str = "", phone: str = "") -> Call[User]:
        u = {"colonyname": colony, "userid": user_id, "name": name, "email": email, "phone": phone}
        return Call({"msgtype": "addusermsg", "user": u}, User)

    def get_users(self, colony: str) -> Call[list[User]]:
        return Call({"msgtype": "getusersmsg", "colonyname": colony}, list[User] | None)

    def remove_user(self, colony: str, name: str) -> Call[None]:
        return Call({"msgtype": "removeusermsg", "colonyname": colony, "name": name}, None)

    # -- processes --------------------------------------------------------------------------------------
    def submit(self, spec: FunctionSpec) -> Call[Process]:
        return Call({"msgtype": "submitfuncspecmsg", "spec": _b(spec)}, Process)

    def assign(self, colony: str, timeout: int = 10, cpu: str = "", mem: str = "", exectime: int = 0) -> Call[Process]:
        """`exectime` (our extension, seconds): only a process with 0 < maxexectime <= exectime is assigned."""
        msg: dict[str, Any] = {"msgtype": "assignprocessmsg", "colonyname": colony, "timeout": timeout,
                               "availablecpu": cpu, "availablemem": mem}
        if exectime > 0:
            msg["availableexectime"] = exectime
        return Call(msg, Process, timeout=(timeout + 10) if timeout > 0 else None)

    def get_process(self, process_id: str) -> Call[Process]:
        return Call({"msgtype": "getprocessmsg", "processid": process_id}, Process)

    def get_processes(self, colony: str, state: int = -1, count: int = 100, executortype: str = "",
                      label: str = "", initiator: str = "", processgraphid: str = "") -> Call[list[Process]]:
        msg = {"msgtype": "getprocessesmsg", "colonyname": colony, "state": state, "count": count,
               "executortype": executortype, "label": label, "initiator": initiator,
               "processgraphid": processgraphid}
        return Call(msg, list[Process] | None)

    # `attempt`: the `retries` of the Process you were assigned. When given, the server refuses (403) a
    # call for an attempt that timed out and was re-queued, even if the same executor holds it again.
    def close(self, process_id: str, output: list[Any] | None = None, attempt: int | None = None) -> Call[None]:
        msg = {"msgtype": "closesuccessfulmsg", "processid": process_id, "out": output or []}
        return Call(_fenced(msg, attempt), None)

    def fail(self, process_id: str, errors: list[str] | None = None, attempt: int | None = None) -> Call[None]:
        msg = {"msgtype": "closefailedmsg", "processid": process_id, "errors": errors or []}
        return Call(_fenced(msg, attempt), None)

    def set_output(self, process_id: str, output: list[Any], attempt: int | None = None) -> Call[None]:
        return Call(_fenced({"msgtype": "setoutputmsg", "processid": process_id, "out": output}, attempt), None)

    def cancel(self, process_id: str) -> Call[None]:
        return Call({"msgtype": "cancelprocessmsg", "processid": process_id}, None)

    def remove_process(self, process_id: str) -> Call[None]:
        return Call({"msgtype": "removeprocessmsg", "processid": process_id}, None)

    def remove_all_processes(self, colony: str, state: int = -1) -> Call[None]:
        return Call({"msgtype": "removeallprocessesmsg", "colonyname": colony, "state": state}, None)

    def pause(self, colony: str) -> Call[None]:
        return Call({"msgtype": "pauseassignmentsmsg", "colonyname": colony}, None)

    def resume(self, colony: str) -> Call[None]:
        return Call({"msgtype": "resumeassignmentsmsg", "colonyname": colony}, None)

    def add_attribute(self, process_id: str, key: str, value: str, attributetype: int = 1,
                      attempt: int | None = None) -> Call[Attribute]:
        a = {"targetid": process_id, "key": key, "value": value, "attributetype": attributetype}
        return Call(_fenced({"msgtype": "addattributemsg", "attribute": a}, attempt), Attribute)

    def add_function(self, colony: str, executor_name: str, funcname: str, description: str = "") -> Call[Function]:
        f = {"colonyname": colony, "executorname": executor_name, "funcname": funcname, "description": description}
        return Call({"msgtype": "addfunctionmsg", "fun": f}, Function)

    def get_functions(self, colony: str, executor_name: str = "") -> Call[list[Function]]:
        return Call({"msgtype": "getfunctionsmsg", "colonyname": colony, "executorname": executor_name},
                    list[Function] | None)

    def process_events(self, process_id: str) -> Call[list[ProcessEvent]]:
        return Call({"msgtype": "getprocesseventsmsg", "processid": process_id}, list[ProcessEvent] | None)

    def version(self) -> Call[dict[str, Any]]:
        return Call({"msgtype": "versionmsg"}, dict[str, Any])

    # -- workflows -------------------------------------------------------------------------------------------
    def submit_workflow(self, workflow: WorkflowSpec) -> Call[ProcessGraph]:
        return Call({"msgtype": "submitworkflowspecmsg", "spec": _b(workflow)}, ProcessGraph)

    def get_processgraph(self, graph_id: str) -> Call[ProcessGraph]:
        return Call({"msgtype": "getprocessgraphmsg", "processgraphid": graph_id}, ProcessGraph)

    def get_processgraphs(self, colony: str, state: int = -1, count: int = 100) -> Call[list[ProcessGraph]]:
        msg = {"msgtype": "getprocessgraphsmsg", "colonyname": colony, "state": state, "count": count}
        return Call(msg, list[ProcessGraph] | None)

    def cancel_processgraph(self, graph_id: str) -> Call[None]:
        return Call({"msgtype": "cancelprocessgraphmsg", "processgraphid": graph_id}, None)

    def remove_processgraph(self, graph_id: str) -> Call[None]:
        return Call({"msgtype": "removeprocessgraphmsg", "processgraphid": graph_id}, None)

    def add_child(self, graph_id: str, parent_id: str, spec: FunctionSpec, child_id: str = "",
                  insert: bool = False) -> Call[Process]:
        msg = {"msgtype": "addchildmsg", "processgraphid": graph_id, "parentprocessid": parent_id,
               "childprocessid": child_id, "spec": _b(spec), "insert": insert}
        return Call(msg, Process)

    # -- generators, crons and logs ----------------------------------------------------------------------
    def add_generator(self, colony: str, name: str, workflow: WorkflowSpec | str, trigger: int,
                      timeout: int = 0) -> Call[WorkflowGenerator]:
        """`workflow` as a WorkflowSpec or its JSON text; fires every `trigger` packed args, or after
        `timeout` s with whatever is queued."""
        text = workflow if isinstance(workflow, str) else _enc.encode(workflow).decode()
        g = {"colonyname": colony, "name": name, "workflowspec": text, "trigger": trigger, "timeout": timeout}
        return Call({"msgtype": "addgeneratormsg", "generator": g}, WorkflowGenerator)

    def get_generator(self, generator_id: str) -> Call[WorkflowGenerator]:
        return Call({"msgtype": "getgeneratormsg", "generatorid": generator_id}, WorkflowGenerator)

    def resolve_generator(self, colony: str, name: str) -> Call[WorkflowGenerator]:
        msg = {"msgtype": "resolvegeneratormsg", "colonyname": colony, "generatorname": name}
        return Call(msg, WorkflowGenerator)

    def get_generators(self, colony: str, count: int = 100) -> Call[list[WorkflowGenerator]]:
        msg = {"msgtype": "getgeneratorsmsg", "colonyname": colony, "count": count}
        return Call(msg, list[WorkflowGenerator] | None)

    def pack_generator(self, generator_id: str, arg: str) -> Call[None]:
        return Call({"msgtype": "packgeneratormsg", "generatorid": generator_id, "arg": arg}, None)

    def remove_generator(self, generator_id: str) -> Call[None]:
        return Call({"msgtype": "removegeneratormsg", "generatorid": generator_id, "all": False}, None)

    def add_cron(self, colony: str, name: str, workflow: WorkflowSpec | str, cronexpression: str = "",
                 interval: int = -1, random: bool = False, waitforprevprocessgraph: bool = False) -> Call[Cron]:
        """`interval` -1 uses `cronexpression`; `random` picks a random time within each interval."""
        text = workflow if isinstance(workflow, str) else _enc.encode(workflow).decode()
        c = {"colonyname": colony, "name": name, "workflowspec": text, "cronexpression": cronexpression,
             "interval": interval, "random": random, "waitforprevprocessgraph": waitforprevprocessgraph}
        return Call({"msgtype": "addcronmsg", "cron": c}, Cron)

    def get_cron(self, cron_id: str) -> Call[Cron]:
        return Call({"msgtype": "getcronmsg", "cronid": cron_id}, Cron)

    def get_crons(self, colony: str, count: int = 100) -> Call[list[Cron]]:
        return Call({"msgtype": "getcronsmsg", "colonyname": colony, "count": count}, list[Cron] | None)

    def run_cron(self, cron_id: str) -> Call[Cron]:
        return Call({"msgtype": "runcronmsg", "cronid": cron_id}, Cron)

    def remove_cron(self, cron_id: str) -> Call[None]:
        return Call({"msgtype": "removecronmsg", "cronid": cron_id, "all": False}, None)

    def add_log(self, process_id: str, message: str) -> Call[None]:
        return Call({"msgtype": "addlogmsg", "processid": process_id, "message": message}, None)

    def add_executor_log(self, colony: str, executor_name: str, message: str) -> Call[None]:
        return Call({"msgtype": "addexecutorlogmsg", "colonyname": colony, "executorname": executor_name,
                     "message": message}, None)

    def get_logs(self, colony: str, process_id: str = "", executor_name: str = "", count: int = 100,
                 since: int = 0, latest: bool = False) -> Call[list[Log]]:
        """A process' logs, or an executor's if `executor_name` is given; `since` in Unix ns."""
        msg = {"msgtype": "getlogsmsg", "colonyname": colony, "processid": process_id,
               "executorname": executor_name, "count": count, "since": since, "latest": latest}
        return Call(msg, list[Log] | None)

    def search_logs(self, colony: str, text: str, days: int = 1, count: int = 100) -> Call[list[Log]]:
        msg = {"msgtype": "searchlogsmsg", "colonyname": colony, "text": text, "days": days, "count": count}
        return Call(msg, list[Log] | None)


    # -- files and snapshots (ColonyFS metadata; the bytes go to an object store, colonies.fs) ----------------
    def add_file(self, file: File) -> Call[File]:
        """Record a file revision; the server sets fileid, sequencenr and added."""
        return Call({"msgtype": "addfilemsg", "file": _b(file)}, File)

    def get_file(self, colony: str, *, fileid: str = "", label: str = "", name: str = "",
                 latest: bool = True) -> Call[list[File]]:
        """One file by id, or the revisions of (label, name): the newest only when `latest`."""
        msg = {"msgtype": "getfilemsg", "colonyname": colony, "fileid": fileid, "label": label,
               "name": name, "latest": latest}
        return Call(msg, list[File] | None)

    def get_files(self, colony: str, label: str) -> Call[list[FileData]]:
        """The newest revision of each file name under exactly `label`."""
        return Call({"msgtype": "getfilesmsg", "colonyname": colony, "label": label}, list[FileData] | None)

    def get_file_labels(self, colony: str, name: str = "", exact: bool = False) -> Call[list[Label]]:
        """All labels (`name` ""), those starting with `name`, or (`exact`) `name` and its sub-labels."""
        msg = {"msgtype": "getfilelabelsmsg", "colonyname": colony, "name": name, "exact": exact}
        return Call(msg, list[Label] | None)

    def remove_file(self, colony: str, *, fileid: str = "", label: str = "", name: str = "") -> Call[None]:
        """One revision by id, or every revision of (label, name)."""
        msg = {"msgtype": "removefilemsg", "colonyname": colony, "fileid": fileid, "label": label, "name": name}
        return Call(msg, None)

    def create_snapshot(self, colony: str, label: str, name: str) -> Call[Snapshot]:
        """Freeze the newest revision of every file under `label` and its sub-labels."""
        msg = {"msgtype": "createsnapshotmsg", "colonyname": colony, "label": label, "name": name}
        return Call(msg, Snapshot)

    def get_snapshot(self, colony: str, *, snapshotid: str = "", name: str = "") -> Call[Snapshot]:
        msg = {"msgtype": "getsnapshotmsg", "colonyname": colony, "snapshotid": snapshotid, "name": name}
        return Call(msg, Snapshot)

    def get_snapshots(self, colony: str) -> Call[list[Snapshot]]:
        return Call({"msgtype": "getsnapshotsmsg", "colonyname": colony}, list[Snapshot] | None)

    def remove_snapshot(self, colony: str, *, snapshotid: str = "", name: str = "") -> Call[None]:
        msg = {"msgtype": "removesnapshotmsg", "colonyname": colony, "snapshotid": snapshotid, "name": name}
        return Call(msg, None)

    def remove_all_snapshots(self, colony: str) -> Call[None]:
        return Call({"msgtype": "removeallsnapshotmsg", "colonyname": colony}, None)


    # -- locations (named sites; an executor names its own with `locationname`) ---------------------------------
    def add_location(self, colony: str, name: str, description: str = "", long: float = 0.0,
                     lat: float = 0.0) -> Call[Location]:
        """Add a site (colony owner). Our server sets `locationid`; the id sent is for the original, which
        keeps whatever the client sends."""
        loc = {"locationid": crypto.sha3_hex(os.urandom(32)), "name": name, "colonyname": colony,
               "description": description, "long": float(long), "lat": float(lat)}
        return Call({"msgtype": "addlocationmsg", "location": loc}, Location)

    def get_locations(self, colony: str) -> Call[list[Location]]:
        """The colony's locations, by name (members, executors in any state too)."""
        return Call({"msgtype": "getlocationsmsg", "colonyname": colony}, list[Location] | None)

    def get_location(self, colony: str, name: str) -> Call[Location]:
        return Call({"msgtype": "getlocationmsg", "colonyname": colony, "name": name}, Location)

    def remove_location(self, colony: str, name: str) -> Call[None]:
        """Remove a site (colony owner); executors naming it keep their `locationname`."""
        return Call({"msgtype": "removelocationmsg", "colonyname": colony, "name": name}, None)


    # -- blueprints (declared state that reconciler executors make so) -----------------------------------------
    # Builders: colonies.blueprints.blueprint_definition() / blueprint(). Dicts in the wire shape work too.
    def add_blueprint_definition(self, definition: BlueprintDefinition | dict[str, Any]) -> Call[BlueprintDefinition]:
        """Add a kind of blueprint (colony owner); its colony is `metadata.colonyname`."""
        return Call({"msgtype": "addblueprintdefinitionmsg", "blueprintdefinition": _b(definition)},
                    BlueprintDefinition)

    def get_blueprint_definition(self, colony: str, name: str) -> Call[BlueprintDefinition]:
        msg = {"msgtype": "getblueprintdefinitionmsg", "colonyname": colony, "name": name}
        return Call(msg, BlueprintDefinition)

    def get_blueprint_definitions(self, colony: str) -> Call[list[BlueprintDefinition]]:
        msg = {"msgtype": "getblueprintdefinitionsmsg", "colonyname": colony}
        return Call(msg, list[BlueprintDefinition] | None)

    def remove_blueprint_definition(self, colony: str, name: str) -> Call[None]:
        """Remove a definition (colony owner); refused (409) while blueprints of its kind exist."""
        return Call({"msgtype": "removeblueprintdefinitionmsg", "namespace": colony, "name": name}, None)

    def add_blueprint(self, blueprint: Blueprint | dict[str, Any]) -> Call[Blueprint]:
        """Add a blueprint (its colony is `metadata.colonyname`): the server checks `spec` against the
        kind's schema, sets generation 1 and submits a reconcile process to the kind's handler."""
        return Call({"msgtype": "addblueprintmsg", "blueprint": _b(blueprint)}, Blueprint)

    def get_blueprint(self, colony: str, name: str) -> Call[Blueprint]:
        return Call({"msgtype": "getblueprintmsg", "namespace": colony, "name": name}, Blueprint)

    def get_blueprints(self, colony: str, kind: str = "", location: str = "") -> Call[list[Blueprint]]:
        """The colony's blueprints by name; `kind` and `location` filter (each optional)."""
        msg = {"msgtype": "getblueprintsmsg", "namespace": colony, "kind": kind, "locationname": location}
        return Call(msg, list[Blueprint] | None)

    def update_blueprint(self, blueprint: Blueprint | dict[str, Any], force_generation: bool = False
                         ) -> Call[Blueprint]:
        """Replace a blueprint's spec, labels and annotations (found by colony and name). A spec change, or
        `force_generation`, adds 1 to the generation and submits a reconcile process; a `status` sent
        along replaces the stored one, none keeps it."""
        msg = {"msgtype": "updateblueprintmsg", "blueprint": _b(blueprint), "forcegeneration": force_generation}
        return Call(msg, Blueprint)

    def remove_blueprint(self, colony: str, name: str) -> Call[None]:
        """Remove a blueprint and its history; submits a `cleanup` process to the kind's handler."""
        return Call({"msgtype": "removeblueprintmsg", "namespace": colony, "name": name}, None)

    def get_blueprint_history(self, blueprint_id: str, limit: int = 0) -> Call[list[BlueprintHistory]]:
        """Spec changes, newest first (`limit` <= 0: all, up to 1000)."""
        msg = {"msgtype": "getblueprinthistorymsg", "blueprintid": blueprint_id, "limit": limit}
        return Call(msg, list[BlueprintHistory] | None)

    def update_blueprint_status(self, colony: str, name: str, status: dict[str, Any]) -> Call[None]:
        """Report the observed state (members: users and executors); generation and history stay."""
        msg = {"msgtype": "updateblueprintstatusmsg", "colonyname": colony, "blueprintname": name,
               "status": status}
        return Call(msg, None)

    def reconcile_blueprint(self, colony: str, name: str, force: bool = False) -> Call[Process]:
        """Submit a reconcile process now (members); `force` also adds 1 to the generation and passes
        `force: true` in the kwargs. Returns the process."""
        msg = {"msgtype": "reconcileblueprintmsg", "namespace": colony, "name": name, "force": force}
        return Call(msg, Process)


    # -- used by the CLI ----------------------------------------------------------------------------------
    def get_user(self, colony: str, name: str) -> Call[User]:
        return Call({"msgtype": "getusermsg", "colonyname": colony, "name": name}, User)

    def get_executor_by_id(self, colony: str, executor_id: str) -> Call[Executor]:
        msg = {"msgtype": "getexecutorbyidmsg", "colonyname": colony, "executorid": executor_id}
        return Call(msg, Executor)

    def get_attribute(self, attribute_id: str) -> Call[Attribute]:
        return Call({"msgtype": "getattributemsg", "attributeid": attribute_id}, Attribute)

    def pause_status(self, colony: str) -> Call[dict[str, Any]]:
        return Call({"msgtype": "getpausestatusmsg", "colonyname": colony}, dict[str, Any])

    def server_info(self) -> Call[ServerInfo]:
        return Call({"msgtype": "getserverinfomsg"}, ServerInfo)

    def get_cluster(self) -> Call[dict[str, Any]]:
        return Call({"msgtype": "getclustermsg"}, dict[str, Any])

    def remove_function(self, function_id: str) -> Call[None]:
        return Call({"msgtype": "removefunctionmsg", "functionid": function_id}, None)

    def remove_all_processgraphs(self, colony: str, state: int = -1) -> Call[None]:
        return Call({"msgtype": "removeallprocessgraphsmsg", "colonyname": colony, "state": state}, None)

    def process_history(self, colony: str, seconds: int, state: int = -1, executor_id: str = ""
                        ) -> Call[list[Process]]:
        msg = {"msgtype": "getprocesshistmsg", "colonyname": colony, "executorid": executor_id,
               "seconds": seconds, "state": state}
        return Call(msg, list[Process] | None)


    # -- changing ids (key rotation) -------------------------------------------------------------------------
    def change_user_id(self, colony: str, user_id: str) -> Call[None]:
        """Replace the signing user's id with `user_id` (rotate to a new key)."""
        return Call({"msgtype": "changeuseridmsg", "colonyname": colony, "userid": user_id}, None)

    def change_executor_id(self, colony: str, executor_id: str) -> Call[None]:
        return Call({"msgtype": "changeexecutoridmsg", "colonyname": colony, "executorid": executor_id}, None)

    def change_colony_id(self, colony: str, colony_id: str) -> Call[None]:
        return Call({"msgtype": "changecolonyidmsg", "colonyname": colony, "colonyid": colony_id}, None)

    def change_server_id(self, server_id: str) -> Call[None]:
        return Call({"msgtype": "changeserveridmsg", "serverid": server_id}, None)

API = tuple(
    name for name, value in vars(ClientCore).items() if callable(value) and not name.startswith("_")
)


def bind_sync(cls: type[Any]) -> type[Any]:
    """Give a sync shell one method per API call: build the Call with the core, send it with `_run`."""
    for name in API:
        build = getattr(ClientCore, name)

        def method(self: Any, *args: Any, _build: Any = build, **kwargs: Any) -> Any:
            return self._run(_build(self, *args, **kwargs))

        method.__name__, method.__doc__ = name, build.__doc__
        setattr(cls, name, method)
    return cls


def bind_async(cls: type[Any]) -> type[Any]:
    """The async twin of `bind_sync`, generated from the same core, so the two never drift."""
    for name in API:
        build = getattr(ClientCore, name)

        async def method(self: Any, *args: Any, _build: Any = build, **kwargs: Any) -> Any:
            return await self._run(_build(self, *args, **kwargs))

        method.__name__, method.__doc__ = name, build.__doc__
        setattr(cls, name, method)
    return cls
