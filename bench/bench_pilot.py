"""Pilot bench: pilot slots against job-per-process and a plain executor on the host, in one run.

Run: .venv/bin/python bench/bench_pilot.py [--n 300] [--jobs-n 300] [--latency 50] [--quick]
Needs the test cluster of scripts/slurm (SLURM_CONF from COLONIES_TEST_SLURM_CONF). See bench/README.md.

The work is the same everywhere: `noop(i)` returns i. The host executor (`colonies executor run
benchfuncs`) and the pilot slots ([pilot] inprocess = true) call it inside their python; the
job-per-process mode runs it in its own batch job through colonies_job.py (one python per process, as a
[functions.*] job does). Times are the server's own (submissiontime, starttime, endtime), so the bench's
polling adds nothing to them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_core import pct, server_cpu_s

from colonies.client import AsyncClient, func_spec
from colonies.model import Process, ProcessState
from tests.conftest import ColonyKeys, ServerProc, make_server, setup_colony
from tests.kit_support import cli_env, start_executor, stop
from tests.pilot_support import TYPE, Allocator, slurm_run, write_config

SLURM_CONF = os.environ.get("COLONIES_TEST_SLURM_CONF", "/tmp/colonies-slurm/slurm.conf")
FUNCS = "def noop(i):\n    return i\n"
HOST = ("from colonies import Executor\n\nex = Executor(executortype=%r, slots=4)\n\n\n@ex.function\n"
        "def noop(i):\n    return i\n")
PILOT = {"nodes": 1, "slots_per_node": 4, "walltime": 900, "headroom": 5, "idle_timeout": 120, "max_allocations": 1,
         "poll_interval": 0.5, "slot_poll": 10, "inprocess": True}
FINAL = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED)


def spec(colony: str, i: int) -> Any:
    return func_spec("noop", colony, TYPE, args=[i], maxexectime=120, maxretries=3)


async def submit_all(c: AsyncClient, colony: str, n: int) -> list[str]:
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> str:
        async with sem:
            return (await c.submit(spec(colony, i))).processid

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def finished(c: AsyncClient, pids: list[str], limit: float) -> list[Process]:
    """The processes once all have ended: one read of the first not yet seen ended, again 0.2 s later
    while it runs (so the bench's own reads stay a few a second and out of the server's CPU figures)."""
    done: list[Process] = []
    deadline = time.monotonic() + limit
    while len(done) < len(pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pids) - len(done)} process(es) did not end within {limit:g} s")
        p = await c.get_process(pids[len(done)])
        if p.state not in FINAL:
            await asyncio.sleep(0.2)
            continue
        if p.state != ProcessState.SUCCESS:
            raise RuntimeError(f"process {p.processid} ended {ProcessState(p.state).name}: {p.errors}")
        done.append(p)
    return done


def span(done: list[Process]) -> float:
    """First submission to last end, by the server's clock."""
    return max(p.endtime.timestamp() for p in done) - min(p.submissiontime.timestamp() for p in done)


IDLE_CPU_S = [0.0]  # the server's CPU per second with nothing to do (its loops), measured first


async def idle_rate(srv: ServerProc, seconds: float = 5.0) -> float:
    assert srv.proc is not None
    cpu0 = server_cpu_s(srv.proc.pid)
    await asyncio.sleep(seconds)
    return (server_cpu_s(srv.proc.pid) - cpu0).total / seconds


async def throughput(c: AsyncClient, srv: ServerProc, colony: str, n: int, limit: float) -> tuple[float, float]:
    """(processes per second from the first submit to the last close, server CPU ms per process, less
    what the server spends idle over as long)."""
    assert srv.proc is not None
    cpu0, t0 = server_cpu_s(srv.proc.pid), time.monotonic()
    done = await finished(c, await submit_all(c, colony, n), limit)
    cpu = (server_cpu_s(srv.proc.pid) - cpu0).total - IDLE_CPU_S[0] * (time.monotonic() - t0)
    return n / span(done), max(cpu, 0.0) * 1000 / n


async def latency(c: AsyncClient, colony: str, n: int) -> list[float]:
    """submit -> closed (server's submissiontime to endtime), one process at a time, in seconds."""
    got = []
    for i in range(n):
        pid = (await c.submit(spec(colony, i))).processid
        (p,) = await finished_fast(c, pid)
        got.append(p.endtime.timestamp() - p.submissiontime.timestamp())
    return got


async def finished_fast(c: AsyncClient, pid: str) -> list[Process]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p = await c.get_process(pid)
        if p.state in FINAL:
            return [p]
        await asyncio.sleep(0.005)
    raise RuntimeError(f"process {pid} did not end")


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.1f} ms (p90 {pct(xs, 0.9) * 1000:.1f})"


# -- the phases -----------------------------------------------------------------------------------------
class Bench:
    def __init__(self, srv: ServerProc, colony: ColonyKeys, tmp: Path, args: argparse.Namespace) -> None:
        self.srv, self.colony, self.tmp, self.args = srv, colony, tmp, args
        self.rows: list[tuple[str, str]] = []
        (tmp / "benchfuncs.py").write_text(FUNCS)
        self.client = AsyncClient("127.0.0.1", srv.port, prvkey=colony.user_prvkey)

    def row(self, what: str, value: str) -> None:
        print(f"{what:<64} {value}", flush=True)
        self.rows.append((what, value))

    def allocator(self, name: str, pilot: dict[str, Any] | None, kinds: str = "") -> Allocator:
        cfg = write_config(self.tmp, pilot, name=f"{name}.toml", slurm={"keep_jobdirs": "never"})
        with open(cfg, "a") as f:
            f.write('\n[functions.noop]\ntarget = "benchfuncs:noop"\n' + kinds)
        return Allocator(self.srv, self.colony, self.tmp, cfg, name=name, watch=5.0, COLONIES_LOG_LEVEL="WARNING")

    async def warm(self) -> None:
        await finished(self.client, await submit_all(self.client, self.colony.name, 8), 120)

    async def reads(self, n: int = 200) -> tuple[float, float]:
        """The allocator's look at the queue (getprocessesmsg: WAITING, its type, at most 100) with `--n`
        processes waiting: (server CPU ms per read, ms per read as the client sees it). The waiting
        processes are left for the host executor."""
        assert self.srv.proc is not None
        await submit_all(self.client, self.colony.name, self.args.n)
        c = AsyncClient("127.0.0.1", self.srv.port, prvkey=self.colony.executor_prvkey)
        try:
            cpu0, t0 = server_cpu_s(self.srv.proc.pid), time.monotonic()
            for _ in range(n):
                got = await c.get_processes(self.colony.name, state=ProcessState.WAITING, count=100, executortype=TYPE)
                assert len(got) == min(100, self.args.n)
            took, cpu = time.monotonic() - t0, server_cpu_s(self.srv.proc.pid) - cpu0
        finally:
            await c.aclose()
        return cpu.total * 1000 / n, took * 1000 / n

    async def host(self) -> tuple[list[float], float, float]:
        (self.tmp / "benchhost.py").write_text(HOST % TYPE)
        env = cli_env(self.srv, self.colony, COLONIES_LOG_LEVEL="WARNING",
                      PYTHONPATH=f"{self.tmp}:{ROOT}")
        read_cpu, read_ms = await self.reads()
        self.row(f"the allocator's queue read (100 of {self.args.n} waiting): server CPU, client time",
                 f"{read_cpu:.2f} ms, {read_ms:.2f} ms")
        proc = start_executor(env, self.tmp / "host.log", "benchhost", "--name", "host-1")
        try:
            while await self.client.get_processes(self.colony.name, state=ProcessState.WAITING, count=1,
                                                  executortype=TYPE):
                await asyncio.sleep(0.2)
            await self.warm()
            lat = await latency(self.client, self.colony.name, self.args.latency)
            tput, cpu = await throughput(self.client, self.srv, self.colony.name, self.args.n, 300)
        finally:
            stop(proc)
        return lat, tput, cpu

    async def pilot(self, name: str, extra: dict[str, Any]) -> tuple[list[float], float, float, float]:
        """(latency, throughput, server CPU per process, cold start: first submit -> first slot running)."""
        a = self.allocator(name, {**PILOT, **extra})
        a.start()
        try:
            t0 = time.time()
            pid = (await self.client.submit(spec(self.colony.name, -1))).processid
            (first,) = await finished_fast(self.client, pid)
            cold = first.starttime.timestamp() - t0
            await self.warm()
            lat = await latency(self.client, self.colony.name, self.args.latency)
            tput, cpu = await throughput(self.client, self.srv, self.colony.name, self.args.n, 300)
            assert len(a.jobs()) == 1, a.jobs()  # all of it through one allocation
        finally:
            a.close()
        return lat, tput, cpu, cold

    async def jobs(self) -> tuple[float, float, list[float]]:
        a = self.allocator("jobs-1", None)
        a.start()
        try:
            lat = await latency(self.client, self.colony.name, 5)
            tput, cpu = await throughput(self.client, self.srv, self.colony.name, self.args.jobs_n, 900)
        finally:
            a.close()
        return tput, cpu, lat

    async def bursty(self) -> tuple[float, int, float]:
        """Bursts of processes with gaps shorter and longer than the idle timeout: (busy slot-seconds over
        allocated slot-seconds, allocations, idle timeout)."""
        idle = 2.0
        a = self.allocator("bursty-1", {**PILOT, "idle_timeout": idle, "max_allocations": 2, "inprocess": False},
                           kinds='\n[commands.work]\nargv = ["sleep"]\n')
        a.start()
        pids: list[str] = []
        try:
            for burst, gap in ((24, 1.0), (24, 6.0), (40, 0.5), (24, 0.0)):
                batch = [(await self.client.submit(func_spec("work", self.colony.name, TYPE, args=["0.25"],
                                                             maxexectime=60))).processid for _ in range(burst)]
                await finished(self.client, batch, 120)
                pids += batch
                await asyncio.sleep(gap)
            done = await finished(self.client, pids, 60)
            busy = sum(p.endtime.timestamp() - p.starttime.timestamp() for p in done)
            await asyncio.sleep(idle + 2)
            ids = list(a.jobs())
        finally:
            a.close()
        out = slurm_run({**a.slurm_env, "SLURM_TIME_FORMAT": "%s"}, "sacct", "-c", "-n", "-P", "-j", ",".join(ids),
                        "-o", "JobID,Start,End").stdout
        allocated = 0.0
        for line in out.splitlines():
            f = line.split("|")
            if len(f) == 3 and f[1].isdigit() and f[2].isdigit():
                allocated += (int(f[2]) - int(f[1])) * PILOT["slots_per_node"]
        self.row("bursty load: busy slot-seconds / allocated slot-seconds", f"{busy:.1f} / {allocated:.0f}")
        return busy / allocated if allocated else 0.0, len(ids), idle

    async def run(self) -> None:
        args = self.args
        IDLE_CPU_S[0] = await idle_rate(self.srv)
        self.row("server CPU while idle (subtracted from the per-process figures)", f"{IDLE_CPU_S[0] * 1000:.1f} ms/s")
        h_lat, h_tput, h_cpu = await self.host()
        self.row(f"host executor (4 slots): submit -> closed, p50 (p90), {args.latency} one at a time", ms(h_lat))
        self.row(f"host executor: throughput, {args.n} at once", f"{h_tput:.0f} processes/s")
        self.row("host executor: server CPU per process", f"{h_cpu:.2f} ms")
        results = {}
        for name, extra in (("pilot-direct", {}), ("pilot-relay", {"relay": "unix"})):
            lat, tput, cpu, cold = await self.pilot(name, extra)
            results[name] = tput
            self.row(f"{name} (1 allocation x 4 slots): submit -> closed, p50 (p90)", ms(lat))
            self.row(f"{name}: added per process over the host executor, p50",
                     f"{(statistics.median(lat) - statistics.median(h_lat)) * 1000:+.1f} ms")
            self.row(f"{name}: throughput, {args.n} at once", f"{tput:.0f} processes/s")
            self.row(f"{name}: server CPU per process", f"{cpu:.2f} ms")
            self.row(f"{name}: first waiting process -> first slot running (cold)", f"{cold:.2f} s")
        j_tput, j_cpu, j_lat = await self.jobs()
        self.row("job per process: submit -> closed, p50 (5 one at a time)", ms(j_lat))
        self.row(f"job per process: throughput, {args.jobs_n} at once", f"{j_tput:.2f} processes/s")
        self.row("job per process: server CPU per process", f"{j_cpu:.2f} ms")
        for name, tput in results.items():
            self.row(f"{name} throughput / job per process", f"{tput / j_tput:.0f}x")
        util, allocs, idle = await self.bursty()
        self.row(f"bursty load (4 bursts, gaps 1-6 s, idle timeout {idle:g} s): slot utilisation",
                 f"{util * 100:.0f}% over {allocs} allocation(s)")
        await self.client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300, help="processes at once, for throughput")
    ap.add_argument("--jobs-n", type=int, default=300, help="the same through job-per-process")
    ap.add_argument("--latency", type=int, default=50, help="processes one at a time, for latency")
    ap.add_argument("--quick", action="store_true", help="--n 100 --jobs-n 20 --latency 20")
    args = ap.parse_args()
    if args.quick:
        args.n, args.jobs_n, args.latency = 100, 20, 20
    subprocess.run(["sinfo", "-h"], env={**os.environ, "SLURM_CONF": SLURM_CONF}, check=True, capture_output=True)
    os.environ["COLONIES_TEST_SLURM_CONF"] = SLURM_CONF
    with tempfile.TemporaryDirectory(prefix="colonies-bench-pilot-") as tmp_s:
        tmp = Path(tmp_s)
        srv = make_server(tmp, {"COLONIES_TIMEOUT_CHECKER_PERIOD": "1000"})
        srv.start()
        try:
            colony = setup_colony(srv, "benchpilot")
            asyncio.run(Bench(srv, colony, tmp, args).run())
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
