"""Chaos: executors killed at random lose nothing.

2,000 processes with `maxexectime` (a fifth of them in diamond workflows) are served by 8 executor
processes (`tests/chaos/worker.py`, our Executor helper). Every 200–500 ms one executor, chosen at random,
gets SIGKILL and a replacement starts with the same key. A "laggard" executor takes a few processes and
holds them past their deadline. Afterwards:
  * every process is SUCCESS, with exactly one "closed" event and no "failed" event on record;
  * the laggard's late closes are refused (403) and leave no trace in the audit trail.
The report (processes, kills, retries, total time) is printed.

CI profile (default): 2,000 fast processes, on SQLite and on PostgreSQL (skipped without it locally).
Full profile: `CHAOS_PROCESSES=20000 CHAOS_WORK_S=0.05 .venv/bin/python -m pytest -s tests/chaos`.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from colonies.client.asyncio import AsyncClient
from colonies.client.core import func_spec
from colonies.client.sync import Client
from colonies.errors import ClientError
from colonies.model import WorkflowSpec
from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ServerProc

PROCESSES = int(os.environ.get("CHAOS_PROCESSES", "2000"))
WORK_S = os.environ.get("CHAOS_WORK_S", "0.005")
EXECUTORS, SLOTS = 8, 4
KILL_EVERY = (0.2, 0.5)
MAXEXECTIME = 3
LAGGARD_HOLDS = 10
TIME_LIMIT_S = float(os.environ.get("CHAOS_TIME_LIMIT", "240"))  # a hang guard; ~40-130 s here
COLONY, TYPE = "chaos", "chaos"
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

pytestmark = pytest.mark.slow


async def _bounded(items: list[T], fn: Callable[[T], Awaitable[Any]], width: int = 32) -> list[Any]:
    sem = asyncio.Semaphore(width)

    async def one(item: T) -> Any:
        async with sem:
            return await fn(item)

    return await asyncio.gather(*(one(i) for i in items))


def _spec(name: str = "work", deps: list[str] | None = None) -> Any:
    return func_spec("work", COLONY, TYPE, args=[name], maxexectime=MAXEXECTIME, maxretries=-1, nodename=name,
                     dependencies=deps or [])


async def _submit_all(port: int, user_key: str) -> list[str]:
    graphs = PROCESSES // 5 // 4          # diamonds of 4 nodes: a fifth of the processes
    standalone = PROCESSES - graphs * 4
    async with AsyncClient("127.0.0.1", port, prvkey=user_key, timeout=60) as c:
        singles = await _bounded(list(range(standalone)), lambda _: c.submit(_spec()))

        async def diamond(_: int) -> list[str]:
            wf = WorkflowSpec(colonyname=COLONY, functionspecs=[
                _spec("a"), _spec("b", ["a"]), _spec("c", ["a"]), _spec("d", ["b", "c"])])
            g = await c.submit_workflow(wf)
            return list((await c.get_processgraph(g.processgraphid)).processids)

        nested = await _bounded(list(range(graphs)), diamond)
    ids = [p.processid for p in singles] + [pid for ids in nested for pid in ids]
    assert len(ids) == len(set(ids)) == PROCESSES
    return ids


def _start_worker(srv: ServerProc, key: str, name: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONIES_")}
    env.update(CHAOS_COLONY=COLONY, CHAOS_PRVKEY=key, CHAOS_NAME=name, CHAOS_TYPE=TYPE, CHAOS_PORT=str(srv.port),
               CHAOS_SLOTS=str(SLOTS), CHAOS_WORK_S=WORK_S, PYTHONPATH=str(ROOT))
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.chaos.worker"], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)


async def _audit(port: int, key: str, ids: list[str]) -> tuple[Counter[str], list[str]]:
    """Event counts, and the processes whose trail is not exactly one close."""
    async with AsyncClient("127.0.0.1", port, prvkey=key, timeout=60) as c:
        trails = await _bounded(ids, c.process_events)
    events: Counter[str] = Counter()
    bad = []
    for pid, trail in zip(ids, trails, strict=True):
        kinds = Counter(e.event for e in trail)
        events.update(kinds)
        if kinds["closed"] != 1 or kinds["failed"] != 0:
            bad.append(f"{pid[:12]} {dict(kinds)}")
    return events, bad


def test_random_executor_kills_lose_nothing(backend_server: ServerProc, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    srv = backend_server
    owner_key, user_key = generate_prvkey(), generate_prvkey()
    exe_keys = [generate_prvkey() for _ in range(EXECUTORS)]
    laggard_key = generate_prvkey()
    with Client("127.0.0.1", srv.port, prvkey=srv.server_prvkey, timeout=30) as admin:
        admin.add_colony(id_of(owner_key), COLONY)
        owner = admin.with_key(owner_key)
        owner.add_user(COLONY, id_of(user_key), "chaos-user")
        for i, key in enumerate([*exe_keys, laggard_key]):
            owner.add_executor(COLONY, id_of(key), f"chaos-{i}", TYPE)
            owner.approve_executor(COLONY, f"chaos-{i}")

    t0 = time.monotonic()
    ids = asyncio.run(_submit_all(srv.port, user_key))
    submitted_s = time.monotonic() - t0

    with Client("127.0.0.1", srv.port, prvkey=laggard_key, timeout=30) as laggard, \
            Client("127.0.0.1", srv.port, prvkey=user_key, timeout=30) as user:
        _run(srv, tmp_path, capsys, ids, submitted_s, t0, laggard, user, exe_keys)


def _run(srv: ServerProc, tmp_path: Path, capsys: pytest.CaptureFixture[str], ids: list[str], submitted_s: float,
         t0: float, laggard: Client, user: Client, exe_keys: list[str]) -> None:
    held = [laggard.assign(COLONY, 5).processid for _ in range(LAGGARD_HOLDS)]

    rng = random.Random(int(os.environ.get("CHAOS_SEED", "6")))
    logs = tmp_path / "workers.log"
    workers = [_start_worker(srv, key, f"chaos-{i}", logs) for i, key in enumerate(exe_keys)]
    kills = 0
    deadline = time.monotonic() + TIME_LIMIT_S
    try:
        while time.monotonic() < deadline:
            stats = user.colony_stats(COLONY)
            if stats.successfulprocesses + stats.failedprocesses >= PROCESSES:
                break
            time.sleep(rng.uniform(*KILL_EVERY))  # the chaos cadence, not a synchronisation
            victim = rng.randrange(EXECUTORS)
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait(10)
            kills += 1
            workers[victim] = _start_worker(srv, exe_keys[victim], f"chaos-{victim}", logs)
        else:
            pytest.fail(f"not done within {TIME_LIMIT_S}s: {user.colony_stats(COLONY)}")
    finally:
        for w in workers:
            w.send_signal(signal.SIGKILL)
        for w in workers:
            w.wait(10)
    total_s = time.monotonic() - t0

    # The laggard's processes went back to the queue and were done by others: its closes are late.
    late = []
    for pid in held:
        try:
            laggard.close(pid, ["late"])
            late.append(200)
        except ClientError as e:
            late.append(e.status)
    stats = user.colony_stats(COLONY)
    events, bad = asyncio.run(_audit(srv.port, user.prvkey, ids))
    with capsys.disabled():
        print(f"\nchaos[{srv.env['COLONIES_DB_TYPE']}]: {PROCESSES} processes ({PROCESSES // 5 // 4} workflows), "
              f"{EXECUTORS} executors x {SLOTS} slots, {kills} SIGKILLs + restarts, "
              f"{events['requeued']} retries (deadline re-queues), {events['assigned']} assignments, "
              f"submitted in {submitted_s:.1f}s, all done in {total_s:.1f}s")
    assert late == [403] * LAGGARD_HOLDS
    assert (stats.successfulprocesses, stats.failedprocesses, stats.waitingprocesses,
            stats.runningprocesses) == (PROCESSES, 0, 0, 0), stats
    assert bad == [], bad[:10]
    assert events["closed"] == PROCESSES
    assert events["requeued"] >= LAGGARD_HOLDS
    assert kills > 0
