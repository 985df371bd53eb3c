"""Pilot allocations: the Slurm executor's other mode. Run on the login node, it submits allocations of
nodes x slots when work waits, and the slots inside them (pilot_slot.py) pull the processes.

    colonies executor run --slurm slurm.toml      # a config with a [pilot] table (pilot_config.py)

The allocator is itself an executor of the colony (its identity, kept like any executor's), so it may
read the colony's waiting processes; it also holds the colony owner's key (COLONIES_COLONY_PRVKEY), which
never leaves the login node, to add and approve the executors of the slots. Every `poll_interval`:

1. It reads the waiting processes of its executor type: ONE `getprocessesmsg` (state WAITING, type, at
   most 100, served from the (colony, state, priority) index with a LIMIT), and keeps those the slots could
   take: not waiting for parents, not targeted at named executors, at its location (or none), and with a
   maxexectime that fits a fresh allocation (PilotConfig.fits). The others are named once in its log
   ("can never run in these allocations"), so no allocation is submitted for them.
2. It follows its allocations with ONE squeue call for all (slurm_queue.Poller).
3. Demand: with no allocation alive, every fitting process; otherwise those also waiting at the previous
   look (a slot that is free takes a process within milliseconds, so one still waiting a poll later has
   no slot). Less the slots of allocations that are pending or have not started yet. While demand is
   left, and fewer than `max_queued` allocations pend and fewer than `max_allocations` exist, it submits
   one more (each of `nodes` x `slots_per_node` slots).
4. An allocation: one executor per node, added and approved BEFORE sbatch, each key written 0600 into the
   allocation's directory on the shared filesystem (slot.json, node-<i>.key, the config, alloc.sh); then
   `sbatch --nodes N --time WALLTIME` with its comment `colonies-pilot:<allocator id>:<token>`. When the
   job has ended (the slots exited idle, the walltime, a scancel, a node failure), the node executors are
   removed, which puts any process they still held back in the queue at once (no retry counted), and the
   keys are deleted.
5. Back-pressure: sbatch runs bounded by `[slurm] submit_timeout`; a refusal or a timeout is a failed
   submission, retried after `backoff` doubling to `backoff_max`; after `max_failures` in a row (or
   `max_start_failures` allocations in a row whose slots never started) the allocator pauses, with the
   reason in its executor log and in its reported allocations (`colonies executor ls`, the dashboard),
   until SIGUSR1 or a restart. Processes stay WAITING in the colony meanwhile; none fails for it.
6. On SIGTERM it cancels its allocations and removes their executors (their processes go back to the
   queue), then exits. A restarted allocator adopts the allocations of the earlier run that still run.

The relay (relay.py) runs inside the allocator when `[pilot] relay` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colonies.client.asyncio import AsyncClient
from colonies.errors import ClientError, ProcessFailed
from colonies.executors.kit import Executor
from colonies.executors.pilot_config import PilotConfig, load_pilot
from colonies.executors.pilot_slot import CONFIG_FILE, SLOT_FILE, SlotSpec, key_file, started_file
from colonies.executors.relay import Relay
from colonies.executors.slurm_config import SlurmConfig, job_environment, load_config, walltime
from colonies.executors.slurm_queue import TERMINAL, JobEnd, Poller, run_tool
from colonies.model import ExecutorState, Process, ProcessState
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.secure_files import private_dir, write_private

log = logging.getLogger("colonies.pilot")
PREFIX = "colonies-pilot"
NEVER_FIT_KEPT = 10_000  # process ids remembered as "told once that they never fit"


@dataclass
class Allocation:
    token: str
    dir: Path
    names: list[str]
    jobid: str = ""
    submitted: float = 0.0  # time.monotonic()
    running: bool = False  # squeue showed it RUNNING (or later)
    started: bool = False  # a slot executor announced itself (node-<i>.started)
    cancelled: bool = False  # by this allocator
    end: asyncio.Future[JobEnd] | None = None


@dataclass
class Status:
    """What the allocator reports about itself (Executor.allocations.projects["pilot"])."""

    state: str = "ok"  # ok, backoff, paused
    reason: str = ""
    queued: int = 0
    running: int = 0
    slots: int = 0
    waiting: int = 0  # waiting processes the slots could take (of the at most 100 read)
    never_fit: int = 0  # waiting processes no allocation of this shape can run
    submitted: int = 0
    failures: int = 0

    def wire(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Allocator:
    """The allocation loop of one PilotExecutor (see the module docstring)."""

    ex: Executor
    cfg: SlurmConfig
    pilot: PilotConfig
    config_path: str
    owner_key: str
    env: dict[str, str] = field(default_factory=dict)
    allocs: dict[str, Allocation] = field(default_factory=dict)
    status: Status = field(default_factory=Status)

    def __post_init__(self) -> None:
        self.client: AsyncClient = self.ex.client
        self.owner = self.client.with_key(self.owner_key)
        self.root = self.cfg.workdir / ".pilot" / self.ex.executor_id[:12]
        self.tag = f"{PREFIX}:{self.ex.executor_id[:16]}:"
        self.poller = Poller(self.pilot.poll_interval, env=self.env)
        self.relay: Relay | None = None
        self._seen: set[str] = set()  # fitting processes waiting at the last look
        self._told: set[str] = set()  # processes already named as never fitting
        self._failures = 0
        self._start_failures = 0
        self._next_submit = 0.0
        self._paused = ""
        self._reported: dict[str, Any] = {}
        self._wake = asyncio.Event()

    # -- the loop -------------------------------------------------------------------------------------
    async def run(self, stopping: asyncio.Event) -> None:
        private_dir(self.root)
        await self._start_relay()
        try:
            await self._adopt()
            await self.note(f"pilot allocator {self.ex.name}: allocations of {self.pilot.nodes} node(s) x "
                            f"{self.pilot.slots_per_node} slot(s), walltime {self.pilot.walltime} s, at most "
                            f"{self.pilot.max_queued} queued and {self.pilot.max_allocations} in all"
                            + (f", relay {self.pilot.relay}" if self.relay else ""))
            while not stopping.is_set():
                try:
                    await self.tick()
                except Exception as exc:  # noqa: BLE001 - the loop outlives any one bad tick
                    log.warning("pilot: tick failed: %s", exc)
                waits = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(self._wake.wait())]
                await asyncio.wait(waits, timeout=self.pilot.poll_interval, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                self._wake.clear()
        finally:
            await self._shutdown()

    def resume(self) -> None:
        """Leave a pause (SIGUSR1): submissions start again, the failure counts from zero."""
        if self._paused:
            log.info("pilot: resumed (was paused: %s)", self._paused)
        self._paused, self._failures, self._start_failures, self._next_submit = "", 0, 0, 0.0
        self._wake.set()

    async def tick(self) -> None:
        now = time.monotonic()
        await self._reap()
        self._follow()
        fitting = await self._waiting()
        alive = [a for a in self.allocs.values() if not a.cancelled]
        backlog = [p for p in fitting if p in self._seen] if alive else fitting
        self._seen = set(fitting)
        # slots that will soon take work: pending allocations, and running ones whose slots have not started
        coming = sum(len(a.names) for a in alive if not a.started) * self.pilot.slots_per_node
        need = len(backlog) - coming
        while need > 0 and self._may_submit(now):
            if not await self._submit():
                break
            need -= self.pilot.slots
        await self._report()

    def _may_submit(self, now: float) -> bool:
        if self._paused or now < self._next_submit:
            return False
        alive = [a for a in self.allocs.values() if not a.cancelled]
        queued = [a for a in alive if not a.running]
        return len(queued) < self.pilot.max_queued and len(alive) < self.pilot.max_allocations

    # -- reading the colony -----------------------------------------------------------------------------
    async def _waiting(self) -> list[str]:
        """Ids of the waiting processes the slots could take, in queue order (of the first 100)."""
        procs = await self.client.get_processes(self.ex.colony, state=ProcessState.WAITING, count=100,
                                                executortype=self.ex.executortype) or []
        fitting, never = [], 0
        for p in procs:
            if not self._takeable(p):
                continue
            if self.pilot.fits(p.spec.maxexectime):
                fitting.append(p.processid)
                continue
            never += 1
            if p.processid not in self._told:
                if len(self._told) > NEVER_FIT_KEPT:
                    self._told.clear()
                self._told.add(p.processid)
                why = ("it has no maxexectime" if p.spec.maxexectime <= 0 else
                       f"its maxexectime {p.spec.maxexectime} s is longer than the {self.pilot.longest} s a "
                       f"fresh allocation can give (walltime {self.pilot.walltime} s)")
                await self.note(f"process {p.processid[:12]} can never run in these allocations: {why}; "
                                "it waits for another executor of its type")
        self.status.waiting, self.status.never_fit = len(fitting), never
        return fitting

    def _takeable(self, p: Process) -> bool:
        c = p.spec.conditions
        if p.waitforparents or any(n and n != "*" for n in c.executornames or []):
            return False
        return not c.locationname or c.locationname.lower() == self.ex.location.lower()

    # -- allocations ------------------------------------------------------------------------------------
    def _follow(self) -> None:
        for a in self.allocs.values():
            if a.jobid and not a.running and self.poller.state(a.jobid) not in ("", "PENDING", "CONFIGURING"):
                a.running = True
            if a.running and not a.started:
                a.started = any(started_file(a.dir, i).exists() for i in range(len(a.names)))

    async def _submit(self) -> bool:
        """One allocation: its executors, directory and job; False when it did not go in."""
        token = secrets.token_hex(3)
        a = Allocation(token, self.root / token, [f"{self.ex.name}-{token}-{i}" for i in range(self.pilot.nodes)])
        try:
            private_dir(a.dir)
            await self._register(a)
            options = self._write(a)
        except (ClientError, OSError) as exc:
            log.warning("pilot: could not prepare an allocation: %s", exc)
            await self._discard(a)
            return False
        a.submitted = time.monotonic()
        r = await run_tool(["sbatch", "--parsable", *options, str(a.dir / "alloc.sh")],
                           timeout=self.cfg.submit_timeout, env=self.env)
        jobid, why = "", ""
        if r.returncode == 0 and r.stdout.strip().split(";")[0].isdigit():
            jobid = r.stdout.strip().split(";")[0]
        elif r.timed_out:
            jobid = (await self._our_jobs()).get(token, ("", ""))[0]  # it may have gone in just before the kill
            why = f"sbatch did not return within {self.cfg.submit_timeout:g} s (Slurm is full or busy)"
        else:
            why = f"sbatch refused the allocation (exit status {r.returncode}): {' '.join(r.stderr.split())[-500:]}"
        if not jobid:
            await self._discard(a)
            await self._failed(why)
            return False
        a.jobid, a.end = jobid, self.poller.watch(jobid)
        self.allocs[token] = a
        self._failures, self.status.failures = 0, 0
        if self.status.state == "backoff":
            self.status.state, self.status.reason = "ok", ""
        self.status.submitted += 1
        await self.note(f"submitted allocation {token} as Slurm job {jobid}: {len(a.names)} node(s) x "
                        f"{self.pilot.slots_per_node} slot(s), executors {', '.join(a.names)}")
        return True

    async def _register(self, a: Allocation) -> None:
        for i, name in enumerate(a.names):
            key = generate_prvkey()
            write_private(key_file(a.dir, i), key + "\n")
            await self.owner.add_executor(self.ex.colony, id_of(key), name, self.ex.executortype,
                                          location=self.ex.location)
            await self.owner.approve_executor(self.ex.colony, name)

    def _write(self, a: Allocation) -> list[str]:
        """slot.json, the config copy and alloc.sh in the allocation's directory; the sbatch options."""
        p, ex = self.pilot, self.ex
        spec = SlotSpec(colony=ex.colony, executortype=ex.executortype, names=a.names, walltime=p.walltime,
                        headroom=p.headroom, idle_timeout=p.idle_timeout, slots=p.slots_per_node, slot_poll=p.slot_poll,
                        location=ex.location, fs_dir=str(ex.fs_dir / a.token) if ex.fs_dir else str(a.dir / "fs"),
                        fs_store=os.environ.get("COLONIES_FS_DIR", ""), inprocess=p.inprocess, watch=ex.watch,
                        heartbeat=ex.heartbeat)
        if self.relay is not None and self.relay.unix:
            spec.socket = self.relay.unix
        elif self.relay is not None:
            spec.host, spec.port, spec.tls = p.relay[6:].rpartition(":")[0], self.relay.port, False
        else:
            host, port = (p.server.rpartition(":")[0], int(p.server.rpartition(":")[2])) if p.server else \
                (ex.host or "127.0.0.1", ex.port or 50080)
            spec.host, spec.port, spec.tls = host, port, bool(ex.tls)
        (a.dir / SLOT_FILE).write_text(spec.dumps())
        shutil.copyfile(self.config_path, a.dir / CONFIG_FILE)
        python = p.python or self.cfg.python
        slot = [*p.wrap, python, "-m", "colonies.executors.pilot_slot", str(a.dir)]
        n = len(a.names)
        if p.launcher == "srun":
            slot = ["srun", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1", "--kill-on-bad-exit=0", *slot]
        lines = ["#!/bin/bash", f"# written by the colonies pilot allocator {ex.name}: allocation {a.token}",
                 'export COLONIES_PILOT_STARTED="$(date +%s.%N)"']
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.cfg.env.items()]
        lines += [f"cd {shlex.quote(str(a.dir))} || exit 1", "exec " + " ".join(shlex.quote(x) for x in slot), ""]
        (a.dir / "alloc.sh").write_text("\n".join(lines))
        opts = [f"--job-name={PREFIX}-{re.sub(r'[^A-Za-z0-9_.-]', '_', ex.executortype)}", f"--comment={self.tag}{a.token}",
                f"--nodes={n}", f"--time={walltime(p.walltime)}", f"--output={a.dir / 'slurm.out'}",
                f"--chdir={a.dir}"]
        if self.cfg.partition:
            opts.append(f"--partition={self.cfg.partition}")
        if self.cfg.account:
            opts.append(f"--account={self.cfg.account}")
        return [*opts, *self.cfg.sbatch_options, *p.sbatch_options]

    async def _failed(self, why: str) -> None:
        self._failures += 1
        self.status.failures = self._failures
        delay = min(self.pilot.backoff * 2 ** (self._failures - 1), self.pilot.backoff_max)
        self._next_submit = time.monotonic() + delay
        if self._failures >= self.pilot.max_failures:
            await self._pause(f"{self._failures} submissions failed in a row; the last: {why}")
        else:
            self.status.state, self.status.reason = "backoff", why
            await self.note(f"{why}; the processes stay waiting, next submission in {delay:g} s "
                            f"({self._failures} failed in a row, pausing at {self.pilot.max_failures})")

    async def _pause(self, reason: str) -> None:
        self._paused = reason
        self.status.state, self.status.reason = "paused", reason
        await self.note(f"paused: {reason}. Submitting no allocations until SIGUSR1 (kill -USR1 {os.getpid()}) "
                        "or a restart")

    async def _reap(self) -> None:
        """Allocations whose job ended: remove their executors (re-queueing what they held), delete the keys."""
        for token, a in list(self.allocs.items()):
            if a.end is None or not a.end.done():
                continue
            end = a.end.result()
            self._follow()
            del self.allocs[token]
            await self._remove_executors(a)
            tail = _tail(a.dir / "slurm.out")
            if a.started or a.cancelled:
                self._start_failures = 0
            else:
                self._start_failures += 1
            await self.note(f"allocation {token} ({end.describe()}) ended"
                            + ("" if a.started or a.cancelled else
                               f" before any slot started ({self._start_failures} in a row)"
                               + (f"; its output: {tail}" if tail else "")))
            keep = self.cfg.keep_jobdirs
            if keep == "never" or (keep == "failed" and (end.ok or a.cancelled or a.started)):
                shutil.rmtree(a.dir, ignore_errors=True)
            else:
                for i in range(len(a.names)):
                    with contextlib.suppress(FileNotFoundError):
                        key_file(a.dir, i).unlink()
            if self._start_failures >= self.pilot.max_start_failures and not self._paused:
                await self._pause(f"{self._start_failures} allocations in a row ended before any slot started"
                                  + (f"; the last one's output: {tail}" if tail else ""))

    async def _remove_executors(self, a: Allocation) -> None:
        for name in a.names:
            try:
                await self.owner.remove_executor(self.ex.colony, name)
            except ClientError as exc:
                if exc.status not in (400, 404):
                    log.warning("pilot: could not remove executor %s: %s", name, exc)

    async def _discard(self, a: Allocation) -> None:
        """An allocation that never went in: its executors and directory go."""
        await self._remove_executors(a)
        shutil.rmtree(a.dir, ignore_errors=True)

    async def _our_jobs(self) -> dict[str, tuple[str, str]]:
        """token -> (job id, state) of the jobs carrying this allocator's comment."""
        r = await run_tool(["squeue", "-h", "--me", "-t", "all", "-O", "JobID:|,State:|,Comment:|"], env=self.env)
        found: dict[str, tuple[str, str]] = {}
        for line in r.stdout.splitlines() if r.returncode == 0 else []:
            f = [x.strip() for x in line.split("|")]
            if len(f) >= 3 and f[2].startswith(self.tag):
                found[f[2][len(self.tag):]] = (f[0], f[1])
        return found

    async def _adopt(self) -> None:
        """Take over the allocations an earlier run left running; clean up after those that ended."""
        jobs = await self._our_jobs()
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            try:
                spec = SlotSpec.load(d / SLOT_FILE)
            except (OSError, ValueError, TypeError):
                shutil.rmtree(d, ignore_errors=True)
                continue
            a = Allocation(d.name, d, spec.names, submitted=time.monotonic())
            jobid, state = jobs.get(d.name, ("", ""))
            if jobid and state not in TERMINAL:
                a.jobid, a.end = jobid, self.poller.watch(jobid)
                self.allocs[d.name] = a
                await self.note(f"adopted allocation {d.name} (Slurm job {jobid}, {state}) of an earlier run")
            else:
                await self._discard(a)
        known = {n for a in self.allocs.values() for n in a.names}
        mine = re.compile(rf"^{re.escape(self.ex.name)}-[0-9a-f]{{6}}-\d+$")
        for e in await self.client.get_executors(self.ex.colony) or []:
            if mine.match(e.executorname) and e.executorname not in known and e.state != ExecutorState.UNREGISTERED:
                await self._remove_executors(Allocation("", Path(), [e.executorname]))

    async def _shutdown(self) -> None:
        """Cancel every allocation, remove its executors (their processes go back to the queue)."""
        ids = [a.jobid for a in self.allocs.values() if a.jobid]
        if ids:
            r = await run_tool(["scancel", *ids], env=self.env)
            if r.returncode != 0:
                log.warning("pilot: scancel %s failed: %s", " ".join(ids), r.stderr.strip()[-500:])
        for a in list(self.allocs.values()):
            a.cancelled = True
            await self._remove_executors(a)
            shutil.rmtree(a.dir, ignore_errors=True)
        if ids:
            await self.note(f"stopped: cancelled allocation(s) {' '.join(ids)}; their processes are back in the queue")
        self.allocs.clear()
        await self.poller.close()
        with contextlib.suppress(ClientError):
            await self._report(force=True)
        if self.relay is not None:
            await self.relay.close()

    # -- the relay, status and notes ------------------------------------------------------------------
    async def _start_relay(self) -> None:
        mode = self.pilot.relay
        if not mode:
            return
        ex = self.ex
        upstream = f"{'https' if ex.tls else 'http'}://{ex.host or '127.0.0.1'}:{ex.port or 50080}/api"
        if mode == "unix":
            self.relay = Relay(upstream, unix=self.pilot.relay_socket or str(self.root / "relay.sock"))
        else:
            self.relay = Relay(upstream, tcp=mode[6:])
        await self.relay.start()

    async def _report(self, force: bool = False) -> None:
        alive = list(self.allocs.values())
        st = self.status
        st.queued = sum(1 for a in alive if not a.running)
        st.running = sum(1 for a in alive if a.running)
        st.slots = sum(len(a.names) for a in alive if a.running) * self.pilot.slots_per_node
        wire = st.wire()
        if wire != self._reported or force:
            try:
                await self.client.report_allocation(self.ex.colony, self.ex.name, {"pilot": wire})
                self._reported = wire
            except ClientError as exc:
                log.warning("pilot: could not report its allocations: %s", exc)

    async def note(self, message: str) -> None:
        """A line in this executor's log (`colonies log get --executor NAME`) and the local log."""
        log.info("pilot: %s", message)
        try:
            await self.client.add_executor_log(self.ex.colony, self.ex.name, message[:4000])
        except ClientError as exc:
            log.warning("pilot: could not write its executor log: %s", exc)


def _tail(path: Path, limit: int = 600) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            return " ".join(f.read().decode(errors="replace").split())
    except OSError:
        return ""


# -- the executor -------------------------------------------------------------------------------------
class PilotExecutor(Executor):
    """The Slurm executor in pilot mode: `run` runs the allocator, not a pull loop (see the module docstring)."""

    def __init__(self, path: str, executortype: str = "", name: str = "") -> None:
        head, cfg, kinds = load_config(path)
        super().__init__(name=name or str(head.get("name", "")), executortype=executortype or str(head.get("type", "slurm")))
        self.config_path = os.path.abspath(path)
        self.cfg, self.pilot = cfg, load_pilot(path)
        self.allocator: Allocator | None = None
        for kind in kinds:
            self.function(_served_by_slots(kind), name=kind)

    async def run_async(self, until_idle: bool = False, colony_prvkey: str = "") -> None:
        self._stopping = asyncio.Event()
        if not colony_prvkey:
            raise ValueError("the pilot allocator adds and approves one executor per allocated node: give it the "
                             "colony owner's key (COLONIES_COLONY_PRVKEY); it stays on this login node")
        await self.register(colony_prvkey)
        await self.announce()
        self.allocator = Allocator(self, self.cfg, self.pilot, self.config_path, colony_prvkey,
                                   env=job_environment(os.environ))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGUSR1, self.allocator.resume)
        log.info("pilot allocator %s (%s) in colony %s", self.name, self.executortype, self.colony)
        await self.allocator.run(self._stopping)


def _served_by_slots(name: str) -> Any:
    def stub(*args: Any, **kwargs: Any) -> Any:
        raise ProcessFailed(f"{name} runs in the pilot's slots, not in its allocator")

    stub.__name__ = name
    return stub


def pilot_executor(path: str, executortype: str = "", name: str = "") -> PilotExecutor:
    """The Slurm executor of a config with a [pilot] table (colony, key and server are filled in later)."""
    return PilotExecutor(path, executortype, name)

