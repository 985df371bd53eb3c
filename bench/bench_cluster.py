"""PostgreSQL and cluster benchmark: 1 and 3 real server replicas on one fresh PostgreSQL database,
coordinated by etcd, driven by our AsyncClient and by bench_core's raw-socket client.

Run: .venv/bin/python bench/bench_cluster.py [--quick] [--profile DIR] [--no-sync-off]
Needs PostgreSQL on 127.0.0.1:5432 and etcd on 127.0.0.1:2379 (scripts/services; COLONIES_TEST_PG_DSN and
COLONIES_TEST_ETCD override them). See bench/README.md, "PostgreSQL and cluster bench".
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
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_core as bc
from bench_core import (
    COLONY,
    ETYPE,
    GO,
    N_WORKERS,
    PHASE_TIME_LIMIT,
    Cpu,
    Keys,
    Out,
    RawConn,
    Result,
    pct,
    server_cpu_s,
    setup,
    unsigned_version,
)

from colonies.client import AsyncClient, func_spec
from tests.conftest import (
    PgDatabase,
    ServerProc,
    _pg_admin,
    etcd_endpoint,
    fresh_pg_database,
    make_server,
    pg_dsn,
)

TARGET_FACTOR = 3  # the target for the PostgreSQL cluster: 3x the Go server


@dataclass
class Sizes:
    baseline: int
    submit_1: int
    wake: int


FULL = Sizes(baseline=1000, submit_1=400, wake=50)
QUICK = Sizes(baseline=200, submit_1=80, wake=15)


# -- CPU of the replicas and of PostgreSQL ------------------------------------------------------------------
def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pg_pids(dbname: str) -> list[int]:
    """PostgreSQL processes to charge: the client backends on our database, plus the WAL writer (every
    commit's flush; shared with anyone else writing on this PostgreSQL). Autovacuum, checkpointer and the
    other databases' backends are left out: on a shared machine they are other people's work."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        cmd = _cmdline(int(d))
        client_backend = "(" in cmd and "127.0.0.1" in cmd or "[local]" in cmd
        if (client_backend and f" {dbname} " in cmd) or (not client_backend and "walwriter" in cmd):
            found.append(int(d))
    return found


def _sum(cpus: Any) -> Cpu:
    u = s = 0.0
    for c in cpus:
        u, s = u + c.user, s + c.sys
    return Cpu(u, s)


def _snap(pids: list[int]) -> dict[int, Cpu]:
    out = {}
    for p in pids:
        try:
            out[p] = server_cpu_s(p)
        except OSError:
            pass
    return out


@dataclass
class Meter:
    """Sums CPU over the replica pids and the PostgreSQL pids between start() and stop()."""

    replica_pids: list[int]
    dbname: str
    s0: dict[int, Cpu] = field(default_factory=dict)
    p0: dict[int, Cpu] = field(default_factory=dict)

    def start(self) -> None:
        self.s0, self.p0 = _snap(self.replica_pids), _snap(pg_pids(self.dbname))

    def stop(self) -> tuple[Cpu, Cpu]:
        s1, p1 = _snap(self.replica_pids), _snap(pg_pids(self.dbname))
        srv = _sum(s1[p] - self.s0[p] for p in s1 if p in self.s0)
        pg = _sum(p1[p] - self.p0.get(p, Cpu(0, 0)) for p in p1)  # new backends count from 0
        return srv, pg


@dataclass
class CResult(Result):
    pg_cpu: Cpu = field(default_factory=lambda: Cpu(0, 0))

    def pg_us(self) -> float:
        return self.pg_cpu.total / self.ops * 1e6 if self.ops else 0.0


def cpu_line(r: CResult) -> str:
    return f"{bc.cpu_line(r)}; PostgreSQL CPU {r.pg_us():.0f} us/op"


# -- the cluster ------------------------------------------------------------------------------------------
@dataclass
class Cluster:
    replicas: list[ServerProc]
    db: PgDatabase

    @property
    def ports(self) -> list[int]:
        return [r.port for r in self.replicas]

    def meter(self) -> Meter:
        return Meter([r.proc.pid for r in self.replicas if r.proc is not None], self.db.name)


def start_cluster(stack: ExitStack, tmp: Path, n: int, etcd: str, sync_off: bool = False) -> Cluster:
    """`n` replicas (python -m colonies server start) on one fresh database, joined through etcd."""
    db = stack.enter_context(fresh_pg_database())
    if sync_off:
        _pg_admin(pg_dsn(), f'ALTER DATABASE "{db.name}" SET synchronous_commit = off')
    prefix = f"/colonies-bench/{uuid.uuid4().hex}"
    reps: list[ServerProc] = []
    for i in range(n):
        d = tmp / f"{db.name}-r{i}"
        d.mkdir()
        env = {**db.server_env(), "COLONIES_ETCD_ENDPOINTS": f"http://{etcd}", "COLONIES_ETCD_PREFIX": prefix,
               "COLONIES_NODE_NAME": f"r{i}", "COLONIES_TIMEOUT_CHECKER_PERIOD": "1000"}
        if reps:
            env["COLONIES_SERVER_ID"] = reps[0].env["COLONIES_SERVER_ID"]
        srv = make_server(d, env)
        if reps:
            srv.server_prvkey = reps[0].server_prvkey
        reps.append(srv)
        stack.callback(srv.stop)
        srv.start()
    return Cluster(reps, db)


# -- phases ---------------------------------------------------------------------------------------------------
def run_inline(kind: str, cl: Cluster, prvkey: str, count: int, lat: list[float] | None = None) -> CResult:
    """`count` ops from one AsyncClient in this process, on replica 0."""

    async def main() -> CResult:
        async with AsyncClient("127.0.0.1", cl.ports[0], prvkey=prvkey) as c:
            await unsigned_version(c)
            m = cl.meter()
            m.start()
            ccpu0, t0 = time.process_time(), time.monotonic()
            done = await bc.ops_on(c, kind, count, ETYPE, t0 + PHASE_TIME_LIMIT, lat)
            t1, ccpu1 = time.monotonic(), time.process_time()
            srv, pg = m.stop()
            return CResult(kind, done, t1 - t0, srv, ccpu1 - ccpu0, "1 AsyncClient in the bench process on replica 0",
                           pg_cpu=pg)

    return asyncio.run(main())


def run_processes(kind: str, cl: Cluster, prvkeys: list[str], total: int) -> CResult:
    """bench_core's 4 client processes, client i on replica i mod n."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(N_WORKERS + 1), ctx.Queue()
    share = [total // N_WORKERS + (1 if i < total % N_WORKERS else 0) for i in range(N_WORKERS)]
    procs = [ctx.Process(target=bc._worker, args=(kind, cl.ports[i % len(cl.ports)], prvkeys[i % len(prvkeys)],
                                                   share[i], ETYPE, barrier, results))
             for i in range(N_WORKERS)]
    for p in procs:
        p.start()
    m = cl.meter()
    m.start()
    t0 = time.monotonic()
    barrier.wait(60)
    got = [results.get(timeout=PHASE_TIME_LIMIT + 60) for _ in procs]
    srv, pg = m.stop()
    for p in procs:
        p.join(30)
    done = sum(g[0] for g in got)
    start = max(t0, min(g[1] for g in got))
    return CResult(kind, done, max(g[2] for g in got) - start, srv, sum(g[3] for g in got),
                   f"{N_WORKERS} client processes, 1 AsyncClient each, round-robin over {len(cl.ports)} replica(s)",
                   pg_cpu=pg)


async def raw_ops(cl: Cluster, kind: str, prvkeys: list[str], conns: int, total: int) -> CResult:
    """bench_core.RawConn connections, connection i on replica i mod n (envelopes signed as in bench_core)."""
    import msgspec

    from colonies.protocol import envelope

    spec = msgspec.to_builtins(func_spec("bench", COLONY, ETYPE, args=["x"]))
    pid_of = msgspec.json.Decoder(dict[str, Any])
    start = asyncio.Event()

    async def one(i: int, n: int, deadline: float) -> int:
        prv = prvkeys[i % len(prvkeys)]
        submit = envelope.encode_request({"msgtype": "submitfuncspecmsg", "spec": spec}, prv)
        assign = envelope.encode_request({"msgtype": "assignprocessmsg", "colonyname": COLONY, "timeout": 10,
                                          "availablecpu": "", "availablemem": ""}, prv)
        done = 0
        async with RawConn(cl.ports[i % len(cl.ports)]) as c:
            await c.call(bc._VERSION_BODY)
            await start.wait()
            for _ in range(n):
                if time.monotonic() > deadline:
                    break
                if kind == "version":
                    await c.call(bc._VERSION_BODY)
                elif kind == "submit":
                    await c.call(submit)
                else:
                    _, payload, _ = envelope.decode_reply(await c.call(assign))
                    pid = pid_of.decode(payload)["processid"]
                    await c.call(envelope.encode_request({"msgtype": "closesuccessfulmsg", "processid": pid,
                                                          "out": ["ok"]}, prv))
                done += 1
        return done

    share = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
    tasks = [asyncio.ensure_future(one(i, share[i], time.monotonic() + PHASE_TIME_LIMIT)) for i in range(conns)]
    await asyncio.sleep(0.2)
    m = cl.meter()
    m.start()
    ccpu0, t0 = time.process_time(), time.monotonic()
    start.set()
    done = sum(await asyncio.gather(*tasks))
    t1, ccpu1 = time.monotonic(), time.process_time()
    srv, pg = m.stop()
    return CResult(f"raw-{kind}", done, t1 - t0, srv, ccpu1 - ccpu0,
                   f"raw-socket client, {conns} connection(s) in 1 process, round-robin over {len(cl.ports)} "
                   "replica(s)", requests_per_op=2 if kind == "assignclose" else 1, pg_cpu=pg)


async def wake_latency(cl: Cluster, keys: Keys, rounds: int) -> tuple[list[float], CResult]:
    """Executor parked in assign(timeout=10) on replica 0; the user submits on the last replica."""
    lats: list[float] = []
    async with AsyncClient("127.0.0.1", cl.ports[-1], prvkey=keys.user) as user, \
            AsyncClient("127.0.0.1", cl.ports[0], prvkey=keys.executors[ETYPE][0]) as ex:
        await unsigned_version(user)
        await unsigned_version(ex)
        spec = func_spec("wake", COLONY, ETYPE)
        m = cl.meter()
        m.start()
        t_start = time.monotonic()
        for _ in range(rounds):
            if time.monotonic() - t_start > PHASE_TIME_LIMIT:
                break
            parked = asyncio.ensure_future(ex.assign(COLONY, 10))
            await asyncio.sleep(0.05)  # let the assign reach replica 0 and park
            if parked.done():
                raise RuntimeError("assign returned before anything was submitted: queue not empty")
            t0 = time.perf_counter()
            await user.submit(spec)
            p = await parked
            lats.append(time.perf_counter() - t0)
            await ex.close(p.processid, [])
        srv, pg = m.stop()
        return lats, CResult("wake", len(lats), time.monotonic() - t_start, srv, 0.0,
                             "1 executor AsyncClient on replica 0, 1 user AsyncClient on replica "
                             f"{len(cl.ports) - 1}", pg_cpu=pg)


# -- one configuration ----------------------------------------------------------------------------------------
def pg_settings() -> str:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    from tests.conftest import run_async

    names = ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "shared_buffers", "max_connections")

    async def q() -> str:
        con = await asyncpg.connect(pg_dsn(), statement_cache_size=0)
        try:
            return ", ".join([f"{n}={await con.fetchval(f'SHOW {n}')}" for n in names])
        finally:
            await con.close()

    return run_async(q)


def go_line(r: CResult, go_key: str) -> str:
    go = GO[go_key]
    met = "MET" if r.rate >= go * TARGET_FACTOR else "not met"
    return f"| Go {go:.0f}/s -> ours/Go {r.rate / go:4.2f}x (target {TARGET_FACTOR}x = {go * TARGET_FACTOR:.0f}/s: {met})"


def bench_config(out: Out, tmp: Path, n: int, etcd: str, sz: Sizes, args: argparse.Namespace) -> dict[str, CResult]:
    res: dict[str, CResult] = {}
    with ExitStack() as stack:
        cl = start_cluster(stack, tmp, n, etcd)
        keys = asyncio.run(setup(cl.ports[0], cl.replicas[0].server_prvkey, {ETYPE: N_WORKERS}))
        ex = keys.executors[ETYPE]
        out(f"== {n} REPLICA{'S' if n > 1 else ''} on database {cl.db.name}: pids "
            f"{', '.join(str(r.proc.pid) for r in cl.replicas if r.proc)}; ports {', '.join(map(str, cl.ports))}")
        run_inline("version", cl, keys.user, sz.baseline // 2)  # warm-up, not reported (see bench_core)
        b1 = run_inline("version", cl, keys.user, sz.baseline)
        b4 = run_processes("version", cl, [keys.user], sz.baseline * 2)
        base = {1: b1.rate, 4: b4.rate}
        out("  BASELINE (unsigned versionmsg via AsyncClient, no DB)")
        for k, r in ((1, b1), (4, b4)):
            out(f"    baseline {k} client{'s' if k > 1 else ' '}: {r.rate:7.0f} req/s  ({r.ops} in {r.seconds:.2f} s; "
                f"{cpu_line(r)})")
        s1 = run_inline("submit", cl, keys.user, sz.submit_1)
        prof = bc.start_profiler(cl.replicas[0], args.profile, "assignclose") if args.profile and n == 1 else None
        a1 = run_inline("assignclose", cl, ex[0], s1.ops)
        if prof is not None:
            bc.stop_profiler(prof, out, "assign+close")
        s4 = run_processes("submit", cl, [keys.user], sz.submit_1 * 2)
        a4 = run_processes("assignclose", cl, ex, s4.ops)
        a1.requests_per_op = a4.requests_per_op = 2
        out("  THROUGHPUT, AsyncClient (assign+close = assignprocessmsg timeout 10 + closesuccessfulmsg)")
        for label, r, key, k in (("submits/s      1 client ", s1, "submit_1", 1),
                                 ("assign+close/s 1 client ", a1, "assign_1", 1),
                                 ("submits/s      4 clients", s4, "submit_4", 4),
                                 ("assign+close/s 4 clients", a4, "assign_4", 4)):
            out(f"    {label}: {r.rate:6.0f} /s = {r.rate / base[k]:.3f}x baseline-{k} {go_line(r, key)}")
            out(f"        {r.ops} ops in {r.seconds:.2f} s; {r.how}; {cpu_line(r)}")
            res[f"sdk-{key}"] = r
        out("  RAW-SOCKET CLIENT (bench_core.RawConn; cheap client, server-bound view)")
        raw: dict[tuple[str, int], CResult] = {}
        avail = 0
        for kind, n1 in (("version", sz.baseline), ("submit", sz.submit_1), ("assignclose", 0)):
            for conns in (1, 4):
                total = n1 * (2 if conns > 1 else 1)
                if kind == "assignclose":
                    total = raw[("submit", conns)].ops
                raw[(kind, conns)] = r = asyncio.run(raw_ops(cl, kind, [keys.user] if kind != "assignclose" else ex,
                                                             conns, total))
                avail += r.ops if kind == "submit" else 0
                lab = {"version": "versionmsg/s  ", "submit": "submits/s     ", "assignclose": "assign+close/s"}[kind]
                go = "" if kind == "version" else " " + go_line(r, ("submit_" if kind == "submit" else "assign_")
                                                                  + str(conns))
                out(f"    {lab} {conns} conn{'s' if conns > 1 else ' '}: {r.rate:6.0f} /s = "
                    f"{r.rate / raw[('version', conns)].rate:.3f}x raw-versionmsg-{conns}{go}")
                out(f"        {r.ops} ops in {r.seconds:.2f} s; {cpu_line(r)}")
                res[f"raw-{kind}-{conns}"] = r
        lats, w = asyncio.run(wake_latency(cl, keys, sz.wake))
        rtt = 1000 / b1.rate
        where = "replica 0, submit on replica 2 (LISTEN/NOTIFY)" if n > 1 else "the single replica, submit on it"
        out(f"  WAKE LATENCY ({'cross-replica' if n > 1 else 'same replica'}): executor parked in assign on {where}")
        out(f"    wake p50 {statistics.median(lats) * 1000:6.2f} ms  p99 {pct(lats, 0.99) * 1000:6.2f} ms  max "
            f"{max(lats) * 1000:6.2f} ms  (= {statistics.median(lats) * 1000 / rtt:.1f}x / "
            f"{pct(lats, 0.99) * 1000 / rtt:.1f}x baseline-1 round trip {rtt:.3f} ms); {w.ops} rounds")
        res["wake"] = w
        res["b1"], res["b4"] = b1, b4
        if n == 1:
            bc.target_lines(out, "postgresql", [
                ("AsyncClient, 1 client", "submit", s1, s1.pg_us(), b1),
                ("AsyncClient, 4 clients", "submit", s4, s4.pg_us(), b4),
                ("raw, 1 conn", "submit", raw[("submit", 1)], raw[("submit", 1)].pg_us(), raw[("version", 1)]),
                ("raw, 4 conns", "submit", raw[("submit", 4)], raw[("submit", 4)].pg_us(), raw[("version", 4)]),
                ("AsyncClient, 1 client", "assignclose", a1, a1.pg_us(), b1),
                ("AsyncClient, 4 clients", "assignclose", a4, a4.pg_us(), b4),
                ("raw, 1 conn", "assignclose", raw[("assignclose", 1)], raw[("assignclose", 1)].pg_us(),
                 raw[("version", 1)]),
                ("raw, 4 conns", "assignclose", raw[("assignclose", 4)], raw[("assignclose", 4)].pg_us(),
                 raw[("version", 4)])])
    return res


def bench_sync_off(out: Out, tmp: Path, etcd: str, sz: Sizes) -> dict[str, CResult]:
    res: dict[str, CResult] = {}
    with ExitStack() as stack:
        cl = start_cluster(stack, tmp, 1, etcd, sync_off=True)
        keys = asyncio.run(setup(cl.ports[0], cl.replicas[0].server_prvkey, {ETYPE: N_WORKERS}))
        out("== OPT-IN TRADE-OFF: 1 replica, ALTER DATABASE ... SET synchronous_commit = off (a crash of the "
            "PostgreSQL host can lose the last ~3 x wal_writer_delay of acknowledged commits; no corruption)")
        for kind in ("submit", "assignclose"):
            for conns in (1, 4):
                total = sz.submit_1 * (2 if conns > 1 else 1)
                if kind == "assignclose":
                    total = res[f"submit-{conns}"].ops
                r = asyncio.run(raw_ops(cl, kind, [keys.user] if kind == "submit" else keys.executors[ETYPE],
                                        conns, total))
                res[f"{kind}-{conns}"] = r
                key = ("submit_" if kind == "submit" else "assign_") + str(conns)
                out(f"    raw {'submits/s     ' if kind == 'submit' else 'assign+close/s'} {conns} conn"
                    f"{'s' if conns > 1 else ' '}: {r.rate:6.0f} /s {go_line(r, key)}; {cpu_line(r)}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller counts, under 90 s")
    ap.add_argument("--replicas", default="1,3", help="replica counts to run (default 1,3)")
    ap.add_argument("--profile", metavar="DIR", help="py-spy the 1-replica server during its 1-client assign+close")
    ap.add_argument("--no-sync-off", action="store_true", help="skip the synchronous_commit=off extra line")
    args = ap.parse_args()
    sz = QUICK if args.quick else FULL
    out = Out()
    t_begin = time.monotonic()
    etcd = etcd_endpoint()
    pg_dsn()
    load = os.getloadavg()
    out(f"# Colonies in Python PostgreSQL/cluster benchmark ({'quick' if args.quick else 'full'} mode); "
        f"{os.cpu_count()} CPUs shared by clients, replicas, PostgreSQL and etcd; python {sys.version.split()[0]}")
    out(f"# load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    out(f"# PostgreSQL: {pg_settings()}; etcd {etcd}")
    out("# replicas: python -m colonies server start, COLONIES_DB_TYPE=postgresql on one fresh database, "
        "COLONIES_ETCD_ENDPOINTS set (leader election), loopback")
    out("# server CPU = utime+stime summed over all replica pids (/proc/<pid>/stat) / ops; PostgreSQL CPU = the same "
        "over the client backends on this database plus the WAL writer")
    out(f"# Go figures from the issue (Go server + PostgreSQL + Go client): {GO['submit_1']:.0f} submit/s and "
        f"{GO['assign_1']:.0f} assign+close/s with 1 client, {GO['submit_4']:.0f} and {GO['assign_4']:.0f} with 4; "
        f"target {TARGET_FACTOR}x")
    out()
    all_res: dict[int, dict[str, CResult]] = {}
    with tempfile.TemporaryDirectory(prefix="colonies-bench-cluster-") as tmp:
        for n in (int(x) for x in args.replicas.split(",")):
            all_res[n] = bench_config(out, Path(tmp), n, etcd, sz, args)
            out()
        if 1 in all_res and 3 in all_res:
            out("SCALING 1 -> 3 replicas (same 2 cores for everything: replicas, PostgreSQL, etcd and the clients)")
            for key, label in (("sdk-submit_4", "AsyncClient submits/s, 4 clients"),
                               ("sdk-assign_4", "AsyncClient assign+close/s, 4 clients"),
                               ("raw-submit-4", "raw submits/s, 4 conns"),
                               ("raw-assignclose-4", "raw assign+close/s, 4 conns")):
                r1, r3 = all_res[1][key], all_res[3][key]
                out(f"    {label:<40} {r1.rate:6.0f} -> {r3.rate:6.0f} /s  ({r3.rate / r1.rate:.2f}x); server CPU "
                    f"{r1.server_us():.0f} -> {r3.server_us():.0f} us/op, PostgreSQL {r1.pg_us():.0f} -> "
                    f"{r3.pg_us():.0f} us/op")
            out()
        if not args.no_sync_off:
            bench_sync_off(out, Path(tmp), etcd, sz)
            out()
    out("SIZING (from the 1-replica raw-socket 4-connection phases: CPU per op -> ops/s one core sustains)")
    if 1 in all_res:
        for key, label in (("raw-submit-4", "submit"), ("raw-assignclose-4", "assign+close")):
            r = all_res[1][key]
            out(f"    {label:<13} server {r.server_us():5.0f} us/op (~{1e6 / max(r.server_us(), 1):,.0f} op/s per "
                f"replica core); PostgreSQL {r.pg_us():5.0f} us/op (~{1e6 / max(r.pg_us(), 1):,.0f} op/s per PG core)")
    load = os.getloadavg()
    out(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; total bench time "
        f"{time.monotonic() - t_begin:.1f} s ({'quick' if args.quick else 'full'} mode)")


if __name__ == "__main__":
    main()
