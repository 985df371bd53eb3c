"""Crashes: the server is killed with SIGKILL at random points under submit/assign/close load and
restarted, 20 times. Afterwards:
  * every acknowledged submit is present, and every acknowledged close is SUCCESS with its output;
  * no process was completed twice (at most one "closed" event each), and the totals add up;
  * nothing is RUNNING past its deadline plus one loop period.
Bounded: 20 restarts, well under two minutes on an idle machine.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter

import httpx
import pytest

from colonies.client.core import func_spec
from colonies.client.sync import Client
from colonies.errors import ClientError
from tests.chaos.conftest import LOOP_PERIOD_MS
from tests.conftest import ColonyKeys, ServerProc, setup_colony

RESTARTS = int(os.environ.get("CRASH_RESTARTS", "20"))
MAXEXECTIME = 2
TIME_LIMIT_S = 150.0

pytestmark = pytest.mark.slow


class Load:
    """Submitters and workers that keep calling through crashes; they record only acknowledged calls."""

    def __init__(self, srv: ServerProc, keys: ColonyKeys) -> None:
        self.srv, self.keys = srv, keys
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.submitted: list[str] = []
        self.closed: dict[str, list[str]] = {}
        self.attempts = Counter[str]()
        self.threads = [threading.Thread(target=self._submitter, daemon=True) for _ in range(2)]
        self.threads += [threading.Thread(target=self._worker, daemon=True) for _ in range(2)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
            assert not t.is_alive()

    def _client(self, key: str) -> Client:
        return Client("127.0.0.1", self.srv.port, prvkey=key, timeout=5)

    def _submitter(self) -> None:
        with self._client(self.keys.user_prvkey) as c:
            while not self.stop.is_set():
                with self.lock:
                    self.attempts["submit"] += 1
                try:
                    p = c.submit(func_spec("crash", self.keys.name, self.keys.executor_type,
                                           maxexectime=MAXEXECTIME, maxretries=-1))
                except (ClientError, httpx.HTTPError):
                    self.stop.wait(0.02)  # server down: back off
                    continue
                with self.lock:
                    self.submitted.append(p.processid)

    def _worker(self) -> None:
        with self._client(self.keys.executor_prvkey) as c:
            while not self.stop.is_set():
                try:
                    p = c.assign(self.keys.name, 1)
                    out = [p.processid[:8], "ok"]
                    c.close(p.processid, out)
                except (ClientError, httpx.HTTPError):
                    self.stop.wait(0.02)
                    continue
                with self.lock:
                    self.closed[p.processid] = out


def test_kill9_under_load_loses_nothing(backend_server: ServerProc, capsys: pytest.CaptureFixture[str]) -> None:
    srv = backend_server
    keys = setup_colony(srv)
    rng = random.Random(int(os.environ.get("CRASH_SEED", "9")))
    load = Load(srv, keys)
    t0 = time.monotonic()
    load.start()
    try:
        for _ in range(RESTARTS):
            assert time.monotonic() - t0 < TIME_LIMIT_S, "crash suite over its time budget"
            time.sleep(rng.uniform(0.1, 0.6))  # a random point under load (the chaos cadence)
            srv.kill9()
            srv.start()
    finally:
        load.join()
    stopped = time.monotonic()
    crashes_s = stopped - t0

    with Client("127.0.0.1", srv.port, prvkey=keys.user_prvkey, timeout=30) as user:
        # Every acknowledged submit is there; every acknowledged close is SUCCESS with its output.
        for pid in load.submitted:
            p = user.get_process(pid)
            if pid in load.closed:
                assert p.state == 2 and p.output == load.closed[pid], (pid, p.state, p.output)
        for pid in load.closed:
            assert pid in set(load.submitted) or user.get_process(pid).state == 2
        # No process was completed twice.
        doubles = [pid for pid in load.closed if Counter(e.event for e in user.process_events(pid))["closed"] != 1]
        assert doubles == []
        # Totals add up: nothing acknowledged is missing, nothing appeared from nowhere.
        stats = user.colony_stats(keys.name)
        total = stats.waitingprocesses + stats.runningprocesses + stats.successfulprocesses + stats.failedprocesses
        assert len(set(load.submitted)) <= total <= load.attempts["submit"]
        assert stats.failedprocesses == 0
        assert stats.successfulprocesses >= len(load.closed)
        # Nothing stays RUNNING past its deadline plus one loop period (no executor runs any more).
        limit = stopped + MAXEXECTIME + LOOP_PERIOD_MS / 1000 + 1.0
        while user.colony_stats(keys.name).runningprocesses and time.monotonic() < limit:
            time.sleep(0.05)
        assert user.colony_stats(keys.name).runningprocesses == 0
    with capsys.disabled():
        print(f"\ncrash[{srv.env['COLONIES_DB_TYPE']}]: {RESTARTS} kill -9 + restarts in {crashes_s:.1f}s; "
              f"{len(load.submitted)} acknowledged submits of {load.attempts['submit']} attempts, "
              f"{len(load.closed)} acknowledged closes; {total} processes on record, none lost or doubled")
