"""Handlers: processes, assignment, attributes, functions and the audit trail (§4, §7)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from colonies.clock import NS, monotonic, to_datetime
from colonies.errors import BadRequest, Forbidden, NotFound, Timeout, Unavailable
from colonies.model import (
    Attribute,
    AttributeType,
    Executor,
    Function,
    FunctionSpec,
    Process,
    ProcessEvent,
    ProcessState,
)
from colonies.protocol import messages as m
from colonies.protocol.crypto import sha3_hex
from colonies.resources import cpu_str, mem_str, parse_cpu, parse_mem
from colonies.scheduler import ClientGone, wait_wake
from colonies.security import Member, initiator_name
from colonies.services import Services, new_id
from colonies.storage.base import ClaimRequest, ProcessQuery

DAY_NS = 86_400 * NS
MAX_PRIORITY = 50_000
MAX_DURATION_S = 100 * 365 * 86_400  # deadlines stay far inside int64 ns
MAX_ARGS = 10_000                    # args + kwargs entries of one function spec
MAX_ATTRIBUTE_BYTES = 1024 * 1024    # an attribute's value (UTF-8)
MAX_ATTRIBUTE_KEY = 256


INT64 = 2**63
_FREE_JSON = {"args", "kwargs", "fs"}  # stored as JSON text, read back as JSON numbers: any size fits
_LONG_DIGITS = re.compile(rb"\d{19}")  # 2**63 - 1 has 19 digits: a shorter integer always fits
_encode = msgspec.json.Encoder().encode


def _out_of_range(spec: FunctionSpec) -> str | None:
    """The first integer field of a normalised spec that a storage column (int64) cannot hold."""
    c = spec.conditions
    for name, text in (("conditions.mem", c.mem), ("conditions.storage", c.storage), ("conditions.gpu.mem", c.gpu.mem)):
        try:
            if parse_mem(text) >= INT64:  # normalised to "<n>Mi"; storage keeps bytes
                return name
        except BadRequest:  # so large that its normalised form has too many digits to read back
            return name
    if _LONG_DIGITS.search(_encode(spec)) is None:
        return None  # no run of 19 digits anywhere: every integer is within int64 (|n| < 2**63 has <= 19)
    stack: list[tuple[str, object]] = [("", msgspec.to_builtins(spec))]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{path}{k}.", v) for k, v in value.items() if k not in _FREE_JSON or path)
        elif isinstance(value, list):
            stack.extend((path, v) for v in value)
        elif isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
            return path.rstrip(".")
    return None


def normalize_spec(spec: FunctionSpec, colony: str | None = None) -> FunctionSpec:
    """Validate a spec and normalise it the way the original reads it back (§3)."""
    c = spec.conditions
    if colony is not None:
        c.colonyname = colony
    if not c.colonyname:
        raise BadRequest("conditions.colonyname is required")
    if not c.executortype:
        raise BadRequest("conditions.executortype is required")
    if not -MAX_PRIORITY <= spec.priority <= MAX_PRIORITY:
        raise BadRequest(f"priority must be in [-{MAX_PRIORITY}, {MAX_PRIORITY}]")
    if max(spec.maxexectime, spec.maxwaittime) > MAX_DURATION_S:
        # A deadline past int64 ns would fail every later claim or timeout check (a poison pill).
        raise BadRequest(f"maxexectime and maxwaittime must be at most {MAX_DURATION_S} seconds")
    c.cpu = cpu_str(parse_cpu(c.cpu))
    c.mem = mem_str(parse_mem(c.mem))
    c.storage = mem_str(parse_mem(c.storage))
    c.gpu.mem = mem_str(parse_mem(c.gpu.mem))
    if c.executornames == ["*"]:
        c.executornames = []
    c.dependencies = c.dependencies or []
    spec.args = spec.args if spec.args is not None else []
    spec.kwargs = spec.kwargs if spec.kwargs is not None else {}
    if len(spec.args) + len(spec.kwargs) > MAX_ARGS:
        raise BadRequest(f"a function spec may have at most {MAX_ARGS} args and kwargs")
    spec.env = spec.env or {}
    spec.channels = spec.channels or []  # pycolonies reads a list; null (a spec without the key) breaks it
    if spec.fs is None:
        spec.fs = {"mount": "", "snapshots": None, "dirs": None}
    field = _out_of_range(spec)
    if field is not None:
        # A value storage cannot hold would fail the insert (PostgreSQL) or a later read: one clear 400.
        name = f" of function spec {spec.nodename}" if spec.nodename else ""
        raise BadRequest(f"{field}{name} is out of range")
    return spec


def new_process(s: Services, spec: FunctionSpec, member: Member | None, signer: str, now: int) -> Process:
    """A WAITING process for `spec` (already normalised), with ENV attributes from `spec.env`."""
    pid = new_id()
    c = spec.conditions
    p = Process(
        processid=pid,
        initiatorid=signer if member is not None else "",
        initiatorname=initiator_name(member) if member is not None else "",
        state=ProcessState.WAITING,
        prioritytime=now - spec.priority * DAY_NS,
        submissiontime=to_datetime(now),
        waitdeadline=to_datetime(now + spec.maxwaittime * NS) if spec.maxwaittime > 0 else to_datetime(0),
        spec=spec,
        input=[],
        output=[],
    )
    p.attributes = [
        Attribute(attributeid=sha3_hex(f"{pid}{k}{int(AttributeType.ENV)}".encode()), targetid=pid,
                  targetcolonyname=c.colonyname, attributetype=AttributeType.ENV, key=k, value=v)
        for k, v in (spec.env or {}).items()
    ]
    return p


async def submit(s: Services, signer: str, msg: m.SubmitFuncSpecMsg) -> Process:
    spec = normalize_spec(msg.spec)
    member = await s.guard.member(signer, spec.conditions.colonyname)
    p = new_process(s, spec, member, signer, s.now())
    await s.storage.add_processes([p], actor=signer)
    s.bus.publish(p)
    return p


async def assign(s: Services, signer: str, msg: m.AssignProcessMsg) -> Process:
    if msg.timeout == 0:
        raise BadRequest("timeout must not be 0")
    executor = await s.guard.executor(signer, msg.colonyname)
    req = ClaimRequest(
        colony=msg.colonyname, executor_id=executor.executorid, executor_name=executor.executorname,
        executor_type=executor.executortype, location=executor.locationname,
        cpu_millis=parse_cpu(msg.availablecpu) if msg.availablecpu else None,
        mem_bytes=parse_mem(msg.availablemem) if msg.availablemem else None, approved_only=True,
        max_exec_s=msg.availableexectime if msg.availableexectime > 0 else None,
    )
    started = monotonic()
    deadline = started + max(msg.timeout, 0)
    while True:
        waiter = s.bus.park(req.colony, req.executor_type, req.executor_name)
        consumed = False
        try:
            if await s.storage.is_paused(req.colony):
                if msg.timeout < 0:
                    raise Unavailable(f"assignments are paused for colony {req.colony}")
                timeout_exc: Exception = Timeout(f"assignments are paused for colony {req.colony}")
            else:
                p = await s.storage.claim(req, s.now())
                if p is not None:
                    s.bus.publish(p)
                    if s.metrics is not None:
                        s.metrics.assigned(p, monotonic() - started)
                    return p
                if msg.timeout < 0:
                    raise NotFound("No process available for assignment")
                timeout_exc = NotFound("No process available for assignment")
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise timeout_exc
            try:
                woken = await wait_wake(waiter.future, remaining)
            except ClientGone:
                raise BadRequest("client disconnected") from None
            if not woken:
                raise timeout_exc
            consumed = True
            if waiter.revoked:
                raise Forbidden(f"access denied, executor {req.executor_name} was rejected or removed")
        finally:
            s.bus.unpark(waiter, consumed=consumed or not waiter.future.done())


async def _process_as_member(s: Services, signer: str, process_id: str, attributes: bool = False
                             ) -> tuple[Process, Member]:
    p = await s.storage.get_process(process_id, attributes=attributes)
    if p is None:
        raise NotFound(f"process {process_id} not found")
    member = await s.guard.member(signer, p.spec.conditions.colonyname)
    return p, member


async def get_process(s: Services, signer: str, msg: m.GetProcessMsg) -> Process:
    p, _ = await _process_as_member(s, signer, msg.processid, attributes=True)
    return p


async def get_processes(s: Services, signer: str, msg: m.GetProcessesMsg) -> list[Process]:
    await s.guard.member(signer, msg.colonyname)
    if not 0 <= msg.count <= 100:
        raise BadRequest("count must be between 0 and 100")
    if not -1 <= msg.state <= 4:
        raise BadRequest("invalid state")
    if msg.initiator and not msg.executortype and await s.storage.get_user(msg.colonyname, msg.initiator) is None:
        raise BadRequest(f"initiator {msg.initiator} is not a user of the colony")
    if msg.count == 0:
        return []
    return await s.storage.list_processes(ProcessQuery(
        colony=msg.colonyname, state=msg.state, count=msg.count, executortype=msg.executortype,
        label=msg.label, initiator=msg.initiator, processgraphid=msg.processgraphid))


async def get_process_hist(s: Services, signer: str, msg: m.GetProcessHistMsg) -> list[Process]:
    await s.guard.member(signer, msg.colonyname)
    since = s.now() - max(msg.seconds, 0) * NS
    return await s.storage.process_history(msg.colonyname, msg.executorid, since, msg.state)


def _check_attempt(p: Process, signer: str, attempt: int | None) -> None:
    """The caller is the assigned executor and, when it names one, at the current attempt (the fence
    against a late close of an attempt that was re-queued and assigned again to the same identity)."""
    if not p.isassigned or p.assignedexecutorid != signer:
        raise Forbidden("access denied, process is not assigned to the caller")
    if attempt is not None and attempt != p.retries:
        raise Forbidden(f"access denied, process is not assigned to the caller at attempt {attempt}"
                        f" (stale attempt; the current attempt is {p.retries})")


async def _close(s: Services, signer: str, process_id: str, success: bool, out: list[Any] | None,
                 errors: list[str] | None, attempt: int | None) -> dict[str, Any]:
    p, member = await _process_as_member(s, signer, process_id)
    _check_attempt(p, signer, attempt)
    now = s.now()
    changed = await s.storage.finish(process_id, signer, success, out, errors, now, attempt)
    if changed is None or changed.process is None:
        current = await s.storage.get_process(process_id, attributes=False)
        state = ProcessState(current.state).name if current else "removed"
        if current is not None and current.state == ProcessState.RUNNING:
            _check_attempt(current, signer, attempt)
        elif current is not None and current.assignedexecutorid != signer:
            raise Forbidden("access denied, process is not assigned to the caller")
        raise BadRequest(f"process is {state}, not RUNNING")
    s.bus.publish(changed.process)
    s.bus.publish_all(changed.others)
    if success and isinstance(member, Executor):
        wait_s = max(p.starttime.timestamp() - p.submissiontime.timestamp(), 0.0)
        exec_s = max(now / NS - p.starttime.timestamp(), 0.0)
        await s.storage.record_function_run(p.spec.conditions.colonyname, member.executorname,
                                            p.spec.funcname, wait_s, exec_s)
    return {}


async def close_successful(s: Services, signer: str, msg: m.CloseSuccessfulMsg) -> dict[str, Any]:
    return await _close(s, signer, msg.processid, True, msg.out, None, msg.attempt)


async def close_failed(s: Services, signer: str, msg: m.CloseFailedMsg) -> dict[str, Any]:
    return await _close(s, signer, msg.processid, False, None, msg.errors or [], msg.attempt)


async def set_output(s: Services, signer: str, msg: m.SetOutputMsg) -> dict[str, Any]:
    p, _ = await _process_as_member(s, signer, msg.processid)
    _check_attempt(p, signer, msg.attempt)
    if not await s.storage.set_output(msg.processid, signer, msg.out or [], msg.attempt):
        current = await s.storage.get_process(msg.processid, attributes=False)
        if current is not None and current.state == ProcessState.RUNNING:
            _check_attempt(current, signer, msg.attempt)
        raise BadRequest("process is not RUNNING")
    return {}


async def cancel(s: Services, signer: str, msg: m.CancelProcessMsg) -> dict[str, Any]:
    p, _ = await _process_as_member(s, signer, msg.processid)
    if p.processgraphid:
        raise BadRequest("process belongs to a workflow; cancel the workflow instead")
    cancelled = await s.storage.cancel(msg.processid, signer, s.now())
    if cancelled is None:
        raise BadRequest(f"process is {ProcessState(p.state).name}, it cannot be cancelled")
    s.bus.publish(cancelled)
    return {}


async def remove(s: Services, signer: str, msg: m.RemoveProcessMsg) -> dict[str, Any]:
    p, _ = await _process_as_member(s, signer, msg.processid)
    if p.processgraphid:
        raise BadRequest("process belongs to a workflow; remove the workflow instead")
    if p.state == ProcessState.RUNNING:
        raise BadRequest("a RUNNING process cannot be removed")
    await s.storage.remove_process(msg.processid)
    return {}


async def remove_all(s: Services, signer: str, msg: m.RemoveAllProcessesMsg) -> dict[str, Any]:
    await s.guard.colony_owner(signer, msg.colonyname)
    if msg.state == ProcessState.RUNNING or not -1 <= msg.state <= 4:
        raise BadRequest("cannot remove RUNNING processes")
    await s.storage.remove_all_processes(msg.colonyname, msg.state)
    return {}


async def pause(s: Services, signer: str, msg: m.PauseAssignmentsMsg) -> dict[str, Any]:
    await s.guard.colony_owner(signer, msg.colonyname)
    await s.storage.set_paused(msg.colonyname, True)
    return {}


async def resume(s: Services, signer: str, msg: m.ResumeAssignmentsMsg) -> dict[str, Any]:
    await s.guard.colony_owner(signer, msg.colonyname)
    await s.storage.set_paused(msg.colonyname, False)
    s.bus.wake_colony(msg.colonyname)
    return {}


async def pause_status(s: Services, signer: str, msg: m.GetPauseStatusMsg) -> dict[str, Any]:
    await s.guard.member(signer, msg.colonyname, approved=False)
    return {"msgtype": "pausestatusreplymsg", "colonyname": msg.colonyname,
            "ispaused": await s.storage.is_paused(msg.colonyname)}


async def add_attribute(s: Services, signer: str, msg: m.AddAttributeMsg) -> Attribute:
    a = msg.attribute
    p, _ = await _process_as_member(s, signer, a.targetid)
    if p.assignedexecutorid != signer:
        raise Forbidden("access denied, process is not assigned to the caller")
    _check_attempt(p, signer, msg.attempt)
    if p.state != ProcessState.RUNNING:
        raise BadRequest("attributes can only be added to a RUNNING process")
    if not 0 <= a.attributetype <= 3:
        raise BadRequest("invalid attribute type")
    if len(a.key) > MAX_ATTRIBUTE_KEY or len(a.value.encode()) > MAX_ATTRIBUTE_BYTES:
        raise BadRequest(f"attribute key longer than {MAX_ATTRIBUTE_KEY} characters or value larger than "
                         f"{MAX_ATTRIBUTE_BYTES} bytes")
    a.attributeid = sha3_hex(f"{a.targetid}{a.key}{a.attributetype}".encode())
    a.targetcolonyname = p.spec.conditions.colonyname
    a.targetprocessgraphid = p.processgraphid
    a.state = p.state
    await s.storage.add_attribute(a, s.now())
    return a


async def get_attribute(s: Services, signer: str, msg: m.GetAttributeMsg) -> Attribute:
    a = await s.storage.get_attribute(msg.attributeid)
    if a is None:
        raise NotFound("attribute not found")
    await s.guard.member(signer, a.targetcolonyname)
    return a


async def add_function(s: Services, signer: str, msg: m.AddFunctionMsg) -> Function:
    f = msg.fun
    member = await s.guard.member(signer, f.colonyname)
    if not isinstance(member, Executor) or member.executorname != f.executorname:
        raise Forbidden("access denied, only the named executor may register its functions")
    if not f.funcname:
        raise BadRequest("funcname is required")
    # Always a fresh id: a client-chosen one that exists in another colony would fail, and that
    # failure would tell the caller that the id exists there (an existence oracle across tenants).
    f.functionid = new_id()
    f.executortype = member.executortype
    f.locationname = member.locationname
    await s.storage.add_function(f)
    return f


async def get_functions(s: Services, signer: str, msg: m.GetFunctionsMsg) -> list[Function]:
    await s.guard.member(signer, msg.colonyname)
    return await s.storage.list_functions(msg.colonyname, msg.executorname)


async def remove_function(s: Services, signer: str, msg: m.RemoveFunctionMsg) -> dict[str, Any]:
    f = await s.storage.get_function(msg.functionid)
    if f is None:
        raise NotFound("function not found")
    member = await s.guard.member(signer, f.colonyname)
    if not isinstance(member, Executor) or member.executorname != f.executorname:
        raise Forbidden("access denied, only the owning executor may remove a function")
    await s.storage.remove_function(msg.functionid)
    return {}


async def get_process_events(s: Services, signer: str, msg: m.GetProcessEventsMsg) -> list[ProcessEvent]:
    await _process_as_member(s, signer, msg.processid)
    return await s.storage.process_events(msg.processid)
