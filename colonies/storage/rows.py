"""Row <-> model mapping shared by the SQL backends. Column orders here are the SELECT lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from colonies.clock import to_datetime
from colonies.model import (
    Allocations,
    Attribute,
    Capabilities,
    Executor,
    Function,
    FunctionArg,
    FunctionSpec,
    Process,
    ProcessGraph,
    User,
)

_enc = msgspec.json.Encoder()
_spec_dec = msgspec.json.Decoder(FunctionSpec)
_list_dec = msgspec.json.Decoder(list[Any])
_strs_dec = msgspec.json.Decoder(list[str])
_caps_dec = msgspec.json.Decoder(Capabilities)
_alloc_dec = msgspec.json.Decoder(Allocations)
_fargs_dec = msgspec.json.Decoder(list[FunctionArg])


def dumps(obj: Any) -> bytes:
    return _enc.encode(obj)


def strs(raw: bytes | str | None) -> list[str]:
    return _strs_dec.decode(raw) if raw else []


def anylist(raw: bytes | str | None) -> list[Any] | None:
    return None if raw is None else _list_dec.decode(raw)


PROCESS_COLS = (
    "process_id, initiator_id, initiator_name, assigned_executor_id, is_assigned, state, priority_time,"
    " submission_time, start_time, end_time, wait_deadline, exec_deadline, retries, spec,"
    " wait_for_parents, parents, children, processgraph_id, input, output, errors"
)


def process(row: Sequence[Any]) -> Process:
    return Process(
        processid=row[0],
        initiatorid=row[1],
        initiatorname=row[2],
        assignedexecutorid=row[3],
        isassigned=bool(row[4]),
        state=row[5],
        prioritytime=row[6],
        submissiontime=to_datetime(row[7]),
        starttime=to_datetime(row[8]),
        endtime=to_datetime(row[9]),
        waitdeadline=to_datetime(row[10]),
        execdeadline=to_datetime(row[11]),
        retries=row[12],
        attributes=[],
        spec=_spec_dec.decode(row[13]),
        waitforparents=bool(row[14]),
        parents=strs(row[15]),
        children=strs(row[16]),
        processgraphid=row[17],
        input=anylist(row[18]),
        output=anylist(row[19]),
        errors=strs(row[20]),
    )


EXECUTOR_COLS = (
    "executor_id, executor_type, name, colony_name, state, require_func_reg, commission_time,"
    " last_heard, location_name, capabilities, allocations, blueprint_id, blueprint_gen"
)


def executor(row: Sequence[Any]) -> Executor:
    return Executor(
        executorid=row[0],
        executortype=row[1],
        executorname=row[2],
        colonyname=row[3],
        state=row[4],
        requirefuncreg=bool(row[5]),
        commissiontime=to_datetime(row[6]),
        lastheardfromtime=to_datetime(row[7]),
        locationname=row[8],
        capabilities=_caps_dec.decode(row[9]) if row[9] else Capabilities(),
        allocations=_alloc_dec.decode(row[10]) if row[10] else Allocations(),
        blueprintid=row[11],
        blueprintgen=row[12],
    )


USER_COLS = "colony_name, user_id, name, email, phone"


def user(row: Sequence[Any]) -> User:
    return User(colonyname=row[0], userid=row[1], name=row[2], email=row[3], phone=row[4])


ATTRIBUTE_COLS = "attribute_id, target_id, colony_name, processgraph_id, attribute_type, key, value"


def attribute(row: Sequence[Any], state: int = 0) -> Attribute:
    return Attribute(
        attributeid=row[0],
        targetid=row[1],
        targetcolonyname=row[2],
        targetprocessgraphid=row[3],
        attributetype=row[4],
        key=row[5],
        value=row[6],
        state=state,
    )


FUNCTION_COLS = (
    "function_id, executor_name, executor_type, colony_name, funcname, description, args, counter,"
    " min_wait, max_wait, min_exec, max_exec, avg_wait, avg_exec, location_name"
)


def function(row: Sequence[Any]) -> Function:
    return Function(
        functionid=row[0],
        executorname=row[1],
        executortype=row[2],
        colonyname=row[3],
        funcname=row[4],
        description=row[5],
        args=_fargs_dec.decode(row[6]) if row[6] else None,
        counter=row[7],
        minwaittime=row[8],
        maxwaittime=row[9],
        minexectime=row[10],
        maxexectime=row[11],
        avgwaittime=row[12],
        avgexectime=row[13],
        locationname=row[14],
    )


GRAPH_COLS = (
    "processgraph_id, initiator_id, initiator_name, colony_name, roots, state, submission_time,"
    " start_time, end_time"
)


def graph(row: Sequence[Any], process_ids: list[str]) -> ProcessGraph:
    return ProcessGraph(
        processgraphid=row[0],
        initiatorid=row[1],
        initiatorname=row[2],
        colonyname=row[3],
        rootprocessids=strs(row[4]),
        state=row[5],
        submissiontime=to_datetime(row[6]),
        starttime=to_datetime(row[7]),
        endtime=to_datetime(row[8]),
        processids=process_ids,
    )


def graph_state(states: Sequence[int]) -> int:
    """A graph's state from its processes' states (§5)."""
    if any(s == 3 for s in states):
        return 3
    if any(s == 4 for s in states):
        return 4
    if states and all(s == 2 for s in states):
        return 2
    if any(s in (1, 2) for s in states):
        return 1
    return 0
