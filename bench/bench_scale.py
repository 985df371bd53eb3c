"""Scale figures (issue 17 item 5): server RSS and assign latency as the waiting queue grows to 100,000
processes and as the server holds 10, 100 and 1,000 colonies with 10 approved executors each.

Run: .venv/bin/python bench/bench_scale.py [--quick]   (about 1 min; --quick: 10,000 waiting, 100 colonies)
The 10,000 parked long-polls are bench/load_longpoll.py. See bench/README.md (Scale).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import msgspec
from bench_core import RawConn, fill_queue, pct, server_cpu_s

from colonies.client import func_spec
from colonies.model import Colony, Executor, User
from colonies.protocol import envelope
from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ServerProc, make_server

CYCLES = 300  # assign+close cycles per step (each bounded by PHASE_LIMIT_S too)
PHASE_LIMIT_S = 60.0
_pid_of = msgspec.json.Decoder(dict[str, Any])


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc/<pid>/status."""
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                got[key] = int(value.split()[0]) / 1024
    return got["VmRSS"], got["VmHWM"]


def add_colonies(db_path: Path, first: int, last: int, per_colony: int) -> dict[str, tuple[str, list[str]]]:
    """Colonies first..last-1, each with a user and `per_colony` approved executors of type "scale",
    straight into the live DB file through the storage API (the server is idle meanwhile).
    Returns colony name -> (user prvkey, executor prvkeys)."""
    from colonies.storage.sqlite import SqliteStorage

    made: dict[str, tuple[str, list[str]]] = {}

    async def main() -> None:
        st = SqliteStorage(str(db_path))
        await st.open()
        try:
            for i in range(first, last):
                name = f"scale-{i}"
                await st.add_colony(Colony(colonyid=id_of(generate_prvkey()), name=name))
                user = generate_prvkey()
                await st.add_user(User(colonyname=name, userid=id_of(user), name="u"))
                ex = [generate_prvkey() for _ in range(per_colony)]
                for j, prv in enumerate(ex):
                    await st.add_executor(Executor(executorid=id_of(prv), executortype="scale",
                                                   executorname=f"e{j}", colonyname=name, state=1))
                made[name] = (user, ex)
        finally:
            await st.close()

    asyncio.run(main())
    return made


async def cycles(srv: ServerProc, picks: list[tuple[str, str, str, str]]) -> tuple[list[float], float, int]:
    """For each (colony, etype, user prvkey, executor prvkey): submit (skipped when the user is ""), then
    assign and close as that executor over one raw connection. Returns assign latencies, server CPU us/cycle."""
    assert srv.proc is not None
    lats: list[float] = []
    async with RawConn(srv.port) as c:
        cpu0, t0 = server_cpu_s(srv.proc.pid), time.monotonic()
        for colony, etype, user, ex in picks:
            if time.monotonic() - t0 > PHASE_LIMIT_S:
                break
            if user:
                spec = msgspec.to_builtins(func_spec("scale", colony, etype, args=["x"]))
                await c.call(envelope.encode_request({"msgtype": "submitfuncspecmsg", "spec": spec}, user))
            t = time.perf_counter()
            reply = await c.call(envelope.encode_request({"msgtype": "assignprocessmsg", "colonyname": colony,
                                                          "timeout": 10, "availablecpu": "", "availablemem": ""}, ex))
            lats.append(time.perf_counter() - t)
            pid = _pid_of.decode(envelope.decode_reply(reply)[1])["processid"]
            await c.call(envelope.encode_request({"msgtype": "closesuccessfulmsg", "processid": pid, "out": []}, ex))
        cpu = (server_cpu_s(srv.proc.pid) - cpu0).total
    return lats, cpu / max(len(lats), 1) * 1e6, len(lats)


def line(what: str, srv: ServerProc, lats: list[float], cpu_us: float, n: int) -> str:
    assert srv.proc is not None
    rss, hwm = rss_mb(srv.proc.pid)
    return (f"  {what:<34} RSS {rss:6.1f} MB (peak {hwm:6.1f})  assign p50 {statistics.median(lats) * 1000:5.2f} ms "
            f"p99 {pct(lats, 0.99) * 1000:5.2f} ms  server CPU {cpu_us:5.0f} us per cycle "
            f"({n} cycles)" if n else f"  {what}: no cycles")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    queue_steps = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    colony_steps = (10, 100) if args.quick else (10, 100, 1_000)
    t_begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="colonies-bench-scale-") as tmp:
        srv = make_server(Path(tmp), {"COLONIES_TIMEOUT_CHECKER_PERIOD": "1000"})
        srv.start()
        assert srv.proc is not None
        try:
            print(f"# scale bench: python -m colonies server start (SQLite WAL), pid {srv.proc.pid}; assign = "
                  "assignprocessmsg over one raw keep-alive connection (bench_core.RawConn), latency of the assign "
                  "alone; RSS = VmRSS/VmHWM from /proc/<pid>/status", flush=True)
            rss, _ = rss_mb(srv.proc.pid)
            print(f"  idle, empty                        RSS {rss:6.1f} MB", flush=True)
            print("WAITING QUEUE: one colony, 1 executor; N WAITING processes of its type filled straight into the "
                  f"DB (bench_core.fill_queue), then {CYCLES} assign+close cycles (no submit: the queue shrinks by "
                  f"{CYCLES})", flush=True)
            base = add_colonies(srv.db_path, 0, 1, 1)
            user, ex = base["scale-0"]
            filled = 0
            import bench_core
            bench_core.COLONY = "scale-0"  # fill_queue's colony
            for n in queue_steps:
                fill_s = fill_queue(srv.db_path, user, "scale", n + CYCLES - filled)
                filled = n + CYCLES
                lats, cpu_us, done = asyncio.run(cycles(srv, [("scale-0", "scale", "", ex[0])] * CYCLES))
                filled -= done
                print(line(f"{n:>7,} waiting (filled in {fill_s:4.1f} s)", srv, lats, cpu_us, done), flush=True)
            print("COLONIES: C colonies x 10 approved executors (straight into the DB), then "
                  f"{CYCLES} cycles of submit + assign + close in a random colony by a random executor of it", flush=True)
            made: dict[str, tuple[str, list[str]]] = {}
            have = 1
            rng = random.Random(17)
            for c in colony_steps:
                t0 = time.monotonic()
                made.update(add_colonies(srv.db_path, have, c + 1, 10))
                have = c + 1
                names = sorted(made)
                picks = []
                for _ in range(CYCLES):
                    name = rng.choice(names)
                    u, exs = made[name]
                    picks.append((name, "scale", u, rng.choice(exs)))
                lats, cpu_us, done = asyncio.run(cycles(srv, picks))
                print(line(f"{c:>5,} colonies x 10 (added in {time.monotonic() - t0:4.1f} s)", srv, lats, cpu_us,
                           done), flush=True)
        finally:
            srv.stop()
    print(f"total {time.monotonic() - t_begin:.1f} s")


if __name__ == "__main__":
    main()
