"""GET /metrics against real servers: known state built through the SDK and pycolonies, a real HTTP
scrape parsed with prometheus_client's parser, exact values.

* SQLite: colonies, executors in every state, processes in every state (a re-queue by deadline, a
  wait deadline, a removed executor's work, a removed process), workflows in every state, a removed
  colony, a parked long-poll, cron and generator fires, request counters; the counts equal the COUNT
  queries of `getstatisticsmsg`, and stay right across a restart (seeded from the database again).
* A scrape issues no SQL statement, with 10 waiting processes as with 10,000 (the SQLite trace callback
  of an in-process server counts them).
* Two PostgreSQL replicas on one database: each replica's counts follow the other's changes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from pycolonies import Colonies
from pycolonies import func_spec as py_func_spec

from colonies.client.core import func_spec
from colonies.client.sync import Client
from colonies.clock import NS
from colonies.config import Config
from colonies.model import Colony, FunctionSpec, ProcessState, Statistics, WorkflowSpec
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.server.app import create_app
from colonies.server.handlers_processes import new_process, normalize_spec
from colonies.storage.sqlite import SqliteStorage
from tests.conftest import ColonyKeys, PgDatabase, ServerProc, free_port, make_server, setup_colony
from tests.kit_support import cli_env, run_cli
from tests.test_cluster_replicas import poll

pytestmark = pytest.mark.e2e
TOKEN = "s3cret-scrape-token"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
ORIGINAL = ["colonies_server_colonies", "colonies_server_executors",
            *(f"colonies_server_{k}_{s}" for k in ("processes", "workflows")
              for s in ("waiting", "running", "successful", "failed"))]
STATES = ("waiting", "running", "successful", "failed", "cancelled")


def scrape(srv: ServerProc, token: str | None = TOKEN) -> Samples:
    r = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def v(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def by_label(samples: Samples, name: str, **fixed: str) -> dict[tuple[str, ...], float]:
    """{the other labels' values: value} of the samples of `name` whose labels include `fixed`."""
    out: dict[tuple[str, ...], float] = {}
    for (n, labels), value in samples.items():
        d = dict(labels)
        if n == name and all(d.get(k) == x for k, x in fixed.items()):
            out[tuple(x for k, x in labels if k not in fixed)] = value
    return out


def spec(colony: str, etype: str = "test", **kw: Any) -> FunctionSpec:
    return func_spec("f", colony, etype, **kw)


def node(colony: str, name: str, deps: list[str] | None = None) -> FunctionSpec:
    return func_spec("f", colony, "test", nodename=name, dependencies=deps or [])


def expected_original(st: Statistics) -> dict[str, float]:
    return {"colonies_server_colonies": st.colonies, "colonies_server_executors": st.executors,
            "colonies_server_processes_waiting": st.waitingprocesses,
            "colonies_server_processes_running": st.runningprocesses,
            "colonies_server_processes_successful": st.successfulprocesses,
            "colonies_server_processes_failed": st.failedprocesses,
            "colonies_server_workflows_waiting": st.waitingworkflows,
            "colonies_server_workflows_running": st.runningworkflows,
            "colonies_server_workflows_successful": st.successfulworkflows,
            "colonies_server_workflows_failed": st.failedworkflows}


def original(samples: Samples) -> dict[str, float]:
    return {name: v(samples, name) for name in ORIGINAL}


class Built:
    """What the test did, counted as it went (the expected request counters)."""

    def __init__(self) -> None:
        self.submits = 0
        self.assigns = 0


def build_state(srv: ServerProc) -> tuple[dict[str, ColonyKeys], Built]:
    """Colonies alpha (standalone processes), beta (workflows), idle, sched; "gone" is removed."""
    b = Built()
    keys = {name: setup_colony(srv, name) for name in ("alpha", "beta", "idle", "sched", "gone")}
    alpha, beta = keys["alpha"], keys["beta"]
    with srv.client(alpha.colony_prvkey) as owner:
        owner.add_executor("alpha", id_of(generate_prvkey()), "pend", "test")  # stays PENDING
        owner.add_executor("alpha", id_of(generate_prvkey()), "rej", "gpu")
        owner.reject_executor("alpha", "rej")
        rm_key = generate_prvkey()
        owner.add_executor("alpha", id_of(rm_key), "rm", "test")
        owner.approve_executor("alpha", "rm")

    with srv.client(alpha.user_prvkey) as user, srv.client(alpha.executor_prvkey) as ex:
        def submit(**kw: Any) -> str:
            b.submits += 1
            return user.submit(spec("alpha", **kw)).processid

        def assign() -> str:
            b.assigns += 1
            return ex.assign("alpha", timeout=5).processid

        ids = [submit() for _ in range(2 + 2 + 1)]
        assert [assign() for _ in ids] == ids  # oldest first
        ex.close(ids[2], ["ok"])
        ex.close(ids[3], ["ok"])
        ex.fail(ids[4], ["no"])  # still running: ids[0], ids[1]
        user.cancel(submit())
        user.remove_process(submit())
        b.submits += 1
        user.submit(spec("alpha", "other"))  # another executor type's queue
        requeued = submit(maxexectime=1, maxretries=5)
        assert assign() == requeued  # back in the queue when its deadline passes
        held = submit()
        with srv.client(rm_key) as rm_ex:
            b.assigns += 1
            assert rm_ex.assign("alpha", timeout=5).processid == held
        with srv.client(alpha.colony_prvkey) as owner:
            owner.remove_executor("alpha", "rm")  # its running process goes back to the queue
        assert user.get_process(held).state == ProcessState.WAITING
        submit(maxwaittime=1)  # nobody assigns it in time: FAILED

        def settled() -> bool:
            failed = user.get_processes("alpha", state=ProcessState.FAILED)
            return user.get_process(requeued).state == ProcessState.WAITING and len(failed) == 2

        poll(settled, 15, "the deadline re-queue and the wait deadline")
        assert user.get_process(requeued).retries == 1
    py = Colonies("127.0.0.1", srv.port)  # three more that wait, submitted with pycolonies
    for i in range(3):
        py.submit_func_spec(py_func_spec("f", [i], "alpha", "test"), alpha.user_prvkey)
        b.submits += 1

    # beta, workflows, one in each state (each assign takes the only root then assignable)
    with srv.client(beta.user_prvkey) as user, srv.client(beta.executor_prvkey) as ex:
        def workflow(*nodes: FunctionSpec) -> str:
            return user.submit_workflow(WorkflowSpec(colonyname="beta", functionspecs=list(nodes))).processgraphid

        def take() -> str:
            b.assigns += 1
            return ex.assign("beta", timeout=5).processid

        workflow(node("beta", "one"))
        ex.close(take(), [1])  # successful
        workflow(node("beta", "a"), node("beta", "b", ["a"]))
        ex.fail(take(), ["x"])  # failed: b fails with it
        workflow(node("beta", "a"), node("beta", "b", ["a"]))
        take()  # running: a running, b waiting
        user.cancel_processgraph(workflow(node("beta", "c")))
        workflow(node("beta", "a"), node("beta", "b", ["a"]))  # waiting

    # gone: work of every kind, then the colony is removed
    gone = keys["gone"]
    with srv.client(gone.user_prvkey) as user, srv.client(gone.executor_prvkey) as ex:
        user.submit(spec("gone"))
        user.submit(spec("gone"))
        b.submits += 2
        b.assigns += 1
        ex.assign("gone", timeout=5)
        user.submit_workflow(WorkflowSpec(colonyname="gone", functionspecs=[node("gone", "n")]))
    with srv.client(srv.server_prvkey) as admin:
        admin.remove_colony("gone")
    return keys, b


def test_scrape_matches_known_state_and_survives_restart(tmp_path: Path) -> None:
    srv = make_server(tmp_path, {"COLONIES_METRICS": "true", "COLONIES_METRICS_TOKEN": TOKEN,
                                 "COLONIES_CRON_CHECKER_PERIOD": "200", "COLONIES_GENERATOR_CHECKER_PERIOD": "200",
                                 "COLONIES_NODE_NAME": "node-a"})
    srv.start()
    try:
        _check_live(srv)
    finally:
        srv.stop()

    # restarted without a token: counted again from the database, and no names on the open page
    srv.env.pop("COLONIES_METRICS_TOKEN")
    srv.start()
    try:
        with srv.client(srv.server_prvkey) as admin:
            stats = admin.statistics()
        s = scrape(srv, token=None)
        assert original(s) == expected_original(stats)
        assert v(s, "colonies_metrics_seeds_total") == 1
        assert not [k for k in s if dict(k[1]).keys() & {"colony", "executortype"}]
        assert by_label(s, "colonies_processes") == {
            ("waiting",): stats.waitingprocesses, ("running",): stats.runningprocesses,
            ("successful",): stats.successfulprocesses, ("failed",): stats.failedprocesses,
            ("cancelled",): stats.cancelledprocesses}
        assert by_label(s, "colonies_workflows")[("cancelled",)] == stats.cancelledworkflows == 1
        assert by_label(s, "colonies_executors") == {("pending",): 1, ("approved",): 4, ("rejected",): 1}
        assert v(s, "colonies_requests_total", payloadtype="getstatisticsmsg", status="200") == 1  # a new process
    finally:
        srv.stop()


def _check_live(srv: ServerProc) -> None:
    assert httpx.get(f"{srv.url}/metrics", timeout=5).status_code == 401
    assert httpx.get(f"{srv.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    keys, b = build_state(srv)

    # requests the server refuses are counted by payload type and status
    with srv.client(keys["beta"].executor_prvkey) as stranger, pytest.raises(Exception, match="403|not a member"):
        stranger.submit(spec("alpha"))
    httpx.post(f"{srv.url}/api", content=b"not an envelope", timeout=5)

    with srv.client(srv.server_prvkey) as admin:
        stats = admin.statistics()
    s = scrape(srv)
    # the original's ten gauges, equal to the COUNT queries and to the state built
    assert original(s) == expected_original(stats)
    assert original(s) == {
        "colonies_server_colonies": 4, "colonies_server_executors": 6,
        "colonies_server_processes_waiting": 5 + 1 + 3, "colonies_server_processes_running": 2 + 1,
        "colonies_server_processes_successful": 2 + 1, "colonies_server_processes_failed": 2 + 2,
        "colonies_server_workflows_waiting": 1, "colonies_server_workflows_running": 1,
        "colonies_server_workflows_successful": 1, "colonies_server_workflows_failed": 1}
    # queue depth per (colony, executor type) and state
    alpha = by_label(s, "colonies_processes", colony="alpha")
    assert alpha == {("test", "waiting"): 5, ("test", "running"): 2, ("test", "successful"): 2,
                     ("test", "failed"): 2, ("test", "cancelled"): 1, ("other", "waiting"): 1,
                     ("other", "running"): 0, ("other", "successful"): 0, ("other", "failed"): 0,
                     ("other", "cancelled"): 0}
    assert by_label(s, "colonies_processes", colony="beta") == {
        ("test", "waiting"): 3, ("test", "running"): 1, ("test", "successful"): 1, ("test", "failed"): 2,
        ("test", "cancelled"): 1}
    assert by_label(s, "colonies_workflows", colony="beta") == {(st,): 1 for st in STATES}
    assert not [k for k in s if dict(k[1]).get("colony") == "gone"]
    executors = {k: n for k, n in by_label(s, "colonies_executors").items() if n}
    assert executors == {("alpha", "test", "approved"): 1, ("alpha", "test", "pending"): 1,
                         ("alpha", "gpu", "rejected"): 1, ("beta", "test", "approved"): 1,
                         ("idle", "test", "approved"): 1, ("sched", "test", "approved"): 1}
    # executors by last sign of life: alpha's and beta's (and gone's, removed) asked for work
    assert v(s, "colonies_executor_last_seen_seconds_bucket", le="60.0") == 2
    assert v(s, "colonies_executor_last_seen_seconds_bucket", le="+Inf") == 6
    # requests, latency, assign waits
    assert v(s, "colonies_requests_total", payloadtype="submitfuncspecmsg", status="200") == b.submits
    assert v(s, "colonies_requests_total", payloadtype="submitfuncspecmsg", status="403") == 1
    assert v(s, "colonies_requests_total", payloadtype="invalid", status="400") == 1
    assert v(s, "colonies_request_duration_seconds_count", payloadtype="submitfuncspecmsg") == b.submits + 1
    assert v(s, "colonies_request_duration_seconds_bucket", payloadtype="submitfuncspecmsg", le="+Inf") == b.submits + 1
    assert v(s, "colonies_assign_wait_seconds_count") == b.assigns
    assert v(s, "colonies_process_wait_seconds_count") == b.assigns
    assert v(s, "colonies_requests_total", payloadtype="assignprocessmsg", status="200") == b.assigns
    assert v(s, "colonies_storage_duration_seconds_count", operation="claim") >= b.assigns
    assert v(s, "colonies_storage_duration_seconds_count", operation="statistics") == 1
    assert v(s, "colonies_leader", node="node-a") == 1
    assert v(s, "colonies_metrics_seeds_total") == 1
    assert v(s, "process_resident_memory_bytes") > 0

    # a parked long-poll, then the process that ends it
    idle = keys["idle"]
    with srv.client(idle.executor_prvkey) as ex, srv.client(idle.user_prvkey) as user:
        done: list[str] = []
        waiter = threading.Thread(target=lambda: done.append(ex.assign("idle", timeout=20).processid))
        waiter.start()
        poll(lambda: v(scrape(srv), "colonies_long_polls", colony="idle", executortype="test") == 1, 10, "parked")
        pid = user.submit(spec("idle")).processid
        waiter.join(20)
        assert done == [pid]
    s = scrape(srv)
    assert v(s, "colonies_long_polls", colony="idle", executortype="test") == 0
    assert by_label(s, "colonies_processes", colony="idle")[("test", "running")] == 1
    assert v(s, "colonies_assign_wait_seconds_count") == b.assigns + 1
    assert v(s, "colonies_assign_wait_seconds_bucket", le="0.001") < b.assigns + 1  # the parked one waited

    # crons and generators fire on the leader; each fire is one workflow
    sched = keys["sched"]
    wf = WorkflowSpec(colonyname="sched", functionspecs=[node("sched", "tick")])
    with srv.client(sched.user_prvkey) as user:
        gen = user.add_generator("sched", "g", wf, trigger=1)
        user.pack_generator(gen.generatorid, "arg")
        cron = user.add_cron("sched", "c", wf, interval=1)
        poll(lambda: v(scrape(srv), "colonies_cron_fires_total") >= 2, 15, "two cron fires")
        user.remove_cron(cron.cronid)
        poll(lambda: v(scrape(srv), "colonies_generator_fires_total") == 1, 10, "the generator fire")
        s = scrape(srv)
        fired = v(s, "colonies_cron_fires_total") + v(s, "colonies_generator_fires_total")
        assert user.colony_stats("sched").waitingworkflows == fired
        assert by_label(s, "colonies_workflows", colony="sched")[("waiting",)] == fired
    with srv.client(srv.server_prvkey) as admin:
        assert original(scrape(srv)) == expected_original(admin.statistics())

    check_dashboard_and_docs(scrape(srv))

    # `colonies monitor start` names this endpoint
    env = cli_env(srv, keys["alpha"])
    r = run_cli(env, "monitor", "start")
    assert r.returncode == 1 and "bearer token" in r.stderr and f"{srv.url}/metrics" in r.stderr
    r = run_cli({**env, "COLONIES_METRICS_TOKEN": TOKEN}, "monitor", "start")
    assert r.returncode == 0 and f"{srv.url}/metrics" in r.stdout


def check_dashboard_and_docs(s: Samples) -> None:
    """Every query of the dashboard reads series the server serves, in the PromQL subset the picture script
    evaluates; docs/metrics.md names every colonies_* series served, and serves every one it names."""
    import importlib.util
    import json
    import re
    import sys

    served = {name for name, _ in s}
    root = Path(__file__).resolve().parent.parent
    loader = importlib.util.spec_from_file_location("metrics_picture", root / "scripts" / "metrics_picture.py")
    assert loader is not None and loader.loader is not None
    picture = sys.modules.setdefault("metrics_picture", importlib.util.module_from_spec(loader))
    loader.loader.exec_module(picture)
    dashboard = json.loads((root / "docs" / "grafana-colonies.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    for expr in exprs:
        picture.Query(expr)  # parses
        for name in re.findall(r"\b((?:colonies|process)_[a-z_]+)\b", expr):
            assert name in served, (name, expr)
    documented = set(re.findall(r"^\| `(colonies_[a-z_]+)`", (root / "docs" / "metrics.md").read_text(), re.MULTILINE))
    bases = {re.sub(r"_(bucket|count|sum|gcount|gsum)$", "", n) for n in served if n.startswith("colonies_")}
    assert bases == documented


def test_metrics_are_off_by_default(server: ServerProc) -> None:
    assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 404


# -- the cost of a scrape -------------------------------------------------------------------------------------
@contextmanager
def inprocess_server(db: Path, owner: str) -> Iterator[tuple[int, SqliteStorage]]:
    """create_app on a SQLite file under a real uvicorn, in a thread; no background loops."""
    storage = SqliteStorage(str(db))
    config = Config(db_path=str(db), metrics=True, metrics_token=TOKEN, server_id=id_of(owner))
    app = create_app(config, storage, run_loops=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        poll(lambda: server.started, 20, "uvicorn started")
        yield port, storage
    finally:
        server.should_exit = True
        thread.join(20)


def add_waiting(db: Path, n: int, owner: str) -> None:
    async def run() -> None:
        storage = SqliteStorage(str(db))
        await storage.open()
        try:
            await storage.set_server_id(id_of(owner))  # so that every start of the server does the same calls
            if await storage.get_colony("deep") is None:
                await storage.add_colony(Colony(colonyid="c" * 64, name="deep"))
            now = time.time_ns()
            batch = [new_process(None, normalize_spec(spec("deep")), None, "", now + i)  # type: ignore[arg-type]
                     for i in range(n)]
            for i in range(0, n, 1000):
                await storage.add_processes(batch[i:i + 1000])
        finally:
            await storage.close()

    asyncio.run(run())


@contextmanager
def traced(storage: SqliteStorage) -> Iterator[list[str]]:
    """Every SQL statement the server runs meanwhile (SQLite's trace callback, on its one connection)."""
    statements: list[str] = []
    storage.db.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        storage.db.set_trace_callback(None)


def test_a_scrape_issues_no_query_at_any_queue_depth(tmp_path: Path) -> None:
    db = tmp_path / "deep.db"
    owner = generate_prvkey()
    pages: dict[int, tuple[int, int]] = {}
    for total in (10, 10_000):
        add_waiting(db, total - (10 if total > 10 else 0), owner)
        with inprocess_server(db, owner) as (port, storage):
            with traced(storage) as statements:
                r = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                              timeout=10)
            assert r.status_code == 200
            assert statements == []
            s = parse(r.text)
            assert v(s, "colonies_server_processes_waiting") == total
            assert v(s, "colonies_processes", colony="deep", executortype="test", state="waiting") == total
            pages[total] = (len(s), len(r.content))
            # the trace does see statements: the COUNT queries of getstatisticsmsg, for one
            with traced(storage) as statements, Client("127.0.0.1", port, prvkey=owner) as admin:
                assert admin.statistics().waitingprocesses == total
            assert any("count(*)" in st for st in statements)
    # the same series at both depths, and the same size but for the digits of two counts
    assert pages[10][0] == pages[10_000][0]
    assert abs(pages[10][1] - pages[10_000][1]) < 200


# -- two PostgreSQL replicas ------------------------------------------------------------------------------------
def test_two_postgres_replicas_follow_each_other(tmp_path: Path, pg_database: PgDatabase) -> None:
    replicas: list[ServerProc] = []
    try:
        for i in range(2):
            d = tmp_path / f"r{i}"
            d.mkdir()
            env = {**pg_database.server_env(), "COLONIES_METRICS": "true", "COLONIES_METRICS_TOKEN": TOKEN,
                   "COLONIES_NODE_NAME": f"r{i}"}
            if replicas:
                env["COLONIES_SERVER_ID"] = id_of(replicas[0].server_prvkey)
            srv = make_server(d, env)
            if replicas:
                srv.server_prvkey = replicas[0].server_prvkey
            replicas.append(srv)
            srv.start()
        a, b = replicas
        colony = setup_colony(a, "pg")  # on replica a
        with b.client(colony.user_prvkey) as user_b, a.client(colony.executor_prvkey) as ex_a, \
                b.client(colony.executor_prvkey) as ex_b:
            ids = [user_b.submit(spec("pg")).processid for _ in range(5)]  # on b
            assert ex_a.assign("pg", timeout=5).processid == ids[0]  # on a
            ex_b.close(ids[0], ["ok"])  # on b
            assert ex_b.assign("pg", timeout=5).processid == ids[1]
            ex_a.fail(ids[1], ["no"])
            user_b.cancel(ids[2])
            ex_a.assign("pg", timeout=5)  # ids[3] running
            user_b.submit_workflow(WorkflowSpec(colonyname="pg", functionspecs=[node("pg", "x"),
                                                                                node("pg", "y", ["x"])]))
        gone = setup_colony(b, "gone")
        with a.client(gone.user_prvkey) as user_a:
            user_a.submit(spec("gone"))
        with a.client(a.server_prvkey) as admin:
            admin.remove_colony("gone")  # on a; the process of it was submitted on a, the colony added on b
            stats = admin.statistics()
        expect = expected_original(stats)
        assert expect["colonies_server_processes_waiting"] == 1 + 2 and expect["colonies_server_colonies"] == 1

        def agreeing(srv: ServerProc) -> Samples | None:
            got = scrape(srv)
            return got if original(got) == expect else None

        for srv in replicas:
            name = srv.env["COLONIES_NODE_NAME"]
            s = poll(lambda srv=srv: agreeing(srv), 10, f"{name} follows the other replica")  # type: ignore[misc]
            assert by_label(s, "colonies_processes", colony="pg") == {
                ("test", "waiting"): 3, ("test", "running"): 1, ("test", "successful"): 1, ("test", "failed"): 1,
                ("test", "cancelled"): 1}
            assert by_label(s, "colonies_workflows", colony="pg")[("waiting",)] == 1
            assert v(s, "colonies_leader", node=name) == 1  # no etcd: each replica leads itself
            assert v(s, "colonies_metrics_seeds_total") == 1  # no change was lost on the way
            assert v(s, "colonies_executor_last_seen_seconds_bucket", le="60.0") == 1  # the executor, seen on both

        a.stop()  # restarted: seeded from the database again
        a.start()
        assert original(scrape(a)) == expect
    finally:
        for srv in replicas:
            srv.stop()


def test_the_last_seen_age_follows_the_clock() -> None:
    from colonies.metrics import Page, _last_seen
    from colonies.storage.tally import EXECUTOR, Tally

    t = Tally()
    t.finish_seed([(EXECUTOR, "c", "t", 1, 1, "a"), (EXECUTOR, "c", "t", 1, 1, "b"), (EXECUTOR, "c", "t", 0, 1, "n")],
                  {"a": 100 * NS, "b": 1000 * NS})
    page = Page()
    _last_seen(page, t, 1005 * NS)
    s = parse(page.text())
    got = {dict(labels)["le"]: n for (name, labels), n in s.items() if name.endswith("_bucket")}
    assert got["10.0"] == 1 and got["3600.0"] == 2 and got["+Inf"] == 3  # "n" never called: only in +Inf
    assert v(s, "colonies_executor_last_seen_seconds_gcount") == 3
    assert v(s, "colonies_executor_last_seen_seconds_gsum") == 5 + 905


def test_label_values_are_escaped() -> None:
    from colonies.metrics import Page, labels

    page = Page()
    page.family("x", "gauge", "help")
    page.sample("x", labels(colony='a"b\\c\nd'), 1)
    assert v(parse(page.text()), "x", colony='a"b\\c\nd') == 1
