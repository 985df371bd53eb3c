"""Domain and wire types. JSON names are the original's exactly; states are int enums.

One set of msgspec Structs serves both as the stored model and as the wire format, so a reply is
encoded straight from what storage returns.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Any

import msgspec

from colonies.clock import ZERO_TIME


class ProcessState(IntEnum):
    WAITING = 0
    RUNNING = 1
    SUCCESS = 2
    FAILED = 3
    CANCELLED = 4


class ExecutorState(IntEnum):
    PENDING = 0
    APPROVED = 1
    REJECTED = 2
    UNREGISTERED = 3


class AttributeType(IntEnum):
    IN = 0
    OUT = 1
    ERR = 2
    ENV = 3


FINAL_STATES = frozenset({ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED})

# The allowed process transitions, as data (see the protocol spec §4).
TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    ProcessState.WAITING: frozenset({ProcessState.RUNNING, ProcessState.FAILED, ProcessState.CANCELLED}),
    ProcessState.RUNNING: frozenset(
        {ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.WAITING, ProcessState.CANCELLED}
    ),
    ProcessState.SUCCESS: frozenset(),
    ProcessState.FAILED: frozenset(),
    ProcessState.CANCELLED: frozenset(),
}


class Wire(msgspec.Struct, kw_only=True):
    """Base for every wire struct: keyword-only, unknown fields ignored on decode."""


class Colony(Wire):
    colonyid: str = ""
    name: str = ""


class User(Wire):
    colonyname: str = ""
    userid: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""


class Capabilities(Wire):
    hardware: list[Any] | None = None
    software: list[Any] | None = None


class Allocations(Wire):
    projects: dict[str, Any] | None = None


class Executor(Wire):
    executorid: str = ""
    executortype: str = ""
    executorname: str = ""
    colonyname: str = ""
    state: int = 0
    requirefuncreg: bool = False
    commissiontime: datetime = ZERO_TIME
    lastheardfromtime: datetime = ZERO_TIME
    locationname: str = ""
    capabilities: Capabilities = msgspec.field(default_factory=Capabilities)
    allocations: Allocations = msgspec.field(default_factory=Allocations)
    # The blueprint that manages this executor and its generation (set by a reconciler when it adds the
    # executor). Omitted when empty, as the original's `omitempty`: "" / 0 read as UNSET.
    blueprintid: str | msgspec.UnsetType = msgspec.UNSET
    blueprintgen: int | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if not self.blueprintid:
            self.blueprintid = msgspec.UNSET
        if not self.blueprintgen:
            self.blueprintgen = msgspec.UNSET


class GPU(Wire):
    name: str = ""
    mem: str = ""
    count: int = 0
    nodecount: int = 0


class Conditions(Wire):
    colonyname: str = ""
    executornames: list[str] | None = None
    executortype: str = ""
    locationname: str = ""
    dependencies: list[str] | None = None
    nodes: int = 0
    cpu: str = ""
    processes: int = 0
    processespernode: int = 0
    mem: str = ""
    storage: str = ""
    gpu: GPU = msgspec.field(default_factory=GPU)
    walltime: int = 0


Scalar = str | int | float | bool | None


class FunctionSpec(Wire):
    nodename: str = ""
    funcname: str = ""
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    priority: int = 0
    maxwaittime: int = 0
    maxexectime: int = 0
    maxretries: int = 0
    conditions: Conditions = msgspec.field(default_factory=Conditions)
    label: str = ""
    fs: dict[str, Any] | None = None
    env: dict[str, str] | None = None
    channels: list[str] | None = None


class Attribute(Wire):
    attributeid: str = ""
    targetid: str = ""
    targetcolonyname: str = ""
    targetprocessgraphid: str = ""
    state: int = 0
    attributetype: int = 0
    key: str = ""
    value: str = ""


class Process(Wire):
    processid: str = ""
    initiatorid: str = ""
    initiatorname: str = ""
    assignedexecutorid: str = ""
    isassigned: bool = False
    state: int = 0
    prioritytime: int = 0
    submissiontime: datetime = ZERO_TIME
    starttime: datetime = ZERO_TIME
    endtime: datetime = ZERO_TIME
    waitdeadline: datetime = ZERO_TIME
    execdeadline: datetime = ZERO_TIME
    retries: int = 0
    attributes: list[Attribute] = []
    spec: FunctionSpec = msgspec.field(default_factory=FunctionSpec)
    waitforparents: bool = False
    parents: list[str] = []
    children: list[str] = []
    processgraphid: str = ""
    input: list[Any] | None = msgspec.field(default=None, name="in")
    output: list[Any] | None = msgspec.field(default=None, name="out")
    errors: list[str] = []


class FunctionArg(Wire):
    name: str = ""
    type: str = ""
    description: str = ""
    required: bool = False
    enum: list[str] | None = None


class Function(Wire):
    functionid: str = ""
    executorname: str = ""
    executortype: str = ""
    colonyname: str = ""
    funcname: str = ""
    description: str = ""
    args: list[FunctionArg] | None = None
    counter: int = 0
    minwaittime: float = 0.0
    maxwaittime: float = 0.0
    minexectime: float = 0.0
    maxexectime: float = 0.0
    avgwaittime: float = 0.0
    avgexectime: float = 0.0
    locationname: str = ""


class Statistics(Wire):
    colonies: int = 0
    executors: int = 0
    activeexecutors: int = 0
    unregisteredexecutors: int = 0
    waitingprocesses: int = 0
    runningprocesses: int = 0
    successfulprocesses: int = 0
    failedprocesses: int = 0
    cancelledprocesses: int = 0
    waitingworkflows: int = 0
    runningworkflows: int = 0
    successfulworkflows: int = 0
    failedworkflows: int = 0
    cancelledworkflows: int = 0


class Backend(Wire):
    type: str = "http"
    host: str = ""
    port: int = 0
    tls: bool = False


class ServerInfo(Wire):
    buildversion: str = ""
    buildtime: str = ""
    backends: list[Backend] = []


class Failure(Wire):
    status: int
    message: str


class Log(Wire):
    processid: str = ""
    colonyname: str = ""
    executorname: str = ""
    message: str = ""
    timestamp: int = 0


class WorkflowSpec(Wire):
    colonyname: str = ""
    functionspecs: list[FunctionSpec] | None = None


class NodeData(Wire):
    label: str = ""


class Position(Wire):
    x: int = 0
    y: int = 0


class NodeStyle(Wire):
    color: str = ""
    background: str = ""


class GraphNode(Wire):
    id: str = ""
    data: NodeData = msgspec.field(default_factory=NodeData)
    position: Position = msgspec.field(default_factory=Position)
    type: str = ""
    style: NodeStyle = msgspec.field(default_factory=NodeStyle)


class Edge(Wire):
    id: str = ""
    source: str = ""
    target: str = ""
    animated: bool = False


class ProcessGraph(Wire):
    processgraphid: str = ""
    initiatorid: str = ""
    initiatorname: str = ""
    colonyname: str = ""
    rootprocessids: list[str] = []
    state: int = 0
    submissiontime: datetime = ZERO_TIME
    starttime: datetime = ZERO_TIME
    endtime: datetime = ZERO_TIME
    processids: list[str] = []
    nodes: list[GraphNode] = []
    edges: list[Edge] = []


class Generator(Wire):
    generatorid: str = ""
    initiatorid: str = ""
    initiatorname: str = ""
    colonyname: str = ""
    name: str = ""
    workflowspec: str = ""
    trigger: int = 0
    timeout: int = 0
    firstpack: datetime = ZERO_TIME
    lastrun: datetime = ZERO_TIME
    queuesize: int = 0
    checkerperiod: int = 0


class Cron(Wire):
    cronid: str = ""
    initiatorid: str = ""
    initiatorname: str = ""
    colonyname: str = ""
    name: str = ""
    cronexpression: str = ""
    interval: int = 0
    random: bool = False
    nextrun: datetime = ZERO_TIME
    lastrun: datetime = ZERO_TIME
    workflowspec: str = ""
    prevprocessgraphid: str = ""
    waitforprevprocessgraph: bool = False
    checkerperiod: int = 0


class ProcessEvent(Wire):
    """One entry of a process' append-only audit trail (our extension)."""

    processid: str = ""
    seq: int = 0
    timestamp: int = 0
    event: str = ""
    actorid: str = ""
    detail: str = ""


# -- ColonyFS (§3, §7): metadata only; the bytes live in an object store the clients talk to -------------
class S3Object(Wire):
    server: str = ""
    port: int = 0
    tls: bool = False
    accesskey: str = ""
    secretkey: str = ""
    region: str = ""
    encryptionkey: str = ""
    encryptionalg: str = ""
    object: str = ""
    bucket: str = ""


class Ref(Wire):
    protocol: str = ""
    s3object: S3Object = msgspec.field(default_factory=S3Object)


class File(Wire):
    fileid: str = ""
    colonyname: str = ""
    label: str = ""
    name: str = ""
    size: int = 0
    sequencenr: int = 0
    checksum: str = ""
    checksumalg: str = ""
    ref: Ref = msgspec.field(default_factory=Ref)
    added: datetime = ZERO_TIME


class FileData(Wire):
    name: str = ""
    checksum: str = ""
    size: int = 0
    s3filename: str = ""


class Label(Wire):
    name: str = ""
    files: int = 0


class Snapshot(Wire):
    snapshotid: str = ""
    colonyname: str = ""
    label: str = ""
    name: str = ""
    fileids: list[str] = []
    added: datetime = ZERO_TIME


# -- locations (§7.1): named sites executors sit at (an executor's `locationname`) ------------------------------
class Location(Wire):
    locationid: str = ""
    name: str = ""
    colonyname: str = ""
    description: str = ""
    long: float = 0.0
    lat: float = 0.0


# -- blueprints (§3, §7.1): declared state that reconciler executors make so ------------------------------------
# JSON names are the original's (camelCase where it has them). Fields the original marks `omitempty` are
# omitted when empty (omit_defaults, or UNSET for `status`).
class BlueprintMetadata(Wire, omit_defaults=True):
    name: str = ""
    colonyname: str = ""
    locationname: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    generation: int = 0
    created_at: datetime = msgspec.field(default=ZERO_TIME, name="createdAt")
    updated_at: datetime = msgspec.field(default=ZERO_TIME, name="updatedAt")
    last_reconciliation_process: str = msgspec.field(default="", name="lastReconciliationProcess")
    last_reconciliation_time: datetime = msgspec.field(default=ZERO_TIME, name="lastReconciliationTime")


class Blueprint(Wire):
    """`spec` is the desired state (checked against the definition's JSON schema), `status` the observed
    state a reconciler reports (`updateblueprintstatusmsg`)."""

    blueprintid: str = ""
    kind: str = ""
    metadata: BlueprintMetadata = msgspec.field(default_factory=BlueprintMetadata)
    spec: dict[str, Any] = {}
    status: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if not self.status:  # {} is "no status" (the original's omitempty)
            self.status = msgspec.UNSET


class BlueprintNames(Wire, omit_defaults=True):
    kind: str = ""
    list_kind: str = msgspec.field(default="", name="listKind")
    singular: str = ""
    plural: str = ""
    short_names: list[str] = msgspec.field(default_factory=list, name="shortNames")


class BlueprintHandler(Wire, omit_defaults=True):
    """Who reconciles blueprints of a kind: processes `functionName` for executors of `executorType`."""

    executor_type: str = msgspec.field(default="", name="executorType")
    function_name: str = msgspec.field(default="", name="functionName")
    reconcile_interval: int = msgspec.field(default=0, name="reconcileInterval")  # s; 0: 60


class BlueprintDefinitionSpec(Wire):
    group: str = ""
    version: str = ""
    names: BlueprintNames = msgspec.field(default_factory=BlueprintNames)
    scope: str = ""
    schema: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET  # a JSON Schema for blueprints' `spec`
    handler: BlueprintHandler = msgspec.field(default_factory=BlueprintHandler)


class BlueprintDefinition(Wire):
    """A kind of blueprint (CRD-like): its names, the schema of its `spec`, and its handler."""

    blueprintdefinitionid: str = ""
    kind: str = ""  # "BlueprintDefinition"
    metadata: BlueprintMetadata = msgspec.field(default_factory=BlueprintMetadata)
    spec: BlueprintDefinitionSpec = msgspec.field(default_factory=BlueprintDefinitionSpec)


class BlueprintHistory(Wire):
    """One change of a blueprint's spec (create, update), newest first in `getblueprinthistorymsg`."""

    historyid: str = ""
    blueprintid: str = ""
    kind: str = ""
    namespace: str = ""  # the colony
    name: str = ""
    generation: int = 0
    spec: dict[str, Any] = {}
    status: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    timestamp: datetime = ZERO_TIME
    changedby: str = ""
    changetype: str = ""  # "create", "update"

    def __post_init__(self) -> None:
        if not self.status:
            self.status = msgspec.UNSET
