"""Container bench: a container per process (the container executor) against the executor kit, on the
host and already inside a long-lived container (the seeds' pattern), in the same run.

Run: .venv/bin/python bench/bench_containers.py [--quick]
Needs podman (scripts/containers) and the executor image (scripts/build-images). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_core import Cpu, pct, server_cpu_s

from colonies.client import AsyncClient, func_spec
from colonies.client.realtime import subscribe_processes
from colonies.model import Process
from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ServerProc, make_server

COLONY = "benchct"
BASE_IMAGE = os.environ.get("COLONIES_TEST_BASE_IMAGE", "localhost/colonies-base:bookworm")
EXECUTOR_IMAGE = os.environ.get("COLONIES_EXECUTOR_IMAGE", "localhost/colonies-executor:dev")
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": os.environ.get(
    "COLONIES_TEST_PODMAN_CONF", str(ROOT / "deploy" / "podman" / "containers.conf"))}
TOKEN = secrets.token_hex(4)  # label colonies.bench=<token> on every container this run starts
PHASE_TIME_LIMIT = 120.0
SLOTS = 2
MODULE = """import time
from colonies.executor import Executor

ex = Executor()


@ex.function
def stamp(wait: float = 0.0) -> float:
    started = time.time()
    time.sleep(wait)
    return started
"""
STAMP_CMD = "date +%s.%N > $COLONIES_OUTPUT"  # the same trivial work in a container: when it started


@dataclass(frozen=True)
class Sizes:
    latency: int  # sequential processes per kind
    burst_kit: int  # processes per throughput burst, kit executors
    burst_job: int  # processes per throughput burst, a container per process


FULL, QUICK = Sizes(30, 400, 40), Sizes(8, 100, 16)


@dataclass(frozen=True)
class Kind:
    label: str
    etype: str
    kwargs: dict[str, Any] | None  # the container executor's kwargs; None: the kit's `stamp`
    wait: float = 0.0  # how long the kit's `stamp` sleeps

    def spec(self) -> Any:
        if self.kwargs is None:
            return func_spec("stamp", COLONY, self.etype, args=[self.wait], maxexectime=60)
        return func_spec("execute", COLONY, self.etype, kwargs=self.kwargs, maxexectime=60)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, timeout=120,
                          check=check)


def _ts(d: Any) -> float:
    return float(d.timestamp())


class Completions:
    """One pubsub subscription: every process of an executor type that reaches SUCCESSFUL."""

    def __init__(self, srv: ServerProc, user: str, etype: str) -> None:
        self.srv, self.user, self.etype = srv, user, etype
        self.queue: asyncio.Queue[tuple[float, Process]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        async def pump() -> None:
            frames = subscribe_processes("127.0.0.1", self.srv.port, self.user, COLONY, self.etype, 2,
                                         int(PHASE_TIME_LIMIT * 3))
            async with contextlib.aclosing(frames) as it:
                async for p in it:
                    await self.queue.put((time.time(), p))

        self.task = asyncio.create_task(pump())
        await asyncio.sleep(0.3)  # the subscription is registered before anything is submitted
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def next(self, timeout: float = 60) -> tuple[float, Process]:
        return await asyncio.wait_for(self.queue.get(), timeout)


@dataclass
class Latency:
    to_start: list[float]
    to_close: list[float]
    total: list[float]
    server_cpu: Cpu


async def latency(srv: ServerProc, user: str, kind: Kind, n: int) -> Latency:
    """n processes one after another: submit -> started (the work's own timestamp) -> closed (endtime)."""
    lat = Latency([], [], [], Cpu(0, 0))
    async with AsyncClient("127.0.0.1", srv.port, prvkey=user) as c, Completions(srv, user, kind.etype) as done:
        for _ in range(2):  # warm-up, not counted
            await c.submit(kind.spec())
            await done.next()
        assert srv.proc is not None
        cpu0, deadline = server_cpu_s(srv.proc.pid), time.monotonic() + PHASE_TIME_LIMIT
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            t0 = time.time()
            p = await c.submit(kind.spec())
            _seen, got = await done.next()
            assert got.processid == p.processid, "an unexpected completion"
            started, end = float((got.output or [0])[0]), _ts(got.endtime)
            lat.to_start.append(started - t0)
            lat.to_close.append(end - started)
            lat.total.append(end - t0)
        lat.server_cpu = server_cpu_s(srv.proc.pid) - cpu0
    return lat


async def burst(srv: ServerProc, user: str, kind: Kind, n: int) -> tuple[int, float, Cpu]:
    """n processes submitted at once; (done, seconds from the first submit to the last completion, server CPU)."""
    async with AsyncClient("127.0.0.1", srv.port, prvkey=user) as c, Completions(srv, user, kind.etype) as done:
        assert srv.proc is not None
        cpu0, t0 = server_cpu_s(srv.proc.pid), time.time()
        wanted = set()
        for _ in range(n):
            wanted.add((await c.submit(kind.spec())).processid)
        last, deadline = t0, time.monotonic() + PHASE_TIME_LIMIT
        while wanted and time.monotonic() < deadline:
            try:
                seen, p = await done.next(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            wanted.discard(p.processid)
            last = seen
        return n - len(wanted), last - t0, server_cpu_s(srv.proc.pid) - cpu0


# -- setting up ---------------------------------------------------------------------------------------------
async def setup(srv: ServerProc) -> tuple[str, str]:
    colony_prv, user_prv = generate_prvkey(), generate_prvkey()
    async with AsyncClient("127.0.0.1", srv.port, prvkey=srv.server_prvkey) as admin:
        await admin.add_colony(id_of(colony_prv), COLONY)
        await admin.with_key(colony_prv).add_user(COLONY, id_of(user_prv), "bench-user")
    return colony_prv, user_prv


def executor_env(srv: ServerProc, colony_prv: str, name: str, etype: str) -> dict[str, str]:
    return {"COLONIES_SERVER_HOST": "127.0.0.1", "COLONIES_SERVER_PORT": str(srv.port), "COLONIES_TLS": "false",
            "COLONIES_COLONY_NAME": COLONY, "COLONIES_COLONY_PRVKEY": colony_prv,
            "COLONIES_EXECUTOR_PRVKEY": generate_prvkey(), "COLONIES_EXECUTOR_NAME": name,
            "COLONIES_EXECUTOR_TYPE": etype, "COLONIES_LOG_LEVEL": "WARNING"}


@dataclass
class Executors:
    procs: list[subprocess.Popen[bytes]]
    long_name: str
    logs: Any

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.logs.close()
        podman("rm", "-f", "-t", "0", "--ignore", self.long_name, check=False)
        left = podman("ps", "-a", "-q", "--filter", f"label=colonies.bench={TOKEN}", check=False).stdout.split()
        if left:
            podman("rm", "-f", "-t", "0", *left, check=False)


def start_executors(srv: ServerProc, colony_prv: str, tmp: Path, with_image: bool) -> Executors:
    """The three executors: the kit on the host, the kit in a long-lived container, the container executor."""
    module = tmp / "benchmod.py"
    module.write_text(MODULE)
    module.chmod(0o644)
    config = tmp / "containers.toml"
    config.write_text(f'[executor]\nslots = {SLOTS}\n[containers]\nallow = ["{BASE_IMAGE}"]\n'
                      f'labels = {{ "colonies.bench" = "{TOKEN}" }}\nworkdir = "{tmp}/runs"\n')
    cli = [sys.executable, "-m", "colonies", "executor", "run", "--slots", str(SLOTS)]
    base_env = {k: v for k, v in PODMAN_ENV.items() if not k.startswith("COLONIES_")}
    base_env["PYTHONPATH"] = str(ROOT)
    started = Executors([], f"colonies-bench-long-{TOKEN}", open(tmp / "executors.log", "ab"))  # noqa: SIM115
    for args, name in (([str(module)], "b-kit"), (["--containers", str(config)], "b-ct")):
        started.procs.append(subprocess.Popen([*cli, *args], env={**base_env, **executor_env(srv, colony_prv, name, name)},
                                              stdout=started.logs, stderr=subprocess.STDOUT, cwd=ROOT))
    if with_image:
        env = executor_env(srv, colony_prv, "b-long", "b-long")
        argv = ["run", "-d", "--name", started.long_name, "--label", f"colonies.bench={TOKEN}", "--network", "host",
                "-v", f"{module}:/app/benchmod.py:ro"]
        for key in env:
            argv += ["-e", key]  # values from podman's environment: no key on a command line
        subprocess.run(["podman", *argv, EXECUTOR_IMAGE, "benchmod", "--slots", str(SLOTS)],
                       env={**PODMAN_ENV, **env}, check=True, capture_output=True, timeout=120)
    return started


async def registered(srv: ServerProc, user: str, names: set[str], log: Path) -> None:
    async with AsyncClient("127.0.0.1", srv.port, prvkey=user) as c:
        for _ in range(300):
            got = {e.executorname for e in await c.get_executors(COLONY) or [] if e.state == 1}
            if names <= got:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"executors did not register: {names - got}; see {log}")
    await asyncio.sleep(1.0)  # their functions are announced after approval


# -- the report -----------------------------------------------------------------------------------------------
def ms(values: list[float], q: float | None = None) -> str:
    if not values:
        return "-"
    return f"{(statistics.median(values) if q is None else pct(values, q)) * 1000:7.1f}"


def latency_row(label: str, lat: Latency) -> str:
    cpu_ms = lat.server_cpu.total / max(1, len(lat.total)) * 1000
    return (f"  {label:32} {ms(lat.to_start)} /{ms(lat.to_start, 0.9)} {ms(lat.to_close)} /{ms(lat.to_close, 0.9)} "
            f"{ms(lat.total)} /{ms(lat.total, 0.9)} {cpu_ms:9.2f} ms")


async def main(quick: bool) -> None:
    sizes = QUICK if quick else FULL
    with_image = podman("image", "exists", EXECUTOR_IMAGE, check=False).returncode == 0
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        raise SystemExit(f"{BASE_IMAGE} is missing: run scripts/containers")
    tmp = Path(tempfile.mkdtemp(prefix="colonies-bench-ct-"))
    srv = make_server(tmp)
    srv.start()
    try:
        assert srv.proc is not None
        colony_prv, user = await setup(srv)
        kinds = [Kind("kit on the host", "b-kit", None)]
        if with_image:
            kinds.append(Kind("kit in a long-lived container", "b-long", None))
        kinds.append(Kind("a container per process", "b-ct", {"docker-image": BASE_IMAGE, "cmd": STAMP_CMD}))
        podman_version = podman("version", "--format", "{{.Client.Version}}", check=False).stdout.strip()
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"bench_containers: server pid {srv.proc.pid} (SQLite), {os.cpu_count()} CPUs (load {load}), podman "
              f"{podman_version} (runc), {'quick' if quick else 'full'} mode")
        print("  work: the kit's stamp() returns time.time(); the container runs `date +%s.%N > $COLONIES_OUTPUT` "
              f"in {BASE_IMAGE} (cached, nothing pulled)")
        print(f"  executors: subprocesses `colonies executor run` with --slots {SLOTS}: the kit on the host, the "
              f"container executor (--containers), and " + (f"the kit in a long-lived {EXECUTOR_IMAGE} container "
              "(host network, module mounted)" if with_image else f"NOT the long-lived container ({EXECUTOR_IMAGE} "
              "is missing: scripts/build-images)"))
        print("  latency: processes one at a time after 2 warm-ups; submit->started is the work's own timestamp "
              "minus the time before submit,")
        print("  started->closed the server's endtime minus it; completions come over one pubsub subscription "
              "(no polling). server CPU: utime+stime")
        print("  of the server pid from /proc/<pid>/stat around the phase, per process. throughput: a burst "
              "submitted at once, first submit to last completion.")
        started = start_executors(srv, colony_prv, tmp, with_image)
        try:
            await registered(srv, user, {k.etype for k in kinds}, tmp / "executors.log")
            print()
            print(f"LATENCY ({sizes.latency} sequential processes each; ms, median / p90)")
            print(f"  {'':32} {'submit->started':>17} {'started->closed':>17} {'submit->closed':>17} {'server CPU/op':>14}")
            results: dict[str, Latency] = {}
            for kind in kinds:
                results[kind.label] = lat = await latency(srv, user, kind, sizes.latency)
                print(latency_row(kind.label, lat))
            job, host = results["a container per process"], results["kit on the host"]
            if job.total and host.total:
                print(f"  a container per process costs {1000 * (statistics.median(job.total) - statistics.median(host.total)):.0f}"
                      f" ms more per process than the kit on the host (median submit->closed)")
                # server CPU grows with the time a process runs (loops, parked long-polls): a control row
                wait = round(statistics.median(job.total), 3)
                control = Kind(f"kit on the host, sleeping {wait * 1000:.0f} ms", "b-kit", None, wait)
                print(latency_row(control.label, await latency(srv, user, control, sizes.latency)))
            print()
            print(f"THROUGHPUT (a burst of processes, {SLOTS} slots per executor)")
            rates: dict[str, float] = {}
            for kind in kinds:
                n = sizes.burst_job if kind.kwargs is not None else sizes.burst_kit
                done, seconds, cpu = await burst(srv, user, kind, n)
                rates[kind.label] = done / seconds if seconds > 0 else 0.0
                print(f"  {kind.label:32} {done:4d}/{n:<4d} in {seconds:6.2f} s  {rates[kind.label]:8.1f} processes/s"
                      f"  server CPU {cpu.total / max(1, done) * 1000:6.2f} ms/process")
            per_job = rates["a container per process"]
            for label in ("kit in a long-lived container", "kit on the host"):
                if label in rates and per_job > 0:
                    print(f"  {label} / a container per process: {rates[label] / per_job:.1f}x")
        finally:
            started.stop()
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts")
    asyncio.run(main(ap.parse_args().quick))
