"""`colonies fs ...` and `function submit/exec --snapshot` as a user runs them, against a real server on
loopback, with the bytes in a real local object directory (COLONIES_FS_DIR) or in a real S3 API server
(moto, tests/fs_support.py); and `colonies dev` followed by `colonies fs sync` with no S3 at all.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import ROOT, cli_env, run_cli_inprocess, wait_until

cli = run_cli_inprocess


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}\n{r.stderr}"
    return r.stdout


def js(r: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(r))


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def objects(store: Path) -> set[str]:
    """The object files a local store holds (its marker and temporaries left out)."""
    return {str(p.relative_to(store)) for p in store.rglob("*") if p.is_file() and not p.name.startswith(".")}


def local_path(f: dict[str, Any]) -> Path:
    o = f["ref"]["s3object"]
    return Path(str(o["bucket"])) / str(o["object"])


@pytest.fixture
def env(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> dict[str, str]:
    return cli_env(server, colony, COLONIES_FS_DIR=str(tmp_path / "objects"))


def test_sync_ls_info_get_with_revisions_and_one_label_form(env: dict[str, str], tmp_path: Path) -> None:
    """Sync up (sub-directories are sub-labels), a changed file becomes a new revision, `data`, `/data`
    and `/data/` are one label in every command, `get` checks out the newest or an older revision with a
    progress bar fed by the transfer."""
    work = tmp_path / "work"
    write(work / "a.txt", "one")
    write(work / "sub" / "b.txt", "bee")
    write(work / "big.bin", os.urandom(3_000_000))
    dry = js(cli(env, "fs", "sync", "-d", str(work), "-l", "data", "--dry", "--json"))
    assert sorted((e["label"], e["name"]) for e in dry["upload"]) == [
        ("/data", "a.txt"), ("/data", "big.bin"), ("/data/sub", "b.txt")]
    assert dry["download"] == dry["conflicts"] == []
    assert json.loads(ok(cli(env, "fs", "label", "ls", "--json"))) == []  # a dry run uploads nothing
    r = cli(env, "fs", "sync", "-d", str(work), "-l", "data/", "--yes")
    assert "3 uploaded" in ok(r)
    assert "3.0/3.0 MB" in r.stderr, r.stderr  # one bar over every file of the sync, fed by the transfers
    assert "Nothing to do" in ok(cli(env, "fs", "sync", "-d", str(work), "-l", "/data", "--yes"))

    write(work / "a.txt", "two")
    ok(cli(env, "fs", "sync", "-d", str(work), "-l", "/data", "--yes"))
    for form in ("data", "/data", "/data/"):
        files = {f["name"]: f for f in js(cli(env, "fs", "ls", "-l", form, "--json"))}
        assert set(files) == {"a.txt", "big.bin"}, form
        assert (files["a.txt"]["revisions"], files["big.bin"]["revisions"], files["big.bin"]["size"]) == (2, 1, 3_000_000)
    assert [f["name"] for f in js(cli(env, "fs", "ls", "-l", "data/sub", "--json"))] == ["b.txt"]
    table = ok(cli(env, "fs", "ls", "-l", "data"))
    assert "Revisions" in table and "a.txt" in table and "2.9 MiB" in table

    revs = js(cli(env, "fs", "info", "-l", "data", "-n", "a.txt", "--json"))
    assert len(revs) == 2 and revs[0]["sequencenr"] < revs[1]["sequencenr"]
    assert {r["label"] for r in revs} == {"/data"} and {r["ref"]["protocol"] for r in revs} == {"local"}
    assert all(r["ref"]["s3object"]["secretkey"] == "" for r in revs)
    assert "Checksum" in ok(cli(env, "fs", "info", "-i", revs[0]["fileid"]))

    got = tmp_path / "got"
    r = cli(env, "fs", "get", "-l", "/data/", "-n", "big.bin", "-d", str(got))
    ok(r)
    assert (got / "big.bin").read_bytes() == (work / "big.bin").read_bytes()
    assert "3.0/3.0 MB" in r.stderr, r.stderr  # the bar reached the file's size: the transfer fed it
    ok(cli(env, "fs", "get", "-l", "data", "-n", "a.txt", "-d", str(got), "--quiet"))
    assert (got / "a.txt").read_text() == "two"
    old = tmp_path / "old"
    ok(cli(env, "fs", "get", "-i", revs[0]["fileid"], "-d", str(old)))
    assert (old / "a.txt").read_text() == "one"

    labels = {x["name"]: x["files"] for x in js(cli(env, "fs", "label", "ls", "--json"))}
    assert labels == {"/data": 3, "/data/sub": 1}  # every revision counts
    assert "/data/sub" in ok(cli(env, "fs", "label", "ls"))


def test_sync_down_conflicts_and_clean(env: dict[str, str], tmp_path: Path) -> None:
    """A second directory syncs the label down; a conflict keeps the local copy (--keeplocal, the
    default) or the remote one (--no-keeplocal); clean removes only local files the label lacks."""
    first, second = tmp_path / "first", tmp_path / "second"
    write(first / "a.txt", "remote")
    write(first / "sub" / "b.txt", "bee")
    ok(cli(env, "fs", "sync", "-d", str(first), "-l", "/d", "--yes"))
    ok(cli(env, "fs", "sync", "-d", str(second), "-l", "/d", "--yes"))
    assert (second / "a.txt").read_text() == "remote" and (second / "sub" / "b.txt").read_text() == "bee"

    write(second / "a.txt", "mine")
    plan = js(cli(env, "fs", "sync", "-d", str(second), "-l", "/d", "--dry", "--json", "--no-keeplocal"))
    assert [e["name"] for e in plan["conflicts"]] == ["a.txt"]
    ok(cli(env, "fs", "sync", "-d", str(second), "-l", "/d", "--yes", "--no-keeplocal"))
    assert (second / "a.txt").read_text() == "remote"
    write(second / "a.txt", "mine")
    shown = ok(cli(env, "fs", "sync", "-d", str(second), "-l", "/d", "--dry", "--syncplans"))
    assert "Replace at the server" in shown and "a.txt" in shown
    ok(cli(env, "fs", "sync", "-d", str(second), "-l", "/d", "--yes"))
    assert len(js(cli(env, "fs", "info", "-l", "/d", "-n", "a.txt", "--json"))) == 2

    write(second / "stray.txt", "x")
    write(second / "sub" / "stray2.txt", "y")
    dry = ok(cli(env, "fs", "clean", "-d", str(second), "-l", "d", "--dry"))
    assert "stray.txt" in dry and "stray2.txt" in dry and (second / "stray.txt").exists()
    ok(cli(env, "fs", "clean", "-d", str(second), "-l", "d", "--yes"))
    assert not (second / "stray.txt").exists() and not (second / "sub" / "stray2.txt").exists()
    assert (second / "a.txt").exists() and (second / "sub" / "b.txt").exists()
    assert "Nothing to clean" in ok(cli(env, "fs", "clean", "-d", str(second), "-l", "d", "--yes"))

    # the label can come from the directory's .cfs file (the original's marker)
    write(second / ".cfs", json.dumps({"label": "/d"}))
    assert "Nothing to do" in ok(cli(env, "fs", "sync", "-d", str(second), "--yes"))
    r = cli(env, "fs", "sync", "-d", str(tmp_path / "nolabel"), "--yes")
    assert r.returncode == 1 and "no label" in r.stderr


def test_remove_by_id_by_name_and_label_remove_is_exact_with_every_revision_object(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`fs remove -i` drops one revision and its object; `-l -n` every revision. `fs label remove -l
    data` removes exactly /data — not /database, not /data/sub — and the objects of every revision (the
    original matched by prefix and deleted only the newest revision's object)."""
    store = tmp_path / "objects"
    for label, files in (("/data", {"x.txt": "1", "y.txt": "y"}), ("/database", {"keep.txt": "k"}),
                         ("/data/sub", {"s.txt": "s"})):
        d = tmp_path / label.strip("/").replace("/", "-")
        for name, text in files.items():
            write(d / name, text)
        ok(cli(env, "fs", "sync", "-d", str(d), "-l", label, "--yes"))
    write(tmp_path / "data" / "x.txt", "2")
    ok(cli(env, "fs", "sync", "-d", str(tmp_path / "data"), "-l", "/data", "--yes"))
    x_revs = js(cli(env, "fs", "info", "-l", "/data", "-n", "x.txt", "--json"))
    assert len(x_revs) == 2 and all(local_path(f).is_file() for f in x_revs)

    out = ok(cli(env, "fs", "remove", "-i", x_revs[0]["fileid"]))
    assert "1 revision" in out
    assert not local_path(x_revs[0]).exists() and local_path(x_revs[1]).exists()
    assert [f["fileid"] for f in js(cli(env, "fs", "info", "-l", "/data", "-n", "x.txt", "--json"))] == [
        x_revs[1]["fileid"]]
    r = cli(env, "fs", "remove", "-l", "/data", "-n", "nosuch.txt")
    assert r.returncode == 1 and "not found" in r.stderr and "Traceback" not in r.stderr

    write(tmp_path / "data" / "y.txt", "y2")
    ok(cli(env, "fs", "sync", "-d", str(tmp_path / "data"), "-l", "/data", "--yes"))
    data_files = [f for n in ("x.txt", "y.txt") for f in js(cli(env, "fs", "info", "-l", "data", "-n", n, "--json"))]
    assert len(data_files) == 3
    others = [f for label, n in (("/database", "keep.txt"), ("/data/sub", "s.txt"))
              for f in js(cli(env, "fs", "info", "-l", label, "-n", n, "--json"))]
    before = objects(store)

    ok(cli(env, "fs", "label", "remove", "-l", "data/", "--yes"))
    labels = {x["name"] for x in js(cli(env, "fs", "label", "ls", "--json"))}
    assert labels == {"/database", "/data/sub"}
    assert not any(local_path(f).exists() for f in data_files)  # every revision's object
    assert all(local_path(f).exists() for f in others)
    assert len(before - objects(store)) == 3

    ok(cli(env, "fs", "remove", "-l", "database", "-n", "keep.txt"))
    assert {x["name"] for x in js(cli(env, "fs", "label", "ls", "--json"))} == {"/data/sub"}


def test_label_remove_and_snapshot_removeall_ask_first(env: dict[str, str], tmp_path: Path) -> None:
    write(tmp_path / "w" / "f.txt", "f")
    ok(cli(env, "fs", "sync", "-d", str(tmp_path / "w"), "-l", "/keep", "--yes"))
    ok(cli(env, "fs", "snapshot", "create", "-l", "/keep", "-n", "s1"))

    def answer(text: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "colonies", *args], env=env, input=text, capture_output=True,
                              text=True, timeout=60, cwd=ROOT, check=False)

    r = answer("no\n", "fs", "label", "remove", "-l", "/keep")
    assert r.returncode == 1 and "Aborted" in r.stderr
    r = answer("yes\n", "fs", "snapshot", "removeall")  # only YES will do
    assert r.returncode == 1 and "Aborted" in r.stderr
    assert [s["name"] for s in js(cli(env, "fs", "snapshot", "ls", "--json"))] == ["s1"]
    assert [x["name"] for x in js(cli(env, "fs", "label", "ls", "--json"))] == ["/keep"]
    ok(answer("YES\n", "fs", "snapshot", "removeall"))
    assert js(cli(env, "fs", "snapshot", "ls", "--json")) == []
    ok(answer("y\n", "fs", "label", "remove", "-l", "keep"))
    assert js(cli(env, "fs", "label", "ls", "--json")) == []
    r = cli(env, "fs", "sync", "-d", str(tmp_path / "w"), "-l", "/keep", "--quiet")
    assert r.returncode == 1 and "--quiet needs --yes" in r.stderr
    r = cli(env, "fs", "sync", "-d", str(tmp_path / "w"), "-l", "/keep", "--json", "--yes")
    assert r.returncode == 1 and "with --dry" in r.stderr


def test_snapshots_create_ls_info_download_remove(env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    write(work / "a.txt", "a1")
    write(work / "sub" / "b.txt", "b")
    ok(cli(env, "fs", "sync", "-d", str(work), "-l", "/proj", "--yes"))
    snap = js(cli(env, "fs", "snapshot", "create", "-l", "proj/", "-n", "v1", "--json"))
    assert (snap["label"], snap["name"], len(snap["fileids"])) == ("/proj", "v1", 2)
    write(work / "a.txt", "a2")  # a new revision after the snapshot: the snapshot keeps a1
    ok(cli(env, "fs", "sync", "-d", str(work), "-l", "/proj", "--yes"))

    listed = js(cli(env, "fs", "snapshot", "ls", "--json"))
    assert [(s["name"], s["snapshotid"]) for s in listed] == [("v1", snap["snapshotid"])]
    assert "v1" in ok(cli(env, "fs", "snapshot", "ls"))
    info = ok(cli(env, "fs", "snapshot", "info", "-n", "v1"))
    assert "a.txt" in info and "b.txt" in info and snap["snapshotid"] in info
    assert js(cli(env, "fs", "snapshot", "info", "-i", snap["snapshotid"], "--json"))["fileids"] == snap["fileids"]

    out = tmp_path / "out"
    r = cli(env, "fs", "snapshot", "download", "-n", "v1", "-d", str(out))
    ok(r)
    assert (out / "a.txt").read_text() == "a1"
    assert (out / "sub" / "b.txt").read_text() == "b"
    ok(cli(env, "fs", "snapshot", "download", "-i", snap["snapshotid"], "-d", str(tmp_path / "out2"), "--quiet"))
    assert (tmp_path / "out2" / "a.txt").read_text() == "a1"

    r = cli(env, "fs", "snapshot", "create", "-l", "/proj", "-n", "v1")
    assert r.returncode == 1 and "status" in r.stderr  # a duplicate name is refused
    ok(cli(env, "fs", "snapshot", "create", "-l", "/proj", "-n", "v2"))
    ok(cli(env, "fs", "snapshot", "remove", "-n", "v1"))
    assert [s["name"] for s in js(cli(env, "fs", "snapshot", "ls", "--json"))] == ["v2"]
    r = cli(env, "fs", "snapshot", "info", "-n", "v1")
    assert r.returncode == 1 and "404" in r.stderr
    ok(cli(env, "fs", "snapshot", "removeall", "--yes"))
    assert js(cli(env, "fs", "snapshot", "ls", "--json")) == []


def test_no_store_configured_is_one_clear_line(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    """Moving bytes needs a store and says how to name one; reading metadata needs none."""
    env = cli_env(server, colony)
    write(tmp_path / "w" / "f.txt", "f")
    r = cli(env, "fs", "sync", "-d", str(tmp_path / "w"), "-l", "/x", "--yes")
    assert r.returncode == 1 and "COLONIES_FS_DIR" in r.stderr and "Traceback" not in r.stderr
    ok(cli({**env, "COLONIES_FS_DIR": str(tmp_path / "objects")}, "fs", "sync", "-d", str(tmp_path / "w"), "-l", "/x",
           "--yes"))
    assert [f["name"] for f in js(cli(env, "fs", "ls", "-l", "/x", "--json"))] == ["f.txt"]
    assert [x["name"] for x in js(cli(env, "fs", "label", "ls", "--json"))] == ["/x"]
    assert str(tmp_path / "objects") in ok(cli(env, "fs", "info", "-l", "/x", "-n", "f.txt"))  # Where: the path


# -- function submit / exec --snapshot --------------------------------------------------------------------------
def test_function_submit_and_exec_snapshot_put_the_mounts_into_spec_fs(
    env: dict[str, str], colony: ColonyKeys, server: ServerProc, tmp_path: Path
) -> None:
    """--snapshot freezes each spec.fs snapshot mount's label into a new snapshot whose id goes into
    the mount (the original's meaning); exec's --snapshots LABEL:DIR adds such mounts."""
    write(tmp_path / "w" / "in.txt", "input")
    ok(cli(env, "fs", "sync", "-d", str(tmp_path / "w"), "-l", "/inputs", "--yes"))
    fs_spec = {"mount": "/cfs", "snapshots": [{"snapshotid": "", "label": "inputs/", "dir": "/in", "keepfiles": False,
                                              "keepsnapshot": True}], "dirs": []}
    spec = {"funcname": "work", "conditions": {"executortype": "nobody"}, "fs": fs_spec}
    path = write(tmp_path / "spec.json", json.dumps(spec))
    p = js(cli(env, "function", "submit", "--spec", str(path), "--snapshot", "--json"))
    mount = p["spec"]["fs"]["snapshots"][0]
    assert (mount["label"], mount["dir"], mount["keepsnapshot"], p["spec"]["fs"]["mount"]) == ("/inputs", "/in", True, "/cfs")
    with server.client(colony.user_prvkey) as user:
        snap = user.get_snapshot(colony.name, snapshotid=mount["snapshotid"])
        newest = user.get_file(colony.name, label="/inputs", name="in.txt", latest=True)[0]
    assert (snap.label, snap.fileids) == ("/inputs", [newest.fileid])

    plain = js(cli(env, "function", "submit", "--spec", str(path), "--json"))  # no flag: the spec as written
    assert plain["spec"]["fs"]["snapshots"][0]["snapshotid"] == ""

    p = js(cli(env, "function", "exec", "--func", "work", "--type", "nobody", "--snapshots", "/inputs:data",
               "--no-wait", "--json"))
    [mount] = p["spec"]["fs"]["snapshots"]
    assert (mount["label"], mount["dir"], mount["keepsnapshot"]) == ("/inputs", "data", False)
    assert len(js(cli(env, "fs", "snapshot", "ls", "--json"))) == 2
    assert mount["snapshotid"] in {s["snapshotid"] for s in js(cli(env, "fs", "snapshot", "ls", "--json"))}

    write(tmp_path / "nofs.json", json.dumps({"funcname": "work", "conditions": {"executortype": "nobody"}}))
    r = cli(env, "function", "submit", "--spec", str(tmp_path / "nofs.json"), "--snapshot")
    assert r.returncode == 1 and "fs.snapshots" in r.stderr
    r = cli(env, "function", "exec", "--func", "work", "--type", "nobody", "--snapshots", "nodir", "--no-wait")
    assert r.returncode == 1 and "LABEL:DIR" in r.stderr


# -- S3 -----------------------------------------------------------------------------------------------------------
def test_sync_ls_get_with_s3(server: ServerProc, colony: ColonyKeys, tmp_path: Path, s3_server: dict[str, str]) -> None:
    env = cli_env(server, colony, **s3_server)
    work = tmp_path / "work"
    write(work / "model.bin", os.urandom(200_000))
    write(work / "sub" / "notes.txt", "n")
    ok(cli(env, "fs", "sync", "-d", str(work), "-l", "models", "--yes"))
    [f] = js(cli(env, "fs", "ls", "-l", "/models", "--json"))
    assert (f["name"], f["size"]) == ("model.bin", 200_000)
    [info] = js(cli(env, "fs", "info", "-l", "/models", "-n", "model.bin", "--json"))
    assert info["ref"]["protocol"] == "s3" and info["ref"]["s3object"]["bucket"] == s3_server["AWS_S3_BUCKET"]
    assert info["ref"]["s3object"]["secretkey"] == "" and info["ref"]["s3object"]["accesskey"] == ""
    got = tmp_path / "got"
    ok(cli(env, "fs", "get", "-l", "models", "-n", "model.bin", "-d", str(got)))
    assert (got / "model.bin").read_bytes() == (work / "model.bin").read_bytes()
    down = tmp_path / "down"
    ok(cli(env, "fs", "sync", "-d", str(down), "-l", "/models", "--yes"))
    assert (down / "sub" / "notes.txt").read_text() == "n"


# -- colonies dev -------------------------------------------------------------------------------------------------
def test_colonies_dev_then_fs_sync_works_with_no_s3(tmp_path: Path) -> None:
    """`colonies dev` exports COLONIES_FS_DIR (an owner-only directory) in dev.env and gives it to its demo
    executor: `source dev.env; colonies fs sync` stores files with no S3, and a process whose spec.fs
    mounts a snapshot runs on the demo executor with the snapshot staged."""
    from tests.test_hardening_ux import DevServer

    dev = DevServer(tmp_path)
    try:
        dev.wait_serving()
        out = "".join(dev.output)
        objects_dir = dev.dir / "objects"
        assert f"objects in {objects_dir.absolute()}" in out, out
        assert stat.S_IMODE(objects_dir.stat().st_mode) == 0o700
        env_file = dev.dir / "dev.env"
        assert f"export COLONIES_FS_DIR={objects_dir.absolute()}" in env_file.read_text()
        work = tmp_path / "work"
        write(work / "hello.txt", "hello from dev")
        script = textwrap.dedent(f"""\
            set -e
            source {env_file}
            cd {tmp_path}
            colonies fs sync -d {work} -l /demo --yes
            colonies fs ls -l /demo --json
            colonies fs snapshot create -l /demo -n first --json
        """)
        clean = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}  # no AWS_S3_*, no COLONIES_*
        r = subprocess.run(["bash", "-c", script], env=clean, capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert '"hello.txt"' in r.stdout
        assert objects(objects_dir)  # the bytes are in the local store
        snap = json.loads(r.stdout[r.stdout.rindex('{\n  "snapshotid"'):])

        import colonies
        from colonies.client.core import func_spec

        keys = json.loads((dev.dir / "keys.json").read_text())
        spec = func_spec("echo", "dev", "demo", args=["staged"])
        spec.fs = {"mount": "", "snapshots": [{"snapshotid": snap["snapshotid"], "label": "/demo", "dir": "in",
                                               "keepfiles": False, "keepsnapshot": True}], "dirs": []}
        with colonies.Client("127.0.0.1", dev.port, prvkey=keys["user"]) as user:
            p = user.submit(spec)

            def finished() -> Any:
                q = user.get_process(p.processid)
                return q if q.state >= 2 else None

            done = wait_until(finished, 60, "the staged process")
        assert (done.state, done.output) == (2, ["staged"]), done.errors
    finally:
        dev.stop()
