"""The storage contract (colonies/storage/base.py), run against every backend.

`backend` yields an opened Storage: SQLite (a real file) always runs; PostgreSQL runs on a fresh database
per test, and skips on a laptop without PostgreSQL but fails in CI (conftest.need_service).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonies.blueprints import blueprint, blueprint_definition, cron_name
from colonies.client.core import func_spec
from colonies.clock import NS, to_datetime
from colonies.errors import AlreadyExists, Conflict, Forbidden, IdInUse, InUse, NotFound
from colonies.model import (
    Blueprint,
    BlueprintDefinition,
    BlueprintHistory,
    Colony,
    Cron,
    Executor,
    ExecutorState,
    File,
    FunctionSpec,
    Location,
    Process,
    ProcessGraph,
    ProcessState,
    Ref,
    S3Object,
    Snapshot,
    User,
)
from colonies.server.handlers_processes import new_process, normalize_spec
from colonies.storage.base import BlueprintWrite, ClaimRequest, GraphMember, ProcessQuery, Storage
from colonies.storage.sqlite import SqliteStorage
from tests.conftest import PgDatabase

T0 = 1_700_000_000 * NS
COLONY, TYPE = "c1", "t"


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store: Storage
    if request.param == "postgresql":
        from colonies.storage.postgres import PostgresStorage

        db: PgDatabase = request.getfixturevalue("pg_database")
        store = PostgresStorage(dsn=db.dsn)
    else:
        store = SqliteStorage(str(tmp_path / "contract.db"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def hexid(n: int) -> str:
    return f"{n:064x}"


def proc(now: int = T0, **kw: Any) -> Process:
    spec: FunctionSpec = func_spec("f", kw.pop("colony", COLONY), kw.pop("executortype", TYPE), **kw)
    return new_process(None, normalize_spec(spec), None, "", now)  # type: ignore[arg-type]


def req(name: str = "e1", executor_type: str = TYPE, location: str = "", colony: str = COLONY,
        executor_id: str | None = None) -> ClaimRequest:
    return ClaimRequest(colony=colony, executor_id=executor_id or f"id-{name}", executor_name=name,
                        executor_type=executor_type, location=location)


class TestStorageContract:
    async def test_colonies(self, backend: Storage) -> None:
        await backend.add_colony(Colony(colonyid=hexid(1), name=COLONY))
        assert await backend.get_colony(COLONY) == Colony(colonyid=hexid(1), name=COLONY)
        with pytest.raises(Conflict):
            await backend.add_colony(Colony(colonyid=hexid(2), name=COLONY))
        await backend.add_colony(Colony(colonyid=hexid(3), name="c2"))
        assert [c.name for c in await backend.list_colonies()] == [COLONY, "c2"]
        assert await backend.get_colony("nope") is None
        await backend.set_paused(COLONY, True)
        assert await backend.is_paused(COLONY) and not await backend.is_paused("c2")

    async def test_server_id(self, backend: Storage) -> None:
        assert await backend.get_server_id() == ""
        await backend.set_server_id(hexid(9))
        await backend.set_server_id(hexid(10))
        assert await backend.get_server_id() == hexid(10)

    async def test_executors(self, backend: Storage) -> None:
        e = Executor(executorid=hexid(5), executortype=TYPE, executorname="e1", colonyname=COLONY)
        await backend.add_executor(e)
        with pytest.raises(Conflict):
            await backend.add_executor(Executor(executorid=hexid(6), executortype=TYPE, executorname="e1",
                                                colonyname=COLONY))
        assert (await backend.get_executor(COLONY, "e1")).executorid == hexid(5)  # type: ignore[union-attr]
        assert (await backend.get_executor_by_id(hexid(5))).executorname == "e1"  # type: ignore[union-attr]
        assert await backend.get_colony_executor_by_id("other", hexid(5)) is None
        assert await backend.set_executor_state(COLONY, "e1", ExecutorState.APPROVED)
        assert not await backend.set_executor_state(COLONY, "ghost", ExecutorState.APPROVED)
        assert [x.state for x in await backend.list_executors(COLONY)] == [ExecutorState.APPROVED]
        await backend.remove_executor(COLONY, "e1", T0)
        assert (await backend.get_executor(COLONY, "e1")).state == ExecutorState.UNREGISTERED  # type: ignore[union-attr]

    async def test_users(self, backend: Storage) -> None:
        await backend.add_user(User(colonyname=COLONY, userid=hexid(7), name="u"))
        assert (await backend.get_user(COLONY, "u")).userid == hexid(7)  # type: ignore[union-attr]
        assert (await backend.get_user_by_id(COLONY, hexid(7))).name == "u"  # type: ignore[union-attr]
        assert await backend.get_user_by_id("other", hexid(7)) is None
        with pytest.raises(Conflict):
            await backend.add_user(User(colonyname=COLONY, userid=hexid(8), name="u"))
        await backend.change_user_id(COLONY, hexid(7), hexid(11))
        assert await backend.get_user_by_id(COLONY, hexid(11)) is not None
        assert await backend.remove_user(COLONY, "u")
        assert not await backend.remove_user(COLONY, "u")
        assert await backend.list_users(COLONY) == []

    async def test_claim_orders_by_prioritytime(self, backend: Storage) -> None:
        a = proc(T0)
        b = proc(T0 + 1)
        high = proc(T0 + 2, priority=3)
        c = proc(T0 + 3)
        await backend.add_processes([a, b, high, c])
        order = [(await backend.claim(req(), T0 + 10)) for _ in range(4)]
        assert [p.processid for p in order if p] == [high.processid, a.processid, b.processid, c.processid]
        assert all(p and p.state == ProcessState.RUNNING and p.isassigned for p in order)
        assert await backend.claim(req(), T0 + 10) is None

    async def test_claim_honours_type_names_and_location(self, backend: Storage) -> None:
        other_type = proc(T0, executortype="gpu")
        for_e2 = proc(T0 + 1, executornames=["e2"])
        at_lab = proc(T0 + 2)
        at_lab.spec.conditions.locationname = "Lab"
        await backend.add_processes([other_type, for_e2, at_lab])
        assert await backend.claim(req("e1", location="home"), T0) is None
        got = await backend.claim(req("e1", location="lab"), T0)  # location compares case-insensitively
        assert got is not None and got.processid == at_lab.processid
        got = await backend.claim(req("e2"), T0)
        assert got is not None and got.processid == for_e2.processid
        assert await backend.claim(req("e1", colony="c2", executor_type="gpu"), T0) is None
        got = await backend.claim(req("e9", executor_type="gpu"), T0)
        assert got is not None and got.processid == other_type.processid

    async def test_finish_is_compare_and_set(self, backend: Storage) -> None:
        p = proc()
        await backend.add_processes([p])
        claimed = await backend.claim(req("e1", executor_id="exe-1"), T0)
        assert claimed is not None
        assert await backend.finish(p.processid, "exe-2", True, ["x"], None, T0 + NS) is None
        done = await backend.finish(p.processid, "exe-1", True, ["out"], None, T0 + NS)
        assert done is not None and done.process is not None
        assert done.process.state == ProcessState.SUCCESS and done.process.output == ["out"]
        assert await backend.finish(p.processid, "exe-1", False, None, ["late"], T0 + 2 * NS) is None
        q = proc()
        await backend.add_processes([q])
        await backend.claim(req("e1", executor_id="exe-1"), T0)
        failed = await backend.finish(q.processid, "exe-1", False, None, ["boom"], T0 + NS)
        assert failed is not None and failed.process is not None and failed.process.errors == ["boom"]

    async def test_expire_requeues_then_fails(self, backend: Storage) -> None:
        p = proc(maxexectime=10, maxretries=1)
        await backend.add_processes([p])
        await backend.claim(req(), T0)
        assert await backend.expire(T0 + 5 * NS) == []
        changed = await backend.expire(T0 + 11 * NS)
        assert [(x.processid, x.state, x.retries, x.isassigned) for x in changed] == \
            [(p.processid, ProcessState.WAITING, 1, False)]
        again = await backend.get_process(p.processid)
        assert again is not None and again.prioritytime == p.prioritytime and again.assignedexecutorid == ""
        await backend.claim(req(), T0 + 20 * NS)
        changed = await backend.expire(T0 + 31 * NS)
        assert [(x.state, x.errors) for x in changed] == \
            [(ProcessState.FAILED, ["Maximum execution time limit exceeded"])]

    async def test_expire_maxretries_zero_fails_first_time(self, backend: Storage) -> None:
        p = proc(maxexectime=1, maxretries=0)
        await backend.add_processes([p])
        await backend.claim(req(), T0)
        assert [x.state for x in await backend.expire(T0 + 2 * NS)] == [ProcessState.FAILED]

    async def test_no_limit_never_expires(self, backend: Storage) -> None:
        p = proc(maxexectime=-1, maxwaittime=-1)
        zero = proc(maxexectime=0, maxwaittime=0)
        await backend.add_processes([p, zero])
        await backend.claim(req(), T0)
        assert await backend.expire(T0 + 10**6 * NS) == []

    async def test_expire_wait_deadline(self, backend: Storage) -> None:
        p = proc(maxwaittime=5)
        await backend.add_processes([p])
        assert await backend.expire(T0 + 4 * NS) == []
        changed = await backend.expire(T0 + 6 * NS)
        assert [(x.state, x.errors) for x in changed] == \
            [(ProcessState.FAILED, ["Maximum waiting time limit exceeded"])]
        assert await backend.claim(req(), T0 + 7 * NS) is None

    async def test_cancel_and_list(self, backend: Storage) -> None:
        a, b = proc(T0), proc(T0 + 1)
        await backend.add_processes([a, b])
        assert (await backend.cancel(a.processid, "x", T0 + 2)) is not None
        assert await backend.cancel(a.processid, "x", T0 + 3) is None
        waiting = await backend.list_processes(ProcessQuery(colony=COLONY, state=ProcessState.WAITING))
        assert [p.processid for p in waiting] == [b.processid]
        cancelled = await backend.list_processes(ProcessQuery(colony=COLONY, state=ProcessState.CANCELLED))
        assert [p.processid for p in cancelled] == [a.processid]
        got = await backend.claim(req(), T0 + 4)
        assert got is not None and got.processid == b.processid

    async def test_remove_colony_cascades(self, backend: Storage) -> None:
        await backend.add_colony(Colony(colonyid=hexid(1), name=COLONY))
        await backend.add_colony(Colony(colonyid=hexid(2), name="keep"))
        await backend.add_executor(Executor(executorid=hexid(3), executortype=TYPE, executorname="e1",
                                            colonyname=COLONY))
        await backend.add_user(User(colonyname=COLONY, userid=hexid(4), name="u"))
        p, kept = proc(), proc(colony="keep")
        await backend.add_processes([p, kept])
        await backend.remove_colony(COLONY)
        assert await backend.get_colony(COLONY) is None
        assert await backend.get_executor(COLONY, "e1") is None
        assert await backend.get_user(COLONY, "u") is None
        assert await backend.get_process(p.processid) is None
        assert await backend.claim(req(), T0) is None
        assert await backend.get_process(kept.processid) is not None
        assert await backend.get_colony("keep") is not None

    async def test_graph_members(self, backend: Storage) -> None:
        """The layout's narrow read: the graph's processes in `processids` order, nothing of others."""
        a, b, c = (proc(T0 + i, nodename=n) for i, n in enumerate("abc"))
        a.children, b.parents, c.parents = [b.processid, c.processid], [a.processid], [a.processid]
        for p in (a, b, c):
            p.processgraphid = hexid(7)
        graph = ProcessGraph(processgraphid=hexid(7), colonyname=COLONY, rootprocessids=[a.processid],
                             submissiontime=to_datetime(T0))
        await backend.add_processes([a, b, c, proc(T0)], graph)
        assert await backend.graph_members(hexid(7)) == [
            GraphMember(a.processid, "a", ProcessState.WAITING, [], [b.processid, c.processid]),
            GraphMember(b.processid, "b", ProcessState.WAITING, [a.processid], []),
            GraphMember(c.processid, "c", ProcessState.WAITING, [a.processid], []),
        ]
        assert await backend.graph_members(hexid(8)) == []
        [listed] = await backend.list_graphs(COLONY, -1, 10)
        assert listed.processids == [a.processid, b.processid, c.processid]
        assert (listed.nodes, listed.edges) == ([], [])

    # -- issue 10: revocation, unique executor ids, id squatting, the attempt fence ------------------------
    async def test_claim_approved_only_refuses_a_revoked_executor(self, backend: Storage) -> None:
        await backend.add_executor(Executor(executorid=hexid(5), executortype=TYPE, executorname="e1",
                                            colonyname=COLONY))
        strict = ClaimRequest(colony=COLONY, executor_id=hexid(5), executor_name="e1", executor_type=TYPE,
                              approved_only=True)
        first, second = proc(T0), proc(T0 + 1)
        await backend.add_processes([first, second])
        with pytest.raises(Forbidden):  # PENDING
            await backend.claim(strict, T0)
        await backend.set_executor_state(COLONY, "e1", ExecutorState.APPROVED)
        got = await backend.claim(strict, T0)
        assert got is not None and got.processid == first.processid
        assert await backend.reject_executor(COLONY, "e1", T0 + 5) == [first.processid]  # re-queued
        with pytest.raises(Forbidden):
            await backend.claim(strict, T0)
        for p in (first, second):
            stored = await backend.get_process(p.processid)
            assert stored is not None and stored.state == ProcessState.WAITING and stored.retries == 0
        assert await backend.reject_executor(COLONY, "ghost", T0) is None

    async def test_executor_ids_are_unique_across_colonies(self, backend: Storage) -> None:
        await backend.add_executor(Executor(executorid=hexid(5), executortype=TYPE, executorname="e1",
                                            colonyname=COLONY))
        for colony, name in (("c2", "e1"), (COLONY, "e2")):
            with pytest.raises(IdInUse):
                await backend.add_executor(Executor(executorid=hexid(5), executortype=TYPE, executorname=name,
                                                    colonyname=colony))
        await backend.add_executor(Executor(executorid=hexid(5), executortype="u", executorname="e1",
                                            colonyname=COLONY), replace=True)  # re-registering itself
        await backend.remove_executor(COLONY, "e1", T0)  # UNREGISTERED ids may be used again
        await backend.add_executor(Executor(executorid=hexid(5), executortype=TYPE, executorname="e1",
                                            colonyname="c2"))

    async def test_change_ids_refuse_an_id_in_use(self, backend: Storage) -> None:
        await backend.add_executor(Executor(executorid=hexid(5), executortype=TYPE, executorname="e1",
                                            colonyname=COLONY))
        await backend.add_executor(Executor(executorid=hexid(6), executortype=TYPE, executorname="e2",
                                            colonyname="c2"))
        await backend.add_user(User(colonyname=COLONY, userid=hexid(7), name="u"))
        await backend.add_user(User(colonyname=COLONY, userid=hexid(8), name="v"))
        for taken in (hexid(6), hexid(7)):
            with pytest.raises(IdInUse):
                await backend.change_executor_id(COLONY, hexid(5), taken)
        for taken in (hexid(5), hexid(8)):
            with pytest.raises(IdInUse):
                await backend.change_user_id(COLONY, hexid(7), taken)
        assert await backend.identity_in_use(hexid(5), COLONY) and await backend.identity_in_use(hexid(8), COLONY)
        assert not await backend.identity_in_use(hexid(6), COLONY) and await backend.identity_in_use(hexid(6), None)
        await backend.change_executor_id(COLONY, hexid(5), hexid(9))
        await backend.change_user_id(COLONY, hexid(7), hexid(10))
        assert (await backend.get_executor(COLONY, "e1")).executorid == hexid(9)  # type: ignore[union-attr]
        assert (await backend.get_user(COLONY, "u")).userid == hexid(10)  # type: ignore[union-attr]

    async def test_finish_and_set_output_fence_the_attempt(self, backend: Storage) -> None:
        p = proc(T0)
        p.spec.maxexectime, p.spec.maxretries = 1, 5
        await backend.add_processes([p])
        await backend.claim(req(executor_id="exe-1"), T0)
        await backend.expire(T0 + 3 * NS)  # re-queued: retries 1
        again = await backend.claim(req(executor_id="exe-1"), T0 + 3 * NS)
        assert again is not None and again.retries == 1
        assert not await backend.set_output(p.processid, "exe-1", ["late"], attempt=0)
        assert await backend.finish(p.processid, "exe-1", True, ["late"], None, T0 + 4 * NS, attempt=0) is None
        assert await backend.set_output(p.processid, "exe-1", ["now"], attempt=1)
        done = await backend.finish(p.processid, "exe-1", False, None, ["boom"], T0 + 4 * NS, attempt=1)
        assert done is not None and done.process is not None and done.process.state == ProcessState.FAILED


# -- ColonyFS metadata ------------------------------------------------------------------------------------------
def fsfile(n: int, label: str, name: str, colony: str = COLONY) -> File:
    ref = Ref(protocol="s3", s3object=S3Object(server="127.0.0.1", port=9000, region="r", object=f"obj{n}",
                                               bucket="b"))
    return File(fileid=hexid(1000 + n), colonyname=colony, label=label, name=name, size=n, checksum=f"{n:064x}",
                checksumalg="SHA256", ref=ref)


def snap(n: int, label: str, name: str, colony: str = COLONY) -> Snapshot:
    return Snapshot(snapshotid=hexid(2000 + n), colonyname=colony, label=label, name=name)


class TestFilesContract:
    async def test_revisions_share_one_global_sequence(self, backend: Storage) -> None:
        x1 = await backend.add_file(fsfile(1, "/a", "x"), T0)
        other = await backend.add_file(fsfile(2, "/a", "x", colony="c2"), T0 + 1)
        y = await backend.add_file(fsfile(3, "/a", "y"), T0 + 2)
        x2 = await backend.add_file(fsfile(4, "/a", "x"), T0 + 3)
        assert x1.sequencenr < other.sequencenr < y.sequencenr < x2.sequencenr
        assert x2.added == to_datetime(T0 + 3) and x2.ref == fsfile(4, "/a", "x").ref and x2.size == 4
        assert await backend.get_file(COLONY, x1.fileid) == x1
        assert await backend.get_file("c2", x1.fileid) is None
        assert await backend.file_revisions(COLONY, "/a", "x", latest=True) == [x2]
        assert await backend.file_revisions(COLONY, "/a", "x", latest=False) == [x2, x1]
        assert await backend.file_revisions(COLONY, "/a", "nope", latest=True) == []
        data = await backend.list_file_data(COLONY, "/a")
        assert [(d.name, d.size, d.checksum, d.s3filename) for d in data] == [
            ("x", 4, x2.checksum, "obj4"), ("y", 3, y.checksum, "obj3")]
        assert await backend.list_file_data(COLONY, "/a/sub") == []

    async def test_labels_exact_and_prefix(self, backend: Storage) -> None:
        for n, label in enumerate(["/a", "/a", "/a/b", "/ab", "/aXb", "/x/y", "/c"]):
            await backend.add_file(fsfile(n, label, f"f{n}"), T0 + n)
        await backend.add_file(fsfile(9, "/a", "f0"), T0 + 9)  # a second revision counts too
        await backend.add_file(fsfile(10, "/a", "f0", colony="c2"), T0 + 10)

        def named(labels: list[Any]) -> list[tuple[str, int]]:
            return [(lb.name, lb.files) for lb in labels]

        everything = [("/a", 3), ("/a/b", 1), ("/aXb", 1), ("/ab", 1), ("/c", 1), ("/x/y", 1)]
        assert named(await backend.file_labels(COLONY)) == everything
        assert named(await backend.file_labels(COLONY, "/a")) == [("/a", 3), ("/a/b", 1), ("/aXb", 1), ("/ab", 1)]
        assert named(await backend.file_labels(COLONY, "/a", exact=True)) == [("/a", 3), ("/a/b", 1)]
        assert named(await backend.file_labels(COLONY, "/a_")) == []  # no LIKE wildcards
        assert named(await backend.file_labels(COLONY, "/a/b", exact=True)) == [("/a/b", 1)]
        assert await backend.file_labels(COLONY, "/x", exact=True) == []  # /x itself holds no file
        assert await backend.file_labels(COLONY, "/zz") == []
        assert named(await backend.file_labels("c2")) == [("/a", 1)]

    async def test_snapshot_freezes_the_newest_revisions_under_a_label(self, backend: Storage) -> None:
        await backend.add_file(fsfile(1, "/d", "f"), T0)
        f2 = await backend.add_file(fsfile(2, "/d", "f"), T0 + 1)
        g = await backend.add_file(fsfile(3, "/d/e", "g"), T0 + 2)
        await backend.add_file(fsfile(4, "/de", "h"), T0 + 3)  # not under /d
        await backend.add_file(fsfile(5, "/d", "f", colony="c2"), T0 + 4)
        s = await backend.create_snapshot(snap(1, "/d", "s1"), T0 + 5)
        assert s.fileids == [f2.fileid, g.fileid] and s.added == to_datetime(T0 + 5)
        await backend.add_file(fsfile(6, "/d", "f"), T0 + 6)  # a later revision does not change it
        assert await backend.get_snapshot(COLONY, snapshot_id=s.snapshotid) == s
        assert await backend.get_snapshot(COLONY, name="s1") == s
        assert await backend.get_snapshot("c2", name="s1") is None
        with pytest.raises(AlreadyExists):
            await backend.create_snapshot(snap(2, "/d/e", "s1"), T0 + 7)
        other = await backend.create_snapshot(snap(3, "/d", "s1", colony="c2"), T0 + 7)  # names are per colony
        assert len(other.fileids) == 1
        empty = await backend.create_snapshot(snap(4, "/nothing", "s2"), T0 + 8)
        assert empty.fileids == []
        assert [x.name for x in await backend.list_snapshots(COLONY)] == ["s2", "s1"]  # newest first

    async def test_removal_by_id_and_by_name(self, backend: Storage) -> None:
        r1 = await backend.add_file(fsfile(1, "/r", "f"), T0)
        r2 = await backend.add_file(fsfile(2, "/r", "f"), T0 + 1)
        keep = await backend.add_file(fsfile(3, "/r", "g"), T0 + 2)
        assert not await backend.remove_file("c2", r2.fileid)
        assert await backend.remove_file(COLONY, r2.fileid)
        assert not await backend.remove_file(COLONY, r2.fileid)
        assert await backend.file_revisions(COLONY, "/r", "f", latest=True) == [r1]  # the older one is back
        await backend.add_file(fsfile(4, "/r", "f"), T0 + 3)
        assert await backend.remove_file_revisions(COLONY, "/r", "f") == 2
        assert await backend.remove_file_revisions(COLONY, "/r", "f") == 0
        assert await backend.file_revisions(COLONY, "/r", "g", latest=False) == [keep]
        for n in range(3):
            await backend.create_snapshot(snap(n, "/r", f"s{n}"), T0 + n)
        assert not await backend.remove_snapshot(COLONY, snapshot_id=hexid(9999))
        assert await backend.remove_snapshot(COLONY, snapshot_id=hexid(2000))
        assert await backend.remove_snapshot(COLONY, name="s1")
        assert not await backend.remove_snapshot(COLONY, name="s1")
        assert await backend.remove_all_snapshots(COLONY) == 1
        assert await backend.list_snapshots(COLONY) == []

    async def test_removing_a_colony_removes_its_files_and_snapshots(self, backend: Storage) -> None:
        await backend.add_colony(Colony(colonyid=hexid(1), name=COLONY))
        await backend.add_colony(Colony(colonyid=hexid(2), name="keep"))
        gone = await backend.add_file(fsfile(1, "/a", "f"), T0)
        kept = await backend.add_file(fsfile(2, "/a", "f", colony="keep"), T0)
        await backend.create_snapshot(snap(1, "/a", "s"), T0)
        await backend.create_snapshot(snap(2, "/a", "s", colony="keep"), T0)
        await backend.remove_colony(COLONY)
        assert await backend.get_file(COLONY, gone.fileid) is None
        assert await backend.file_labels(COLONY) == [] and await backend.list_snapshots(COLONY) == []
        await backend.add_colony(Colony(colonyid=hexid(3), name=COLONY))  # a re-created colony starts empty
        assert await backend.file_labels(COLONY) == [] and await backend.get_snapshot(COLONY, name="s") is None
        assert await backend.get_file("keep", kept.fileid) == kept
        assert len(await backend.list_snapshots("keep")) == 1


# -- locations ----------------------------------------------------------------------------------------------------
def site(n: int, name: str, colony: str = COLONY, long: float = 0.0, lat: float = 0.0) -> Location:
    return Location(locationid=hexid(3000 + n), colonyname=colony, name=name, description=f"site {n}",
                    long=long, lat=lat)


class TestLocationsContract:
    async def test_add_get_list_remove(self, backend: Storage) -> None:
        # Coordinates round-trip exactly as doubles (no rounding through text or REAL4).
        lumi = await backend.add_location(site(1, "lumi", long=27.6324735, lat=64.2220316))
        assert lumi == site(1, "lumi", long=27.6324735, lat=64.2220316)
        await backend.add_location(site(2, "edge", long=-180.0, lat=-90.0))
        await backend.add_location(site(3, "Cloud", long=180.0, lat=90.0))
        await backend.add_location(site(4, "lumi", colony="c2"))  # names are per colony
        assert await backend.get_location(COLONY, "lumi") == lumi
        assert await backend.get_location(COLONY, "LUMI") is None  # exact names, as the original
        assert await backend.get_location("c2", "edge") is None
        listed = await backend.list_locations(COLONY)
        assert [x.name for x in listed] == ["Cloud", "edge", "lumi"]  # by name, byte order on both backends
        assert (listed[0].long, listed[0].lat, listed[1].long, listed[1].lat) == (180.0, 90.0, -180.0, -90.0)
        assert await backend.list_locations("nobody") == []

        assert await backend.remove_location(COLONY, "lumi")
        assert not await backend.remove_location(COLONY, "lumi")
        assert await backend.get_location(COLONY, "lumi") is None
        assert await backend.get_location("c2", "lumi") is not None
        again = await backend.add_location(site(5, "lumi"))  # a removed name may be added again
        assert again.locationid == hexid(3005)

    async def test_a_duplicate_name_is_refused(self, backend: Storage) -> None:
        await backend.add_location(site(1, "hpc"))
        with pytest.raises(AlreadyExists, match="hpc"):
            await backend.add_location(site(2, "hpc"))
        assert [x.locationid for x in await backend.list_locations(COLONY)] == [hexid(3001)]

    async def test_removing_a_colony_removes_its_locations(self, backend: Storage) -> None:
        await backend.add_colony(Colony(colonyid=hexid(1), name=COLONY))
        await backend.add_colony(Colony(colonyid=hexid(2), name="keep"))
        await backend.add_location(site(1, "hpc"))
        kept = await backend.add_location(site(2, "hpc", colony="keep"))
        await backend.remove_colony(COLONY)
        await backend.add_colony(Colony(colonyid=hexid(3), name=COLONY))  # a re-created colony starts empty
        assert await backend.list_locations(COLONY) == []
        await backend.add_location(site(3, "hpc"))  # the name is free again
        assert await backend.list_locations("keep") == [kept]


# -- blueprints ---------------------------------------------------------------------------------------------------
def definition(n: int, kind: str, colony: str = COLONY, name: str = "") -> BlueprintDefinition:
    d = blueprint_definition(colony, kind, "reconciler", name=name, schema={"type": "object"})
    d.blueprintdefinitionid = hexid(4000 + n)
    return d


def bprint(n: int, name: str, kind: str = "Deploy", location: str = "", colony: str = COLONY,
           gen: int = 1, **spec: Any) -> Blueprint:
    bp = blueprint(colony, kind, name, spec, location, labels={"app": name})
    bp.blueprintid, bp.metadata.generation = hexid(5000 + n), gen
    bp.metadata.created_at = bp.metadata.updated_at = to_datetime(T0 + n)
    return bp


def recon_cron(n: int, kind: str = "Deploy", location: str = "", colony: str = COLONY) -> Cron:
    return Cron(cronid=hexid(6000 + n), colonyname=colony, name=cron_name(kind, location), interval=60,
                workflowspec='{"colonyname": "c1", "functionspecs": []}', waitforprevprocessgraph=True)


def history(n: int, bp: Blueprint, change: str = "create") -> BlueprintHistory:
    return BlueprintHistory(historyid=hexid(7000 + n), blueprintid=bp.blueprintid, kind=bp.kind,
                            namespace=bp.metadata.colonyname, name=bp.metadata.name,
                            generation=bp.metadata.generation, spec=bp.spec, timestamp=to_datetime(T0 + n),
                            changedby=hexid(9), changetype=change)


def with_cron(n: int, bp: Blueprint, hist: BlueprintHistory | None = None, loc: Location | None = None
              ) -> BlueprintWrite:
    location = bp.metadata.locationname
    return BlueprintWrite(history=hist, location=loc,
                          crons={location: recon_cron(n, bp.kind, location, bp.metadata.colonyname)})


async def cron_names(backend: Storage, colony: str = COLONY) -> list[str]:
    return [c.name for c in await backend.list_crons(colony, 100)]


class TestBlueprintsContract:
    async def test_definitions(self, backend: Storage) -> None:
        d = definition(1, "Deploy")
        await backend.add_blueprint_definition(d)
        await backend.add_blueprint_definition(definition(2, "Volume"))
        await backend.add_blueprint_definition(definition(3, "Deploy", colony="c2"))  # per colony
        assert await backend.get_blueprint_definition(COLONY, d.metadata.name) == d
        assert await backend.get_blueprint_definition(COLONY, kind="Deploy") == d
        assert await backend.get_blueprint_definition(COLONY, kind="deploy") is None  # exact kinds
        assert await backend.get_blueprint_definition("c3", kind="Deploy") is None
        assert [x.spec.names.kind for x in await backend.list_blueprint_definitions(COLONY)] == ["Deploy", "Volume"]
        with pytest.raises(AlreadyExists, match="named"):
            await backend.add_blueprint_definition(definition(4, "Other", name=d.metadata.name))
        with pytest.raises(AlreadyExists, match="kind Deploy"):
            await backend.add_blueprint_definition(definition(5, "Deploy", name="another"))
        assert await backend.remove_blueprint_definition(COLONY, d.metadata.name)
        assert not await backend.remove_blueprint_definition(COLONY, d.metadata.name)
        assert await backend.get_blueprint_definition("c2", kind="Deploy") is not None

    async def test_add_get_list_and_the_cron_follows_the_blueprints(self, backend: Storage) -> None:
        await backend.add_blueprint_definition(definition(1, "Deploy"))
        await backend.add_blueprint_definition(definition(2, "Volume"))
        a = bprint(1, "a", location="hpc", replicas=2, image={"name": "x", "tags": [1, 2.5, None, True]})
        site = Location(locationid=hexid(3001), colonyname=COLONY, name="hpc", description="auto")
        await backend.add_blueprint(a, with_cron(1, a, history(1, a), site))
        assert await backend.get_blueprint(COLONY, "a") == a
        assert await backend.get_blueprint("", blueprint_id=a.blueprintid) == a
        assert await backend.get_location(COLONY, "hpc") == site
        assert await cron_names(backend) == ["reconcile-Deploy-hpc"]

        b = bprint(2, "b", location="hpc")
        await backend.add_blueprint(b, with_cron(2, b, loc=Location(locationid=hexid(3002), colonyname=COLONY,
                                                                    name="hpc", description="second")))
        assert (await backend.get_location(COLONY, "hpc")) == site  # an existing location is kept
        c = bprint(3, "C", kind="Volume")
        await backend.add_blueprint(c, with_cron(3, c))
        assert sorted(await cron_names(backend)) == ["reconcile-Deploy-hpc", "reconcile-Volume"]
        assert [x.metadata.name for x in await backend.list_blueprints(COLONY)] == ["C", "a", "b"]  # byte order
        assert [x.metadata.name for x in await backend.list_blueprints(COLONY, kind="Deploy")] == ["a", "b"]
        assert [x.metadata.name for x in await backend.list_blueprints(COLONY, location="hpc")] == ["a", "b"]
        assert await backend.list_blueprints(COLONY, kind="Volume", location="hpc") == []
        assert await backend.list_blueprints("c2") == []

        with pytest.raises(AlreadyExists, match="a"):
            await backend.add_blueprint(bprint(4, "a"), with_cron(4, bprint(4, "a")))
        with pytest.raises(NotFound, match="kind Nope"):
            await backend.add_blueprint(bprint(5, "n", kind="Nope"), BlueprintWrite())
        assert len(await backend.list_blueprints(COLONY)) == 3

        # The cron stays while one blueprint of (kind, location) is left, and goes with the last.
        assert (await backend.remove_blueprint(COLONY, "a", with_cron(6, a))) == a
        assert sorted(await cron_names(backend)) == ["reconcile-Deploy-hpc", "reconcile-Volume"]
        assert await backend.remove_blueprint(COLONY, "b", with_cron(7, b)) is not None
        assert await cron_names(backend) == ["reconcile-Volume"]
        assert await backend.remove_blueprint(COLONY, "b", with_cron(8, b)) is None
        assert await backend.blueprint_history(a.blueprintid, 10) == []  # history goes with the blueprint

    async def test_update_is_fenced_on_generation_and_keeps_status(self, backend: Storage) -> None:
        await backend.add_blueprint_definition(definition(1, "Deploy"))
        a = bprint(1, "a", replicas=1)
        await backend.add_blueprint(a, with_cron(1, a, history(1, a)))
        assert await backend.set_blueprint_status(COLONY, "a", {"ready": 1, "pods": ["p1"]})
        assert not await backend.set_blueprint_status(COLONY, "nobody", {"ready": 1})

        changed = bprint(1, "a", gen=2, replicas=3)
        assert await backend.update_blueprint(changed, 1, with_cron(2, changed, history(2, changed, "update")))
        got = await backend.get_blueprint(COLONY, "a")
        assert got is not None and got.spec == {"replicas": 3} and got.metadata.generation == 2
        assert got.status == {"ready": 1, "pods": ["p1"]}  # an update without status keeps it
        assert not await backend.update_blueprint(bprint(1, "a", gen=3), 1, BlueprintWrite())  # stale
        assert not await backend.update_blueprint(bprint(99, "ghost", gen=2), 1, BlueprintWrite())

        with_status = bprint(1, "a", gen=2, replicas=3)
        with_status.status = {"ready": 3}
        assert await backend.update_blueprint(with_status, 2, BlueprintWrite())
        got = await backend.get_blueprint(COLONY, "a")
        assert got is not None and got.status == {"ready": 3} and got.metadata.generation == 2
        assert await backend.set_blueprint_status(COLONY, "a", {})  # cleared: no status
        got = await backend.get_blueprint(COLONY, "a")
        assert got is not None and got.status is msgspec.UNSET and got.spec == {"replicas": 3}

        hist = await backend.blueprint_history(a.blueprintid, 10)
        assert [(h.generation, h.changetype) for h in hist] == [(2, "update"), (1, "create")]  # newest first
        assert await backend.blueprint_history(a.blueprintid, 1) == hist[:1]
        assert hist[0].spec == {"replicas": 3} and hist[0].changedby == hexid(9)

    async def test_moving_a_blueprint_moves_its_cron(self, backend: Storage) -> None:
        await backend.add_blueprint_definition(definition(1, "Deploy"))
        a = bprint(1, "a", location="edge")
        await backend.add_blueprint(a, with_cron(1, a))
        moved = bprint(1, "a", location="cloud", gen=2)
        write = BlueprintWrite(crons={"edge": recon_cron(2, location="edge"), "cloud": recon_cron(3, location="cloud")})
        assert await backend.update_blueprint(moved, 1, write)
        assert await cron_names(backend) == ["reconcile-Deploy-cloud"]
        assert [x.metadata.name for x in await backend.list_blueprints(COLONY, location="cloud")] == ["a"]

    async def test_a_definition_in_use_cannot_be_removed(self, backend: Storage) -> None:
        d = definition(1, "Deploy")
        await backend.add_blueprint_definition(d)
        a = bprint(1, "a")
        await backend.add_blueprint(a, with_cron(1, a))
        with pytest.raises(InUse, match="1 blueprint"):
            await backend.remove_blueprint_definition(COLONY, d.metadata.name)
        await backend.remove_blueprint(COLONY, "a", with_cron(2, a))
        assert await backend.remove_blueprint_definition(COLONY, d.metadata.name)

    async def test_an_executor_keeps_its_blueprint(self, backend: Storage) -> None:
        e = Executor(executorid=hexid(1), executortype=TYPE, executorname="managed", colonyname=COLONY,
                     blueprintid=hexid(5001), blueprintgen=7)
        await backend.add_executor(e)
        plain = Executor(executorid=hexid(2), executortype=TYPE, executorname="plain", colonyname=COLONY)
        await backend.add_executor(plain)
        got = await backend.get_executor(COLONY, "managed")
        assert got is not None and (got.blueprintid, got.blueprintgen) == (hexid(5001), 7)
        got = await backend.get_executor(COLONY, "plain")
        assert got is not None and got.blueprintid is msgspec.UNSET and got.blueprintgen is msgspec.UNSET

    async def test_removing_a_colony_removes_its_blueprints(self, backend: Storage) -> None:
        for colony_id, colony in ((1, COLONY), (2, "keep")):
            await backend.add_colony(Colony(colonyid=hexid(colony_id), name=colony))
            await backend.add_blueprint_definition(definition(colony_id, "Deploy", colony=colony))
            bp = bprint(colony_id, "a", colony=colony)
            await backend.add_blueprint(bp, with_cron(colony_id, bp, history(colony_id, bp)))
        gone = await backend.get_blueprint(COLONY, "a")
        assert gone is not None
        await backend.remove_colony(COLONY)
        await backend.add_colony(Colony(colonyid=hexid(3), name=COLONY))  # a re-created colony starts empty
        assert await backend.list_blueprints(COLONY) == [] and await backend.list_blueprint_definitions(COLONY) == []
        assert await backend.blueprint_history(gone.blueprintid, 10) == [] and await cron_names(backend) == []
        kept = await backend.get_blueprint("keep", "a")
        assert kept is not None and len(await backend.blueprint_history(kept.blueprintid, 10)) == 1
        assert len(await backend.list_blueprint_definitions("keep")) == 1
