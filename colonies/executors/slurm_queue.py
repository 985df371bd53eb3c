"""Slurm's command line as the Slurm executor (slurm.py) uses it: sbatch, scancel, and one shared poll.

* `run_tool(argv, timeout)`: one bounded call of a Slurm command (killed with its process group when it
  takes longer); a missing command is reported, not raised.
* `Poller`: every `interval` seconds ONE `squeue -h -t all -j ID,ID,... -O JobID,State,Reason,exit_code`
  for all the jobs it watches, however many (`-t all` keeps finished jobs listed for the cluster's
  MinJobAge). A job that squeue no longer lists is looked up with one `sacct` call for all such jobs
  (`sacct -X` where slurmdbd runs; `sacct -c`, which reads the jobcomp file, where it does not). A job
  that neither knows for `LOST_POLLS` polls in a row ends as UNKNOWN. A failed or slow squeue is logged
  and tried again at the next poll: it never ends a job.
* Exit codes: squeue's `exit_code` is the raw wait status (768 is exit 3), sacct's is `exit:signal`;
  both become a `JobEnd` with `exit_code` and `signal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger("colonies.executor")

# States after which a job runs no more (squeue's long names; sacct adds "by UID" to CANCELLED).
TERMINAL = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED", "PREEMPTED",
                      "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})
LOST_POLLS = 3
TOOL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ToolResult:
    returncode: int  # -1: timed out, -2: could not be started
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode == -1


async def run_tool(argv: Sequence[str], timeout: float = TOOL_TIMEOUT_S, env: Mapping[str, str] | None = None,
                   stdin: str | None = None) -> ToolResult:
    """Run one Slurm command; on a timeout (or a cancel) its process group is killed."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=dict(env) if env is not None else None,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return ToolResult(-2, "", f"{argv[0]}: {exc.strerror or exc}")
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        return ToolResult(-1, "", f"{argv[0]} took longer than {timeout:g} s")
    return ToolResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


@dataclass(frozen=True)
class JobEnd:
    """How a job ended."""

    jobid: str
    state: str
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"

    def describe(self) -> str:
        parts = [f"reason {self.reason}"] if self.reason and self.reason != "None" else []
        if self.exit_code is not None:
            parts.append(f"exit code {self.exit_code}")
        if self.signal:
            parts.append(f"signal {self.signal}")
        return f"Slurm job {self.jobid} {self.state}" + (f" ({', '.join(parts)})" if parts else "")


def _from_wait_status(raw: str) -> tuple[int | None, int | None]:
    try:
        status = int(raw)
    except ValueError:
        return None, None
    return (status >> 8) & 0xFF, (status & 0x7F) or None


def _from_sacct(raw: str) -> tuple[int | None, int | None]:
    code, _, sig = raw.partition(":")
    try:
        return int(code), int(sig or 0) or None
    except ValueError:
        return None, None


def parse_squeue(text: str) -> dict[str, tuple[str, str, str]]:
    """`JobID|State|Reason|exit_code|` rows -> {jobid: (state, reason, raw exit status)}."""
    rows: dict[str, tuple[str, str, str]] = {}
    for line in text.splitlines():
        f = [x.strip() for x in line.split("|")]
        if len(f) >= 4 and f[0]:
            rows[f[0]] = (f[1], f[2], f[3])
    return rows


class Poller:
    """Watches this executor's jobs with one squeue call per `interval` for all of them."""

    def __init__(self, interval: float = 5.0, squeue: str = "squeue", sacct: str = "sacct",
                 env: Mapping[str, str] | None = None) -> None:
        self.interval = interval
        self.squeue, self.sacct, self.env = squeue, sacct, env
        self._watched: dict[str, asyncio.Future[JobEnd]] = {}
        self._states: dict[str, str] = {}
        self._lost: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._jobcomp = False  # sacct -X failed once (no slurmdbd): use sacct -c from then on
        self._last = -float("inf")  # time.monotonic() of the last squeue call
        self.polls = 0

    def watch(self, jobid: str) -> asyncio.Future[JobEnd]:
        """A future that gets the job's JobEnd; the poll loop runs while any job is watched."""
        fut = self._watched.get(jobid)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self._watched[jobid] = fut
        if self._task is None or self._task.done():
            # a context of its own: what the loop logs belongs to no process
            self._task = asyncio.create_task(self._loop(), name="slurm-poll", context=contextvars.Context())
        return fut

    def forget(self, jobid: str) -> None:
        fut = self._watched.pop(jobid, None)
        if fut is not None and not fut.done():
            fut.cancel()
        self._states.pop(jobid, None)
        self._lost.pop(jobid, None)

    def state(self, jobid: str) -> str:
        """The job's state at the last poll ("" before one saw it)."""
        return self._states.get(jobid, "")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        # a loop started again soon after the last one ended still keeps to one call per interval
        await asyncio.sleep(max(0.0, self._last + self.interval - time.monotonic()))
        while self._watched:
            self._last = time.monotonic()
            try:
                await self.poll_once()
            except Exception as exc:  # noqa: BLE001 - the loop outlives any one bad poll
                log.warning("slurm: poll failed: %s", exc)
            if not self._watched:
                break
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> None:
        ids = sorted((j for j, f in self._watched.items() if not f.done()), key=lambda j: (len(j), j))
        if not ids:
            return
        self.polls += 1
        r = await run_tool([self.squeue, "-h", "-t", "all", "-j", ",".join(ids), "-O",
                            "JobID:|,State:|,Reason:|,exit_code:|"], env=self.env)
        if r.returncode != 0 and "Invalid job id" not in r.stderr:
            log.warning("slurm: squeue failed (%s): %s", r.returncode, r.stderr.strip()[-500:])
            return
        rows = parse_squeue(r.stdout) if r.returncode == 0 else {}
        missing = []
        for jobid in ids:
            row = rows.get(jobid)
            if row is None:
                missing.append(jobid)
                continue
            state, reason, raw = row
            self._lost.pop(jobid, None)
            self._note(jobid, state)
            if state in TERMINAL:
                code, sig = _from_wait_status(raw)
                self._end(JobEnd(jobid, state, reason, code, sig))
        if missing:
            await self._look_up(missing)

    async def _look_up(self, ids: list[str]) -> None:
        """Jobs squeue no longer lists: end those sacct knows; count the others as lost."""
        found = await self.from_sacct(ids)
        for jobid in ids:
            end = found.get(jobid)
            if end is not None and end.state in TERMINAL:
                self._end(end)
                continue
            self._lost[jobid] = self._lost.get(jobid, 0) + 1
            if self._lost[jobid] >= LOST_POLLS:
                self._end(JobEnd(jobid, "UNKNOWN", "the job is known to neither squeue nor sacct"))

    async def from_sacct(self, ids: list[str]) -> dict[str, JobEnd]:
        """What sacct knows of these jobs, in one call (`sacct -X`; `sacct -c` without slurmdbd)."""
        found: dict[str, JobEnd] = {}
        if not self._jobcomp:
            r = await run_tool([self.sacct, "-n", "-P", "-X", "-j", ",".join(ids), "-o", "JobID,State,ExitCode,Reason"],
                               env=self.env)
            if r.returncode == 0:
                found = self._parse_sacct(r.stdout)
            else:
                self._jobcomp = True
        if self._jobcomp:
            r = await run_tool([self.sacct, "-c", "-n", "-P", "-j", ",".join(ids), "-o", "JobID,State,ExitCode"],
                               env=self.env)
            if r.returncode == 0:
                found = self._parse_sacct(r.stdout)
        return found

    @staticmethod
    def _parse_sacct(text: str) -> dict[str, JobEnd]:
        out: dict[str, JobEnd] = {}
        for line in text.splitlines():
            f = line.split("|")
            if len(f) < 3 or not f[0] or "." in f[0]:  # job steps (123.batch) are not the job
                continue
            code, sig = _from_sacct(f[2])
            out[f[0]] = JobEnd(f[0], f[1].split(" ")[0], f[3] if len(f) > 3 else "", code, sig)
        return out

    def _note(self, jobid: str, state: str) -> None:
        if self._states.get(jobid) != state:
            log.info("slurm: job %s %s", jobid, state)
        self._states[jobid] = state

    def _end(self, end: JobEnd) -> None:
        self._note(end.jobid, end.state)
        fut = self._watched.pop(end.jobid, None)
        self._lost.pop(end.jobid, None)
        if fut is not None and not fut.done():
            fut.set_result(end)
