"""The one storage interface. Handlers, loops and the scheduler import this module, never a backend.

Every method is a coroutine. Every composite state change (claim, close with workflow resolution,
timeout re-queue) is one transaction inside the backend, so two callers can never both win a claim.
Backends also append the audit trail (`ProcessEvent`) in the same transaction as the change it records.
Times are Unix nanoseconds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from colonies.model import (
    Attribute,
    Blueprint,
    BlueprintDefinition,
    BlueprintHistory,
    Colony,
    Cron,
    Executor,
    File,
    FileData,
    Function,
    Generator,
    Label,
    Location,
    Log,
    Process,
    ProcessEvent,
    ProcessGraph,
    Snapshot,
    Statistics,
    User,
)
from colonies.storage.tally import Delta, Tally


@dataclass(frozen=True)
class ClaimRequest:
    """Who is asking for work and what it can take (§4.2 step 3)."""

    colony: str
    executor_id: str
    executor_name: str
    executor_type: str
    location: str = ""
    cpu_millis: int | None = None  # None: unlimited
    mem_bytes: int | None = None
    max_exec_s: int | None = None  # only processes with 0 < maxexectime <= this; None: any
    # The server sets it: claim only while `executor_id` is an APPROVED executor of the colony under
    # `executor_name`, checked in the claim's own transaction (a revoked executor gets nothing);
    # otherwise the claim raises Forbidden.
    approved_only: bool = False


@dataclass
class Changed:
    """Processes whose state changed in one operation, for events and wakeups."""

    process: Process | None = None
    others: list[Process] = field(default_factory=list)


GraphBuilder = Callable[[list[str]], tuple[list[Process], ProcessGraph]]


@dataclass(frozen=True)
class GraphMember:
    """What a workflow's layout needs of one of its processes (no spec, input or output)."""

    processid: str
    nodename: str
    state: int
    parents: list[str]
    children: list[str]


@dataclass(frozen=True)
class ProcessQuery:
    colony: str
    state: int = -1  # -1: any
    count: int = 100
    executortype: str = ""
    label: str = ""
    initiator: str = ""
    processgraphid: str = ""


@dataclass
class BlueprintWrite:
    """What goes with a blueprint write, in the same transaction."""

    history: BlueprintHistory | None = None  # appended
    location: Location | None = None  # added unless the colony has a location of that name
    crons: dict[str, Cron] = field(default_factory=dict)
    """Location name → the reconcile cron of (the blueprint's kind, that location). After the write that
    cron exists exactly while blueprints of the kind are at that location: added from this value when
    missing (a cron of that name already there is kept), removed by name when none is left."""


class Storage(ABC):
    """What the server needs from a database."""

    # -- lifecycle ----------------------------------------------------------------------------------
    @abstractmethod
    async def open(self) -> None:
        """Connect, and create or migrate the schema (refusing a database newer than the code)."""

    @abstractmethod
    async def close(self) -> None: ...

    # -- server ---------------------------------------------------------------------------------------
    @abstractmethod
    async def get_server_id(self) -> str: ...

    @abstractmethod
    async def set_server_id(self, server_id: str) -> None: ...

    # -- colonies -------------------------------------------------------------------------------------
    @abstractmethod
    async def add_colony(self, colony: Colony) -> None:
        """Conflict if the name exists."""

    @abstractmethod
    async def get_colony(self, name: str) -> Colony | None: ...

    @abstractmethod
    async def list_colonies(self) -> list[Colony]: ...

    @abstractmethod
    async def remove_colony(self, name: str) -> None:
        """Delete the colony and everything in it."""

    @abstractmethod
    async def change_colony_id(self, name: str, colony_id: str) -> None: ...

    @abstractmethod
    async def set_paused(self, colony: str, paused: bool) -> None: ...

    @abstractmethod
    async def is_paused(self, colony: str) -> bool: ...

    # -- executors ------------------------------------------------------------------------------------
    @abstractmethod
    async def add_executor(self, executor: Executor, replace: bool = False) -> list[str]:
        """Insert (Conflict if the name exists, unless `replace`; IdInUse if another executor that is not
        UNREGISTERED, in any colony, has the id); returns ids of re-queued processes."""

    @abstractmethod
    async def get_executor(self, colony: str, name: str) -> Executor | None: ...

    @abstractmethod
    async def get_executor_by_id(self, executor_id: str) -> Executor | None:
        """Global lookup; an id registered in several colonies returns the active one."""

    @abstractmethod
    async def get_colony_executor_by_id(self, colony: str, executor_id: str) -> Executor | None: ...

    @abstractmethod
    async def list_executors(self, colony: str) -> list[Executor]: ...

    @abstractmethod
    async def set_executor_state(self, colony: str, name: str, state: int) -> bool: ...

    @abstractmethod
    async def remove_executor(self, colony: str, name: str, now_ns: int) -> list[str]:
        """Soft-delete (UNREGISTERED), drop its functions, re-queue its RUNNING processes of this colony."""

    @abstractmethod
    async def reject_executor(self, colony: str, name: str, now_ns: int) -> list[str] | None:
        """State REJECTED and re-queue its RUNNING processes of this colony (a revocation), in one
        transaction that a concurrent claim cannot interleave with; None if there is no such executor."""

    @abstractmethod
    async def touch_executor(self, executor_id: str, now_ns: int) -> None:
        """Record a sign of life."""

    @abstractmethod
    async def update_executor(
        self, colony: str, name: str, capabilities: bytes | None, allocations: bytes | None
    ) -> None: ...

    @abstractmethod
    async def change_executor_id(self, colony: str, old_id: str, new_id: str) -> None:
        """IdInUse if `new_id` is another live executor's (any colony) or a user's of the colony."""

    @abstractmethod
    async def stale_executors(self, older_than_ns: int) -> list[Executor]: ...

    # -- users ------------------------------------------------------------------------------------------
    @abstractmethod
    async def add_user(self, user: User) -> None:
        """Conflict if the name or id exists in the colony."""

    @abstractmethod
    async def get_user(self, colony: str, name: str) -> User | None: ...

    @abstractmethod
    async def get_user_by_id(self, colony: str, user_id: str) -> User | None: ...

    @abstractmethod
    async def list_users(self, colony: str) -> list[User]: ...

    @abstractmethod
    async def remove_user(self, colony: str, name: str) -> bool: ...

    @abstractmethod
    async def change_user_id(self, colony: str, old_id: str, new_id: str) -> None:
        """IdInUse if `new_id` is another user's or an executor's (not UNREGISTERED) of the colony."""

    @abstractmethod
    async def identity_in_use(self, identity: str, colony: str | None) -> bool:
        """Whether an executor (not UNREGISTERED) or a user of `colony` (of any colony when None) has
        this id."""

    # -- processes --------------------------------------------------------------------------------------
    @abstractmethod
    async def add_processes(
        self, processes: list[Process], graph: ProcessGraph | None = None, actor: str = ""
    ) -> None:
        """Insert processes (and their ENV attributes, and the graph) in one transaction."""

    @abstractmethod
    async def get_process(self, process_id: str, attributes: bool = True) -> Process | None:
        """With its attributes unless `attributes=False` (cheaper, for checks)."""

    @abstractmethod
    async def claim(self, req: ClaimRequest, now_ns: int) -> Process | None:
        """Atomically assign the best matching WAITING process (lowest prioritytime) or None.
        Uses an index: the cost does not grow with the queue length."""

    @abstractmethod
    async def finish(
        self, process_id: str, executor_id: str, success: bool, output: list[object] | None,
        errors: list[str] | None, now_ns: int, attempt: int | None = None,
    ) -> Changed | None:
        """RUNNING + assigned to `executor_id` (+ `retries == attempt` unless None: the attempt fence)
        → SUCCESS/FAILED, resolving its workflow in the same transaction. None when the process is not
        in that state (the caller finds out why)."""

    @abstractmethod
    async def set_output(self, process_id: str, executor_id: str, output: list[object],
                         attempt: int | None = None) -> bool:
        """Replace the output of a RUNNING process assigned to `executor_id` (and at that attempt)."""

    @abstractmethod
    async def cancel(self, process_id: str, actor: str, now_ns: int) -> Process | None:
        """WAITING/RUNNING standalone process → CANCELLED; None if not in such a state."""

    @abstractmethod
    async def expire(self, now_ns: int, limit: int = 1000) -> list[Process]:
        """Apply exec and wait deadlines (§4.4); returns the processes changed."""

    @abstractmethod
    async def list_processes(self, q: ProcessQuery) -> list[Process]: ...

    @abstractmethod
    async def process_history(
        self, colony: str, executor_id: str, since_ns: int, state: int
    ) -> list[Process]: ...

    @abstractmethod
    async def remove_process(self, process_id: str) -> None: ...

    @abstractmethod
    async def remove_all_processes(self, colony: str, state: int) -> None:
        """Standalone processes only; state -1 means all but RUNNING."""

    @abstractmethod
    async def statistics(self, colony: str | None) -> Statistics: ...

    @abstractmethod
    async def process_events(self, process_id: str) -> list[ProcessEvent]: ...

    # -- attributes and functions ----------------------------------------------------------------------------
    @abstractmethod
    async def add_attribute(self, attribute: Attribute, now_ns: int) -> None:
        """Conflict if the id exists."""

    @abstractmethod
    async def get_attribute(self, attribute_id: str) -> Attribute | None: ...

    @abstractmethod
    async def add_function(self, function: Function) -> None: ...

    @abstractmethod
    async def get_function(self, function_id: str) -> Function | None: ...

    @abstractmethod
    async def list_functions(self, colony: str, executor_name: str) -> list[Function]: ...

    @abstractmethod
    async def remove_function(self, function_id: str) -> None: ...

    @abstractmethod
    async def record_function_run(
        self, colony: str, executor_name: str, funcname: str, wait_s: float, exec_s: float
    ) -> None: ...

    # -- workflows --------------------------------------------------------------------------------------------
    # Graphs are inserted with `add_processes(processes, graph)`; claim/finish/expire resolve them.
    @abstractmethod
    async def get_graph(self, graph_id: str) -> ProcessGraph | None:
        """The graph with `processids` filled (nodes/edges are computed by the handler)."""

    @abstractmethod
    async def graph_members(self, graph_id: str) -> list[GraphMember]:
        """The graph's processes in `processids` order, narrowly (for the layout and size limits)."""

    @abstractmethod
    async def list_graphs(self, colony: str, state: int, count: int) -> list[ProcessGraph]:
        """Newest first; state -1 means any; `processids` filled (nodes/edges left empty)."""

    @abstractmethod
    async def remove_graph(self, graph_id: str) -> None:
        """Delete the graph and its processes."""

    @abstractmethod
    async def remove_all_graphs(self, colony: str, state: int) -> None: ...

    @abstractmethod
    async def cancel_graph(self, graph_id: str, actor: str, now_ns: int) -> list[Process]:
        """Every WAITING/RUNNING process → CANCELLED, graph → CANCELLED; returns the changed processes."""

    @abstractmethod
    async def add_child(self, graph_id: str, parent_id: str, child_id: str, process: Process,
                        insert: bool, now_ns: int) -> Process:
        """Insert a dynamic child (§5) in one transaction; returns the stored child."""

    # -- generators ---------------------------------------------------------------------------------------------
    @abstractmethod
    async def add_generator(self, generator: Generator) -> None:
        """Conflict if (colony, name) exists."""

    @abstractmethod
    async def get_generator(self, generator_id: str) -> Generator | None:
        """With `queuesize` filled."""

    @abstractmethod
    async def get_generator_by_name(self, colony: str, name: str) -> Generator | None: ...

    @abstractmethod
    async def list_generators(self, colony: str, count: int) -> list[Generator]: ...

    @abstractmethod
    async def remove_generator(self, generator_id: str) -> None: ...

    @abstractmethod
    async def pack_generator(self, generator_id: str, colony: str, arg: str, now_ns: int) -> None:
        """Queue one arg (FIFO); the first pack since the last run sets `firstpack`."""

    @abstractmethod
    async def fire_generator(
        self, generator_id: str, count: int, build: GraphBuilder, now_ns: int
    ) -> list[Process]:
        """In one transaction: take the `count` oldest args, build a workflow from them with
        `build(args)`, insert it, delete the args and set `lastrun`. No arg is lost or used twice."""

    @abstractmethod
    async def generators_due(self) -> list[Generator]:
        """Every generator with queued args (queuesize filled), for the leader's check."""

    # -- crons --------------------------------------------------------------------------------------------------
    @abstractmethod
    async def add_cron(self, cron: Cron) -> None:
        """Conflict if (colony, name) exists."""

    @abstractmethod
    async def get_cron(self, cron_id: str) -> Cron | None: ...

    @abstractmethod
    async def list_crons(self, colony: str, count: int) -> list[Cron]: ...

    @abstractmethod
    async def remove_cron(self, cron_id: str) -> None: ...

    @abstractmethod
    async def crons_due(self, now_ns: int) -> list[Cron]:
        """Crons whose `nextrun` is unset or has passed."""

    @abstractmethod
    async def set_cron_next(self, cron_id: str, next_run_ns: int) -> None: ...

    @abstractmethod
    async def fire_cron(self, cron_id: str, expected_next_ns: int, next_run_ns: int,
                        processes: list[Process], graph: ProcessGraph, now_ns: int) -> bool:
        """In one transaction, only if `nextrun` still equals `expected_next_ns` (a fence against a
        double fire): insert the graph, set lastrun/nextrun/prevprocessgraphid. False if fenced out."""

    # -- logs -----------------------------------------------------------------------------------------------------
    @abstractmethod
    async def add_log(self, log: Log) -> None: ...

    @abstractmethod
    async def get_logs(self, colony: str, process_id: str, executor_name: str, count: int, since_ns: int,
                       latest: bool) -> list[Log]: ...

    @abstractmethod
    async def search_logs(self, colony: str, text: str, since_ns: int, count: int) -> list[Log]: ...

    # -- files and snapshots (ColonyFS metadata, §7) ------------------------------------------------------------
    @abstractmethod
    async def add_file(self, file: File, now_ns: int) -> File:
        """Store a new revision (`fileid` set by the caller); the backend takes `sequencenr` from one global
        sequence and sets `added`. Returns the stored file."""

    @abstractmethod
    async def get_file(self, colony: str, file_id: str) -> File | None: ...

    @abstractmethod
    async def file_revisions(self, colony: str, label: str, name: str, latest: bool) -> list[File]:
        """The revisions of (label, name), newest (highest sequencenr) first; only the newest if `latest`."""

    @abstractmethod
    async def list_file_data(self, colony: str, label: str) -> list[FileData]:
        """The newest revision of each name under exactly `label`, by name."""

    @abstractmethod
    async def file_labels(self, colony: str, prefix: str = "", exact: bool = False) -> list[Label]:
        """Labels with their revision counts, by name: all (`prefix` ""), those starting with `prefix`, or
        (`exact`) `prefix` itself and its sub-labels `prefix/…`, empty when `prefix` itself has no files."""

    @abstractmethod
    async def remove_file(self, colony: str, file_id: str) -> bool:
        """Remove one revision; False if there was none."""

    @abstractmethod
    async def remove_file_revisions(self, colony: str, label: str, name: str) -> int:
        """Remove every revision of (label, name); how many were removed."""

    @abstractmethod
    async def create_snapshot(self, snapshot: Snapshot, now_ns: int) -> Snapshot:
        """Store `snapshot` (id, colony, label, name set by the caller; `added` = now) with `fileids` = the
        newest revision of every file under `label` and its sub-labels, in one transaction. Conflict if
        the colony already has a snapshot of that name."""

    @abstractmethod
    async def get_snapshot(self, colony: str, snapshot_id: str = "", name: str = "") -> Snapshot | None:
        """By id if given, else by name."""

    @abstractmethod
    async def list_snapshots(self, colony: str) -> list[Snapshot]:
        """Newest first."""

    @abstractmethod
    async def remove_snapshot(self, colony: str, snapshot_id: str = "", name: str = "") -> bool:
        """By id if given, else by name; False if there was none."""

    @abstractmethod
    async def remove_all_snapshots(self, colony: str) -> int: ...

    # -- locations (§7.1) -----------------------------------------------------------------------------------------
    @abstractmethod
    async def add_location(self, location: Location) -> Location:
        """Store `location` (every field set by the caller). AlreadyExists if the colony has a location of
        that name (names are unique per colony, exactly as written)."""

    @abstractmethod
    async def get_location(self, colony: str, name: str) -> Location | None: ...

    @abstractmethod
    async def list_locations(self, colony: str) -> list[Location]:
        """By name."""

    @abstractmethod
    async def remove_location(self, colony: str, name: str) -> bool:
        """False if there was none. Executors naming it keep their `locationname`."""

    # -- blueprints (§3, §7.1) -------------------------------------------------------------------------------------
    # Writes of a kind's definition and blueprints are serialized per (colony, kind), so a definition is never
    # removed while a blueprint of its kind is being added, and reconcile crons follow the blueprints exactly.
    @abstractmethod
    async def add_blueprint_definition(self, definition: BlueprintDefinition) -> None:
        """AlreadyExists if the colony has a definition of that name or of that kind (spec.names.kind)."""

    @abstractmethod
    async def get_blueprint_definition(self, colony: str, name: str = "", kind: str = ""
                                       ) -> BlueprintDefinition | None:
        """By name, or by kind when `name` is empty."""

    @abstractmethod
    async def list_blueprint_definitions(self, colony: str) -> list[BlueprintDefinition]:
        """By name."""

    @abstractmethod
    async def remove_blueprint_definition(self, colony: str, name: str) -> bool:
        """False if there was none; InUse while blueprints of its kind exist."""

    @abstractmethod
    async def add_blueprint(self, blueprint: Blueprint, write: BlueprintWrite) -> None:
        """AlreadyExists if the colony has a blueprint of that name; NotFound if it has no definition of
        the blueprint's kind."""

    @abstractmethod
    async def get_blueprint(self, colony: str, name: str = "", blueprint_id: str = "") -> Blueprint | None:
        """By name, or by id when `name` is empty (the colony is then ignored)."""

    @abstractmethod
    async def list_blueprints(self, colony: str, kind: str = "", location: str = "") -> list[Blueprint]:
        """By name; an empty `kind` or `location` does not filter."""

    @abstractmethod
    async def update_blueprint(self, blueprint: Blueprint, expected_generation: int, write: BlueprintWrite) -> bool:
        """Replace the stored blueprint of that id (not its kind), its status only when `blueprint.status` is
        set, if its generation is still `expected_generation`. False otherwise (changed or removed since)."""

    @abstractmethod
    async def set_blueprint_status(self, colony: str, name: str, status: dict[str, object]) -> bool:
        """Replace the status only (generation and history stay). False if there is no such blueprint."""

    @abstractmethod
    async def remove_blueprint(self, colony: str, name: str, write: BlueprintWrite) -> Blueprint | None:
        """Remove the blueprint and its history; the removed blueprint, or None if there was none."""

    @abstractmethod
    async def blueprint_history(self, blueprint_id: str, limit: int) -> list[BlueprintHistory]:
        """Newest first, at most `limit`."""

    # -- retention ------------------------------------------------------------------------------------------------
    @abstractmethod
    async def retain(self, older_than_ns: int) -> int:
        """Delete SUCCESS processes and graphs submitted before the cutoff (never failed ones), and
        logs older than it; returns how many processes were deleted."""

    # -- counts for /metrics (colonies.storage.tally) --------------------------------------------------------------
    tally: Tally | None = None
    """Set by `start_tally`: from then on the backend reports every committed change of a counted row."""

    async def start_tally(self, tally: Tally) -> None:
        """Count from now on, seeded from the database (one grouped query per table)."""
        self.tally = tally
        await self.seed_tally()

    async def seed_tally(self) -> None:
        """Read the counts from the database again; changes committed meanwhile are applied on top."""
        tally = self.tally
        if tally is None:
            return
        tally.begin_seed()
        try:
            counted, heard = await self.tally_rows()
        except BaseException:
            tally.abort_seed()
            raise
        tally.finish_seed(counted, heard)

    @abstractmethod
    async def tally_rows(self) -> tuple[list[Delta], dict[str, int]]:
        """Every counted row as deltas from zero (processes and workflows grouped by colony, executor type
        and state; executors one per row; colonies), read in one snapshot, and each executor id's
        `last_heard`."""

    # -- replay protection (colonies.replay) ----------------------------------------------------------------------
    @abstractmethod
    async def remember_nonce(self, nonce: str, signer: str, expires_ns: int) -> bool:
        """Record (nonce, signer) until `expires_ns`; False if it is already recorded (a replay).
        One atomic insert-if-absent, so two replicas racing on the same nonce accept it once."""

    @abstractmethod
    async def purge_nonces(self, now_ns: int) -> None:
        """Forget nonces whose `expires_ns` has passed."""
