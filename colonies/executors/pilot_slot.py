"""One node's slots inside a pilot allocation: an executor of the kit, started by the allocation's job.

    python -m colonies.executors.pilot_slot ALLOCATION_DIR

The allocator (pilot.py) writes ALLOCATION_DIR on the shared filesystem before it submits the job:
`slot.json` (colony, type, where the server or the relay is, the walltime, the node executors' names,
the slot settings), one key per node `node-<i>.key` (mode 0600; the directory is 0700), and a copy of
the Slurm executor's config, whose [commands.*] and [functions.*] the slots serve. Node i (SLURM_NODEID,
one task per node under srun) signs with its own key; no colony owner key is ever on a compute node.

The slots are the kit's (colonies/executors/kit.py), so staging, the attempt fence, retries, deadlines,
cancel detection, logs and the drain on SIGTERM are those of every executor. On top:
* walltime: the node's executor must be done by the job's start + walltime - headroom; each slot asks
  only for processes whose maxexectime fits in what is left (the assign's `availableexectime`, which
  the server enforces), and stops pulling when nothing could fit any more;
* idle timeout: once no slot has had a process for `idle_timeout` seconds the node's executor exits;
  when every node's has, the job ends and the allocation with it;
* SIGTERM (Slurm ending the job: scancel, preemption, the time limit) abandons the processes in flight
  instead of draining (Slurm kills them anyway within KillWait): their results are dropped, never
  reported as failures, and the allocator's removal of this executor puts them back in the queue;
* a process runs as it would in its own batch job: a command (or, by default, a Python function through
  `colonies_job.py`) in a job directory `<ALLOCATION_DIR>/p/<processid>-<attempt>` with the same script,
  environment variables (COLONIES_INPUT, COLONIES_OUTPUT, COLONIES_WORKDIR...), working directory and
  output conventions as the job-per-process mode (slurm.py), so one config serves both modes. With
  `[pilot] inprocess = true`, [functions.*] run inside the slot's python instead (warm: no interpreter
  start per process, but they share the slot's working directory and process).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import importlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from colonies.errors import ProcessFailed
from colonies.executors import slurm_job
from colonies.executors.context import Context
from colonies.executors.kit import Executor
from colonies.executors.slurm_config import ENV_KEY, JobKind, SlurmConfig, batch_script, load_config

log = logging.getLogger("colonies.executor")

SLOT_FILE, CONFIG_FILE = "slot.json", "config.toml"
OUTPUT_MAX, TAIL_LINES, LINE_MAX = 16 * 1024 * 1024, 20, 65536
KILL_GRACE_S = 5.0
SIGNAL_GRACE_S = 1.0  # how long a job killed by a signal waits for the slot's own SIGTERM


def key_file(alloc_dir: Path, node: int) -> Path:
    return alloc_dir / f"node-{node}.key"


def started_file(alloc_dir: Path, node: int) -> Path:
    """Made by node `node`'s executor once it is announced: the allocator's sign that the slots started."""
    return alloc_dir / f"node-{node}.started"


@dataclass
class SlotSpec:
    """slot.json: what the allocator tells the slots of one allocation."""

    colony: str
    executortype: str
    names: list[str]  # node i's executor name
    walltime: int
    headroom: int
    idle_timeout: float
    slots: int
    slot_poll: int
    location: str = ""
    host: str = "127.0.0.1"
    port: int = 50080
    tls: bool = False
    socket: str = ""  # the relay's Unix socket (relay mode); then host/port are not used
    fs_dir: str = ""  # where processes with spec.fs get their working directories
    fs_store: str = ""  # COLONIES_FS_DIR for the slots (a local-directory store on the shared filesystem)
    inprocess: bool = False
    watch: float = 5.0
    heartbeat: float = 60.0
    env: dict[str, str] = field(default_factory=dict)  # extra variables for the slots themselves

    def dumps(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def load(cls, path: Path) -> SlotSpec:
        return cls(**json.loads(path.read_text()))


# -- running one process as its job would run ---------------------------------------------------------
class JobRunner:
    """Runs a [commands.*] or [functions.*] entry for one process inside the allocation."""

    def __init__(self, cfg: SlurmConfig, root: Path) -> None:
        self.cfg, self.root = cfg, root

    def bind(self, kind: JobKind) -> Callable[..., Any]:
        async def run(*args: Any, ctx: Context, **kwargs: Any) -> list[Any]:
            return await self.run(kind, list(args), kwargs, ctx)

        run.__name__ = kind.name
        return run

    def _environment(self, kind: JobKind, ctx: Context) -> dict[str, str]:
        env = dict(self.cfg.env) | dict(kind.env)
        for key, value in (ctx.process.spec.env or {}).items():
            if not ENV_KEY.match(key) or not any(fnmatch.fnmatchcase(key, pat) for pat in self.cfg.process_env):
                raise ProcessFailed(f"spec.env {key!r} is not allowed here (the executor's slurm.process_env)")
            env[key] = str(value)
        return env

    async def run(self, kind: JobKind, args: list[Any], kwargs: dict[str, Any], ctx: Context) -> list[Any]:
        if kind.argv and kwargs:
            raise ProcessFailed(f"{kind.name}: keyword args are not accepted ({', '.join(kwargs)})")
        if kind.argv and args and not kind.args:
            raise ProcessFailed(f"{kind.name}: takes no args")
        env = self._environment(kind, ctx)
        jobdir = self.root / f"{ctx.processid}-{ctx.attempt}"
        cwd = kind.cwd or str(ctx.workdir or jobdir)
        if kind.target:
            argv = [self.cfg.python, str(self.root / "colonies_job.py"), kind.target]
        else:
            argv = [*kind.argv, *(a if isinstance(a, str) else json.dumps(a) for a in args)]
        env |= {"COLONIES_PROCESS_ID": ctx.processid, "COLONIES_JOB_DIR": str(jobdir), "COLONIES_WORKDIR": cwd,
                "COLONIES_INPUT": str(jobdir / "input.json"), "COLONIES_OUTPUT": str(jobdir / "output.json")}
        try:
            if jobdir.exists():
                shutil.rmtree(jobdir)
            jobdir.mkdir(parents=True, mode=0o700)
            (jobdir / "input.json").write_text(json.dumps({"args": args, "kwargs": kwargs}))
            (jobdir / "job.sh").write_text(batch_script(argv, env, cwd))
        except OSError as exc:
            raise ProcessFailed(f"cannot write the job directory {jobdir}: {exc}") from None
        ok = False
        try:
            code, stdout, tail = await _run_script(jobdir / "job.sh")
            if code < 0:
                # Slurm signals every process of a job it ends (scancel, preemption): the slot's SIGTERM
                # then abandons this process (slot_main), which cancels this wait and drops the result,
                # rather than failing a process that another allocation will run.
                await asyncio.sleep(SIGNAL_GRACE_S)
            if code != 0:
                lines = [f"the job's program exited with code {code}" if code > 0 else f"killed by signal {-code}"]
                if tail:
                    lines.append("last lines of the job's output:\n" + "\n".join(tail))
                raise ProcessFailed(*lines)
            result = _output(kind, jobdir, stdout)
            ok = True
            return result
        finally:
            keep = self.cfg.keep_jobdirs
            if keep == "never" or (keep == "failed" and ok):
                shutil.rmtree(jobdir, ignore_errors=True)


async def _run_script(script: Path) -> tuple[int, str, list[str]]:
    """bash SCRIPT in a session of its own; its lines go to this process' stdout/stderr (the process log).
    (exit code or -signal, stdout up to OUTPUT_MAX, the last lines). A cancel kills its process group."""
    proc = await asyncio.create_subprocess_exec("bash", str(script), stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                start_new_session=True)
    out: list[str] = []
    size = 0
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    async def pump(stream: asyncio.StreamReader | None, sink: Any, keep: bool) -> None:
        nonlocal size
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the stream's limit: take what is there
                raw = await stream.read(LINE_MAX)
            if not raw:
                return
            line = raw.decode(errors="replace")
            sink.write(line if line.endswith("\n") else line + "\n")
            tail.append(line.rstrip("\n")[:LINE_MAX])
            if keep and size < OUTPUT_MAX:
                out.append(line)
                size += len(raw)

    try:
        await asyncio.gather(pump(proc.stdout, sys.stdout, True), pump(proc.stderr, sys.stderr, False))
        code = await proc.wait()
    except asyncio.CancelledError:
        await _kill(proc)
        raise
    return code, "".join(out), list(tail)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the job's process group, SIGKILL after KILL_GRACE_S."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def _output(kind: JobKind, jobdir: Path, stdout: str) -> list[Any]:
    """The process output from the job, by the kind's output convention (as slurm.py reads it)."""
    if kind.output == "file":
        path = jobdir / "output.json"
        if not path.exists():
            return []
        if path.stat().st_size > OUTPUT_MAX:
            raise ProcessFailed(f"the job's output file is larger than {OUTPUT_MAX} bytes")
        try:
            value = json.loads(path.read_text())
        except ValueError as exc:
            raise ProcessFailed(f"the job's output file ($COLONIES_OUTPUT) is not JSON: {exc}") from None
        return value if isinstance(value, list) else [value]
    if kind.output == "lines":
        return stdout.splitlines()
    if kind.output == "json":
        try:
            value = json.loads(stdout)
        except ValueError as exc:
            raise ProcessFailed(f"the job's stdout is not JSON: {exc}") from None
        return value if isinstance(value, list) else [value]
    return [stdout.rstrip("\n")]


def _inprocess(kind: JobKind) -> Callable[..., Any]:
    """A [functions.*] target imported into the slot; an import error fails each process that calls it."""
    try:
        fn: Any = importlib.import_module(kind.target.partition(":")[0])
        for part in kind.target.partition(":")[2].split("."):
            fn = getattr(fn, part)
    except Exception as exc:  # noqa: BLE001 - reported to every process that calls it
        error = f"{kind.name}: cannot import {kind.target} on this node: {type(exc).__name__}: {exc}"

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ProcessFailed(error)

        return broken
    if not callable(fn):
        raise TypeError(f"{kind.target} is not callable")
    return fn  # type: ignore[no-any-return]


# -- the node's executor ------------------------------------------------------------------------------
def slot_executor(alloc_dir: Path, node: int, started_wall: float | None = None) -> Executor:
    """Node `node`'s executor of the allocation in `alloc_dir` (its job started at `started_wall`)."""
    spec = SlotSpec.load(alloc_dir / SLOT_FILE)
    if not 0 <= node < len(spec.names):
        raise ValueError(f"node {node} is not one of this allocation's {len(spec.names)} node(s)")
    prvkey = key_file(alloc_dir, node).read_text().strip()
    started = time.time() if started_wall is None else started_wall
    left = started + spec.walltime - spec.headroom - time.time()
    os.environ.update(spec.env)
    if spec.fs_store:
        os.environ["COLONIES_FS_DIR"] = spec.fs_store
    _, cfg, kinds = load_config(str(alloc_dir / CONFIG_FILE))
    ex = Executor(colony=spec.colony, prvkey=prvkey, name=spec.names[node], executortype=spec.executortype,
                  host=spec.host, port=spec.port, tls=spec.tls, socket=spec.socket, slots=spec.slots,
                  poll_timeout=spec.slot_poll, heartbeat=spec.heartbeat, watch=spec.watch,
                  fs_dir=spec.fs_dir or None, location=spec.location, until=time.monotonic() + left,
                  idle_timeout=spec.idle_timeout)
    root = alloc_dir / "p"
    root.mkdir(exist_ok=True, mode=0o700)
    shutil.copyfile(slurm_job.__file__, root / "colonies_job.py")
    runner = JobRunner(cfg, root)
    for kind in kinds.values():
        ex.function(_inprocess(kind) if kind.target and spec.inprocess else runner.bind(kind), name=kind.name)

    async def announced(_: Executor) -> None:
        started_file(alloc_dir, node).write_text(f"{time.time():.3f}\n")

    ex.on_startup(announced)
    return ex


async def serve(ex: Executor) -> None:
    """Run the node's executor; SIGTERM (Slurm ending the allocation) abandons the processes in flight:
    the allocator removes this executor once the job has ended, which re-queues them at once."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ex.abandon, f"the allocation is ending ({signal.Signals(sig).name}); the "
                                "process goes back to the queue")
    try:
        await ex.run_async()
    finally:
        await ex.client.aclose()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m colonies.executors.pilot_slot ALLOCATION_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=os.environ.get("COLONIES_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    node = int(os.environ.get("SLURM_NODEID", "0") or 0)
    started = os.environ.get("COLONIES_PILOT_STARTED", "")
    ex = slot_executor(Path(argv[1]), node, float(started) if started else None)
    asyncio.run(serve(ex))
    log.info("slots of %s done: %d completed, %d failed, %d dropped", ex.name, ex.completed, ex.failed, ex.dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
