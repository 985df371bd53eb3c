"""Core benchmark: a real server subprocess on loopback, driven by our async SDK (AsyncClient).

Run: .venv/bin/python bench/bench_core.py [--quick] [--profile DIR]
See bench/README.md for what each printed line means.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from colonies.client import AsyncClient, func_spec
from colonies.client.core import Call, decode, signed_envelope
from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ServerProc, make_server

COLONY = "benchcolony"
ETYPE = "bench"  # executor type of the throughput and wake phases
N_WORKERS = 4
PHASE_TIME_LIMIT = 60.0  # seconds; every loop is also bounded by its count

# The original Go server with PostgreSQL and its Go client, from the issue.
GO = {"submit_1": 236.0, "assign_1": 82.0, "submit_4": 363.0, "assign_4": 109.0}
TARGET_FACTOR = 10

# Issue 17's targets: server CPU per op (SQLite: the server; PostgreSQL: server + PostgreSQL), in us, and the
# original's server + PostgreSQL CPU per op measured on this machine (2026-12-01), in us (low, high).
CPU_TARGET_US = {"sqlite": {"submit": 300.0, "assignclose": 750.0},
                 "postgresql": {"submit": 500.0, "assignclose": 1200.0}}
ORIGINAL_CPU_US = {"submit": (3800.0, 5300.0), "assignclose": (9700.0, 14300.0)}


@dataclass
class Sizes:
    baseline: int
    submit_1: int
    submit_4: int
    wake: int
    queue_small: int
    queue_big: int
    queue_cycles: int


FULL = Sizes(baseline=4000, submit_1=3000, submit_4=8000, wake=200, queue_small=1_000, queue_big=100_000,
             queue_cycles=1000)
QUICK = Sizes(baseline=1000, submit_1=800, submit_4=2000, wake=50, queue_small=1_000, queue_big=100_000,
              queue_cycles=300)


# -- measuring --------------------------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cpu:
    user: float
    sys: float

    @property
    def total(self) -> float:
        return self.user + self.sys

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.user - other.user, self.sys - other.sys)


def server_cpu_s(pid: int) -> Cpu:
    """utime and stime of a process (all its threads), in seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # fields after "pid (comm) "; utime, stime are 14, 15
    return Cpu(int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


@dataclass
class Result:
    name: str
    ops: int
    seconds: float
    server_cpu: Cpu
    client_cpu_s: float
    how: str
    requests_per_op: int = 1

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def server_us(self) -> float:
        return self.server_cpu.total / self.ops * 1e6 if self.ops else 0.0

    def server_sys_pct(self) -> float:
        return self.server_cpu.sys / self.server_cpu.total * 100 if self.server_cpu.total else 0.0

    def client_us(self) -> float:
        return self.client_cpu_s / self.ops * 1e6 if self.ops else 0.0


class Out:
    """Collects the report lines (also written to stdout as they come)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)


# -- the client side ------------------------------------------------------------------------------------
@dataclass
class Keys:
    colony: str
    user: str
    executors: dict[str, list[str]]  # executor type -> executor prvkeys


async def setup(port: int, server_prvkey: str, types: dict[str, int]) -> Keys:
    """Colony, one user, and `types[t]` approved executors of each type t, with our async SDK."""
    colony_prv, user_prv = generate_prvkey(), generate_prvkey()
    keys = Keys(colony=colony_prv, user=user_prv, executors={})
    async with AsyncClient("127.0.0.1", port, prvkey=server_prvkey) as admin:
        await admin.add_colony(id_of(colony_prv), COLONY)
        owner = admin.with_key(colony_prv)
        await owner.add_user(COLONY, id_of(user_prv), "bench-user")
        for etype, count in types.items():
            keys.executors[etype] = []
            for i in range(count):
                prv = generate_prvkey()
                name = f"{etype}-executor-{i}"
                await owner.add_executor(COLONY, id_of(prv), name, etype)
                await owner.approve_executor(COLONY, name)
                keys.executors[etype].append(prv)
    return keys


_VERSION: Call[Any] = Call({"msgtype": "versionmsg"}, dict[str, Any])
_VERSION_BODY = signed_envelope(_VERSION.msg, "")  # unsigned


async def unsigned_version(c: AsyncClient) -> Any:
    """An unsigned versionmsg through the same client stack and reply decoder, without signing."""
    return await c.with_key("").version()


async def transport_cost(port: int, count: int) -> dict[str, tuple[float, float]]:
    """Unsigned versionmsg `count` times over one keep-alive connection, through httpx.AsyncClient (the
    SDK's transport before 2026-11-22) and through our AsyncClient (aiohttp): (req/s, client CPU us/req)."""
    import httpx

    url = f"http://127.0.0.1:{port}/api"
    res: dict[str, tuple[float, float]] = {}
    async with httpx.AsyncClient() as h:
        await h.post(url, content=_VERSION_BODY)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(count):
            r = await h.post(url, content=_VERSION_BODY)
            decode(_VERSION, r.status_code, r.content)
        res["httpx.AsyncClient"] = (count / (time.perf_counter() - t0), (time.process_time() - cpu0) / count * 1e6)
    async with AsyncClient("127.0.0.1", port) as c:
        await c.version()
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(count):
            await c.version()
        res["AsyncClient (aiohttp)"] = (count / (time.perf_counter() - t0), (time.process_time() - cpu0) / count * 1e6)
    return res


async def run_ops(kind: str, port: int, prvkey: str, count: int, etype: str, deadline: float,
                  lat: list[float] | None = None) -> int:
    """Do `count` operations of `kind` sequentially on one AsyncClient; returns how many were done."""
    async with AsyncClient("127.0.0.1", port, prvkey=prvkey) as c:
        await unsigned_version(c)  # open the keep-alive connection outside the timed part
        return await ops_on(c, kind, count, etype, deadline, lat)


async def ops_on(c: AsyncClient, kind: str, count: int, etype: str, deadline: float,
                 lat: list[float] | None = None) -> int:
    spec = func_spec("bench", COLONY, etype, args=["x"])
    done = 0
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        if kind == "version":
            await unsigned_version(c)
        elif kind == "submit":
            await c.submit(spec)
        elif kind == "assignclose":
            p = await c.assign(COLONY, 10)
            await c.close(p.processid, ["ok"])
        else:
            raise ValueError(kind)
        if lat is not None:
            lat.append(time.perf_counter() - t0)
        done += 1
    return done


def _worker(kind: str, port: int, prvkey: str, count: int, etype: str, barrier: Any, results: Any) -> None:
    """One client process: warm up, wait at the barrier with the others, run, report."""

    async def main() -> None:
        async with AsyncClient("127.0.0.1", port, prvkey=prvkey) as c:
            await unsigned_version(c)
            barrier.wait(30)
            cpu0, t0 = time.process_time(), time.monotonic()
            done = await ops_on(c, kind, count, etype, t0 + PHASE_TIME_LIMIT)
            results.put((done, t0, time.monotonic(), time.process_time() - cpu0))

    asyncio.run(main())


def run_processes(kind: str, srv: ServerProc, prvkeys: list[str], total: int, etype: str) -> Result:
    """`total` ops split over N_WORKERS client processes; rate = total done / (last end - common start)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(N_WORKERS + 1), ctx.Queue()
    share = [total // N_WORKERS + (1 if i < total % N_WORKERS else 0) for i in range(N_WORKERS)]
    procs = [ctx.Process(target=_worker, args=(kind, srv.port, prvkeys[i % len(prvkeys)], share[i], etype,
                                                barrier, results)) for i in range(N_WORKERS)]
    for p in procs:
        p.start()
    assert srv.proc is not None
    cpu0 = server_cpu_s(srv.proc.pid)
    t0 = time.monotonic()
    barrier.wait(60)
    got = [results.get(timeout=PHASE_TIME_LIMIT + 60) for _ in procs]
    cpu1 = server_cpu_s(srv.proc.pid)
    for p in procs:
        p.join(30)
    done = sum(g[0] for g in got)
    start = max(t0, min(g[1] for g in got))
    end = max(g[2] for g in got)
    return Result(kind, done, end - start, cpu1 - cpu0, sum(g[3] for g in got),
                  f"{N_WORKERS} client processes (multiprocessing), 1 AsyncClient each, sequential calls")


def run_inline(kind: str, srv: ServerProc, prvkey: str, count: int, etype: str,
               lat: list[float] | None = None) -> Result:
    """`count` ops from one AsyncClient in this process."""
    assert srv.proc is not None

    async def main() -> Result:
        async with AsyncClient("127.0.0.1", srv.port, prvkey=prvkey) as c:
            await unsigned_version(c)
            cpu0, ccpu0, t0 = server_cpu_s(srv.proc.pid), time.process_time(), time.monotonic()  # type: ignore[union-attr]
            done = await ops_on(c, kind, count, etype, t0 + PHASE_TIME_LIMIT, lat)
            t1, ccpu1, cpu1 = time.monotonic(), time.process_time(), server_cpu_s(srv.proc.pid)  # type: ignore[union-attr]
            return Result(kind, done, t1 - t0, cpu1 - cpu0, ccpu1 - ccpu0,
                          "1 AsyncClient in the bench process, sequential calls")

    return asyncio.run(main())


async def wake_latency(srv: ServerProc, keys: Keys, rounds: int) -> tuple[list[float], Result]:
    """A parked assign (timeout 10) is waiting; submit; time from submit sent to assign returned."""
    assert srv.proc is not None
    lats: list[float] = []
    async with AsyncClient("127.0.0.1", srv.port, prvkey=keys.user) as user, \
            AsyncClient("127.0.0.1", srv.port, prvkey=keys.executors[ETYPE][0]) as ex:
        await unsigned_version(user)
        await unsigned_version(ex)
        spec = func_spec("wake", COLONY, ETYPE)
        cpu0, t_start = server_cpu_s(srv.proc.pid), time.monotonic()
        for _ in range(rounds):
            if time.monotonic() - t_start > PHASE_TIME_LIMIT:
                break
            parked = asyncio.ensure_future(ex.assign(COLONY, 10))
            await asyncio.sleep(0.02)  # let the assign reach the server and park
            if parked.done():
                raise RuntimeError("assign returned before anything was submitted: queue not empty")
            t0 = time.perf_counter()
            await user.submit(spec)
            p = await parked
            lats.append(time.perf_counter() - t0)
            await ex.close(p.processid, [])
        cpu1 = server_cpu_s(srv.proc.pid)
    return lats, Result("wake", len(lats), time.monotonic() - t_start, cpu1 - cpu0, 0.0,
                        "1 user AsyncClient + 1 executor AsyncClient in the bench process", requests_per_op=3)


# -- a minimal raw-socket client: what the server does when the client costs ~nothing ------------------
class RawConn:
    """One keep-alive HTTP/1.1 connection that POSTs prebuilt envelopes to /api (asyncio streams)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.head = b"POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "

    async def __aenter__(self) -> Self:
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.w.close()

    async def call(self, body: bytes) -> bytes:
        self.w.write(b"%s%d\r\n\r\n%s" % (self.head, len(body), body))
        hdr = await self.r.readuntil(b"\r\n\r\n")
        if not hdr.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"raw call failed: {hdr[:40]!r}")
        i = hdr.lower().index(b"content-length:")
        return await self.r.readexactly(int(hdr[i + 15:hdr.index(b"\r", i)]))


async def raw_ops(srv: ServerProc, kind: str, prvkeys: list[str], conns: int, total: int, etype: str) -> Result:
    """`total` ops over `conns` raw connections in this process; envelopes signed here with coincurve
    (submit, assign and versionmsg are signed once and resent; each close is signed per process)."""
    import msgspec

    from colonies.protocol import envelope

    assert srv.proc is not None
    spec = msgspec.to_builtins(func_spec("bench", COLONY, etype, args=["x"]))
    pid_of = msgspec.json.Decoder(dict[str, Any])

    async def one(i: int, n: int, deadline: float) -> int:
        prv = prvkeys[i % len(prvkeys)]
        submit = envelope.encode_request({"msgtype": "submitfuncspecmsg", "spec": spec}, prv)
        assign = envelope.encode_request({"msgtype": "assignprocessmsg", "colonyname": COLONY, "timeout": 10,
                                          "availablecpu": "", "availablemem": ""}, prv)
        done = 0
        async with RawConn(srv.port) as c:
            await c.call(_VERSION_BODY)
            await start.wait()
            for _ in range(n):
                if time.monotonic() > deadline:
                    break
                if kind == "version":
                    await c.call(_VERSION_BODY)
                elif kind == "submit":
                    await c.call(submit)
                else:
                    _, payload, _ = envelope.decode_reply(await c.call(assign))
                    pid = pid_of.decode(payload)["processid"]
                    await c.call(envelope.encode_request({"msgtype": "closesuccessfulmsg", "processid": pid,
                                                          "out": ["ok"]}, prv))
                done += 1
        return done

    start = asyncio.Event()
    share = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
    tasks = [asyncio.ensure_future(one(i, share[i], time.monotonic() + PHASE_TIME_LIMIT)) for i in range(conns)]
    await asyncio.sleep(0.2)  # connections open and warmed up
    cpu0, ccpu0, t0 = server_cpu_s(srv.proc.pid), time.process_time(), time.monotonic()
    start.set()
    done = sum(await asyncio.gather(*tasks))
    t1, ccpu1, cpu1 = time.monotonic(), time.process_time(), server_cpu_s(srv.proc.pid)
    return Result(f"raw-{kind}", done, t1 - t0, cpu1 - cpu0, ccpu1 - ccpu0,
                  f"raw-socket client, {conns} connection{'s' if conns > 1 else ''} in 1 process, sequential per "
                  "connection", requests_per_op=2 if kind == "assignclose" else 1)


def fill_queue(db_path: Path, user_prv: str, etype: str, count: int) -> float:
    """Insert `count` WAITING processes straight into the DB file through the storage API, while the
    server runs (SQLite WAL allows a second writer connection; the server is idle meanwhile)."""
    from colonies.model import User
    from colonies.server.handlers_processes import new_process, normalize_spec
    from colonies.storage.sqlite import SqliteStorage

    async def main() -> None:
        st = SqliteStorage(str(db_path))
        await st.open()
        try:
            member = User(colonyname=COLONY, userid=id_of(user_prv), name="bench-user")
            spec = normalize_spec(func_spec("queued", COLONY, etype, args=["x"]))
            now = time.time_ns()
            batch = 5000
            for start in range(0, count, batch):
                procs = [new_process(None, spec, member, member.userid, now + i)  # type: ignore[arg-type]
                         for i in range(start, min(count, start + batch))]
                await st.add_processes(procs, actor=member.userid)
        finally:
            await st.close()

    t0 = time.monotonic()
    asyncio.run(main())
    return time.monotonic() - t0


# -- report ---------------------------------------------------------------------------------------------
def cpu_line(r: Result) -> str:
    per_req = f", {r.server_us() / r.requests_per_op:.0f} us/request" if r.requests_per_op > 1 else ""
    client = f"; client CPU {r.client_us():.0f} us/op" if r.client_cpu_s else ""
    return f"server CPU {r.server_us():.0f} us/op{per_req} ({r.server_sys_pct():.0f}% kernel){client}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller counts, finishes in under a minute")
    ap.add_argument("--profile", metavar="DIR", help="run py-spy on the server during the 1-client "
                                                     "submit and assign+close phases; write DIR/{submit,assignclose}.txt")
    args = ap.parse_args()
    sz = QUICK if args.quick else FULL
    out = Out()
    t_begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="colonies-bench-") as tmp:
        srv = make_server(Path(tmp), {"COLONIES_TIMEOUT_CHECKER_PERIOD": "1000"})
        srv.start()
        assert srv.proc is not None
        try:
            keys = asyncio.run(setup(srv.port, srv.server_prvkey, {ETYPE: N_WORKERS, "q1k": 1, "q100k": 1}))
            body(out, srv, keys, sz, args)
        finally:
            srv.stop()
    out(f"total bench time {time.monotonic() - t_begin:.1f} s ({'quick' if args.quick else 'full'} mode)")


def body(out: Out, srv: ServerProc, keys: Keys, sz: Sizes, args: argparse.Namespace) -> None:
    assert srv.proc is not None
    ex_keys = keys.executors[ETYPE]
    out(f"# Colonies in Python core benchmark ({'quick' if args.quick else 'full'} mode)")
    out(f"# server: python -m colonies server start, pid {srv.proc.pid}, SQLite (WAL, synchronous=NORMAL) in a "
        f"temp dir, 127.0.0.1:{srv.port}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    out("# client: colonies.client.AsyncClient (aiohttp, every call signed with secp256k1) unless stated; "
        f"'4 clients' = {N_WORKERS} separate OS processes (multiprocessing, spawn), one AsyncClient each,")
    out("#         started together at a barrier; rate = all ops / (last finish - common start)")
    out("# server CPU = utime+stime of the server pid from /proc/<pid>/stat over the phase / ops "
        f"(clock ticks of 1/{CLK_TCK} s); client CPU = process_time of the client process(es) / ops")
    out()

    # baseline ------------------------------------------------------------------------------------------------
    # Warm-up, not reported: the first phase after start-up ran at a third of the rate with ~75% of the
    # server's CPU in the kernel (the fresh process touching new memory), which skewed every ratio.
    run_inline("version", srv, keys.user, sz.baseline // 2, ETYPE)
    b1 = run_inline("version", srv, keys.user, sz.baseline, ETYPE)
    b4 = run_processes("version", srv, [keys.user], sz.baseline * 2, ETYPE)
    base = {1: b1.rate, 4: b4.rate}
    out("BASELINE: unsigned versionmsg round-trip through the same AsyncClient (aiohttp) stack + reply decode "
        "(no signing, no signature recovery, no DB)")
    for n, r in ((1, b1), (4, b4)):
        out(f"  baseline {n} client{'s' if n > 1 else ''}: {r.rate:8.0f} req/s  ({r.ops} calls in {r.seconds:.2f} s; "
            f"{cpu_line(r)})")
    out()
    tc = asyncio.run(transport_cost(srv.port, sz.baseline))
    out("CLIENT TRANSPORT: the same unsigned versionmsg over one keep-alive connection, 1 client in this process")
    for name, (rate, cpu_us) in tc.items():
        out(f"  {name:22}: {rate:8.0f} req/s, client CPU {cpu_us:5.0f} us/request")
    (hr, hc), (ar, ac) = tc["httpx.AsyncClient"], tc["AsyncClient (aiohttp)"]
    out(f"  aiohttp vs httpx: {ar / hr:.2f}x the rate, {hc / ac:.2f}x less client CPU per request")
    out()

    # throughput ------------------------------------------------------------------------------------------------
    profiler = start_profiler(srv, args.profile, "submit") if args.profile else None
    s1 = run_inline("submit", srv, keys.user, sz.submit_1, ETYPE)
    if profiler is not None:
        stop_profiler(profiler, out, "submit")
    profiler = start_profiler(srv, args.profile, "assignclose") if args.profile else None
    a1 = run_inline("assignclose", srv, ex_keys[0], s1.ops, ETYPE)
    if profiler is not None:
        stop_profiler(profiler, out, "assign+close")
    s4 = run_processes("submit", srv, [keys.user], sz.submit_4, ETYPE)
    a4 = run_processes("assignclose", srv, ex_keys, s4.ops, ETYPE)
    a1.requests_per_op = a4.requests_per_op = 2
    out("THROUGHPUT (submit = submitfuncspecmsg; assign+close = assignprocessmsg timeout 10 + "
        "closesuccessfulmsg, one op = both calls; the queue is drained of what the submit phase added)")
    rows = [("submits/s        1 client ", s1, "submit_1", 1), ("assign+close/s   1 client ", a1, "assign_1", 1),
            ("submits/s        4 clients", s4, "submit_4", 4), ("assign+close/s   4 clients", a4, "assign_4", 4)]
    for label, r, go_key, n in rows:
        go = GO[go_key]
        out(f"  {label}: {r.rate:8.0f} /s  = {r.rate / base[n]:.3f}x baseline-{n}  | Go+PostgreSQL {go:.0f}/s -> "
            f"ours/Go {r.rate / go:5.1f}x (target {TARGET_FACTOR}x = {go * TARGET_FACTOR:.0f}/s: "
            f"{'MET' if r.rate >= go * TARGET_FACTOR else 'not met'})")
        out(f"      {r.ops} ops in {r.seconds:.2f} s; {r.how}; {cpu_line(r)}")
    out()

    # raw-socket client --------------------------------------------------------------------------------
    out("RAW-SOCKET CLIENT (server-bound view: a minimal asyncio-streams HTTP/1.1 client in the bench process, "
        "envelopes signed with coincurve; not our SDK)")
    raw: dict[tuple[str, int], Result] = {}
    for kind, n1 in (("version", sz.baseline), ("submit", sz.submit_1), ("assignclose", sz.submit_1)):
        for conns in (1, 4):
            keys_for = [keys.user] if kind != "assignclose" else ex_keys
            raw[(kind, conns)] = r = asyncio.run(raw_ops(srv, kind, keys_for, conns, n1 * (2 if conns > 1 else 1),
                                                          ETYPE))
            label = {"version": "versionmsg/s    ", "submit": "submits/s       ",
                     "assignclose": "assign+close/s  "}[kind]
            vs_go = "" if kind == "version" else (
                f" | ours/Go {r.rate / GO[('submit_' if kind == 'submit' else 'assign_') + str(conns)]:5.1f}x")
            out(f"  {label}{conns} conn{'s' if conns > 1 else ' '}: {r.rate:8.0f} /s  = "
                f"{r.rate / raw[('version', conns)].rate:.3f}x raw-versionmsg-{conns}{vs_go}")
            out(f"      {r.ops} ops in {r.seconds:.2f} s; {r.how}; {cpu_line(r)}")
    out()

    # wake latency ---------------------------------------------------------------------------------------------
    lats, w = asyncio.run(wake_latency(srv, keys, sz.wake))
    rtt_ms = 1000 / b1.rate
    out("WAKE LATENCY: executor parked in assign(timeout=10) for 20 ms, then a user submits; "
        "time from submit sent to assign returned")
    out(f"  wake p50 {statistics.median(lats) * 1000:6.2f} ms  p99 {pct(lats, 0.99) * 1000:6.2f} ms  "
        f"max {max(lats) * 1000:6.2f} ms  (= {statistics.median(lats) * 1000 / rtt_ms:.1f}x / "
        f"{pct(lats, 0.99) * 1000 / rtt_ms:.1f}x baseline-1 round-trip {rtt_ms:.3f} ms)")
    out(f"      {w.ops} rounds; {w.how}; one op = submit + woken assign + close; {cpu_line(w)}")
    out()

    # queue length -------------------------------------------------------------------------------------------------
    out(f"ASSIGN LATENCY vs QUEUE LENGTH: {sz.queue_cycles} sequential assign+close cycles by 1 AsyncClient "
        "executor, while the queue holds at least N waiting processes of its type (filled straight into the DB")
    out("  file with SqliteStorage.add_processes + new_process/normalize_spec from the bench process, "
        "batches of 5,000, server running and idle)")
    qres = {}
    for etype, n in (("q1k", sz.queue_small), ("q100k", sz.queue_big)):
        fill_s = fill_queue(srv.db_path, keys.user, etype, n + sz.queue_cycles)
        assign_lat: list[float] = []
        r = run_inline("assignclose", srv, keys.executors[etype][0], sz.queue_cycles, etype, assign_lat)
        r.requests_per_op = 2
        qres[n] = (r, assign_lat)
        med = statistics.median(assign_lat) * 1000
        out(f"  queue {n:>7,}: assign+close median {med:6.2f} ms  p99 {pct(assign_lat, 0.99) * 1000:6.2f} ms  "
            f"(= {med / rtt_ms:.1f}x baseline-1 round-trip); {r.rate:6.0f} cycles/s")
        out(f"      {r.ops} cycles in {r.seconds:.2f} s after inserting {n + sz.queue_cycles:,} processes in "
            f"{fill_s:.1f} s; {cpu_line(r)}")
    small, big = qres[sz.queue_small][1], qres[sz.queue_big][1]
    out(f"  ratio median(queue {sz.queue_big:,}) / median(queue {sz.queue_small:,}) = "
        f"{statistics.median(big) / statistics.median(small):.2f} (1.0 = assign cost independent of queue length)")
    out()
    out("SERVER CPU PER OPERATION (us of server utime+stime / op)")
    for label, r in (("versionmsg unsigned, 1 client", b1), ("versionmsg unsigned, 4 clients", b4),
                     ("submit, 1 client", s1), ("submit, 4 clients", s4), ("assign+close, 1 client", a1),
                     ("assign+close, 4 clients", a4), ("wake round (submit+assign+close)", w),
                     (f"assign+close, queue {sz.queue_small:,}", qres[sz.queue_small][0]),
                     (f"assign+close, queue {sz.queue_big:,}", qres[sz.queue_big][0])):
        cap = 1e6 / r.server_us() if r.server_us() else 0
        out(f"  {label:<36} {r.server_us():7.0f} us/op  ({r.server_sys_pct():3.0f}% kernel; one server core would "
            f"cap this at ~{cap:,.0f} op/s)")
    out()
    target_lines(out, "sqlite", [
        ("AsyncClient, 1 client", "submit", s1, 0.0, b1), ("AsyncClient, 4 clients", "submit", s4, 0.0, b4),
        ("raw, 1 conn", "submit", raw[("submit", 1)], 0.0, raw[("version", 1)]),
        ("raw, 4 conns", "submit", raw[("submit", 4)], 0.0, raw[("version", 4)]),
        ("AsyncClient, 1 client", "assignclose", a1, 0.0, b1), ("AsyncClient, 4 clients", "assignclose", a4, 0.0, b4),
        ("raw, 1 conn", "assignclose", raw[("assignclose", 1)], 0.0, raw[("version", 1)]),
        ("raw, 4 conns", "assignclose", raw[("assignclose", 4)], 0.0, raw[("version", 4)])])


def target_lines(out: Out, backend: str, rows: list[tuple[str, str, Result, float, Result]]) -> None:
    """Per phase: CPU per op against issue 17's target and the original's figures, and the ratio to the
    same-run unsigned versionmsg (server CPU per request). rows: (label, kind, result, extra us/op (the
    database's CPU, or 0), baseline result)."""
    names = {"submit": "submit", "assignclose": "assign+close"}
    what = "server CPU" if backend == "sqlite" else "server + PostgreSQL CPU"
    out(f"TARGETS ({backend}, issue 17: {what} per op <= {CPU_TARGET_US[backend]['submit']:.0f} us per submit, "
        f"<= {CPU_TARGET_US[backend]['assignclose']:.0f} us per assign+close; the original, Go + PostgreSQL on this "
        f"machine: server + PostgreSQL CPU {ORIGINAL_CPU_US['submit'][0] / 1000:.1f}-"
        f"{ORIGINAL_CPU_US['submit'][1] / 1000:.1f} ms per submit, {ORIGINAL_CPU_US['assignclose'][0] / 1000:.1f}-"
        f"{ORIGINAL_CPU_US['assignclose'][1] / 1000:.1f} ms per assign+close)")
    for label, kind, r, extra_us, base in rows:
        us = r.server_us() + extra_us
        target = CPU_TARGET_US[backend][kind]
        lo, hi = ORIGINAL_CPU_US[kind]
        base_us = base.server_us() + (getattr(base, "pg_us", lambda: 0.0)() if extra_us else 0.0)
        db = f" (server {r.server_us():.0f} + PostgreSQL {extra_us:.0f})" if extra_us else ""
        out(f"  {names[kind]:<12} {label:<22} {us:6.0f} us/op{db}  target <= {target:.0f}: "
            f"{'MET' if us <= target else 'not met'}  | original/ours {lo / us:4.1f}-{hi / us:4.1f}x  | "
            f"= {us / base_us if base_us else 0:4.1f}x same-run unsigned versionmsg ({base_us:.0f} us/request)")


# -- profiling --------------------------------------------------------------------------------------------
def start_profiler(srv: ServerProc, outdir: str, phase: str) -> Any:
    import shutil
    import subprocess

    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    Path(outdir).mkdir(parents=True, exist_ok=True)
    assert srv.proc is not None
    cmd = [pyspy, "record", "--pid", str(srv.proc.pid), "--rate", "200", "--duration", "60", "--format",
           "raw", "--output", str(Path(outdir) / f"{phase}.txt")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return proc


def stop_profiler(proc: Any, out: Out, phase: str) -> None:
    import signal

    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    out(f"(py-spy was sampling the server during the 1-client {phase} phase: its figures are perturbed)")


if __name__ == "__main__":
    main()
