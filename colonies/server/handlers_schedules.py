"""Handlers: generators, crons and logs (§6, §7)."""

from __future__ import annotations

from typing import Any

from colonies import cron as schedule
from colonies.clock import NS
from colonies.errors import BadRequest, Forbidden, NotFound
from colonies.loops import schedules as loops
from colonies.model import Cron, Executor, Generator, Log, ProcessState, WorkflowSpec
from colonies.protocol import messages as m
from colonies.security import Member, initiator_name
from colonies.server.handlers_processes import MAX_ARGS, MAX_DURATION_S
from colonies.server.handlers_types import Handler
from colonies.services import Services, check_name, new_id
from colonies.workflows import build_graph, parse_workflow

MAX_LIST = 1000
MAX_LOG_BYTES = 64 * 1024
MAX_GET_LOGS = 500
MAX_SEARCH_LOGS = 100
MAX_SEARCH_DAYS = 30
DAY_NS = 86_400 * NS


def _count(count: int) -> int:
    """List sizes: 0 or less means 100; capped at MAX_LIST."""
    return min(count, MAX_LIST) if count > 0 else 100


MAX_TRIGGER = MAX_ARGS  # a generator's workflow gets `trigger` args, as many as a submit may carry


def _check_workflow(s: Services, text: str, colony: str, member: Member, signer: str) -> None:
    """The stored spec must parse, be a DAG of function specs that a submit would accept, stay in the
    colony, and fit storage when it fires (a value that only fails then would fail every tick)."""
    spec: WorkflowSpec = parse_workflow(text)
    if spec.colonyname and spec.colonyname != colony:
        raise BadRequest(f"the workflow spec is for colony {spec.colonyname}, not {colony}")
    spec.colonyname = colony
    build_graph(s, spec, member, signer, s.now())  # a dry run: 400 on anything invalid or out of range


# -- generators -----------------------------------------------------------------------------------------------
async def add_generator(s: Services, signer: str, msg: m.AddGeneratorMsg) -> Generator:
    g = msg.generator
    member = await s.guard.member(signer, g.colonyname)
    check_name(g.name, "generator name")
    if not 1 <= g.trigger <= MAX_TRIGGER:
        raise BadRequest(f"trigger must be between 1 and {MAX_TRIGGER}")
    if abs(g.timeout) > MAX_DURATION_S:  # 0 or less: no timeout, stored as sent (as the original)
        raise BadRequest(f"timeout must be within ±{MAX_DURATION_S} seconds (0 or less: no timeout)")
    _check_workflow(s, g.workflowspec, g.colonyname, member, signer)
    stored = Generator(generatorid=new_id(), initiatorid=signer, initiatorname=initiator_name(member),
                       colonyname=g.colonyname, name=g.name, workflowspec=g.workflowspec, trigger=g.trigger,
                       timeout=g.timeout)
    await s.storage.add_generator(stored)
    return await _get_generator(s, stored.generatorid)


async def _get_generator(s: Services, generator_id: str) -> Generator:
    g = await s.storage.get_generator(generator_id)
    if g is None:
        raise NotFound(f"generator {generator_id} not found")
    g.checkerperiod = s.config.generator_period_ms
    return g


async def _generator_as_member(s: Services, signer: str, generator_id: str) -> Generator:
    g = await _get_generator(s, generator_id)
    await s.guard.member(signer, g.colonyname)
    return g


async def get_generator(s: Services, signer: str, msg: m.GetGeneratorMsg) -> Generator:
    return await _generator_as_member(s, signer, msg.generatorid)


async def resolve_generator(s: Services, signer: str, msg: m.ResolveGeneratorMsg) -> Generator:
    await s.guard.member(signer, msg.colonyname)
    g = await s.storage.get_generator_by_name(msg.colonyname, msg.generatorname)
    if g is None:
        raise NotFound(f"generator {msg.generatorname} not found in {msg.colonyname}")
    g.checkerperiod = s.config.generator_period_ms
    return g


async def get_generators(s: Services, signer: str, msg: m.GetGeneratorsMsg) -> list[Generator]:
    await s.guard.member(signer, msg.colonyname)
    found = await s.storage.list_generators(msg.colonyname, _count(msg.count))
    for g in found:
        g.checkerperiod = s.config.generator_period_ms
    return found


async def pack_generator(s: Services, signer: str, msg: m.PackGeneratorMsg) -> dict[str, Any]:
    g = await _generator_as_member(s, signer, msg.generatorid)
    await s.storage.pack_generator(g.generatorid, g.colonyname, msg.arg, s.now())
    return {}


async def remove_generator(s: Services, signer: str, msg: m.RemoveGeneratorMsg) -> dict[str, Any]:
    g = await _generator_as_member(s, signer, msg.generatorid)
    await s.storage.remove_generator(g.generatorid)
    return {}


# -- crons -------------------------------------------------------------------------------------------------
async def add_cron(s: Services, signer: str, msg: m.AddCronMsg) -> Cron:
    c = msg.cron
    member = await s.guard.member(signer, c.colonyname)
    check_name(c.name, "cron name")
    schedule.validate(c.interval, c.cronexpression, c.random, s.now())
    _check_workflow(s, c.workflowspec, c.colonyname, member, signer)
    stored = Cron(cronid=new_id(), initiatorid=signer, initiatorname=initiator_name(member),
                  colonyname=c.colonyname, name=c.name, cronexpression=c.cronexpression, interval=c.interval,
                  random=c.random, workflowspec=c.workflowspec,
                  waitforprevprocessgraph=c.waitforprevprocessgraph or c.waitforprevprocessgrap)
    await s.storage.add_cron(stored)  # nextrun stays unset: the cron loop computes it (as the original)
    return await _get_cron(s, stored.cronid)


async def _get_cron(s: Services, cron_id: str) -> Cron:
    c = await s.storage.get_cron(cron_id)
    if c is None:
        raise NotFound(f"cron {cron_id} not found")
    c.checkerperiod = s.config.cron_period_ms
    return c


async def _cron_as_member(s: Services, signer: str, cron_id: str) -> Cron:
    c = await _get_cron(s, cron_id)
    await s.guard.member(signer, c.colonyname)
    return c


async def get_cron(s: Services, signer: str, msg: m.GetCronMsg) -> Cron:
    return await _cron_as_member(s, signer, msg.cronid)


async def get_crons(s: Services, signer: str, msg: m.GetCronsMsg) -> list[Cron]:
    await s.guard.member(signer, msg.colonyname)
    found = await s.storage.list_crons(msg.colonyname, _count(msg.count))
    for c in found:
        c.checkerperiod = s.config.cron_period_ms
    return found


async def run_cron(s: Services, signer: str, msg: m.RunCronMsg) -> Cron:
    """Fire now, membership checked first (the original fires before checking). As in the original,
    a cron waiting for its previous workflow does not fire; the cron is returned either way."""
    c = await _cron_as_member(s, signer, msg.cronid)
    await loops.fire_cron(s, c, s.now())
    return await _get_cron(s, c.cronid)


async def remove_cron(s: Services, signer: str, msg: m.RemoveCronMsg) -> dict[str, Any]:
    c = await _cron_as_member(s, signer, msg.cronid)
    await s.storage.remove_cron(c.cronid)
    return {}


# -- logs ----------------------------------------------------------------------------------------------------
def _check_message(message: str) -> None:
    if len(message.encode()) > MAX_LOG_BYTES:
        raise BadRequest(f"log message larger than {MAX_LOG_BYTES} bytes")


async def add_log(s: Services, signer: str, msg: m.AddLogMsg) -> dict[str, Any]:
    _check_message(msg.message)
    p = await s.storage.get_process(msg.processid, attributes=False)
    if p is None:
        raise NotFound(f"process {msg.processid} not found")
    colony = p.spec.conditions.colonyname
    member = await s.guard.member(signer, colony)
    if not isinstance(member, Executor) or p.assignedexecutorid != signer:
        raise Forbidden("access denied, only the assigned executor may add logs to a process")
    if p.state != ProcessState.RUNNING:
        raise BadRequest("logs can only be added to a RUNNING process")
    await s.storage.add_log(Log(processid=p.processid, colonyname=colony, executorname=member.executorname,
                                message=msg.message, timestamp=s.now()))
    return {}


async def add_executor_log(s: Services, signer: str, msg: m.AddExecutorLogMsg) -> dict[str, Any]:
    _check_message(msg.message)
    member = await s.guard.member(signer, msg.colonyname)
    if not isinstance(member, Executor) or member.executorname != msg.executorname:
        raise Forbidden("access denied, an executor may only add its own logs")
    await s.storage.add_log(Log(colonyname=msg.colonyname, executorname=member.executorname,
                                message=msg.message, timestamp=s.now()))
    return {}


async def get_logs(s: Services, signer: str, msg: m.GetLogsMsg) -> list[Log]:
    """`count` over 500 is a 400 (the original answers 403); 0 or less means 500."""
    await s.guard.member(signer, msg.colonyname)
    if msg.count > MAX_GET_LOGS:
        raise BadRequest(f"count must be at most {MAX_GET_LOGS}")
    if not msg.executorname and not msg.processid:
        raise BadRequest("either processid or executorname is required")
    count = msg.count if msg.count > 0 else MAX_GET_LOGS
    return await s.storage.get_logs(msg.colonyname, msg.processid, msg.executorname, count, max(msg.since, 0),
                                    msg.latest)


async def search_logs(s: Services, signer: str, msg: m.SearchLogsMsg) -> list[Log]:
    await s.guard.member(signer, msg.colonyname)
    if not 1 <= msg.days <= MAX_SEARCH_DAYS:
        raise BadRequest(f"days must be between 1 and {MAX_SEARCH_DAYS}")
    if msg.count > MAX_SEARCH_LOGS:
        raise BadRequest(f"count must be at most {MAX_SEARCH_LOGS}")
    if not msg.text:
        raise BadRequest("text is required")
    count = msg.count if msg.count > 0 else MAX_SEARCH_LOGS
    return await s.storage.search_logs(msg.colonyname, msg.text, s.now() - msg.days * DAY_NS, count)


HANDLERS: dict[str, Handler] = {
    "addgeneratormsg": add_generator,
    "getgeneratormsg": get_generator,
    "resolvegeneratormsg": resolve_generator,
    "getgeneratorsmsg": get_generators,
    "packgeneratormsg": pack_generator,
    "removegeneratormsg": remove_generator,
    "addcronmsg": add_cron,
    "getcronmsg": get_cron,
    "getcronsmsg": get_crons,
    "runcronmsg": run_cron,
    "removecronmsg": remove_cron,
    "addlogmsg": add_log,
    "addexecutorlogmsg": add_executor_log,
    "getlogsmsg": get_logs,
    "searchlogsmsg": search_logs,
}
