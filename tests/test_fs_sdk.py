"""The ColonyFS SDK (colonies.fs.FileSystem) on a real server, with both object stores.

Metadata on SQLite and PostgreSQL servers; bytes in a LocalStore directory and in an S3 API server
(moto; the fixtures are tests/fs_support.py's, through conftest). pycolonies shares the bucket both ways.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from colonies.client.sync import Client
from colonies.errors import ChecksumError, ClientError, FsError
from colonies.fs import AsyncFileSystem, FileSystem
from colonies.fs.files import fetch
from colonies.fs.local import LocalStore
from colonies.fs.store import ObjectStore, store_from_env
from colonies.fs.sync import (
    TMP_PREFIX,
    LocalFile,
    RemoteFile,
    build_plan,
    clean_plan,
    label_dirs,
    normalise_label,
    under,
)
from colonies.model import File, Ref
from tests.conftest import ColonyKeys, PgDatabase, ServerProc, make_server, setup_colony

# -- the pure sync rules ------------------------------------------------------------------------------------


def test_labels_normalise_one_way() -> None:
    assert {normalise_label(x) for x in ("data", "/data", "/data/", "data/")} == {"/data"}
    assert normalise_label("") == normalise_label("/") == "/"
    assert under("/data/x", "/data") and under("/data", "/data") and not under("/database", "/data")
    assert under("/anything", "/")


def _loc(label: str, name: str, digest: str, root: Path) -> LocalFile:
    return LocalFile(label, name, root / name, 3, digest)


def _rem(label: str, name: str, digest: str, root: Path) -> RemoteFile:
    return RemoteFile(label, name, root / name, 4, digest, f"key-{name}")


@pytest.mark.parametrize("keeplocal", [True, False])
def test_plan_follows_the_original_rules(tmp_path: Path, keeplocal: bool) -> None:
    local = {"/d": {"only-local": _loc("/d", "only-local", "a", tmp_path), "same": _loc("/d", "same", "s", tmp_path),
                    "differs": _loc("/d", "differs", "l", tmp_path)},
             "/d/sub": {"x": _loc("/d/sub", "x", "x", tmp_path)}}
    remote = {"/d": {"only-remote": _rem("/d", "only-remote", "r", tmp_path), "same": _rem("/d", "same", "S", tmp_path),
                     "differs": _rem("/d", "differs", "r2", tmp_path)},
              "/d/deep/er": {"y": _rem("/d/deep/er", "y", "y", tmp_path)}}
    plan = build_plan(tmp_path, "d/", keeplocal, local, remote)
    assert plan.label == "/d" and plan.labels == ["/d", "/d/deep/er", "/d/sub"]
    assert [(f.label, f.name) for f in plan.upload] == [("/d", "only-local"), ("/d/sub", "x")]
    assert [(f.label, f.name) for f in plan.download] == [("/d", "only-remote"), ("/d/deep/er", "y")]
    # the checksum compare ignores hex case; a conflict keeps the winning side
    [conflict] = plan.conflicts
    assert conflict.name == "differs" and isinstance(conflict, LocalFile if keeplocal else RemoteFile)
    assert len(plan.uploads()) == 2 + keeplocal and len(plan.downloads()) == 2 + (not keeplocal)
    assert plan.bytes_up() == 3 * len(plan.uploads()) and not plan.empty


def test_plan_refuses_names_that_leave_the_directory(tmp_path: Path) -> None:
    with pytest.raises(FsError, match="plain file names"):
        build_plan(tmp_path, "/d", True, {}, {"/d": {"../evil": _rem("/d", "../evil", "e", tmp_path)}})
    for bad in ("/d/..", "/d/a/../../x", "/other"):
        with pytest.raises(FsError):
            label_dirs(tmp_path, "/d", [], [bad])
    assert label_dirs(tmp_path, "/d", ["", "a"], ["/d/b/c"]) == {"/d": tmp_path, "/d/a": tmp_path / "a",
                                                               "/d/b/c": tmp_path / "b" / "c"}


def test_clean_plan_names_what_the_label_does_not_hold(tmp_path: Path) -> None:
    local = {"": {"keep": tmp_path / "keep", "stray": tmp_path / "stray"},
             "known": {"k": tmp_path / "known/k", "s": tmp_path / "known/s"},
             "unknown": {}, "unknown/deeper": {"z": tmp_path / "unknown/deeper/z"}}
    remote = {"/c": {"keep"}, "/c/known": {"k"}}
    assert clean_plan(local, remote, tmp_path, "/c") == [tmp_path / "stray", tmp_path / "known/s",
                                                        tmp_path / "unknown"]


def test_fetch_refuses_a_corrupt_object_and_keeps_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    digest = store.put("k1", src)
    assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    store.path("k1").write_bytes(b"tampered")
    out = tmp_path / "out"
    out.mkdir()
    (out / "f.bin").write_bytes(b"previous")
    with pytest.raises(ChecksumError, match="does not match"):
        fetch(store, "k1", src.stat().st_size, digest, out / "f.bin")
    assert sorted(p.name for p in out.iterdir()) == ["f.bin"] and (out / "f.bin").read_bytes() == b"previous"
    with pytest.raises(ChecksumError, match="no SHA-256"):
        fetch(store, "k1", 8, "", out / "g.bin")
    assert sorted(p.name for p in out.iterdir()) == ["f.bin"]


def test_async_twin_has_every_call_with_the_same_parameters() -> None:
    public = {n for n, v in vars(FileSystem).items() if callable(v) and not n.startswith("_")}
    assert public == {n for n, v in vars(AsyncFileSystem).items() if callable(v) and not n.startswith("_")}
    for name in public:
        sync_sig = inspect.signature(getattr(FileSystem, name))
        async_fn = getattr(AsyncFileSystem, name)
        assert inspect.iscoroutinefunction(async_fn), name
        assert list(inspect.signature(async_fn).parameters) == list(sync_sig.parameters), name


# -- on a real server ---------------------------------------------------------------------------------------


@dataclass
class Rig:
    server: ServerProc
    colony: ColonyKeys
    kind: str                    # "local" or "s3"
    env: dict[str, str]          # AWS_S3_* or COLONIES_FS_DIR
    store: ObjectStore
    clients: list[Client] = field(default_factory=list)

    def client(self, prvkey: str | None = None, cls: type[Client] = Client) -> Client:
        c = cls("127.0.0.1", self.server.port, prvkey=prvkey or self.colony.executor_prvkey)
        self.clients.append(c)
        return c

    def fs(self, prvkey: str | None = None, **kw: int) -> FileSystem:
        return FileSystem(self.client(prvkey), self.colony.name, self.store, self.env, **kw)

    def corrupt(self, ref: Ref) -> None:
        if self.kind == "local":
            Path(ref.s3object.bucket, ref.s3object.object).write_bytes(b"not the bytes you stored")
        else:
            _boto(self.env).put_object(Bucket=ref.s3object.bucket, Key=ref.s3object.object, Body=b"tampered")

    def has_object(self, ref: Ref) -> bool:
        if self.kind == "local":
            return Path(ref.s3object.bucket, ref.s3object.object).is_file()
        try:
            _boto(self.env).head_object(Bucket=ref.s3object.bucket, Key=ref.s3object.object)
        except Exception:  # noqa: BLE001 - botocore's ClientError 404
            return False
        return True

    def objects(self) -> list[str]:
        if self.kind == "local":
            root = Path(self.env["COLONIES_FS_DIR"])
            return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        reply = _boto(self.env).list_objects_v2(Bucket=self.env["AWS_S3_BUCKET"])
        return sorted(o["Key"] for o in reply.get("Contents", []))


def _boto(env: Mapping[str, str]) -> Any:
    import boto3  # type: ignore[import-untyped,unused-ignore]

    tls = env.get("AWS_S3_TLS", "").lower() in ("true", "1", "yes")
    return boto3.client("s3", endpoint_url=f"http{'s' if tls else ''}://{env['AWS_S3_ENDPOINT']}",
                        aws_access_key_id=env["AWS_S3_ACCESSKEY"], aws_secret_access_key=env["AWS_S3_SECRETKEY"],
                        region_name=env.get("AWS_S3_REGION") or "us-east-1")


def _server(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> ServerProc:
    env: dict[str, str] = {}
    if backend == "postgresql":
        db: PgDatabase = request.getfixturevalue("pg_database")
        env = {**db.server_env(), "COLONIES_ETCD_ENDPOINTS": ""}
    return make_server(tmp_path, env)


def _store_env(request: pytest.FixtureRequest, kind: str) -> dict[str, str]:
    if kind == "s3":
        return dict(request.getfixturevalue("s3_server"))
    return {"COLONIES_FS_DIR": str(request.getfixturevalue("local_store_dir"))}


def _rig(request: pytest.FixtureRequest, tmp_path: Path, backend: str, kind: str) -> Iterator[Rig]:
    srv = _server(request, tmp_path, backend)
    srv.start()
    try:
        env = _store_env(request, kind)
        rig = Rig(srv, setup_colony(srv), kind, env, store_from_env(env))
        yield rig
        for c in rig.clients:
            c.close_client()
    finally:
        srv.stop()


@pytest.fixture(params=[("sqlite", "local"), ("sqlite", "s3"), ("postgresql", "local"), ("postgresql", "s3")],
                ids=lambda p: "-".join(p))
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    """Every metadata backend with every store."""
    yield from _rig(request, tmp_path, *request.param)


@pytest.fixture(params=["local", "s3"])
def store_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    """A SQLite server with each store."""
    yield from _rig(request, tmp_path, "sqlite", request.param)


@pytest.fixture
def s3_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    yield from _rig(request, tmp_path, "sqlite", "s3")


@pytest.fixture
def local_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    yield from _rig(request, tmp_path, "sqlite", "local")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".cfs"}


def test_upload_download_round_trip(rig: Rig, tmp_path: Path) -> None:
    fs = rig.fs()
    data = os.urandom(3 * (1 << 20) + 17)
    src = _write(tmp_path / "in" / "blob.bin", data)
    moved: list[int] = []
    f = fs.upload(src, "results/", progress=moved.append)
    assert (f.label, f.name, f.size, f.checksumalg) == ("/results", "blob.bin", len(data), "SHA256")
    assert f.checksum == hashlib.sha256(data).hexdigest() and f.fileid and sum(moved) == len(data)
    assert rig.has_object(f.ref) and not f.ref.s3object.secretkey and not f.ref.s3object.accesskey
    empty = fs.upload(_write(tmp_path / "in" / "empty", b""), "/results")
    # a second revision; the listing shows the newest, download takes the newest or a named revision
    f2 = fs.upload(_write(tmp_path / "in2" / "blob.bin", b"v2"), "/results")
    assert [r.fileid for r in fs.revisions("/results", "blob.bin")] == [f.fileid, f2.fileid]
    assert {fd.name: fd.checksum for fd in fs.files("results")} == {"blob.bin": f2.checksum,
                                                                     "empty": empty.checksum}
    assert [(lb.name, lb.files) for lb in fs.labels("/results", exact=True)] == [("/results", 3)]
    out = tmp_path / "out"
    assert fs.download("/results", "blob.bin", out).read_bytes() == b"v2"
    assert fs.download("/results", "", out / "old", fileid=f.fileid).read_bytes() == data
    assert fs.download("results", "empty", out).read_bytes() == b""
    assert not [p for p in out.rglob("*") if p.name.startswith(TMP_PREFIX)]
    # removing by name takes every revision's object with it
    assert fs.remove("/results", "blob.bin") == 2
    assert not rig.has_object(f.ref) and not rig.has_object(f2.ref)
    assert [fd.name for fd in fs.files("/results")] == ["empty"]
    assert fs.remove_label("/results") == 1 and rig.objects() == []


def test_a_corrupt_object_fails_the_download_and_nothing_is_kept(rig: Rig, tmp_path: Path) -> None:
    fs = rig.fs()
    f = fs.upload(_write(tmp_path / "in" / "model.bin", os.urandom(200_000)), "/m")
    rig.corrupt(f.ref)
    out = tmp_path / "out"
    with pytest.raises(ChecksumError, match="does not match"):
        fs.download("/m", "model.bin", out)
    assert list(out.iterdir()) == []


def test_sync_both_ways_with_keeplocal(rig: Rig, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "one.txt", b"one")
    _write(a / "sub" / "deep" / "two.txt", b"two")
    _write(a / ".cfs", b'{"label": "/elsewhere"}')  # the original's marker is never synced
    fs = rig.fs()
    plan = fs.sync(a, "/proj")
    assert sorted((f.label, f.name) for f in plan.upload) == [("/proj", "one.txt"), ("/proj/sub/deep", "two.txt")]
    assert [lb.name for lb in fs.labels("/proj", exact=True)] == ["/proj", "/proj/sub/deep"]
    # down into an empty directory on "another machine", sub-labels as subdirectories
    other = rig.fs(rig.colony.user_prvkey)
    plan = other.sync(b, "proj")
    assert len(plan.download) == 2 and _tree(b) == _tree(a)
    assert other.sync(b, "/proj", dry_run=True).empty
    # a conflict each way, and sync never deletes: a file removed on one side comes back from the other
    _write(a / "one.txt", b"one, edited on a")
    _write(b / "one.txt", b"one, edited on b")
    (b / "sub" / "deep" / "two.txt").unlink()
    plan = other.sync(b, "/proj", keeplocal=False)  # the server's copy wins over b's
    assert [(type(c).__name__, c.name) for c in plan.conflicts] == [("RemoteFile", "one.txt")]
    assert (b / "one.txt").read_bytes() == b"one" and (b / "sub/deep/two.txt").read_bytes() == b"two"
    plan = fs.sync(a, "/proj", keeplocal=True)  # a's copy wins: a new revision
    assert [(type(c).__name__, c.name) for c in plan.conflicts] == [("LocalFile", "one.txt")]
    assert len(fs.revisions("/proj", "one.txt")) == 2
    other.sync(b, "/proj", keeplocal=False)
    assert (b / "one.txt").read_bytes() == b"one, edited on a"
    assert orjson.loads((a / ".cfs").read_bytes()) == orjson.loads((b / ".cfs").read_bytes()) == {"label": "/proj"}


def test_snapshots_freeze_revisions(rig: Rig, tmp_path: Path) -> None:
    fs = rig.fs()
    src = tmp_path / "src"
    _write(src / "w.bin", b"weights v1")
    _write(src / "cfg" / "c.json", b"{}")
    fs.sync(src, "/train")
    snap = fs.create_snapshot("train", "snap-1")
    assert snap.label == "/train" and len(snap.fileids) == 2
    _write(src / "w.bin", b"weights v2")
    fs.sync(src, "/train")
    out = tmp_path / "out"
    paths = fs.download_snapshot(out, name="snap-1")
    assert sorted(p.relative_to(out).as_posix() for p in paths) == ["cfg/c.json", "w.bin"]
    assert (out / "w.bin").read_bytes() == b"weights v1"
    assert fs.download_snapshot(out, snapshotid=snap.snapshotid) == paths  # already there: not fetched again
    fs.create_snapshot("/train", "snap-2")
    fs.remove_snapshot(name="snap-1")
    assert [s.name for s in fs.client.get_snapshots(rig.colony.name) or []] == ["snap-2"]
    fs.remove_all_snapshots()
    assert not fs.client.get_snapshots(rig.colony.name)
    with pytest.raises(ClientError):
        fs.download_snapshot(out, name="snap-2")


def test_pycolonies_and_our_sdk_share_files_both_ways(s3_rig: Rig, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store_rig = s3_rig  # pycolonies speaks S3 only
    from pycolonies import Colonies

    for k, v in store_rig.env.items():
        monkeypatch.setenv(k, v)
    py = Colonies("127.0.0.1", store_rig.server.port)
    key, colony = store_rig.colony.executor_prvkey, store_rig.colony.name
    theirs = _write(tmp_path / "theirs" / "from-py.bin", os.urandom(100_000))
    py.upload_file(colony, key, filepath=str(theirs), label="/shared")
    fs = store_rig.fs()
    assert fs.download("/shared", "from-py.bin", tmp_path / "ours").read_bytes() == theirs.read_bytes()
    ours = _write(tmp_path / "mine" / "from-sdk.bin", os.urandom(120_000))
    fs.upload(ours, "/shared")
    got = py.download_file(colony, key, dst=str(tmp_path / "py-out"), label="/shared", filename="from-sdk.bin")
    assert Path(got).read_bytes() == ours.read_bytes()
    # a FileSystem whose own store is a local directory still reads pycolonies' file from S3 (by its ref)
    local_first = FileSystem(store_rig.client(), colony, LocalStore(tmp_path / "own"), store_rig.env)
    assert local_first.download("/shared", "from-py.bin", tmp_path / "x").read_bytes() == theirs.read_bytes()
    # a sync down takes both, whoever wrote them
    fs.sync(tmp_path / "synced", "/shared")
    assert _tree(tmp_path / "synced") == {"from-py.bin": theirs.read_bytes(), "from-sdk.bin": ours.read_bytes()}


def _every_read_and_write(theirs: FileSystem, stolen: Path) -> list[Callable[[], object]]:
    return [lambda: theirs.files("/private"), lambda: theirs.labels(),
            lambda: theirs.revisions("/private", "secret.txt"),
            lambda: theirs.download("/private", "secret.txt", stolen),
            lambda: theirs.download_snapshot(stolen, name="s"),
            lambda: theirs.sync(stolen, "/private"), lambda: theirs.remove("/private", "secret.txt")]


def test_another_colony_can_neither_list_nor_fetch(local_rig: Rig, tmp_path: Path) -> None:
    fs = local_rig.fs()
    fs.upload(_write(tmp_path / "secret.txt", b"secret"), "/private")
    fs.create_snapshot("/private", "s")
    stranger = setup_colony(local_rig.server, "othercolony")
    for key in (stranger.executor_prvkey, stranger.user_prvkey):
        # a FileSystem for our colony, signed with a key of another colony
        calls = _every_read_and_write(local_rig.fs(key), tmp_path / "stolen")
        for call in calls:
            with pytest.raises(ClientError) as e:
                call()
            assert e.value.status == 403
    assert not (tmp_path / "stolen").exists()
    assert [fd.name for fd in fs.files("/private")] == ["secret.txt"]


_UPLOADER = textwrap.dedent("""
    import os, sys, time
    from colonies.client.sync import Client
    from colonies.fs import FileSystem
    from colonies.fs.store import store_from_env
    port, key, colony, path, how = sys.argv[1:6]
    fs = FileSystem(Client("127.0.0.1", int(port), prvkey=key), colony, store_from_env(os.environ), workers=1)
    moved = [0]
    def progress(n):
        moved[0] += n
        if moved[0] >= 1 << 20:  # inside the big file, the last one (the small ones went first)
            print("moving", flush=True)
            time.sleep(600)  # parked mid-transfer until the test kills us
    if how == "upload":
        fs.upload(path, "/killed", progress=progress)
    else:
        fs.sync(path, "/killed", progress=progress)
""")


@pytest.mark.parametrize("how", ["upload", "sync"])
def test_a_process_killed_mid_upload_leaves_no_record_without_its_object(store_rig: Rig, tmp_path: Path,
                                                                        how: str) -> None:
    big = _write(tmp_path / "up" / "zz-big.bin", os.urandom(16 << 20))
    for i in range(3):
        _write(tmp_path / "up" / f"small-{i}", b"s" * i)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COLONIES_FS"))}, **store_rig.env}
    target = str(big) if how == "upload" else str(big.parent)
    log = tmp_path / "uploader.log"
    with open(log, "wb") as err, subprocess.Popen(
            [sys.executable, "-c", _UPLOADER, str(store_rig.server.port), store_rig.colony.executor_prvkey,
             store_rig.colony.name, target, how], env=env, stdout=subprocess.PIPE, stderr=err) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready and proc.stdout.readline() == b"moving\n", log.read_text()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    fs = store_rig.fs()
    records = [r for fd in fs.files("/killed") for r in fs.revisions("/killed", fd.name)]
    assert all(store_rig.has_object(r.ref) for r in records)
    assert records == []  # the kill came mid-transfer, before any record could be added
    fs.sync(tmp_path / "up", "/killed")  # a rerun completes it
    assert sorted(fd.name for fd in fs.files("/killed")) == ["small-0", "small-1", "small-2", "zz-big.bin"]


class _Stop(Exception):
    pass


def test_a_failing_transfer_adds_no_record_and_keeps_no_object(store_rig: Rig, tmp_path: Path) -> None:
    """An exception from `progress` (how the executor kit cancels) stops the sync before any record."""
    src = tmp_path / "src"
    for i in range(12):
        _write(src / f"f{i:02}.bin", os.urandom(300_000))
    seen = [0]

    def progress(n: int) -> None:
        seen[0] += n
        if seen[0] > 1_000_000:
            raise _Stop

    fs = store_rig.fs(workers=3)
    with pytest.raises(_Stop):
        fs.sync(src, "/half", progress=progress)
    assert fs.files("/half") == [] and store_rig.objects() == []
    # downloads stopped the same way keep no partial file
    fs.sync(src, "/half")
    seen[0] = 0
    dst = tmp_path / "dst"
    with pytest.raises(_Stop):
        fs.sync(dst, "/half", progress=progress)
    assert all(p.stat().st_size == 300_000 for p in dst.iterdir() if p.name != ".cfs")
    assert not [p for p in dst.iterdir() if p.name.startswith(TMP_PREFIX)]


class _RefusingClient(Client):
    """A real client whose third addfilemsg is refused (as a server would refuse a bad record)."""

    adds = 0

    def add_file(self, file: File) -> File:
        type(self).adds += 1
        if type(self).adds == 3:
            raise ClientError(400, "refused for the test")
        return super().add_file(file)


def test_a_refused_record_undoes_the_sync(local_rig: Rig, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src / "kept.txt", b"v1")
    fs = local_rig.fs()
    fs.sync(src, "/atomic")
    before = {fd.name: fd.checksum for fd in fs.files("/atomic")}
    _write(src / "kept.txt", b"v2")  # a conflict: would be a new revision
    for i in range(5):
        _write(src / f"new{i}.txt", f"n{i}".encode())
    atomic = FileSystem(local_rig.client(cls=_RefusingClient), local_rig.colony.name, local_rig.store, workers=1)
    with pytest.raises(ClientError, match="refused"):
        atomic.sync(src, "/atomic")
    assert {fd.name: fd.checksum for fd in fs.files("/atomic")} == before
    assert len(fs.revisions("/atomic", "kept.txt")) == 1
    [rev] = fs.revisions("/atomic", "kept.txt")
    assert local_rig.objects() == [rev.ref.s3object.object]


def test_async_filesystem(local_rig: Rig, tmp_path: Path) -> None:
    src = _write(tmp_path / "a" / "x.txt", b"async")

    async def run() -> list[bytes]:
        afs = AsyncFileSystem(local_rig.client(), local_rig.colony.name, local_rig.store)
        await afs.upload(src, "/async")
        out = await afs.download("/async", "x.txt", tmp_path / "b")
        plan = await afs.sync(tmp_path / "c", "/async")
        return [out.read_bytes(), (tmp_path / "c" / "x.txt").read_bytes(), plan.download[0].name.encode()]

    assert asyncio.run(run()) == [b"async", b"async", b"x.txt"]


def test_ten_thousand_small_files_sync_up_and_down(local_rig: Rig, tmp_path: Path) -> None:
    src, dst = tmp_path / "many", tmp_path / "copy"
    for d in range(10):
        for i in range(1000):
            _write(src / f"d{d}" / f"f{i:04}.txt", f"{d}-{i}".encode())
    fs = local_rig.fs()
    t0 = time.monotonic()
    plan = fs.sync(src, "/many")
    t1 = time.monotonic()
    assert len(plan.upload) == 10_000
    assert sum(lb.files for lb in fs.labels("/many/")) == 10_000
    plan = fs.sync(dst, "/many")
    t2 = time.monotonic()
    assert len(plan.download) == 10_000 and _tree(dst) == _tree(src)
    assert fs.sync(dst, "/many", dry_run=True).empty
    print(f"10,000 files: sync up {t1 - t0:.1f} s, down {t2 - t1:.1f} s")  # figures only, never asserted


def test_a_gibibyte_file_through_the_local_store(local_rig: Rig, tmp_path: Path) -> None:
    size = 1 << 30
    src = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with open(src, "wb") as f:
        for i in range(size >> 20):
            chunk = i.to_bytes(8, "little") + block[8:]
            digest.update(chunk)
            f.write(chunk)
    fs = local_rig.fs()
    t0 = time.monotonic()
    rec = fs.upload(src, "/big")
    t1 = time.monotonic()
    assert rec.size == size and rec.checksum == digest.hexdigest()
    src.unlink()
    out = fs.download("/big", "big.bin", tmp_path / "out")
    t2 = time.monotonic()
    assert out.stat().st_size == size
    print(f"1 GiB local store: upload {t1 - t0:.1f} s, download+verify {t2 - t1:.1f} s")


def test_clean_removes_what_the_label_does_not_hold(local_rig: Rig, tmp_path: Path) -> None:
    fs, d = local_rig.fs(), tmp_path / "d"
    _write(d / "kept.txt", b"k")
    _write(d / "sub" / "kept2.txt", b"k2")
    fs.sync(d, "/c")
    _write(d / "stray.txt", b"s")
    _write(d / "sub" / "stray2.txt", b"s2")
    _write(d / "newdir" / "deep" / "x", b"x")
    expected = [d / "newdir", d / "stray.txt", d / "sub" / "stray2.txt"]
    assert sorted(fs.clean(d, "c", dry_run=True)) == expected and (d / "stray.txt").exists()
    assert sorted(fs.clean(d, "/c")) == expected
    assert _tree(d) == {"kept.txt": b"k", "sub/kept2.txt": b"k2"}
    with pytest.raises(FsError, match="holds no files"):
        fs.clean(d, "/nothing-here")
    assert _tree(d) == {"kept.txt": b"k", "sub/kept2.txt": b"k2"}
