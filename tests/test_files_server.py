"""ColonyFS metadata on a real server (both backends): the 10 file and snapshot messages through pycolonies
1.0.25 (its exact payloads, including upload_file's addfilemsg) and through our SDK; members only.

No object store is involved: the server only keeps metadata (the bytes are tests/test_fs_*.py's business).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# pycolonies' pydantic models (its top-level `model` module)
from model import File as PyFile  # type: ignore[import-untyped]
from model import Reference, S3Object
from pycolonies import Colonies, ColoniesConnectionError

from colonies.client.sync import Client
from colonies.errors import ClientError
from colonies.model import File, Ref
from colonies.model import S3Object as OurS3Object
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.server.handlers_files import MAX_FILE_NAME, MAX_LABEL
from tests.conftest import ColonyKeys, ServerProc, fresh_pg_database, make_server, setup_colony

_names = itertools.count()
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    tmp = tmp_path_factory.mktemp(f"files-{request.param}")
    if request.param == "sqlite":
        s = make_server(tmp)
        s.start()
        try:
            yield s
        finally:
            s.stop()
        return
    with fresh_pg_database() as db:
        s = make_server(tmp, {**db.server_env(), "COLONIES_ETCD_ENDPOINTS": ""})
        s.start()
        try:
            yield s
        finally:
            s.stop()


@pytest.fixture
def col(srv: ServerProc) -> ColonyKeys:
    return setup_colony(srv, name=f"fs{next(_names)}")


@pytest.fixture
def user(srv: ServerProc, col: ColonyKeys) -> Iterator[Client]:
    with srv.client(col.user_prvkey) as c:
        yield c


def py_upload_payload(colony: str, label: str, name: str, obj: str, size: int = 4) -> dict[str, Any]:
    """The addfilemsg pycolonies' upload_file sends (same models, same model_dump)."""
    ref = Reference(protocol="s3", s3object=S3Object(server="127.0.0.1", port=9000, tls=False, accesskey="",
                                                       secretkey="", region="", encryptionkey="",
                                                       encryptionalg="", object=obj, bucket="bucket"))
    f = PyFile(fileid="", colonyname=colony, label=label, name=name, size=size, sequencenr=1, checksum=SHA,
               checksumalg="SHA256", ref=ref)
    return {"msgtype": "addfilemsg", "file": f.model_dump(by_alias=True)}


def py_rpc(py: Colonies, msg: dict[str, Any], prvkey: str) -> Any:
    return py._Colonies__rpc(msg, prvkey)


def our_file(colony: str, label: str = "/data", name: str = "a.txt", obj: str = "o1", size: int = 3) -> File:
    return File(colonyname=colony, label=label, name=name, size=size, checksum=SHA, checksumalg="SHA256",
                ref=Ref(protocol="s3", s3object=OurS3Object(server="s3.local", port=9000, object=obj, bucket="b")))


def status_of(call: Any) -> int:
    try:
        call()
    except ClientError as e:
        return e.status
    return 200


def test_pycolonies_file_and_snapshot_calls(srv: ServerProc, col: ColonyKeys) -> None:
    py, key = Colonies("127.0.0.1", srv.port), col.user_prvkey
    first = py_rpc(py, py_upload_payload(col.name, "/py", "a.txt", "obj-1"), key)
    second = py_rpc(py, py_upload_payload(col.name, "/py", "a.txt", "obj-2", size=7), key)
    py_rpc(py, py_upload_payload(col.name, "/py/sub", "b.txt", "obj-3"), key)
    PyFile(**first)  # the reply parses with pycolonies' own model
    assert second["sequencenr"] > first["sequencenr"] and first["fileid"] and first["added"]

    latest = py.get_file(col.name, key, label="/py", filename="a.txt")
    assert [f["fileid"] for f in latest] == [second["fileid"]]
    every = py.get_file(col.name, key, label="/py", filename="a.txt", latest=False)
    assert [f["fileid"] for f in every] == [second["fileid"], first["fileid"]]
    by_id = py.get_file(col.name, key, fileid=first["fileid"])  # label and name go as null
    assert by_id[0]["ref"]["s3object"]["object"] == "obj-1"
    data = py.get_files("/py", col.name, key)
    assert data == [{"name": "a.txt", "checksum": SHA, "size": 7, "s3filename": "obj-2"}]
    labels = py.get_file_labels(col.name, key, name="/py", exact=True)
    assert labels == [{"name": "/py", "files": 2}, {"name": "/py/sub", "files": 1}]
    assert len(py.get_file_labels(col.name, key)) == 2

    snap = py.create_snapshot(col.name, "/py", "snap-1", key)
    assert sorted(snap["fileids"]) == sorted([second["fileid"], py.get_file(
        col.name, key, label="/py/sub", filename="b.txt")[0]["fileid"]])
    assert py.get_snapshot_by_name(col.name, "snap-1", key)["snapshotid"] == snap["snapshotid"]
    assert py.get_snapshot_by_id(col.name, snap["snapshotid"], key)["name"] == "snap-1"
    assert [s["name"] for s in py.get_snapshots(col.name, key)] == ["snap-1"]
    with pytest.raises(ColoniesConnectionError, match="already exists"):
        py.create_snapshot(col.name, "/py", "snap-1", key)
    with pytest.raises(ColoniesConnectionError, match="not found"):
        py.get_snapshot_by_name(col.name, "nope", key)

    # pycolonies' delete_file sends this removefilemsg (fileid null) after deleting the object.
    py._Colonies__remove_file("/py", None, "a.txt", col.name, key)
    with pytest.raises(ColoniesConnectionError, match="not found"):
        py.get_file(col.name, key, label="/py", filename="a.txt")


def test_sdk_revisions_removal_and_refs_without_keys(user: Client, col: ColonyKeys) -> None:
    leaky = our_file(col.name, obj="o1")
    leaky.ref.s3object.accesskey, leaky.ref.s3object.secretkey = "AKIA-secret", "very-secret"
    leaky.ref.s3object.encryptionkey = "enc-secret"
    a1 = user.add_file(leaky)
    assert (a1.ref.s3object.accesskey, a1.ref.s3object.secretkey, a1.ref.s3object.encryptionkey) == ("", "", "")
    assert a1.ref.s3object.object == "o1" and a1.ref.s3object.server == "s3.local" and a1.size == 3
    stored = user.get_file(col.name, fileid=a1.fileid)[0]
    assert stored.ref.s3object.secretkey == "" and stored == a1
    a2 = user.add_file(our_file(col.name, obj="o2"))
    b = user.add_file(our_file(col.name, name="b.txt", obj="o3"))
    assert a1.sequencenr < a2.sequencenr < b.sequencenr
    assert [f.fileid for f in user.get_file(col.name, label="/data", name="a.txt")] == [a2.fileid]
    assert [f.fileid for f in user.get_file(col.name, label="/data", name="a.txt", latest=False)] == [
        a2.fileid, a1.fileid]
    assert [(d.name, d.s3filename) for d in user.get_files(col.name, "/data")] == [("a.txt", "o2"), ("b.txt", "o3")]

    user.remove_file(col.name, fileid=a2.fileid)  # by id: the older revision stays
    assert [f.fileid for f in user.get_file(col.name, label="/data", name="a.txt")] == [a1.fileid]
    user.add_file(our_file(col.name, obj="o4"))
    user.remove_file(col.name, label="/data", name="a.txt")  # by name: every revision
    assert status_of(lambda: user.get_file(col.name, label="/data", name="a.txt", latest=False)) == 404
    assert [lb.files for lb in user.get_file_labels(col.name, "/data", exact=True)] == [1]
    assert status_of(lambda: user.remove_file(col.name, fileid=a2.fileid)) == 404
    assert status_of(lambda: user.remove_file(col.name, label="/data", name="a.txt")) == 404
    assert status_of(lambda: user.get_file(col.name, fileid="0" * 64)) == 404


def test_sdk_snapshots(user: Client, col: ColonyKeys) -> None:
    f = user.add_file(our_file(col.name, label="/m"))
    g = user.add_file(our_file(col.name, label="/m/deep", name="g"))
    user.add_file(our_file(col.name, label="/mm", name="h"))  # not under /m
    s = user.create_snapshot(col.name, "/m/", "s1")  # a trailing "/" is dropped, as the original
    assert s.label == "/m" and s.fileids == [f.fileid, g.fileid]
    user.add_file(our_file(col.name, label="/m", obj="newer"))
    assert user.get_snapshot(col.name, name="s1").fileids == [f.fileid, g.fileid]  # frozen
    assert user.get_snapshot(col.name, snapshotid=s.snapshotid).name == "s1"
    assert status_of(lambda: user.create_snapshot(col.name, "/m", "s1")) == 409
    user.create_snapshot(col.name, "/m", "s2")
    assert [x.name for x in user.get_snapshots(col.name)] == ["s2", "s1"]
    root = user.create_snapshot(col.name, "/", "everything")  # "/" is the whole colony
    assert root.label == "" and len(root.fileids) == 3 and g.fileid in root.fileids and f.fileid not in root.fileids
    user.remove_snapshot(col.name, snapshotid=s.snapshotid)
    assert status_of(lambda: user.get_snapshot(col.name, snapshotid=s.snapshotid)) == 404
    assert status_of(lambda: user.remove_snapshot(col.name, name="s1")) == 404
    user.remove_all_snapshots(col.name)
    assert user.get_snapshots(col.name) == []


def test_malformed_requests_are_400(user: Client, col: ColonyKeys) -> None:
    c = col.name

    def add(**changes: Any) -> int:
        f = our_file(c)
        for k, v in changes.items():
            setattr(f, k, v)
        return status_of(lambda: user.add_file(f))

    assert add(size=-1) == 400
    assert add(size=2**63) == 400
    assert add(checksum="not-hex") == 400
    assert add(checksum="") == 400
    assert add(label="") == 400
    assert add(label="/" + "x" * MAX_LABEL) == 400
    assert add(name="n" * (MAX_FILE_NAME + 1)) == 400
    assert add(name="a\x00b") == 400
    assert add(ref=Ref(protocol="")) == 400
    assert add(label="/" + "x" * (MAX_LABEL - 1), size=2**63 - 1) == 200  # the limits themselves are fine
    assert status_of(lambda: user.get_file(c)) == 400  # neither an id nor a label and a name
    assert status_of(lambda: user.get_file(c, label="/data")) == 400
    assert status_of(lambda: user.remove_file(c, name="a.txt")) == 400
    assert status_of(lambda: user.get_snapshot(c)) == 400
    assert status_of(lambda: user.remove_snapshot(c)) == 400
    assert status_of(lambda: user.create_snapshot(c, "/data", "")) == 400
    assert status_of(lambda: user.create_snapshot(c, "", "s")) == 400


def test_only_members_of_the_colony(srv: ServerProc, col: ColonyKeys, user: Client) -> None:
    """A member of another colony can neither list nor fetch; nor can the colony owner's key alone or a
    pending executor."""
    f = user.add_file(our_file(col.name))
    s = user.create_snapshot(col.name, "/data", "s")
    other = setup_colony(srv, name=f"fs-other{next(_names)}")
    pending = generate_prvkey()
    with srv.client(col.colony_prvkey) as owner:
        owner.add_executor(col.name, id_of(pending), "pending-1", col.executor_type)
    calls = {
        "list files": lambda c: c.get_files(col.name, "/data"),
        "list labels": lambda c: c.get_file_labels(col.name),
        "fetch": lambda c: c.get_file(col.name, fileid=f.fileid),
        "fetch by name": lambda c: c.get_file(col.name, label="/data", name="a.txt"),
        "list snapshots": lambda c: c.get_snapshots(col.name),
        "fetch snapshot": lambda c: c.get_snapshot(col.name, snapshotid=s.snapshotid),
        "add": lambda c: c.add_file(our_file(col.name)),
        "remove": lambda c: c.remove_file(col.name, fileid=f.fileid),
        "snapshot": lambda c: c.create_snapshot(col.name, "/data", "s-x"),
        "remove snapshot": lambda c: c.remove_snapshot(col.name, snapshotid=s.snapshotid),
        "remove all snapshots": lambda c: c.remove_all_snapshots(col.name),
    }
    for who, key in (("user of another colony", other.user_prvkey), ("executor of another colony",
                     other.executor_prvkey), ("colony owner", col.colony_prvkey), ("pending executor", pending)):
        with srv.client(key) as c:
            for what, call in calls.items():
                assert status_of(lambda call=call, c=c: call(c)) == 403, f"{who}: {what}"
    with srv.client(other.user_prvkey) as c:  # asking in its own colony for our ids finds nothing
        assert status_of(lambda: c.get_file(other.name, fileid=f.fileid)) == 404
        assert status_of(lambda: c.get_snapshot(other.name, snapshotid=s.snapshotid)) == 404
    with srv.client(col.executor_prvkey) as exe:  # an approved executor is a member
        assert exe.get_file(col.name, fileid=f.fileid)[0].fileid == f.fileid
    assert user.get_snapshot(col.name, name="s").fileids == [f.fileid]  # nothing was changed


def test_removing_a_colony_removes_its_files(srv: ServerProc, tmp_path: Path) -> None:
    keys = setup_colony(srv, name=f"fs-gone{next(_names)}")
    with srv.client(keys.user_prvkey) as c:
        c.add_file(our_file(keys.name))
        c.create_snapshot(keys.name, "/data", "s")
    with srv.client(srv.server_prvkey) as admin:
        admin.remove_colony(keys.name)
    again = setup_colony(srv, name=keys.name)  # a colony of the same name starts empty
    with srv.client(again.user_prvkey) as c:
        assert c.get_file_labels(keys.name) == [] and c.get_snapshots(keys.name) == []
        assert c.get_files(keys.name, "/data") == []
