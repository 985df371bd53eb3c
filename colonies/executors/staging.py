"""Data staging (ColonyFS) around the function of a process with `spec.fs`: what the original
executors' pre-sync and post-sync do around each run (colonyos/executors common/pkg/sync).

    "fs": {"mount": "/cfs",
           "snapshots": [{"snapshotid": "…", "label": "/in", "dir": "/in", "keepsnapshot": false}],
           "dirs": [{"label": "/out", "dir": "/out", "keepfiles": false,
                     "onconflicts": {"onstart": {"keeplocal": false}, "onclose": {"keeplocal": true}}}]}

* Before the function: a fresh working directory `<fs-dir>/<processid>` (0700; what an earlier
  attempt left there is removed first). Each snapshot is downloaded into `<workdir>/<dir>`, then
  each dir is synced down from its label (`onstart.keeplocal` settles conflicts). The function gets
  the path as `ctx.workdir` and the colony's files as `ctx.fs`. `{processid}` in a label or dir
  becomes the process id. `mount` is where a container would see the directory; functions of this
  kit run on the host, so it is not used (and, unlike the original, not needed to stage).
* After the function, whether it returned or raised (as the original's container executor does, so
  a failed run's partial output and logs can be looked at): each dir is synced up to its label
  (`onclose.keeplocal`), each snapshot is removed unless `keepsnapshot`, each mount's directory is
  removed unless its `keepfiles`, and the working directory too unless something in it is kept.
* A stopped process (cancelled, deadline passed, removed, re-queued) syncs nothing up and keeps its
  snapshots (a later attempt may need them); its directories are removed all the same. A failed
  staging keeps the snapshots too: the function never saw them.
* Staging counts toward `maxexectime` and ends on a cancel like the function: transfers run in a
  thread (AsyncFileSystem) whose progress callback raises `Cancelled` once the process is stopped,
  so the transfer ends at its next chunk; the kit waits `stop_grace` seconds for it.
* Resumed (Executor.resume, after a restart of the executor): the working directory the earlier run
  staged is kept as it is, with nothing downloaded again; a missing one is staged afresh.
* Failures: the process fails with one line, `staging failed: <step>: <reason>`, in its errors and
  its log; a failed sync up fails a process whose function returned. A label is never left
  half-synced: FileSystem.sync uploads every object before it adds any file record, so an upload
  that fails (or is stopped) adds none; a snapshot that cannot be read fails before anything moves.
* The object store is the executor's (colonies.fs.store_from_env: AWS_S3_* or COLONIES_FS_DIR); a
  process with `spec.fs` on an executor without one fails saying so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from colonies.errors import Cancelled, KitError
from colonies.executors.context import Context
from colonies.model import Process

if TYPE_CHECKING:
    from colonies.fs import AsyncFileSystem

log = logging.getLogger("colonies.executor")
T = TypeVar("T")
Outcome = tuple[bool, list[Any]]


class KeepLocal(msgspec.Struct):
    keeplocal: bool = False


class OnConflicts(msgspec.Struct):
    onstart: KeepLocal = msgspec.field(default_factory=KeepLocal)
    onclose: KeepLocal = msgspec.field(default_factory=KeepLocal)


class SnapshotMount(msgspec.Struct):
    snapshotid: str = ""
    label: str = ""
    dir: str = ""
    keepfiles: bool = False
    keepsnapshot: bool = False


class SyncDirMount(msgspec.Struct):
    label: str = ""
    dir: str = ""
    keepfiles: bool = False
    onconflicts: OnConflicts = msgspec.field(default_factory=OnConflicts)


class Filesystem(msgspec.Struct):
    """`spec.fs`, as the original's core.Filesystem (protocol.md §3)."""

    mount: str = ""
    snapshots: list[SnapshotMount] | None = None
    dirs: list[SyncDirMount] | None = None


class StagingFailed(KitError):
    """A staging step failed: the process fails with this message."""


class _Stopped(Exception):
    """The process was stopped while a staging step ran (internal)."""


def wants_staging(process: Process) -> bool:
    """Whether the process' `spec.fs` names anything to stage (pycolonies sends an empty one always)."""
    raw = process.spec.fs
    return isinstance(raw, dict) and bool(raw.get("snapshots") or raw.get("dirs"))


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 1000 else text[:999] + "…"


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class Staging:
    """The staging of one assignment. `around(body)` stages, runs body, syncs back and cleans up."""

    def __init__(self, process: Process, ctx: Context, stopped: asyncio.Event, root: Callable[[], Path],
                 filesystem: Callable[[], AsyncFileSystem], note: Callable[[str], None], grace: float,
                 resumed: bool = False) -> None:
        self.p, self.ctx, self.stopped = process, ctx, stopped
        self.resumed = resumed  # Executor.resume: keep the working directory an earlier run staged
        self._root, self._filesystem, self._note, self.grace = root, filesystem, note, grace
        self.pid = process.processid
        self.workdir: Path | None = None
        self.snapshots: list[tuple[SnapshotMount, Path]] = []
        self.dirs: list[tuple[SyncDirMount, str, Path]] = []
        self.fs: AsyncFileSystem | None = None

    async def around(self, body: Callable[[], Awaitable[Outcome]]) -> Outcome:
        try:
            try:
                await self._prepare()
            except StagingFailed as exc:
                return self._failed(exc)
            except _Stopped:
                return False, []
            ok, payload = await body()
            if self.stopped.is_set():
                return ok, payload
            try:
                await self._sync_up()
            except StagingFailed as exc:
                reason = self._failed(exc)[1]
                return False, (payload if not ok else []) + reason
            except _Stopped:
                return False, []
            await self._remove_snapshots()
            return ok, payload
        finally:
            await asyncio.to_thread(self._clean)

    def _failed(self, exc: StagingFailed) -> Outcome:
        message = f"staging failed: {exc}"
        log.warning("process %s: %s", self.pid[:12], message)
        self._note(f"[colonies] {message}\n")
        return False, [message]

    # -- the steps ------------------------------------------------------------------------------------
    async def _prepare(self) -> None:
        try:
            spec = msgspec.convert(self.p.spec.fs, Filesystem)
        except msgspec.ValidationError as exc:
            raise StagingFailed(f"spec.fs is not a filesystem: {one_line(exc)}") from None
        try:
            self.workdir = workdir = self._root() / self.pid
        except OSError as exc:
            raise StagingFailed(f"making the working directories' root: {one_line(exc)}") from None
        for i, sm in enumerate(spec.snapshots or []):
            if not sm.snapshotid:
                raise StagingFailed(f"spec.fs.snapshots[{i}] has no snapshotid (`colonies function submit "
                                    "--snapshot` makes the snapshot and fills it in)")
            self.snapshots.append((sm, self._inside(f"spec.fs.snapshots[{i}].dir", sm.dir)))
        for i, dm in enumerate(spec.dirs or []):
            label = dm.label.replace("{processid}", self.pid)
            if not label.strip("/"):
                raise StagingFailed(f"spec.fs.dirs[{i}] has no label")
            self.dirs.append((dm, label, self._inside(f"spec.fs.dirs[{i}].dir", dm.dir)))
        try:
            self.fs = fs = self._filesystem()
        except Exception as exc:  # noqa: BLE001 - no store configured, or an unusable one: say which
            raise StagingFailed(f"this executor has no usable object store for spec.fs: {one_line(exc)}") from None
        if self.resumed and workdir.is_dir():
            self.ctx.workdir, self.ctx.fs = workdir, fs
            self._note(f"[colonies] resumed: {workdir} is kept as the earlier run left it (nothing staged)\n")
            return
        try:
            await asyncio.to_thread(_fresh_dir, workdir)
        except OSError as exc:
            raise StagingFailed(f"making the working directory {workdir}: {one_line(exc)}") from None
        self.ctx.workdir, self.ctx.fs = workdir, fs
        for sm, path in self.snapshots:
            self._mkdir(path)
            got = await self._step(f"downloading snapshot {sm.snapshotid} into {self._show(path)}",
                                   fs.download_snapshot(path, snapshotid=sm.snapshotid, progress=self._check))
            self._note(f"[colonies] staged snapshot {sm.snapshotid} into {self._show(path)} ({len(got)} files)\n")
        for dm, label, path in self.dirs:
            await self._sync(label, path, dm.onconflicts.onstart.keeplocal, "down")

    async def _sync_up(self) -> None:
        for dm, label, path in self.dirs:
            await self._sync(label, path, dm.onconflicts.onclose.keeplocal, "up")

    async def _sync(self, label: str, path: Path, keeplocal: bool, way: str) -> None:
        assert self.fs is not None
        fs = self.fs
        self._mkdir(path)
        plan = await self._step(f"syncing {self._show(path)} {way} with label {label}",
                                fs.sync(path, label, keeplocal=keeplocal, progress=self._check))
        self._note(f"[colonies] synced {self._show(path)} {way} with label {label}: "
                   f"{len(plan.uploads())} up, {len(plan.downloads())} down\n")

    async def _remove_snapshots(self) -> None:
        assert self.fs is not None
        for sm, _path in self.snapshots:
            if sm.keepsnapshot:
                continue
            try:
                await self.fs.remove_snapshot(snapshotid=sm.snapshotid)
                self._note(f"[colonies] removed snapshot {sm.snapshotid}\n")
            except Exception as exc:  # noqa: BLE001 - the run is done; a leftover snapshot is only noted
                log.warning("process %s: could not remove snapshot %s: %s", self.pid[:12], sm.snapshotid, exc)
                self._note(f"[colonies] could not remove snapshot {sm.snapshotid}: {one_line(exc)}\n")

    def _clean(self) -> None:
        """Remove each mount's directory unless keepfiles, then the working directory if nothing is kept."""
        if self.workdir is None:
            return
        mounts = [(sm.keepfiles, path) for sm, path in self.snapshots] + [(dm.keepfiles, p) for dm, _l, p in self.dirs]
        kept = [path for keep, path in mounts if keep]
        if not kept:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        for keep, path in mounts:
            if not keep and not any(k == path or k.is_relative_to(path) or path.is_relative_to(k) for k in kept):
                shutil.rmtree(path, ignore_errors=True)
        self._note(f"[colonies] kept {', '.join(self._show(k) for k in kept)} in {self.workdir}\n")

    # -- helpers ---------------------------------------------------------------------------------------
    async def _step(self, what: str, call: Coroutine[Any, Any, T]) -> T:
        """Run one transfer; StagingFailed if it fails, _Stopped if the process is stopped meanwhile."""
        if self.stopped.is_set():
            call.close()
            raise _Stopped
        task = asyncio.ensure_future(call)
        waiter = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if self.stopped.is_set():
            # the thread ends at its next chunk (see _check); give it a moment before cleaning up
            await asyncio.wait([task], timeout=self.grace)
            task.add_done_callback(_retrieve)
            raise _Stopped
        try:
            return task.result()
        except Cancelled:
            raise _Stopped from None
        except Exception as exc:  # noqa: BLE001 - any failure of the step fails the process
            raise StagingFailed(f"{what}: {one_line(exc)}") from None

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StagingFailed(f"making {self._show(path)}: {one_line(exc)}") from None

    def _check(self, _done: int) -> None:
        """The transfers' progress callback (in their thread): end them once the process is stopped."""
        if self.ctx.cancelled:
            raise Cancelled(self.ctx.reason)

    def _inside(self, where: str, d: str) -> Path:
        assert self.workdir is not None
        rel = PurePosixPath(d.replace("{processid}", self.pid).strip("/"))
        if ".." in rel.parts:
            raise StagingFailed(f"{where} {d!r} leaves the working directory")
        return self.workdir.joinpath(*rel.parts)

    def _show(self, path: Path) -> str:
        assert self.workdir is not None
        rel = path.relative_to(self.workdir).as_posix()
        return "/" if rel == "." else "/" + rel


def _fresh_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)
