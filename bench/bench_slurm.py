"""Slurm bench: the Slurm executor's cost per job against plain sbatch on the same cluster, in the same run.

Run: .venv/bin/python bench/bench_slurm.py [--n 10] [--burst 20] [--poll 0.5]
Needs the test cluster of scripts/slurm (SLURM_CONF from COLONIES_TEST_SLURM_CONF). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_core import Cpu, server_cpu_s

from colonies.client import AsyncClient, func_spec
from colonies.client.realtime import subscribe_processes
from colonies.model import Process, ProcessState
from tests.conftest import ServerProc, make_server, setup_colony
from tests.kit_support import cli_env, start_executor, stop

SLURM_CONF = os.environ.get("COLONIES_TEST_SLURM_CONF", "/tmp/colonies-slurm/slurm.conf")
ENV = {**os.environ, "SLURM_CONF": SLURM_CONF}
# the same trivial work both ways: write when the job started (its own clock, the machine's)
STAMP = "import json, os, time; json.dump([time.time()], open(os.environ['COLONIES_OUTPUT'], 'w'))"
PHASE_TIME_LIMIT = 180.0
PLAIN_POLL = 0.1  # plain sbatch one at a time: squeue every 0.1 s, close to when the job really ended
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> Cpu:
    """utime+stime of a process and of its reaped children (its sbatch/squeue/scancel calls)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return Cpu((int(fields[11]) + int(fields[13])) / CLK_TCK, (int(fields[12]) + int(fields[14])) / CLK_TCK)


def tool(*args: str) -> str:
    return subprocess.run(list(args), env=ENV, capture_output=True, text=True, timeout=60, check=True).stdout


# -- plain sbatch -----------------------------------------------------------------------------------------
def plain_job(tmp: Path, i: int) -> tuple[list[str], Path]:
    out = tmp / f"plain-{i}.json"
    script = tmp / f"plain-{i}.sh"
    script.write_text(f"#!/bin/bash\nexport COLONIES_OUTPUT={out}\nexec python3 -c \"{STAMP}\"\n")
    return ["sbatch", "--parsable", "--job-name=bench-plain", f"--output={tmp}/plain-{i}.out", str(script)], out


def squeue_done(ids: list[str]) -> set[str]:
    out = tool("squeue", "-h", "-t", "all", "-j", ",".join(ids), "-O", "JobID:|,State:|")
    return {f.split("|")[0].strip() for f in out.splitlines() if f.split("|")[1].strip() == "COMPLETED"}


def plain_latency(tmp: Path, n: int, poll: float) -> list[tuple[float, float]]:
    """(submit -> job started, submit -> COMPLETED seen by squeue every `poll` s), one job at a time."""
    got = []
    for i in range(n):
        argv, out = plain_job(tmp, i)
        t0 = time.time()
        jobid = tool(*argv).strip().split(";")[0]
        deadline = time.monotonic() + PHASE_TIME_LIMIT
        while jobid not in squeue_done([jobid]) and time.monotonic() < deadline:
            time.sleep(poll)
        t1 = time.time()
        got.append((float(out.read_text().strip("[]\n")) - t0, t1 - t0))
    return got


def plain_wait(tmp: Path, n: int) -> list[float]:
    """`sbatch --wait` (Slurm's own wait), one job at a time: submit -> sbatch returns."""
    got = []
    for i in range(n):
        argv, _ = plain_job(tmp, 1000 + i)
        t0 = time.time()
        tool(argv[0], "--wait", *argv[1:])
        got.append(time.time() - t0)
    return got


def plain_burst(tmp: Path, n: int, poll: float) -> float:
    t0 = time.time()
    ids = [tool(*plain_job(tmp, 2000 + i)[0]).strip().split(";")[0] for i in range(n)]
    deadline = time.monotonic() + PHASE_TIME_LIMIT
    while len(squeue_done(ids)) < n and time.monotonic() < deadline:
        time.sleep(poll)
    return time.time() - t0


# -- the Slurm executor -------------------------------------------------------------------------------------
class Closed:
    """Closes seen over one pubsub subscription (so waiting costs the server no polling)."""

    def __init__(self, port: int, user: str, colony: str) -> None:
        self.frames = subscribe_processes("127.0.0.1", port, user, colony, "slurm", ProcessState.SUCCESS,
                                          int(PHASE_TIME_LIMIT * 4))
        self.queue: asyncio.Queue[Process] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async def pump() -> None:
            async for p in self.frames:
                await self.queue.put(p)

        self.task = asyncio.create_task(pump())
        await asyncio.sleep(0.3)  # subscribed before the first submit

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.frames.aclose()

    async def until(self, c: AsyncClient, pids: set[str]) -> list[Process]:
        """The processes `pids` as they close; a failed one (never SUCCESS) raises, found by a look every 5 s."""
        got, deadline = [], time.monotonic() + PHASE_TIME_LIMIT
        while pids:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pids)} process(es) did not close within {PHASE_TIME_LIMIT} s")
            try:
                p = await asyncio.wait_for(self.queue.get(), 5)
            except TimeoutError:
                for pid in pids:
                    if (q := await c.get_process(pid)).state == ProcessState.FAILED:
                        raise RuntimeError(f"process {pid} failed: {q.errors}") from None
                continue
            if p.processid in pids:
                pids.discard(p.processid)
                got.append(p)
        return got


async def executor_latency(c: AsyncClient, closed: Closed, colony: str, n: int) -> list[tuple[float, float]]:
    """(submit -> job started, submit -> process closed by the server's endtime), one at a time."""
    got = []
    for _ in range(n):
        t0 = time.time()
        p = await c.submit(func_spec("stamp", colony, "slurm", maxexectime=120))
        (done,) = await closed.until(c, {p.processid})
        got.append((float((done.output or [0])[0]) - t0, done.endtime.timestamp() - t0))
    return got


async def executor_burst(c: AsyncClient, closed: Closed, colony: str, n: int) -> float:
    t0 = time.time()
    pids = {(await c.submit(func_spec("stamp", colony, "slurm", maxexectime=120))).processid for _ in range(n)}
    done = await closed.until(c, pids)
    return max(p.endtime.timestamp() for p in done) - t0


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms (min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10, help="jobs one at a time, each way")
    ap.add_argument("--burst", type=int, default=20, help="jobs submitted at once, each way")
    ap.add_argument("--poll", type=float, default=0.5, help="the executor's poll_interval (and plain's squeue poll)")
    ap.add_argument("--slots", type=int, default=8)
    args = ap.parse_args()
    tool("sinfo", "-h")  # fails early without a cluster
    with tempfile.TemporaryDirectory(prefix="colonies-bench-slurm-") as tmp_s:
        tmp = Path(tmp_s)
        srv = make_server(tmp, {"COLONIES_TIMEOUT_CHECKER_PERIOD": "1000"})
        srv.start()
        try:
            run(srv, tmp, args)
        finally:
            srv.stop()


def run(srv: ServerProc, tmp: Path, args: argparse.Namespace) -> None:
    assert srv.proc is not None
    colony = setup_colony(srv, "benchslurm")
    cfg = tmp / "slurm.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [executor]
        type = "slurm"
        slots = {args.slots}
        [slurm]
        workdir = "{tmp / 'jobs'}"
        poll_interval = {args.poll}
        keep_jobdirs = "never"
        [commands.stamp]
        argv = ["python3", "-c", "{STAMP}"]
        args = false
        """))
    env = cli_env(srv, colony, SLURM_CONF=SLURM_CONF, COLONIES_LOG_LEVEL="WARNING")
    ex = start_executor(env, tmp / "executor.log", "--slurm", str(cfg), "--name", "bench-slurm")
    print(f"# Slurm bench: single-node Slurm ({SLURM_CONF}), {os.cpu_count()} CPUs; server pid {srv.proc.pid} "
          f"(SQLite); executor `colonies executor run --slurm` pid {ex.pid}, poll_interval {args.poll} s, "
          f"{args.slots} slots")
    print("# job: python3 -c that writes time.time() to $COLONIES_OUTPUT (when it started, by its own clock)")
    try:
        asyncio.run(executor_phases(srv, colony.name, colony.user_prvkey, ex.pid, tmp, args))
    except BaseException:
        print("executor log (last lines):\n" + "\n".join((tmp / "executor.log").read_text().splitlines()[-30:]))
        raise
    finally:
        stop(ex)


async def executor_phases(srv: ServerProc, colony: str, user: str, ex_pid: int, tmp: Path,
                          args: argparse.Namespace) -> None:
    assert srv.proc is not None
    closed = Closed(srv.port, user, colony)
    await closed.start()
    try:
        async with AsyncClient("127.0.0.1", srv.port, prvkey=user) as c:
            await phases(c, closed, srv, colony, ex_pid, tmp, args)
    finally:
        await closed.close()


async def phases(c: AsyncClient, closed: Closed, srv: ServerProc, colony: str, ex_pid: int, tmp: Path,
             args: argparse.Namespace) -> None:
    assert srv.proc is not None
    await executor_latency(c, closed, colony, 2)  # warm-up: registration, first sbatch, page cache
    cpu0, ex0 = server_cpu_s(srv.proc.pid), tree_cpu_s(ex_pid)
    lat = await executor_latency(c, closed, colony, args.n)
    cpu1, ex1 = server_cpu_s(srv.proc.pid), tree_cpu_s(ex_pid)
    plain = plain_latency(tmp, args.n, PLAIN_POLL)
    waited = plain_wait(tmp, max(3, args.n // 3))
    print(f"\nONE AT A TIME ({args.n} jobs each way)")
    print(f"  submit -> job running   executor: {ms([a for a, _ in lat])}")
    print(f"                          sbatch:   {ms([a for a, _ in plain])}")
    print(f"  submit -> closed/done   executor: {ms([b for _, b in lat])}  (the process' endtime)")
    print(f"                          sbatch:   {ms([b for _, b in plain])}  (COMPLETED seen by squeue "
          f"every {PLAIN_POLL} s)")
    print(f"                          sbatch --wait: {ms(waited)}  (Slurm's own wait)")
    over = statistics.median([b for _, b in lat]) - statistics.median([b for _, b in plain])
    print(f"  executor overhead per job (median submit -> done, executor - sbatch): {over * 1000:.0f} ms")
    server, execu = cpu1 - cpu0, ex1 - ex0
    print(f"  server CPU {server.total / args.n * 1e3:.1f} ms/process ({server.sys / server.total * 100 if server.total else 0:.0f}% "
          f"kernel); executor CPU {execu.total / args.n * 1e3:.0f} ms/process incl. its sbatch/squeue calls")
    t_ex = await executor_burst(c, closed, colony, args.burst)
    t_plain = plain_burst(tmp, args.burst, args.poll)
    print(f"\nBURST ({args.burst} jobs submitted at once; the node runs 2 at a time)")
    print(f"  executor: {t_ex:.2f} s ({t_ex / args.burst * 1000:.0f} ms/job); sbatch + one squeue per poll: "
          f"{t_plain:.2f} s ({t_plain / args.burst * 1000:.0f} ms/job); ratio {t_ex / t_plain:.2f}")


if __name__ == "__main__":
    main()
