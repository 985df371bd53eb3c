"""One msgspec Struct per payload type, and the registry {payloadtype: Struct}.

Decoding follows Go's encoding/json where it matters to SDKs: unknown keys are ignored and missing keys
take zero values. A wrong type is a 400.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from colonies.model import (
    Attribute,
    Blueprint,
    BlueprintDefinition,
    Colony,
    Cron,
    Executor,
    File,
    Function,
    FunctionSpec,
    Generator,
    Location,
    User,
    WorkflowSpec,
)


class Msg(msgspec.Struct, kw_only=True):
    msgtype: str = ""
    # Replay protection (our extension, colonies.replay): Unix ns and a random token, inside the
    # signed payload. The original server ignores them; absent means 0 / "".
    timestamp: int = 0
    nonce: str = ""


# -- unauthenticated ------------------------------------------------------------------------------
class VersionMsg(Msg):
    buildversion: str = ""
    buildtime: str = ""


class GetServerInfoMsg(Msg):
    pass


# -- colonies and server ----------------------------------------------------------------------------
class AddColonyMsg(Msg):
    colony: Colony = msgspec.field(default_factory=Colony)


class ColonyNameMsg(Msg):
    colonyname: str = ""


class RemoveColonyMsg(ColonyNameMsg):
    pass


class GetColoniesMsg(Msg):
    pass


class GetColonyMsg(ColonyNameMsg):
    pass


class GetColonyStatsMsg(ColonyNameMsg):
    pass


class GetStatisticsMsg(Msg):
    pass


class GetClusterMsg(Msg):
    pass


class ChangeColonyIdMsg(ColonyNameMsg):
    colonyid: str = ""


class ChangeServerIdMsg(Msg):
    serverid: str = ""


# -- executors ------------------------------------------------------------------------------------------
class AddExecutorMsg(Msg):
    executor: Executor = msgspec.field(default_factory=Executor)


class ExecutorNameMsg(ColonyNameMsg):
    executorname: str = ""


class ApproveExecutorMsg(ExecutorNameMsg):
    pass


class RejectExecutorMsg(ExecutorNameMsg):
    pass


class RemoveExecutorMsg(ExecutorNameMsg):
    pass


class GetExecutorsMsg(ColonyNameMsg):
    pass


class GetExecutorMsg(ExecutorNameMsg):
    pass


class GetExecutorByIdMsg(ColonyNameMsg):
    executorid: str = ""


class ReportAllocationMsg(ExecutorNameMsg):
    allocations: dict[str, Any] | None = None


class UpdateExecutorMsg(ExecutorNameMsg):
    capabilities: dict[str, Any] | None = None


class ChangeExecutorIdMsg(ColonyNameMsg):
    executorid: str = ""


# -- users ------------------------------------------------------------------------------------------------
class AddUserMsg(Msg):
    user: User = msgspec.field(default_factory=User)


class GetUsersMsg(ColonyNameMsg):
    pass


class GetUserMsg(ColonyNameMsg):
    name: str = ""


class GetUserByIdMsg(ColonyNameMsg):
    userid: str = ""


class RemoveUserMsg(ColonyNameMsg):
    name: str = ""


class ChangeUserIdMsg(ColonyNameMsg):
    userid: str = ""


# -- processes --------------------------------------------------------------------------------------------
class SubmitFuncSpecMsg(Msg):
    spec: FunctionSpec = msgspec.field(default_factory=FunctionSpec)


class AssignProcessMsg(ColonyNameMsg):
    timeout: int = 0
    availablecpu: str = ""
    availablemem: str = ""
    # Our extension: the seconds the executor can still give a process (a pilot slot's remaining walltime).
    # When > 0, only a process whose maxexectime is set and at most this is assigned. 0: no limit.
    availableexectime: int = 0


class ProcessIdMsg(Msg):
    processid: str = ""


class GetProcessMsg(ProcessIdMsg):
    pass


class GetProcessesMsg(ColonyNameMsg):
    count: int = 0
    state: int = 0
    executortype: str = ""
    label: str = ""
    initiator: str = ""
    processgraphid: str = ""


class GetProcessHistMsg(ColonyNameMsg):
    executorid: str = ""
    seconds: int = 0
    state: int = 0


class AttemptMsg(ProcessIdMsg):
    # The attempt fence (our extension): the `retries` of the Process the executor was assigned. When
    # set and not the process's current value, the request is refused (403): that attempt timed out
    # and was re-queued. Absent means no fence (the original's behaviour).
    attempt: int | None = None


class CloseSuccessfulMsg(AttemptMsg):
    out: list[Any] | None = None


class CloseFailedMsg(AttemptMsg):
    errors: list[str] | None = None


class SetOutputMsg(AttemptMsg):
    out: list[Any] | None = None


class CancelProcessMsg(ProcessIdMsg):
    pass


class RemoveProcessMsg(ProcessIdMsg):
    all: bool = False


class RemoveAllProcessesMsg(ColonyNameMsg):
    state: int = 0


class PauseAssignmentsMsg(ColonyNameMsg):
    pass


class ResumeAssignmentsMsg(ColonyNameMsg):
    pass


class GetPauseStatusMsg(ColonyNameMsg):
    pass


class AddAttributeMsg(Msg):
    attribute: Attribute = msgspec.field(default_factory=Attribute)
    attempt: int | None = None  # the attempt fence, as on AttemptMsg


class GetAttributeMsg(Msg):
    attributeid: str = ""


class AddFunctionMsg(Msg):
    fun: Function = msgspec.field(default_factory=Function)


class GetFunctionsMsg(ColonyNameMsg):
    executorname: str = ""


class RemoveFunctionMsg(Msg):
    functionid: str = ""


class GetProcessEventsMsg(ProcessIdMsg):
    """Our extension: read a process' audit trail."""


# -- workflows ---------------------------------------------------------------------------------------------
class SubmitWorkflowSpecMsg(Msg):
    spec: WorkflowSpec = msgspec.field(default_factory=WorkflowSpec)


class ProcessGraphIdMsg(Msg):
    processgraphid: str = ""


class GetProcessGraphMsg(ProcessGraphIdMsg):
    pass


class GetProcessGraphsMsg(ColonyNameMsg):
    count: int = 0
    state: int = 0


class RemoveProcessGraphMsg(ProcessGraphIdMsg):
    all: bool = False


class RemoveAllProcessGraphsMsg(ColonyNameMsg):
    state: int = 0


class CancelProcessGraphMsg(ProcessGraphIdMsg):
    pass


class AddChildMsg(ProcessGraphIdMsg):
    parentprocessid: str = ""
    childprocessid: str = ""
    spec: FunctionSpec = msgspec.field(default_factory=FunctionSpec)
    insert: bool = False


# -- generators and crons -----------------------------------------------------------------------------------
class AddGeneratorMsg(Msg):
    generator: Generator = msgspec.field(default_factory=Generator)


class GeneratorIdMsg(Msg):
    generatorid: str = ""


class GetGeneratorMsg(GeneratorIdMsg):
    pass


class ResolveGeneratorMsg(ColonyNameMsg):
    generatorname: str = ""


class GetGeneratorsMsg(ColonyNameMsg):
    count: int = 0


class PackGeneratorMsg(GeneratorIdMsg):
    arg: str = ""


class RemoveGeneratorMsg(GeneratorIdMsg):
    all: bool = False


class CronIn(Cron):
    """A cron as submitted; accepts pycolonies' misspelt `waitforprevprocessgrap`."""

    waitforprevprocessgrap: bool = False


class AddCronMsg(Msg):
    cron: CronIn = msgspec.field(default_factory=CronIn)


class CronIdMsg(Msg):
    cronid: str = ""


class GetCronMsg(CronIdMsg):
    pass


class GetCronsMsg(ColonyNameMsg):
    count: int = 0


class RunCronMsg(CronIdMsg):
    pass


class RemoveCronMsg(CronIdMsg):
    all: bool = False


# -- logs ------------------------------------------------------------------------------------------------------
class AddLogMsg(ProcessIdMsg):
    message: str = ""


class AddExecutorLogMsg(ExecutorNameMsg):
    message: str = ""


class GetLogsMsg(ColonyNameMsg):
    processid: str = ""
    executorname: str = ""
    count: int = 0
    since: int = 0
    latest: bool = False


class SearchLogsMsg(ColonyNameMsg):
    text: str = ""
    days: int = 0
    count: int = 0


# -- files and snapshots (ColonyFS, §7) ------------------------------------------------------------------------
# pycolonies sends null for the selectors it leaves out (fileid, label, name); Go reads null as "".
class FileIn(File):
    """A file as submitted: pycolonies sends `added: null` (the server sets it)."""

    added: datetime | None = None  # type: ignore[assignment]


class AddFileMsg(Msg):
    file: FileIn = msgspec.field(default_factory=FileIn)


class GetFileMsg(ColonyNameMsg):
    fileid: str | None = None
    label: str | None = None
    name: str | None = None
    latest: bool = False


class GetFilesMsg(ColonyNameMsg):
    label: str | None = None


class GetFileLabelsMsg(ColonyNameMsg):
    name: str | None = None
    exact: bool = False


class RemoveFileMsg(ColonyNameMsg):
    fileid: str | None = None
    label: str | None = None
    name: str | None = None


class CreateSnapshotMsg(ColonyNameMsg):
    label: str | None = None
    name: str | None = None


class GetSnapshotMsg(ColonyNameMsg):
    snapshotid: str | None = None
    name: str | None = None


class GetSnapshotsMsg(ColonyNameMsg):
    pass


class RemoveSnapshotMsg(ColonyNameMsg):
    snapshotid: str | None = None
    name: str | None = None


class RemoveAllSnapshotsMsg(ColonyNameMsg):
    pass


# -- locations (§7.1) -----------------------------------------------------------------------------------------
class AddLocationMsg(Msg):
    location: Location = msgspec.field(default_factory=Location)


class GetLocationsMsg(ColonyNameMsg):
    pass


class GetLocationMsg(ColonyNameMsg):
    name: str = ""


class RemoveLocationMsg(ColonyNameMsg):
    name: str = ""


# -- blueprints (§3, §7.1); the original names the colony `namespace` in some of these -------------------------
class AddBlueprintDefinitionMsg(Msg):
    blueprintdefinition: BlueprintDefinition = msgspec.field(default_factory=BlueprintDefinition)


class GetBlueprintDefinitionMsg(ColonyNameMsg):
    name: str = ""


class GetBlueprintDefinitionsMsg(ColonyNameMsg):
    pass


class NamespaceMsg(Msg):
    namespace: str = ""
    name: str = ""


class RemoveBlueprintDefinitionMsg(NamespaceMsg):
    pass


class AddBlueprintMsg(Msg):
    blueprint: Blueprint = msgspec.field(default_factory=Blueprint)


class GetBlueprintMsg(NamespaceMsg):
    pass


class GetBlueprintsMsg(Msg):
    namespace: str = ""
    kind: str = ""
    locationname: str = ""


class UpdateBlueprintMsg(Msg):
    blueprint: Blueprint = msgspec.field(default_factory=Blueprint)
    forcegeneration: bool = False


class RemoveBlueprintMsg(NamespaceMsg):
    pass


class GetBlueprintHistoryMsg(Msg):
    blueprintid: str = ""
    limit: int = 0


class UpdateBlueprintStatusMsg(ColonyNameMsg):
    blueprintname: str = ""
    status: dict[str, Any] | None = None


class ReconcileBlueprintMsg(NamespaceMsg):
    force: bool = False


# -- realtime (WebSocket /pubsub) -------------------------------------------------------------------------------
class SubscribeProcessMsg(ColonyNameMsg):
    processid: str = ""
    executortype: str = ""
    state: int = 0
    timeout: int = 0


class SubscribeProcessesMsg(ColonyNameMsg):
    executortype: str = ""
    state: int = 0
    timeout: int = 0


class ChannelAppendMsg(ProcessIdMsg):
    name: str = ""
    sequence: int = 0
    inreplyto: int = 0
    payload: str | list[int] = ""
    payloadtype: str = ""


class ChannelReadMsg(ProcessIdMsg):
    name: str = ""
    afterseq: int = 0
    limit: int = 0


class SubscribeChannelMsg(ProcessIdMsg):
    name: str = ""
    afterseq: int = 0
    timeout: int = 0


REGISTRY: dict[str, type[Msg]] = {
    "versionmsg": VersionMsg,
    "getserverinfomsg": GetServerInfoMsg,
    "addcolonymsg": AddColonyMsg,
    "removecolonymsg": RemoveColonyMsg,
    "getcoloniesmsg": GetColoniesMsg,
    "getcolonymsg": GetColonyMsg,
    "getcolonystatsmsg": GetColonyStatsMsg,
    "getstatisticsmsg": GetStatisticsMsg,
    "getclustermsg": GetClusterMsg,
    "changecolonyidmsg": ChangeColonyIdMsg,
    "changeserveridmsg": ChangeServerIdMsg,
    "addexecutormsg": AddExecutorMsg,
    "approveexecutormsg": ApproveExecutorMsg,
    "rejectexecutormsg": RejectExecutorMsg,
    "removeexecutormsg": RemoveExecutorMsg,
    "getexecutorsmsg": GetExecutorsMsg,
    "getexecutormsg": GetExecutorMsg,
    "getexecutorbyidmsg": GetExecutorByIdMsg,
    "reportallocationmsg": ReportAllocationMsg,
    "updateexecutormsg": UpdateExecutorMsg,
    "changeexecutoridmsg": ChangeExecutorIdMsg,
    "addusermsg": AddUserMsg,
    "getusersmsg": GetUsersMsg,
    "getusermsg": GetUserMsg,
    "getuserbyidmsg": GetUserByIdMsg,
    "removeusermsg": RemoveUserMsg,
    "changeuseridmsg": ChangeUserIdMsg,
    "submitfuncspecmsg": SubmitFuncSpecMsg,
    "assignprocessmsg": AssignProcessMsg,
    "getprocessmsg": GetProcessMsg,
    "getprocessesmsg": GetProcessesMsg,
    "getprocesshistmsg": GetProcessHistMsg,
    "closesuccessfulmsg": CloseSuccessfulMsg,
    "closefailedmsg": CloseFailedMsg,
    "setoutputmsg": SetOutputMsg,
    "cancelprocessmsg": CancelProcessMsg,
    "removeprocessmsg": RemoveProcessMsg,
    "removeallprocessesmsg": RemoveAllProcessesMsg,
    "pauseassignmentsmsg": PauseAssignmentsMsg,
    "resumeassignmentsmsg": ResumeAssignmentsMsg,
    "getpausestatusmsg": GetPauseStatusMsg,
    "addattributemsg": AddAttributeMsg,
    "getattributemsg": GetAttributeMsg,
    "addfunctionmsg": AddFunctionMsg,
    "getfunctionsmsg": GetFunctionsMsg,
    "removefunctionmsg": RemoveFunctionMsg,
    "getprocesseventsmsg": GetProcessEventsMsg,
    "submitworkflowspecmsg": SubmitWorkflowSpecMsg,
    "getprocessgraphmsg": GetProcessGraphMsg,
    "getprocessgraphsmsg": GetProcessGraphsMsg,
    "removeprocessgraphmsg": RemoveProcessGraphMsg,
    "removeallprocessgraphsmsg": RemoveAllProcessGraphsMsg,
    "cancelprocessgraphmsg": CancelProcessGraphMsg,
    "addchildmsg": AddChildMsg,
    "addgeneratormsg": AddGeneratorMsg,
    "getgeneratormsg": GetGeneratorMsg,
    "resolvegeneratormsg": ResolveGeneratorMsg,
    "getgeneratorsmsg": GetGeneratorsMsg,
    "packgeneratormsg": PackGeneratorMsg,
    "removegeneratormsg": RemoveGeneratorMsg,
    "addcronmsg": AddCronMsg,
    "getcronmsg": GetCronMsg,
    "getcronsmsg": GetCronsMsg,
    "runcronmsg": RunCronMsg,
    "removecronmsg": RemoveCronMsg,
    "addlogmsg": AddLogMsg,
    "addexecutorlogmsg": AddExecutorLogMsg,
    "getlogsmsg": GetLogsMsg,
    "searchlogsmsg": SearchLogsMsg,
    "addfilemsg": AddFileMsg,
    "getfilemsg": GetFileMsg,
    "getfilesmsg": GetFilesMsg,
    "getfilelabelsmsg": GetFileLabelsMsg,
    "removefilemsg": RemoveFileMsg,
    "createsnapshotmsg": CreateSnapshotMsg,
    "getsnapshotmsg": GetSnapshotMsg,
    "getsnapshotsmsg": GetSnapshotsMsg,
    "removesnapshotmsg": RemoveSnapshotMsg,
    "removeallsnapshotmsg": RemoveAllSnapshotsMsg,
    "addlocationmsg": AddLocationMsg,
    "getlocationsmsg": GetLocationsMsg,
    "getlocationmsg": GetLocationMsg,
    "removelocationmsg": RemoveLocationMsg,
    "addblueprintdefinitionmsg": AddBlueprintDefinitionMsg,
    "getblueprintdefinitionmsg": GetBlueprintDefinitionMsg,
    "getblueprintdefinitionsmsg": GetBlueprintDefinitionsMsg,
    "removeblueprintdefinitionmsg": RemoveBlueprintDefinitionMsg,
    "addblueprintmsg": AddBlueprintMsg,
    "getblueprintmsg": GetBlueprintMsg,
    "getblueprintsmsg": GetBlueprintsMsg,
    "updateblueprintmsg": UpdateBlueprintMsg,
    "removeblueprintmsg": RemoveBlueprintMsg,
    "getblueprinthistorymsg": GetBlueprintHistoryMsg,
    "updateblueprintstatusmsg": UpdateBlueprintStatusMsg,
    "reconcileblueprintmsg": ReconcileBlueprintMsg,
    "subscribeprocessmsg": SubscribeProcessMsg,
    "subscribeprocessesmsg": SubscribeProcessesMsg,
    "channelappendmsg": ChannelAppendMsg,
    "channelreadmsg": ChannelReadMsg,
    "subscribechannelmsg": SubscribeChannelMsg,
}

DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    name: msgspec.json.Decoder(cls) for name, cls in REGISTRY.items()
}
