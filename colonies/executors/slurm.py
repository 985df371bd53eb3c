"""A ready executor that turns each assigned process into one Slurm batch job (run it where `sbatch` works).

    # slurm.toml
    [executor]
    type = "slurm"                # executor type (default "slurm"); --type overrides
    name = "lumi-login-1"         # optional; --name overrides
    slots = 16                    # jobs in flight at once, queued or running

    [slurm]
    workdir = "/scratch/project_x/colonies"   # job directories, on the filesystem the nodes share (required)
    partition = "small"           # --partition, "" for the cluster's default
    account = "project_x"         # --account
    sbatch_options = ["--qos=normal"]   # more sbatch options for every job, as given
    poll_interval = 5             # seconds between polls: one squeue call per poll for all jobs
    submit_timeout = 60           # sbatch blocks while Slurm is full: give up after this long, try again
    python = "python3"            # the cluster's python, for [functions.*]
    env = { PYTHONPATH = "/project_x/code" }   # exported in every job
    process_env = ["SEED", "OMP_*"]            # spec.env names a process may set (fnmatch); others fail it
    keep_jobdirs = "failed"       # never, failed (default) or always
    state_file = ""               # default <workdir>/.state/<executor id>.json

    [commands.train]              # a function name processes call: an allowlisted program
    argv = ["python3", "/project_x/code/train.py"]   # the program and its fixed arguments
    args = true                   # append the process' args as argv items (default true)
    output = "file"               # file ($COLONIES_OUTPUT, default), or text, lines or json of stdout
    sbatch_options = ["--constraint=gpu"]     # more options for this command's jobs
    env = { OMP_NUM_THREADS = "8" }
    cwd = ""                      # the job's working directory (default: see below)

    [functions.fit]               # a Python function on the cluster's filesystem
    target = "mymodels.fit:fit"   # module:function; the args and kwargs go in as JSON, the return value out

* The job: a batch script in the job directory `<workdir>/<processid>-<attempt>` that exports the
  variables below and `exec`s the argv; every item is shell-quoted (shlex.quote), so nothing from a
  process is ever read by a shell. Process args become argv items (strings as they are, anything else
  as JSON); kwargs are refused for commands. A [functions.*] entry runs `<python> colonies_job.py
  module:function` (slurm_job.py, copied into the job directory; it needs only the standard library).
  The job sees COLONIES_PROCESS_ID, COLONIES_JOB_DIR, COLONIES_INPUT (a JSON file {"args", "kwargs"}),
  COLONIES_OUTPUT and COLONIES_WORKDIR. sbatch runs with the executor's environment less COLONIES_*
  and AWS_* variables (keys stay out of jobs); `env` and allowed spec.env names are exported on top.
* Conditions -> sbatch options (after the config's, so a process' own request wins):
      nodes -> --nodes, processes -> --ntasks, processespernode -> --ntasks-per-node,
      cpu -> --cpus-per-task (millicores rounded up to whole CPUs: "500m" -> 1, "2500m" -> 3),
      mem -> --mem in MiB, rounded up ("512Mi" -> 512M, "1G" -> 954M), storage -> --tmp likewise,
      walltime (seconds) -> --time (D-HH:MM:SS; Slurm rounds up to minutes),
      gpu.count -> --gres=gpu:N, with gpu.name --gres=gpu:NAME:N (gpu.mem and gpu.nodecount are not mapped).
  The job is named colonies-<function>; its --comment, colonies:<executor id>:<process id>:<attempt>,
  finds it again after a crash.
* Output: after COMPLETED, output "file" reads $COLONIES_OUTPUT (in the job directory) as JSON: a list
  is the output list, any other value one item; no file gives []. FAILED, TIMEOUT, OUT_OF_MEMORY,
  NODE_FAIL, CANCELLED (by someone else) and the like fail the process with the state, Slurm's reason,
  the exit code and the last lines of the job's output.
* Logs: the job writes stdout and stderr to files in its job directory; the executor reads what is
  new about once a second and sends it to the process log while the job runs (and its state changes).
* State: ONE squeue call per poll for all of this executor's jobs (slurm_queue.Poller), sacct for
  jobs squeue has forgotten.
* Stopping: past maxexectime, on a cancel, or when the process is taken away, the kit cancels the
  function and the job is `scancel`led, in a cleanup that a second cancel does not interrupt. SIGTERM
  to the executor lets the jobs in flight finish (the kit's drain), as for any executor.
* Restarts: a state file maps each process to its attempt, job id and job directory, written before
  sbatch and again with the job id. On start the executor reads it and asks the server about each
  process: one still RUNNING on this executor under the same attempt is resumed (Executor.resume): its
  job is attached to, not submitted again, and the process is closed from the job's end, even when the
  job ended while the executor was down (within the cluster's MinJobAge for squeue, or from sacct).
  Any other job of the file (re-queued, cancelled, removed) is scancelled, and so is any job carrying
  this executor's comment that the file does not account for. So a process is neither lost nor run twice.
* spec.fs: the kit stages the process' files into its working directory (--fs-dir/<processid>), which
  is then the job's working directory: put --fs-dir on the shared filesystem too.
"""

from __future__ import annotations

import asyncio
import collections
import fnmatch
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Awaitable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from colonies.errors import ClientError, ProcessFailed, StateError
from colonies.executors import slurm_job
from colonies.executors.context import Context
from colonies.executors.kit import Executor
from colonies.executors.slurm_config import (
    ENV_KEY,
    JobKind,
    SlurmConfig,
    batch_script,
    job_environment,
    load_config,
    sbatch_resources,
)
from colonies.executors.slurm_queue import TERMINAL, JobEnd, Poller, run_tool
from colonies.model import ProcessState
from colonies.secure_files import private_dir, write_private

log = logging.getLogger("colonies.executor")

TAIL_LINES, LINE_MAX, CHUNK, OUTPUT_MAX = 20, 65536, 1024 * 1024, 16 * 1024 * 1024
PRUNE_S = 600.0  # an ended job's entry (and directory) stays this long, for a restart to close it from
# sbatch messages that mean "not now" rather than "never" (a full queue, a per-user submit limit)
_RETRYABLE = ("temporarily unable", "maxsubmitjob", "submit limit", "socket timed out", "unable to contact",
              "slurm_persist_conn", "resource temporarily unavailable")


# -- the state file -----------------------------------------------------------------------------------
@dataclass
class Entry:
    """One process' job, as the state file keeps it."""

    attempt: int
    jobdir: str
    jobid: str = ""
    ended: float = 0.0  # time.time() when the job ended or was cancelled; 0 while it is watched
    failed: bool = False


class JobStore:
    """process id -> Entry, in one JSON file (0600, rewritten whole and renamed into place on each change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Entry] = {}

    def load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
            self.entries = {pid: Entry(**e) for pid, e in raw.items()}
        except FileNotFoundError:
            self.entries = {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise StateError(f"the Slurm executor's state file {self.path} is unreadable ({exc}); it maps "
                             "processes to jobs: fix or remove it, after cancelling its jobs") from None

    def save(self) -> None:
        private_dir(self.path.parent)
        write_private(self.path, json.dumps({pid: asdict(e) for pid, e in self.entries.items()}, indent=1))


# -- the executor -------------------------------------------------------------------------------------
class SlurmBackend:
    """What the Slurm executor's functions share: the config, the poller and the state file."""

    def __init__(self, cfg: SlurmConfig, kinds: Mapping[str, JobKind], environ: Mapping[str, str] | None = None) -> None:
        self.cfg, self.kinds = cfg, kinds
        self.env = job_environment(os.environ if environ is None else environ)
        self.poller = Poller(cfg.poll_interval, env=self.env)
        self.store: JobStore | None = None
        self.executor_id = ""

    def tag(self, pid: str, attempt: int) -> str:
        return f"colonies:{self.executor_id[:16]}:{pid}:{attempt}"

    # -- start: pick up what an earlier run left ----------------------------------------------------
    async def startup(self, ex: Executor) -> None:
        self.executor_id = ex.executor_id
        path = Path(self.cfg.state_file) if self.cfg.state_file else self.cfg.workdir / ".state" / f"{ex.executor_id[:16]}.json"
        self.store = store = JobStore(path)
        store.load()
        listed = await self._our_jobs()
        known = {(pid, e.attempt) for pid, e in store.entries.items()}
        resumed, cancelled = 0, 0
        for pid, entry in list(store.entries.items()):
            if not entry.jobid and (pid, entry.attempt) in listed:  # a crash right after sbatch
                entry.jobid = listed[(pid, entry.attempt)][0]
            try:
                p = await ex.client.get_process(pid)
            except ClientError as exc:
                if exc.status not in (403, 404):
                    raise
                p = None
            if (p is not None and p.state == ProcessState.RUNNING and p.assignedexecutorid == ex.executor_id
                    and p.retries == entry.attempt):
                ex.resume(p)
                resumed += 1
                continue
            if entry.jobid and not entry.ended:
                await self._scancel([entry.jobid])
                cancelled += 1
            self._forget(pid)
        orphans = [j for key, (j, state) in listed.items() if key not in known and state not in TERMINAL]
        if orphans:
            await self._scancel(orphans)
            cancelled += len(orphans)
        store.save()
        log.info("slurm: state in %s; %d process(es) resumed, %d job(s) cancelled that no process of this "
                 "executor waits for", path, resumed, cancelled)

    async def _our_jobs(self) -> dict[tuple[str, int], tuple[str, str]]:
        """(process id, attempt) -> (job id, state) of the jobs carrying this executor's comment."""
        r = await run_tool(["squeue", "-h", "--me", "-t", "all", "-O", "JobID:|,State:|,Comment:|"], env=self.env)
        if r.returncode != 0:
            raise StateError(f"squeue failed, so the jobs of an earlier run cannot be checked: {r.stderr.strip()[-500:]}")
        prefix = f"colonies:{self.executor_id[:16]}:"
        found: dict[tuple[str, int], tuple[str, str]] = {}
        for line in r.stdout.splitlines():
            f = [x.strip() for x in line.split("|")]
            if len(f) >= 3 and f[2].startswith(prefix):
                pid, _, attempt = f[2][len(prefix):].partition(":")
                if attempt.isdigit():
                    found[(pid, int(attempt))] = (f[0], f[1])
        return found

    async def _find(self, pid: str, attempt: int) -> list[str]:
        """Jobs of this process and attempt that still run (a submit whose reply was lost)."""
        jobs = await self._our_jobs()
        hit = jobs.get((pid, attempt))
        return [hit[0]] if hit and hit[1] not in TERMINAL else []

    async def _scancel(self, ids: list[str]) -> None:
        r = await run_tool(["scancel", *ids], env=self.env)
        if r.returncode != 0:
            log.warning("slurm: scancel %s failed: %s", " ".join(ids), r.stderr.strip()[-500:])

    def _forget(self, pid: str) -> None:
        assert self.store is not None
        entry = self.store.entries.pop(pid, None)
        if entry is None:
            return
        if self.cfg.keep_jobdirs == "never" or (self.cfg.keep_jobdirs == "failed" and not entry.failed):
            shutil.rmtree(entry.jobdir, ignore_errors=True)

    def _put(self, pid: str, entry: Entry) -> None:
        assert self.store is not None
        self.store.entries[pid] = entry
        now = time.time()
        for old, e in list(self.store.entries.items()):
            if e.ended and now - e.ended > PRUNE_S:
                self._forget(old)
        self.store.save()

    # -- one process --------------------------------------------------------------------------------
    def bind(self, kind: JobKind) -> Any:
        async def run(*args: Any, ctx: Context, **kwargs: Any) -> list[Any]:
            return await self.run(kind, list(args), kwargs, ctx)

        run.__name__ = kind.name
        return run

    async def run(self, kind: JobKind, args: list[Any], kwargs: dict[str, Any], ctx: Context) -> list[Any]:
        if self.store is None:
            raise ProcessFailed("the Slurm executor was not started (its startup hook did not run)")
        pid, attempt = ctx.processid, ctx.attempt
        entry = self.store.entries.get(pid)
        jobid, options = "", []
        if entry is not None and entry.attempt == attempt and entry.jobid:
            jobid = entry.jobid
            print(f"[colonies] attaching to Slurm job {jobid}, submitted before this executor restarted")
            if entry.ended:  # watched again: not to be pruned (with its output) meanwhile
                entry.ended = 0.0
                self._put(pid, entry)
        else:
            if entry is not None:  # another attempt's job, or a submit that never went out
                stale = [entry.jobid] if entry.jobid else await self._find(pid, entry.attempt)
                if stale and not entry.ended:
                    await self._scancel(stale)
                self._forget(pid)
            options = self._prepare(kind, args, kwargs, ctx)
            entry = Entry(attempt, str(self._jobdir(pid, attempt)))
            self._put(pid, entry)
        jobdir = Path(entry.jobdir)
        ended = False
        try:
            if not jobid:
                jobid = await self._submit(options, jobdir, pid, attempt)
                entry.jobid = jobid
                self._put(pid, entry)
                print(f"[colonies] submitted Slurm job {jobid}")
            end, tail = await self._wait(jobid, jobdir)
            ended = True
            entry.ended, entry.failed = time.time(), not end.ok
            self._put(pid, entry)
            return self._result(kind, end, jobdir, tail)
        finally:
            if not ended:
                await _shielded(self._stop(pid, entry, jobid))

    async def _stop(self, pid: str, entry: Entry, jobid: str) -> None:
        """The function was cancelled (deadline, cancel, process taken away): end its job."""
        ids = [jobid] if jobid else await self._find(pid, entry.attempt)
        if ids:
            await self._scancel(ids)
            print(f"[colonies] scancel {' '.join(ids)}")
        entry.ended, entry.failed = time.time(), True
        self._put(pid, entry)

    def _jobdir(self, pid: str, attempt: int) -> Path:
        return self.cfg.workdir / f"{pid}-{attempt}"

    def _prepare(self, kind: JobKind, args: list[Any], kwargs: dict[str, Any], ctx: Context) -> list[str]:
        """Write the job directory (script, input); the sbatch options."""
        pid = ctx.processid
        if kind.argv and kwargs:
            raise ProcessFailed(f"{kind.name}: keyword args are not accepted ({', '.join(kwargs)})")
        if kind.argv and args and not kind.args:
            raise ProcessFailed(f"{kind.name}: takes no args")
        env = dict(self.cfg.env) | dict(kind.env)
        for key, value in (ctx.process.spec.env or {}).items():
            if not ENV_KEY.match(key) or not any(fnmatch.fnmatchcase(key, pat) for pat in self.cfg.process_env):
                raise ProcessFailed(f"spec.env {key!r} is not allowed here (the executor's slurm.process_env)")
            env[key] = str(value)
        resources = sbatch_resources(ctx.process.spec.conditions)
        jobdir = self._jobdir(pid, ctx.attempt)
        cwd = kind.cwd or str(ctx.workdir or jobdir)
        if kind.target:
            argv = [self.cfg.python, str(jobdir / "colonies_job.py"), kind.target]
        else:
            argv = [*kind.argv, *(a if isinstance(a, str) else json.dumps(a) for a in args)]
        env |= {"COLONIES_PROCESS_ID": pid, "COLONIES_JOB_DIR": str(jobdir), "COLONIES_WORKDIR": cwd,
                "COLONIES_INPUT": str(jobdir / "input.json"), "COLONIES_OUTPUT": str(jobdir / "output.json")}
        try:
            if jobdir.exists():
                shutil.rmtree(jobdir)
            private_dir(jobdir)
            (jobdir / "input.json").write_text(json.dumps({"args": args, "kwargs": kwargs}))
            (jobdir / "job.sh").write_text(batch_script(argv, env, cwd))
            if kind.target:
                shutil.copyfile(slurm_job.__file__, jobdir / "colonies_job.py")
        except OSError as exc:
            raise ProcessFailed(f"cannot write the job directory {jobdir}: {exc}") from None
        head = [f"--job-name=colonies-{re.sub(r'[^A-Za-z0-9_.-]', '_', kind.name)}",
                f"--comment={self.tag(pid, ctx.attempt)}", f"--output={jobdir / 'stdout'}",
                f"--error={jobdir / 'stderr'}", f"--chdir={cwd}"]
        if self.cfg.partition:
            head.append(f"--partition={self.cfg.partition}")
        if self.cfg.account:
            head.append(f"--account={self.cfg.account}")
        return [*head, *self.cfg.sbatch_options, *kind.sbatch_options, *resources]

    async def _submit(self, options: list[str], jobdir: Path, pid: str, attempt: int) -> str:
        """sbatch, bounded by submit_timeout; Slurm being full is back-pressure: wait and submit again."""
        delay = 1.0
        while True:
            r = await run_tool(["sbatch", "--parsable", *options, str(jobdir / "job.sh")],
                               timeout=self.cfg.submit_timeout, env=self.env)
            if r.returncode == 0:
                jobid = r.stdout.strip().split(";")[0]
                if jobid.isdigit():
                    return jobid
                raise ProcessFailed(f"sbatch printed no job id: {r.stdout.strip()[-500:]}")
            if r.timed_out:
                found = await self._find(pid, attempt)  # it may have gone in just before the kill
                if found:
                    return found[0]
                why = f"sbatch did not return within {self.cfg.submit_timeout:g} s (Slurm is full or busy)"
            elif r.returncode > 0 and any(s in r.stderr.lower() for s in _RETRYABLE):
                why = f"Slurm refused the job for now: {' '.join(r.stderr.split())[-300:]}"
            else:
                raise ProcessFailed(f"sbatch refused the job (exit status {r.returncode}): {r.stderr.strip()[-2000:]}")
            print(f"[colonies] {why}; submitting again in {delay:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _wait(self, jobid: str, jobdir: Path) -> tuple[JobEnd, list[str]]:
        """The job's end, with its output sent to the process log meanwhile; (end, its last lines)."""
        done = self.poller.watch(jobid)
        tail = Tail(jobdir)
        seen = ""
        try:
            while not done.done():
                await asyncio.wait([done], timeout=min(1.0, self.cfg.poll_interval))
                tail.pump()
                state = self.poller.state(jobid)
                if state and state != seen:
                    print(f"[colonies] Slurm job {jobid} {state}")
                    seen = state
            return done.result(), list(tail.last)
        finally:
            self.poller.forget(jobid)
            tail.pump(final=True)

    def _result(self, kind: JobKind, end: JobEnd, jobdir: Path, tail: list[str]) -> list[Any]:
        if not end.ok:
            lines = [end.describe()]
            if tail:
                lines.append("last lines of the job's output:\n" + "\n".join(tail))
            raise ProcessFailed(*lines)
        if kind.output == "file":
            out = jobdir / "output.json"
            if not out.exists():
                return []
            if out.stat().st_size > OUTPUT_MAX:
                raise ProcessFailed(f"the job's output file is larger than {OUTPUT_MAX} bytes")
            try:
                value = json.loads(out.read_text())
            except ValueError as exc:
                raise ProcessFailed(f"the job's output file ($COLONIES_OUTPUT) is not JSON: {exc}") from None
            return value if isinstance(value, list) else [value]
        text = _read_capped(jobdir / "stdout")
        if kind.output == "lines":
            return text.splitlines()
        if kind.output == "json":
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ProcessFailed(f"the job's stdout is not JSON: {exc}") from None
            return value if isinstance(value, list) else [value]
        return [text.rstrip("\n")]


def _read_capped(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(OUTPUT_MAX).decode(errors="replace")
    except FileNotFoundError:
        return ""


async def _shielded(cleanup: Awaitable[None]) -> None:
    """Run `cleanup` to its end even when the task awaiting it is cancelled (again)."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task], timeout=30)
        raise


class Tail:
    """Follows the job's stdout and stderr files: new complete lines go to this process' stdout and
    stderr (the kit sends them to the process log); the last TAIL_LINES are kept for a failure."""

    def __init__(self, jobdir: Path) -> None:
        self.files = [(jobdir / "stdout", sys.stdout), (jobdir / "stderr", sys.stderr)]
        self.offsets = [0, 0]
        self.partial = ["", ""]
        self.last: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def pump(self, final: bool = False) -> None:
        """Send what is new (up to CHUNK per file and call; with `final`, all of it and the last partial line)."""
        for i, (path, stream) in enumerate(self.files):
            while True:
                try:
                    with open(path, "rb") as f:
                        f.seek(self.offsets[i])
                        data = f.read(CHUNK)
                except FileNotFoundError:
                    break
                self.offsets[i] += len(data)
                *lines, rest = (self.partial[i] + data.decode(errors="replace")).split("\n")
                more = final and len(data) == CHUNK
                if (final and not more and rest) or len(rest) > LINE_MAX:
                    lines.append(rest)
                    rest = ""
                self.partial[i] = rest
                for line in lines:
                    stream.write(line[:LINE_MAX] + "\n")
                    self.last.append(line[:LINE_MAX])
                if not more:
                    break


def slurm_executor(path: str, executortype: str = "", name: str = "") -> Executor:
    """An Executor whose functions are the config's commands and functions, each process one Slurm job
    (colony, key and server are filled in later)."""
    head, cfg, kinds = load_config(path)
    ex = Executor(name=name or str(head.get("name", "")), executortype=executortype or str(head.get("type", "slurm")),
                  slots=int(head.get("slots", 1)))
    backend = SlurmBackend(cfg, kinds)
    for kind in kinds.values():
        ex.function(backend.bind(kind), name=kind.name)
    ex.on_startup(backend.startup)
    return ex
