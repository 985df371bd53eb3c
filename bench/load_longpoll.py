"""Long-poll load: N parked assign long-polls on one server while another client submits.

Run: .venv/bin/python bench/load_longpoll.py [--parked N] [--quick] [--executors E] [--submits S]
See bench/README.md ("Long-poll load") for what each printed line means.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import queue
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_core import COLONY, Out, pct, server_cpu_s, setup

from colonies.client import func_spec
from colonies.protocol.crypto import id_of
from tests.conftest import ServerProc, make_server

ETYPE = "load"
OPEN_CONCURRENCY = 200  # connections being opened at once (keeps well inside the accept backlog)
PARK_LIMIT_S = 60.0  # bound on opening + parking all connections
SETTLE_LIMIT_S = 30.0  # bound on waiting for the server to go idle after the last assign was sent
IDLE_WINDOW_S = 5.0
HEAD = b"POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc/<pid>/status."""
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                vals[k] = int(v.split()[0]) / 1024
    return vals["VmRSS"], vals["VmHWM"]


def post(body: bytes) -> bytes:
    return b"%s%d\r\n\r\n%s" % (HEAD, len(body), body)


async def read_reply(r: asyncio.StreamReader) -> tuple[int, bytes]:
    hdr = await r.readuntil(b"\r\n\r\n")
    status = int(hdr[9:12])
    i = hdr.lower().index(b"content-length:")
    return status, await r.readexactly(int(hdr[i + 15:hdr.index(b"\r", i)]))


# -- the submitting client (its own OS process) -------------------------------------------------------
def _submitter(port: int, user_prv: str, count: int, rate: float, go: Any, results: Any) -> None:
    """Submit `count` processes one at a time at about `rate`/s on one raw keep-alive connection.
    Puts [(processid, t_sent_monotonic, submit_rtt_s)] on `results`."""
    import msgspec

    from colonies.protocol import envelope

    spec = msgspec.to_builtins(func_spec("load", COLONY, ETYPE, args=["x"]))
    body = post(envelope.encode_request({"msgtype": "submitfuncspecmsg", "spec": spec}, user_prv))
    dec = msgspec.json.Decoder(dict[str, Any])

    async def main() -> list[tuple[str, float, float]]:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        out: list[tuple[str, float, float]] = []
        try:
            go.wait(120)
            t_start = time.monotonic()
            for k in range(count):
                if time.monotonic() - t_start > 60:
                    break
                delay = t_start + k / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.monotonic()
                w.write(body)
                status, reply = await read_reply(r)
                t1 = time.monotonic()
                if status != 200:
                    raise RuntimeError(f"submit failed: {status} {reply[:200]!r}")
                out.append((dec.decode(envelope.decode_reply(reply)[1])["processid"], t0, t1 - t0))
        finally:
            w.close()
        return out

    results.put(asyncio.run(main()))


# -- the parked connections (this process) --------------------------------------------------------------
@dataclass
class Parked:
    n: int
    got: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # processid -> [(t_recv, conn)]
    other: dict[int, int] = field(default_factory=dict)  # non-200 status -> count
    opened: int = 0
    sent: int = 0  # assign requests written
    answered: int = 0  # assign replies read
    errors: list[str] = field(default_factory=list)
    last_sent: float = 0.0


async def park_one(i: int, port: int, assign_body: bytes, st: Parked, sem: asyncio.Semaphore,
                   stop: asyncio.Event, version_body: bytes) -> None:
    import msgspec

    from colonies.protocol import envelope

    dec = msgspec.json.Decoder(dict[str, Any])
    w = None
    try:
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(version_body)  # proves the server accepted and serves this connection
            status, _ = await read_reply(r)
            if status != 200:
                raise RuntimeError(f"versionmsg {status}")
        st.opened += 1
        for _ in range(10_000):  # bounded: re-park after every answer
            if stop.is_set():
                break
            w.write(assign_body)
            st.sent += 1
            st.last_sent = time.monotonic()
            status, reply = await read_reply(r)
            t = time.monotonic()
            st.answered += 1
            if status == 200:
                pid = dec.decode(envelope.decode_reply(reply)[1])["processid"]
                st.got.setdefault(pid, []).append((t, i))
            else:
                st.other[status] = st.other.get(status, 0) + 1
    except asyncio.CancelledError:
        pass
    except Exception as exc:  # noqa: BLE001 - reported, and fails the run
        st.errors.append(f"conn {i}: {type(exc).__name__}: {exc}")
    finally:
        if w is not None:
            w.close()


async def wait_idle(pid: int, limit: float, window: float = 0.5, max_share: float = 0.05) -> float:
    """Wait until the server's CPU over `window` is under `max_share` of one core; returns seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        c0 = server_cpu_s(pid).total
        await asyncio.sleep(window)
        if server_cpu_s(pid).total - c0 <= window * max_share:
            break
    return time.monotonic() - t0


async def verify(port: int, user_prv: str, exec_of_conn: list[str], got: dict[str, list[tuple[float, int]]],
                 submitted: list[str]) -> list[str]:
    """Server side check: every submitted process is RUNNING and assigned to the executor whose
    connection received it; nothing of the type is still WAITING."""
    import msgspec

    from colonies.protocol import envelope

    dec = msgspec.json.Decoder(dict[str, Any])
    dec_list = msgspec.json.Decoder(list[dict[str, Any]] | None)
    problems: list[str] = []
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        for pid in submitted:
            w.write(post(envelope.encode_request({"msgtype": "getprocessmsg", "processid": pid}, user_prv)))
            status, reply = await read_reply(r)
            p = dec.decode(envelope.decode_reply(reply)[1])
            if status != 200:
                problems.append(f"{pid}: get {status}")
                continue
            if pid in got and len(got[pid]) == 1:
                want = exec_of_conn[got[pid][0][1]]
                if p["state"] != 1 or p["assignedexecutorid"] != want:
                    problems.append(f"{pid}: state {p['state']} assigned to {p['assignedexecutorid'][:8]}, "
                                    f"received by {want[:8]}")
        w.write(post(envelope.encode_request({"msgtype": "getprocessesmsg", "colonyname": COLONY, "count": 100,
                                              "state": 0, "executortype": ETYPE}, user_prv)))
        status, reply = await read_reply(r)
        waiting = dec_list.decode(envelope.decode_reply(reply)[1]) or []
        if waiting:
            problems.append(f"{len(waiting)} processes still WAITING")
    finally:
        w.close()
    return problems


@dataclass
class Figures:
    rss: dict[str, tuple[float, float]] = field(default_factory=dict)
    lat: list[float] = field(default_factory=list)
    submit_rtt: list[float] = field(default_factory=list)
    idle_cpu: float = 0.0
    submit_cpu: float = 0.0
    park_s: float = 0.0
    park_cpu: float = 0.0
    settle_s: float = 0.0
    submit_s: float = 0.0
    submitted: int = 0
    problems: list[str] = field(default_factory=list)


async def run(srv: ServerProc, args: argparse.Namespace, out: Out) -> Figures:
    from colonies.protocol import envelope

    assert srv.proc is not None
    spid = srv.proc.pid
    fig = Figures()
    keys = await setup(srv.port, srv.server_prvkey, {ETYPE: args.executors})
    ex = keys.executors[ETYPE]
    assign = [post(envelope.encode_request({"msgtype": "assignprocessmsg", "colonyname": COLONY,
                                            "timeout": args.timeout, "availablecpu": "", "availablemem": ""},
                                           prv)) for prv in ex]
    version = post(envelope.encode_request({"msgtype": "versionmsg"}, keys.user))
    exec_of_conn = [id_of(ex[i % len(ex)]) for i in range(args.parked)]

    # the submitter process starts now (its imports take a while) and waits for `go`
    ctx = mp.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    sub = ctx.Process(target=_submitter, args=(srv.port, keys.user, args.submits, args.rate, go, results))
    sub.start()

    await wait_idle(spid, 10)
    fig.rss["before parking"] = rss_mb(spid)
    st = Parked(args.parked)
    sem, stop = asyncio.Semaphore(args.open_concurrency), asyncio.Event()
    cpu0, t0 = server_cpu_s(spid), time.monotonic()
    tasks = [asyncio.ensure_future(park_one(i, srv.port, assign[i % len(assign)], st, sem, stop, version))
             for i in range(args.parked)]
    while st.sent < args.parked and time.monotonic() - t0 < PARK_LIMIT_S and not st.errors:
        await asyncio.sleep(0.05)
    fig.park_s = time.monotonic() - t0
    fig.settle_s = await wait_idle(spid, SETTLE_LIMIT_S)
    fig.park_cpu = (server_cpu_s(spid) - cpu0).total
    if st.sent < args.parked or st.errors:
        fig.problems.append(f"only {st.opened} opened / {st.sent} parked in {PARK_LIMIT_S:.0f} s; "
                            f"errors {st.errors[:3]}")
    fig.rss[f"{st.sent:,} parked"] = rss_mb(spid)

    # idle while parked
    c0 = server_cpu_s(spid)
    await asyncio.sleep(IDLE_WINDOW_S)
    fig.idle_cpu = (server_cpu_s(spid) - c0).total
    answered_idle = st.answered

    # submits
    c0, t0 = server_cpu_s(spid), time.monotonic()
    go.set()
    submitted: list[tuple[str, float, float]] = []
    while time.monotonic() - t0 < 90:
        try:
            submitted = await asyncio.get_running_loop().run_in_executor(None, results.get, True, 1.0)
            break
        except queue.Empty:
            if not sub.is_alive():
                break
    # wait (bounded) for every submitted process to reach a parked connection
    while time.monotonic() - t0 < 90 and sum(1 for p, *_ in submitted if p in st.got) < len(submitted):
        await asyncio.sleep(0.02)
    fig.submit_s = time.monotonic() - t0
    fig.submit_cpu = (server_cpu_s(spid) - c0).total
    sub.join(10)
    fig.submitted = len(submitted)
    fig.rss["after submits"] = rss_mb(spid)

    for pid, t_sent, rtt in submitted:
        fig.submit_rtt.append(rtt)
        if pid in st.got:
            fig.lat.append(st.got[pid][0][0] - t_sent)
    if len(submitted) != args.submits:
        fig.problems.append(f"submitted {len(submitted)} of {args.submits}")
    missing = [p for p, *_ in submitted if p not in st.got]
    dup = [p for p, v in st.got.items() if len(v) > 1]
    extra = set(st.got) - {p for p, *_ in submitted}
    if missing or dup or extra:
        fig.problems.append(f"{len(missing)} never assigned, {len(dup)} assigned twice, {len(extra)} unknown")
    fig.problems += await verify(srv.port, keys.user, exec_of_conn, st.got, [p for p, *_ in submitted])
    if answered_idle:
        fig.problems.append(f"{answered_idle} parked requests answered before any submit (timeout too short?)")
    if st.other:
        fig.problems.append(f"non-200 assign answers: {st.other}")
    if st.errors:
        fig.problems.append(f"{len(st.errors)} connection errors, e.g. {st.errors[:3]}")

    # close everything
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.5)
    await wait_idle(spid, 15)
    fig.rss["all closed"] = rss_mb(spid)
    return fig


def report(out: Out, srv: ServerProc, args: argparse.Namespace, fig: Figures, nofile: tuple[int, int]) -> None:
    assert srv.proc is not None
    out(f"# Colonies in Python long-poll load ({'quick' if args.quick else 'full'} mode); "
        f"load average at start {args.loadavg}")
    out(f"# server: python -m colonies server start, pid {srv.proc.pid}, SQLite in a temp dir, "
        f"127.0.0.1:{srv.port}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}; RLIMIT_NOFILE {nofile}")
    out(f"# parked side: {args.parked:,} raw keep-alive HTTP/1.1 connections (asyncio streams) in the bench "
        f"process, {args.executors} approved executors x {args.parked // args.executors} connections each;")
    out(f"#   each connection sends a versionmsg (opened {args.open_concurrency} at a time), then assignprocessmsg "
        f"timeout {args.timeout} s (one prebuilt signed envelope per executor), re-parking after every answer")
    out(f"# submitter: a separate OS process (spawn), 1 raw connection, {args.submits} submitfuncspecmsg one at a "
        f"time at ~{args.rate:.0f}/s")
    out("# wake latency = time.monotonic() when the submit was written (submitter) -> when a parked connection "
        "read the assign reply with that processid (bench process); CLOCK_MONOTONIC is system-wide")
    out("# RSS = VmRSS (peak VmHWM) of the server pid from /proc/<pid>/status; CPU = utime+stime from "
        "/proc/<pid>/stat")
    out()
    for label, (rss, hwm) in fig.rss.items():
        out(f"  server RSS {label:<16}: {rss:7.1f} MB   (peak so far {hwm:.1f} MB)")
    parked_label = next(k for k in fig.rss if k.endswith("parked"))
    per = (fig.rss[parked_label][0] - fig.rss["before parking"][0]) * 1024 / max(1, args.parked)
    out(f"  per parked connection: {per:.1f} KB of server RSS")
    out(f"  parking: {args.parked:,} connections opened and assigns sent in {fig.park_s:.1f} s, server idle "
        f"{fig.settle_s:.1f} s later; server CPU {fig.park_cpu:.1f} s = "
        f"{fig.park_cpu / max(1, args.parked) * 1e6:.0f} us per connection (version + assign + park)")
    out(f"  idle while parked: server CPU {fig.idle_cpu * 1000:.0f} ms over {IDLE_WINDOW_S:.0f} s "
        f"({fig.idle_cpu / IDLE_WINDOW_S * 100:.2f}% of one core)")
    if fig.lat:
        out(f"  wake latency ({len(fig.lat)} submits): p50 {statistics.median(fig.lat) * 1000:6.2f} ms  "
            f"p99 {pct(fig.lat, 0.99) * 1000:6.2f} ms  max {max(fig.lat) * 1000:6.2f} ms   "
            f"(submit round-trip p50 {statistics.median(fig.submit_rtt) * 1000:.2f} ms)")
        out(f"  submit phase: {fig.submitted} submits in {fig.submit_s:.1f} s; server CPU "
            f"{fig.submit_cpu / max(1, fig.submitted) * 1e6:.0f} us per submit (submit + wake + claim + reply + "
            "re-park of the woken connection)")
    rss_ok = max(v[0] for v in fig.rss.values()) < 300
    p99 = pct(fig.lat, 0.99) * 1000 if fig.lat else float("inf")
    out(f"  TARGET RSS < 300 MB: {'MET' if rss_ok else 'not met'};  p99 wake < 50 ms: "
        f"{'MET' if p99 < 50 else 'not met'}")
    out(f"  exactly once: {'OK' if not fig.problems else 'PROBLEMS: ' + '; '.join(fig.problems)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--parked", type=int, default=None, help="parked long-polls (default 10000, quick 2000)")
    ap.add_argument("--quick", action="store_true", help="2,000 parked, 200 submits")
    ap.add_argument("--executors", type=int, default=100, help="executor identities sharing the connections")
    ap.add_argument("--submits", type=int, default=None, help="processes submitted (default 500, quick 200)")
    ap.add_argument("--rate", type=float, default=50.0, help="submits per second")
    ap.add_argument("--timeout", type=int, default=60, help="assign long-poll timeout, seconds")
    ap.add_argument("--open-concurrency", type=int, default=OPEN_CONCURRENCY,
                    help="connections being opened at once (--parked for one burst: tests the accept backlog)")
    args = ap.parse_args()
    args.parked = args.parked or (2000 if args.quick else 10_000)
    args.submits = args.submits or (200 if args.quick else 500)
    args.executors = max(1, min(args.executors, args.parked))
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    nofile = raise_nofile()  # the server subprocess inherits it
    if nofile[0] < args.parked + 200:
        sys.exit(f"RLIMIT_NOFILE {nofile} is too low for {args.parked} connections")
    out = Out()
    t_begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="colonies-load-") as tmp:
        srv = make_server(Path(tmp), {"COLONIES_TIMEOUT_CHECKER_PERIOD": "1000"})
        srv.start()
        try:
            fig = asyncio.run(run(srv, args, out))
            report(out, srv, args, fig, nofile)
        finally:
            srv.stop()
    out(f"total load bench time {time.monotonic() - t_begin:.1f} s")
    if fig.problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
