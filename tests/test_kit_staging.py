"""The executor kit stages data (issue 11 items 5 and 7): `spec.fs` snapshots and dirs around a function.

Real parts throughout: a server on loopback, executors as `colonies executor run` subprocesses with
their own working-directory roots (--fs-dir), the object store from their environment (a local
directory, or moto's S3 server on loopback), and the test reading the files back through the SDK.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonies.client.core import func_spec
from colonies.errors import ClientError
from colonies.fs import FileSystem, store_from_env
from colonies.model import FunctionSpec, WorkflowSpec
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import cli_env, process_in_state, run_cli, start_executor, stop, wait_until

FINAL = {2, 3, 4}

MODULE = """
import os, pathlib, shutil
from colonies.executor import Context, Executor

ex = Executor(executortype="stage")

@ex.function
def produce(text: str, ctx: Context) -> str:
    (ctx.workdir / "out" / "result.txt").write_text(text)
    (ctx.workdir / "out" / "part").mkdir()
    (ctx.workdir / "out" / "part" / "extra.txt").write_text(text.upper())
    (ctx.workdir / "scratch.tmp").write_text("not synced")
    return str(ctx.workdir)

@ex.function
def consume(parent_workdir: str, ctx: Context) -> list:
    got = (ctx.workdir / "in" / "result.txt").read_text()
    extra = (ctx.workdir / "in" / "part" / "extra.txt").read_text()
    return [got, extra, parent_workdir, str(ctx.workdir)]

@ex.function
def read_snapshot(name: str, ctx: Context) -> list:
    return [(ctx.workdir / "data" / name).read_text(), str(ctx.workdir)]

@ex.function
def never(marker: str) -> None:
    pathlib.Path(marker).write_text("ran")

@ex.function
def plain(ctx: Context) -> list:
    return [ctx.workdir is None, ctx.fs is None]

@ex.function
def sabotage(store: str, ctx: Context) -> str:
    for i in range(3):
        (ctx.workdir / "out" / f"f{i}.txt").write_text(str(i))
    shutil.rmtree(store)
    pathlib.Path(store).write_text("the object store is gone")  # every upload now fails
    return "done"

@ex.function
def wait_for_cancel(marker: str, ctx: Context) -> str:
    (ctx.workdir / "out" / "partial.txt").write_text("half done")
    pathlib.Path(marker).write_text(str(ctx.workdir))
    while not ctx.wait(0.05):
        pass
    return "cancelled"
"""


@pytest.fixture(params=["local", "s3"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The executors' (and the test's) object store: a local directory, or S3 on loopback."""
    if request.param == "local":
        yield {"COLONIES_FS_DIR": str(tmp_path / "objects")}
    else:
        yield dict(request.getfixturevalue("s3_server"))


def _module(tmp_path: Path) -> str:
    path = tmp_path / "stagemod.py"
    path.write_text(MODULE)
    return str(path)


def _dirs(label: str, dir: str, onstart: bool = False, onclose: bool = True, keepfiles: bool = False) -> dict[str, Any]:
    return {"label": label, "dir": dir, "keepfiles": keepfiles,
            "onconflicts": {"onstart": {"keeplocal": onstart}, "onclose": {"keeplocal": onclose}}}


def _spec(fn: str, colony: ColonyKeys, fs: dict[str, Any] | None, **kw: Any) -> FunctionSpec:
    spec = func_spec(fn, colony.name, "stage", **kw)
    spec.fs = fs
    return spec


def _log(c: Any, colony: ColonyKeys, process_id: str) -> str:
    return "".join(e.message for e in c.get_logs(colony.name, process_id) or [])


@contextlib.contextmanager
def _filesystem(server: ServerProc, colony: ColonyKeys, env: dict[str, str]) -> Iterator[FileSystem]:
    with server.client(colony.user_prvkey) as client:
        yield FileSystem(client, colony.name, store=store_from_env(env))


def test_a_workflow_passes_a_result_file_between_executors(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path, store_env: dict[str, str]
) -> None:
    """Step 1 (executor A) writes result files into its synced dir; step 2 (executor B, another process
    and working-directory root) gets them through the same label and outputs their content."""
    env = cli_env(server, colony, **store_env)
    roots = {n: tmp_path / f"fs-{n}" for n in ("a", "b")}
    execs = [start_executor(env, tmp_path / f"{n}.log", _module(tmp_path), "--name", f"stage-{n}",
                            "--fs-dir", str(root), "--watch", "0.5") for n, root in roots.items()]
    label = "/results/run-1"
    try:
        with server.client(colony.user_prvkey) as c:
            wf = WorkflowSpec(colonyname=colony.name, functionspecs=[
                _spec("produce", colony, {"mount": "/cfs", "dirs": [_dirs(label, "/out")]},
                      args=["hello from step 1"], executornames=["stage-a"]),
                _spec("consume", colony, {"mount": "/cfs", "dirs": [_dirs(label, "/in", onclose=False)]},
                      dependencies=["produce"], executornames=["stage-b"]),
            ])
            graph = c.submit_workflow(wf)
            wait_until(lambda: c.get_processgraph(graph.processgraphid).state in FINAL, timeout=60,
                       what="the workflow to end")
            got = {p.spec.nodename: p for p in (c.get_process(pid) for pid in graph.processids)}
            assert got["produce"].state == 2, got["produce"].errors
            assert got["consume"].state == 2, got["consume"].errors
            content, extra, workdir_a, workdir_b = got["consume"].output or []
            assert (content, extra) == ("hello from step 1", "HELLO FROM STEP 1")
            assert Path(workdir_a) == roots["a"] / got["produce"].processid
            assert Path(workdir_b) == roots["b"] / got["consume"].processid
            assert not Path(workdir_a).exists() and not Path(workdir_b).exists()  # keepfiles false
            assert "synced /out up with label /results/run-1: 2 up, 0 down" in _log(c, colony, got["produce"].processid)
            assert "synced /in down with label /results/run-1: 0 up, 2 down" in _log(c, colony, got["consume"].processid)
            with _filesystem(server, colony, store_env) as fs:
                assert {f.name for f in fs.files(label)} == {"result.txt"}  # scratch.tmp outside /out stays local
                assert {f.name for f in fs.files(label + "/part")} == {"extra.txt"}
    finally:
        for p in execs:
            stop(p)


def test_snapshots_are_staged_and_removed_unless_kept(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path, store_env: dict[str, str]
) -> None:
    env = cli_env(server, colony, **store_env)
    src = tmp_path / "input.txt"
    src.write_text("snapshot content")
    root = tmp_path / "fs"
    with server.client(colony.user_prvkey) as c:
        with _filesystem(server, colony, store_env) as fs:
            fs.upload(src, "/inputs")
            gone, kept = fs.create_snapshot("/inputs", "gone"), fs.create_snapshot("/inputs", "kept")

        def mount(snap_id: str, keep: bool) -> dict[str, Any]:
            return {"mount": "/cfs", "snapshots": [{"snapshotid": snap_id, "label": "/inputs", "dir": "/data",
                                                    "keepfiles": keep, "keepsnapshot": keep}]}

        p1 = c.submit(_spec("read_snapshot", colony, mount(gone.snapshotid, False), args=["input.txt"]))
        p2 = c.submit(_spec("read_snapshot", colony, mount(kept.snapshotid, True), args=["input.txt"]))
        # pycolonies sends an empty fs with every spec: nothing is staged for it
        p3 = c.submit(_spec("plain", colony, {"mount": "", "snapshots": None, "dirs": None}))
        r = run_cli(env, "executor", "run", _module(tmp_path), "--until-idle", "--fs-dir", str(root), timeout=90)
        assert r.returncode == 0, r.stderr
        d1, d2, d3 = (c.get_process(p.processid) for p in (p1, p2, p3))
        assert d1.state == 2 and (d1.output or [])[0] == "snapshot content", d1.errors
        assert d2.state == 2 and (d2.output or [])[0] == "snapshot content", d2.errors
        assert d3.state == 2 and d3.output == [True, True], d3.errors
        with pytest.raises(ClientError):
            c.get_snapshot(colony.name, snapshotid=gone.snapshotid)
        assert c.get_snapshot(colony.name, snapshotid=kept.snapshotid).name == "kept"
        assert not Path((d1.output or [])[1]).exists()
        assert (Path((d2.output or [])[1]) / "data" / "input.txt").read_text() == "snapshot content"  # keepfiles
        assert f"removed snapshot {gone.snapshotid}" in _log(c, colony, p1.processid)
        assert "removed snapshot" not in _log(c, colony, p2.processid)


def test_a_staging_failure_fails_the_process_and_adds_no_records(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path, store_env: dict[str, str]
) -> None:
    env = cli_env(server, colony, **store_env)
    root, marker = tmp_path / "fs", tmp_path / "ran"
    missing = "0" * 64
    fs_spec = {"mount": "/cfs",
               "snapshots": [{"snapshotid": missing, "label": "/inputs", "dir": "/data", "keepsnapshot": False}],
               "dirs": [_dirs("/never", "/out", onstart=True)]}
    with server.client(colony.user_prvkey) as c:
        p = c.submit(_spec("never", colony, fs_spec, args=[str(marker)]))
        r = run_cli(env, "executor", "run", _module(tmp_path), "--until-idle", "--fs-dir", str(root), timeout=60)
        assert r.returncode == 0, r.stderr
        done = c.get_process(p.processid)
        assert done.state == 3
        assert len(done.errors) == 1 and "\n" not in done.errors[0]
        assert done.errors[0].startswith(f"staging failed: downloading snapshot {missing} into /data: ")
        assert done.errors[0] in _log(c, colony, p.processid)
        assert not marker.exists()  # the function never ran
        assert [lb.name for lb in c.get_file_labels(colony.name)] == []  # no records anywhere
        assert list(root.iterdir()) == []  # its working directory is gone


def test_a_failed_sync_up_fails_the_process_and_leaves_the_label_as_it_was(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    """Every upload of the sync up fails (the function removed the object store): the process fails with
    the reason instead of closing, and no record of the three files was added."""
    store = tmp_path / "objects"
    env = cli_env(server, colony, COLONIES_FS_DIR=str(store))
    with server.client(colony.user_prvkey) as c:
        p = c.submit(_spec("sabotage", colony, {"mount": "/cfs", "dirs": [_dirs("/half", "/out")]}, args=[str(store)]))
        r = run_cli(env, "executor", "run", _module(tmp_path), "--until-idle", "--fs-dir", str(tmp_path / "fs"))
        assert r.returncode == 0, r.stderr
        done = c.get_process(p.processid)
        assert done.state == 3 and done.output in (None, [])
        assert len(done.errors) == 1 and done.errors[0].startswith("staging failed: syncing /out up with label /half: ")
        assert [lb.name for lb in c.get_file_labels(colony.name)] == []


def test_spec_fs_without_an_object_store_fails_clearly(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    env = cli_env(server, colony)
    for name in [k for k in env if k.startswith("AWS_S3_") or k == "COLONIES_FS_DIR"]:
        del env[name]
    marker = tmp_path / "ran"
    with server.client(colony.user_prvkey) as c:
        p = c.submit(_spec("never", colony, {"mount": "/cfs", "dirs": [_dirs("/x", "/out")]}, args=[str(marker)]))
        r = run_cli(env, "executor", "run", _module(tmp_path), "--until-idle", "--fs-dir", str(tmp_path / "fs"))
        assert r.returncode == 0, r.stderr
        done = c.get_process(p.processid)
    assert done.state == 3 and not marker.exists()
    assert done.errors[0].startswith("staging failed: this executor has no usable object store for spec.fs: "
                                     "no object store configured for ColonyFS: set AWS_S3_ENDPOINT")


def test_a_cancelled_process_syncs_nothing_up_and_keeps_its_snapshot(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    store_env = {"COLONIES_FS_DIR": str(tmp_path / "objects")}
    env = cli_env(server, colony, **store_env)
    src = tmp_path / "input.txt"
    src.write_text("in")
    marker = tmp_path / "running"
    ex = start_executor(env, tmp_path / "ex.log", _module(tmp_path), "--fs-dir", str(tmp_path / "fs"),
                        "--watch", "0.2")
    try:
        with server.client(colony.user_prvkey) as c:
            with _filesystem(server, colony, store_env) as fs:
                fs.upload(src, "/inputs")
                snap = fs.create_snapshot("/inputs", "for-cancel")
            spec = {"mount": "/cfs", "dirs": [_dirs("/partial", "/out")],
                    "snapshots": [{"snapshotid": snap.snapshotid, "dir": "/data", "keepsnapshot": False}]}
            p = c.submit(_spec("wait_for_cancel", colony, spec, args=[str(marker)]))
            wait_until(marker.exists, what="the function to run")
            workdir = Path(marker.read_text())
            c.cancel(p.processid)
            wait_until(lambda: not workdir.exists(), what="the working directory to be removed")
            assert wait_until(process_in_state(c, p.processid, FINAL)).state == 4
            assert [lb.name for lb in c.get_file_labels(colony.name)] == ["/inputs"]  # nothing synced up
            assert c.get_snapshot(colony.name, snapshotid=snap.snapshotid).name == "for-cancel"
    finally:
        stop(ex)


def test_a_working_directory_is_private(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    """--fs-dir and each working directory are 0700; COLONIES_EXECUTOR_FS_DIR stands in for the flag."""
    store_env = {"COLONIES_FS_DIR": str(tmp_path / "objects")}
    root = tmp_path / "fs-env"
    env = cli_env(server, colony, COLONIES_EXECUTOR_FS_DIR=str(root), **store_env)
    with server.client(colony.user_prvkey) as c:
        spec = {"mount": "/cfs", "dirs": [_dirs("/kept", "/out", keepfiles=True)]}
        p = c.submit(_spec("produce", colony, spec, args=["x"]))
        r = run_cli(env, "executor", "run", _module(tmp_path), "--until-idle")
        assert r.returncode == 0, r.stderr
        done = c.get_process(p.processid)
    assert done.state == 2, done.errors
    workdir = Path((done.output or [""])[0])
    assert workdir == root / p.processid and (workdir / "out" / "result.txt").read_text() == "x"
    assert os.stat(root).st_mode & 0o777 == 0o700 and os.stat(workdir).st_mode & 0o777 == 0o700
    shutil.rmtree(root)


def test_the_deadline_stops_a_transfer_that_hangs(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    """Staging counts toward maxexectime: a snapshot download that blocks (its object is a FIFO nobody
    writes to) is given up at the deadline, the slot is free for the next process, the working directory
    is removed, and once bytes arrive the transfer thread sees the stop and ends."""
    objects = tmp_path / "objects"
    store_env = {"COLONIES_FS_DIR": str(objects)}
    env = cli_env(server, colony, **store_env)
    src = tmp_path / "input.txt"
    src.write_text("never read")
    root = tmp_path / "fs"
    with _filesystem(server, colony, store_env) as fs:
        f = fs.upload(src, "/inputs")
        snap = fs.create_snapshot("/inputs", "hangs")
    fifo = objects / f.ref.s3object.object
    fifo.unlink()
    os.mkfifo(fifo)
    ex = start_executor(env, tmp_path / "ex.log", _module(tmp_path), "--fs-dir", str(root), "--watch", "0.2")
    try:
        with server.client(colony.user_prvkey) as c:
            spec = {"mount": "/cfs", "snapshots": [{"snapshotid": snap.snapshotid, "dir": "/data"}]}
            p = c.submit(_spec("never", colony, spec, args=[str(tmp_path / "ran")], maxexectime=2,
                                maxretries=0))
            wait_until(lambda: (root / p.processid / "data").exists(), what="the staging to start")
            nxt = c.submit(_spec("plain", colony, None))
            done = wait_until(process_in_state(c, nxt.processid, FINAL), timeout=30, what="the next process")
            assert done.state == 2 and done.output == [True, True]
            assert c.get_process(p.processid).state == 3  # failed by the server at its deadline
            assert not (root / p.processid).exists()
            log = (tmp_path / "ex.log").read_text()
            assert "the execution deadline passed" in log
            # Bytes arrive: the blocked reader goes on, finds the stop (or its target gone) and ends, so
            # the executor can exit (asyncio.run waits for its worker threads).
            with contextlib.suppress(BrokenPipeError), open(fifo, "wb", buffering=0) as w:
                w.write(b"x" * 1024)
            ex.send_signal(signal.SIGTERM)
            assert ex.wait(30) == 0
            assert not (tmp_path / "ran").exists() and list(root.iterdir()) == []
    finally:
        stop(ex)


def test_an_unusable_fs_dir_fails_the_process_not_the_executor(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "fs-is-a-file"
    not_a_dir.write_text("")
    env = cli_env(server, colony, COLONIES_FS_DIR=str(tmp_path / "objects"))
    with server.client(colony.user_prvkey) as c:
        p = c.submit(_spec("never", colony, {"mount": "/cfs", "dirs": [_dirs("/x", "/out")]},
                           args=[str(tmp_path / "ran")]))
        q = c.submit(_spec("plain", colony, None))
        r = run_cli(env, "executor", "run", _module(tmp_path), "--until-idle", "--fs-dir", str(not_a_dir))
        assert r.returncode == 0, r.stderr
        failed, ok = c.get_process(p.processid), c.get_process(q.processid)
    assert failed.state == 3 and failed.errors[0].startswith("staging failed: making the working directories' root: ")
    assert ok.state == 2 and ok.output == [True, True]
