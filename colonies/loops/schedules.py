"""Leader-only steps: generators and crons (§6), and retention (§8.1). Each takes `now` (Unix ns).

Firing is shared with the `runcronmsg` handler. Every fire is one storage transaction (consume the args
or move the cron on, and insert the workflow), so a crash never loses or repeats one.

Each cron and generator is isolated: one that fails (say a row stored before add-time validation bounded
its values) is logged and held back for RETRY_S, a cron's `nextrun` also moved past that, while every
other one, in every colony, keeps firing.
"""

from __future__ import annotations

import logging
import random

from colonies import cron as schedule
from colonies.clock import NS, ZERO_TIME
from colonies.cron import to_ns
from colonies.errors import ColoniesError
from colonies.loops.runner import isolated
from colonies.model import FINAL_STATES, Cron, Generator, Process, ProcessGraph, User, WorkflowSpec
from colonies.security import Member
from colonies.services import Services
from colonies.storage.base import ProcessQuery
from colonies.workflows import MAX_NODES, build_graph, parse_workflow

log = logging.getLogger("colonies.loops")
_rng = random.Random()
MAX_FIRES_PER_TICK = 1000  # per generator; the rest waits for the next tick
RETRY_S = 60  # a cron or generator that failed is tried again after this, not on every tick
_held: dict[str, int] = {}  # "cron:<id>" / "generator:<id>" → retry time (ns); per process: a new leader retries


def _forget_expired(now: int) -> None:
    """Every pass starts with this, so a held key is one still held back (and removed items go)."""
    for key in [k for k, until in _held.items() if now >= until]:
        del _held[key]


def _initiator(initiator_id: str, initiator_name: str) -> tuple[Member | None, str]:
    """The stored creator as a stand-in member, so fired processes name who set the schedule up."""
    if not initiator_name:
        return None, ""
    return User(userid=initiator_id, name=initiator_name), initiator_id


def _spec(text: str, colony: str) -> WorkflowSpec:
    """A fresh copy each time: building a graph normalises (mutates) the spec."""
    spec = parse_workflow(text)
    spec.colonyname = colony
    return spec


def publish_roots(s: Services, processes: list[Process]) -> None:
    for p in processes:
        if not p.waitforparents:
            s.bus.publish(p)


# -- generators -------------------------------------------------------------------------------------------
def due_batches(g: Generator, now: int) -> list[int]:
    """How many args each workflow to fire now takes (§6.1): full batches of `trigger`, else, once the
    timeout has passed since the last run (or the first pack), one workflow with whatever is queued."""
    n, trigger = g.queuesize, max(g.trigger, 1)
    if n >= trigger:
        return [trigger] * min(n // trigger, MAX_FIRES_PER_TICK)
    since = to_ns(g.lastrun) or to_ns(g.firstpack)
    if n >= 1 and g.timeout > 0 and now > since + g.timeout * NS:
        return [n]
    return []


async def fire_generator(s: Services, g: Generator, count: int, now: int) -> list[Process]:
    member, signer = _initiator(g.initiatorid, g.initiatorname)

    def build(args: list[str]) -> tuple[list[Process], ProcessGraph]:
        return build_graph(s, _spec(g.workflowspec, g.colonyname), member, signer, now, root_args=args)

    processes = await s.storage.fire_generator(g.generatorid, count, build, now)
    publish_roots(s, processes)
    if processes and s.metrics is not None:
        s.metrics.generator_fires += 1
    return processes


async def _fire_due(s: Services, g: Generator, now: int) -> None:
    for count in due_batches(g, now):
        if not await fire_generator(s, g, count, now):
            break


async def generators(s: Services, now: int) -> None:
    _forget_expired(now)
    for g in await s.storage.generators_due():
        key = f"generator:{g.generatorid}"
        if key in _held:
            continue
        if not await isolated(f"generator {g.colonyname}/{g.name} ({g.generatorid})", _fire_due(s, g, now)):
            _held[key] = now + RETRY_S * NS  # its args stay queued


# -- crons --------------------------------------------------------------------------------------------------
def next_run(c: Cron, now: int) -> int:
    return schedule.next_run(c.interval, c.cronexpression, c.random, now, _rng)


async def _leaf_outputs(s: Services, prev: ProcessGraph) -> list[object]:
    """Outputs of the graph's leaves (no children), in the graph's process order."""
    found = await s.storage.list_processes(ProcessQuery(
        colony=prev.colonyname, processgraphid=prev.processgraphid, count=MAX_NODES))
    by_id = {p.processid: p for p in found}
    out: list[object] = []
    for pid in prev.processids or list(by_id):
        p = by_id.get(pid)
        if p is not None and not p.children:
            out.extend(p.output or [])
    return out


async def fire_cron(s: Services, c: Cron, now: int) -> bool:
    """Start the cron's workflow now, its roots fed the previous graph's leaf outputs, and move `nextrun`
    to the next time after `now`. After downtime a cron therefore fires once, then continues on its
    schedule in the future: missed runs are not caught up.

    With `waitforprevprocessgraph`, nothing happens while the previous graph is still WAITING/RUNNING
    (a CANCELLED previous graph counts as finished here; the original stays blocked forever). False when
    it did not fire, including when another fire got there first (storage fences on `nextrun`)."""
    root_input: list[object] | None = None
    if c.prevprocessgraphid:
        prev = await s.storage.get_graph(c.prevprocessgraphid)
        if prev is not None:
            if c.waitforprevprocessgraph and prev.state not in FINAL_STATES:
                return False
            root_input = await _leaf_outputs(s, prev)
    member, signer = _initiator(c.initiatorid, c.initiatorname)
    processes, graph = build_graph(s, _spec(c.workflowspec, c.colonyname), member, signer, now,
                                   root_input=root_input)
    if not await s.storage.fire_cron(c.cronid, to_ns(c.nextrun), next_run(c, now), processes, graph, now):
        return False
    publish_roots(s, processes)
    if s.metrics is not None:
        s.metrics.cron_fires += 1
    return True


async def _cron_due(s: Services, c: Cron, now: int) -> None:
    if c.nextrun == ZERO_TIME:
        await s.storage.set_cron_next(c.cronid, next_run(c, now))
    else:
        await fire_cron(s, c, now)


def _retry_at(c: Cron, now: int) -> int:
    """After a failure: the next scheduled run, but not sooner than RETRY_S (nor ever out of range)."""
    retry = now + RETRY_S * NS
    try:
        return max(next_run(c, now), retry)
    except ColoniesError:
        return retry


async def crons(s: Services, now: int) -> None:
    """A cron without a `nextrun` only gets one; a cron whose `nextrun` has passed fires. A cron that
    fails skips this run: its `nextrun` moves to `_retry_at`."""
    _forget_expired(now)
    for c in await s.storage.crons_due(now):
        key, what = f"cron:{c.cronid}", f"cron {c.colonyname}/{c.name} ({c.cronid})"
        if key in _held:
            continue
        if not await isolated(what, _cron_due(s, c, now)):
            _held[key] = now + RETRY_S * NS  # also covers a failing postponement
            await isolated(f"postponing {what}", s.storage.set_cron_next(c.cronid, _retry_at(c, now)))


# -- retention ------------------------------------------------------------------------------------------------
async def retention(s: Services, now: int) -> None:
    """Delete finished SUCCESS work and all logs older than the retention policy."""
    deleted = await s.storage.retain(now - s.config.retention_policy_s * NS)
    if deleted:
        log.info("retention removed %d processes", deleted)
