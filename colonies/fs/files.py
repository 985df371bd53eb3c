"""The ColonyFS SDK: files and snapshots of a colony, their bytes in an object store.

`FileSystem` runs over the sync `Client`; `AsyncFileSystem` runs each of its calls in a thread.

* Upload: the object is stored first (`ObjectStore.put` returns its SHA-256), then the record is added
  (`addfilemsg`). A crash in between leaves an unreferenced object, never a record pointing at a
  missing object. When the server refuses the record, the object is deleted again; when the reply is
  lost on the way (TransportError) it is kept, since the record may exist.
* Download: into a fresh `.cfs-tmp-*` file in the destination directory, checked against the
  record's SHA-256, then renamed over the target. A mismatch raises ChecksumError and the temp file
  is removed; an interrupted download leaves the old target untouched.
* Remove: the records first, then their objects (all revisions' objects when removing by name or
  label), so a failure in between leaves orphan objects, never dangling records.
* Sync (`colonies.fs.sync` has the rules): every object goes up (and every download comes down)
  before any record is added; a failed or cancelled transfer (an exception from `progress`) adds no
  record and deletes the objects this sync stored. If adding a record fails, the records this sync
  added are removed again, so the label reads as before. Only a process killed while adding records
  leaves some of them, each pointing at a complete object (the wire has no multi-record message).
* Transfers and listings run on a bounded thread pool (`workers`, 8 by default); a sync lists each
  label once (`getfilesmsg`), never each file.
* Objects of files found through a label listing (sync) are read from this FileSystem's store; a
  file fetched by its record (download, snapshots) is read from the store its ref names, so files
  uploaded by pycolonies to S3 come down while the local store is the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

import orjson

from colonies.client.sync import Client
from colonies.errors import ChecksumError, ConfigError, FsError, TransportError
from colonies.fs.store import ObjectStore, Progress, new_key, store_for_ref, store_from_env
from colonies.fs.sync import (
    EMPTY_SHA256,
    MARKER,
    TMP_PREFIX,
    LocalFile,
    RemoteFile,
    SyncPlan,
    build_plan,
    clean_plan,
    label_dirs,
    normalise_label,
    relative,
    safe_part,
    scan,
    sha256_file,
    sublabel,
    under,
)
from colonies.model import File, FileData, Label, Ref, Snapshot

WORKERS = 8
SHA256 = "SHA256"
T = TypeVar("T")
R = TypeVar("R")


def _locked(progress: Progress | None) -> Progress | None:
    """`progress` serialised: transfers call it from several worker threads."""
    if progress is None:
        return None
    lock = threading.Lock()

    def call(n: int) -> None:
        with lock:
            progress(n)

    return call


def _where(ref: Ref) -> tuple[str, str, int, str]:
    o = ref.s3object
    return ref.protocol, o.server, o.port, o.bucket


class FileSystem:
    """Files and snapshots of `colony`, signed by `client`'s key; bytes in `store` (default: from the
    environment, see `colonies.fs.store.store_from_env`)."""

    def __init__(self, client: Client, colony: str, store: ObjectStore | None = None,
                 environ: Mapping[str, str] | None = None, *, workers: int = WORKERS) -> None:
        self.client = client
        self.colony = colony
        self.environ = environ
        self.workers = max(1, workers)
        self._store = store
        self._readers: dict[tuple[str, str, int, str], ObjectStore] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> ObjectStore:
        """The store uploads go to (made from the environment on first use)."""
        with self._lock:
            if self._store is None:
                self._store = store_from_env(self.environ)
            return self._store

    def _reader(self, ref: Ref) -> ObjectStore:
        """The store that holds `ref`'s object: ours when the ref points into it, else one for the ref."""
        where = _where(ref)
        try:
            if _where(self.store.ref(new_key())) == where:
                return self.store
        except ConfigError:
            pass  # no store of our own configured: the ref says where
        with self._lock:
            if where not in self._readers:
                self._readers[where] = store_for_ref(ref, self.environ)
            return self._readers[where]

    def _map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        items = list(items)
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(min(self.workers, len(items))) as pool:
            return list(pool.map(fn, items))

    # -- files -----------------------------------------------------------------------------------------
    def upload(self, path: Path | str, label: str, name: str | None = None,
               progress: Progress | None = None) -> File:
        """Store the file's bytes, then record it under `label` (as `name`, default its file name)."""
        src = Path(path)
        if not src.is_file():
            raise FsError(f"{src} is not a file")
        return self._upload(self.store, src, normalise_label(label), name or src.name, progress)

    def _upload(self, store: ObjectStore, src: Path, label: str, name: str, progress: Progress | None) -> File:
        key, digest, size = self._put(store, src, name, progress)  # object first, then its record
        try:
            return self.client.add_file(self._record(store, key, digest, size, label, name))
        except TransportError:
            raise  # the record may exist: keep its object
        except BaseException:
            store.delete(key)
            raise

    def _put(self, store: ObjectStore, src: Path, name: str, progress: Progress | None) -> tuple[str, str, int]:
        if not safe_part(name):
            raise FsError(f"{name!r} is not a plain file name")
        key = new_key()
        size = src.stat().st_size
        try:
            return key, store.put(key, src, progress), size
        except BaseException:  # the store may hold the whole object already (a late failure): no orphan
            with contextlib.suppress(Exception):
                store.delete(key)
            raise

    def _record(self, store: ObjectStore, key: str, digest: str, size: int, label: str, name: str) -> File:
        return File(colonyname=self.colony, label=label, name=name, size=size, checksum=digest,
                    checksumalg=SHA256, ref=store.ref(key))

    def download(self, label: str, name: str, dst: Path | str, fileid: str = "",
                 progress: Progress | None = None) -> Path:
        """The newest revision of (label, name), or the revision `fileid`, into the directory `dst`
        under its name; its SHA-256 is checked (ChecksumError, nothing kept, on a mismatch)."""
        if fileid:
            found = self.client.get_file(self.colony, fileid=fileid)
        else:
            found = self.client.get_file(self.colony, label=normalise_label(label), name=name, latest=True)
        if not found:
            raise FsError(f"no file {fileid or name!r} in label {normalise_label(label)}")
        f = max(found, key=lambda x: x.sequencenr)
        if not safe_part(f.name):
            raise FsError(f"{f.name!r} is not a plain file name")
        return self._fetch_file(f, Path(dst) / f.name, progress)

    def _fetch_file(self, f: File, target: Path, progress: Progress | None) -> Path:
        alg = f.checksumalg.upper().replace("-", "")
        if alg not in ("", SHA256):
            raise FsError(f"{f.name}: checksum algorithm {f.checksumalg!r} is not supported (only SHA256)")
        return fetch(self._reader(f.ref), f.ref.s3object.object, f.size, f.checksum, target, progress)

    def labels(self, name: str = "", exact: bool = False) -> list[Label]:
        """All labels (`name` ""), those starting with `name`, or (`exact`) `name` and its sub-labels."""
        return self.client.get_file_labels(self.colony, name=normalise_label(name) if name else "", exact=exact) or []

    def files(self, label: str) -> list[FileData]:
        """The newest revision of each file name in exactly `label`."""
        return self.client.get_files(self.colony, normalise_label(label)) or []

    def revisions(self, label: str, name: str) -> list[File]:
        """Every revision of (label, name), oldest first."""
        found = self.client.get_file(self.colony, label=normalise_label(label), name=name, latest=False) or []
        return sorted(found, key=lambda f: f.sequencenr)

    def remove(self, label: str, name: str = "", fileid: str = "") -> int:
        """Remove the revision `fileid`, or every revision of (label, name): records first, then their
        objects. Returns how many revisions went. (`label` is not consulted when `fileid` is given.)"""
        if fileid:
            revs = self.client.get_file(self.colony, fileid=fileid) or []
            self.client.remove_file(self.colony, fileid=fileid)
        elif name:
            revs = self.revisions(label, name)
            self.client.remove_file(self.colony, label=normalise_label(label), name=name)
        else:
            raise FsError("remove needs a file name or a file id (remove_label removes a whole label)")
        self._delete_objects(revs)
        return len(revs)

    def remove_label(self, label: str) -> int:
        """Remove every file of exactly `label` (not `/database` for `/data`, nor its sub-labels), with
        every revision's object. Returns how many revisions went."""
        lab = normalise_label(label)
        return sum(self._map(lambda fd: self.remove(lab, fd.name), self.files(lab)))

    def _delete_objects(self, revs: Iterable[File]) -> None:
        errors: list[BaseException] = []
        for f in revs:
            try:
                self._reader(f.ref).delete(f.ref.s3object.object)
            except (FsError, ConfigError, OSError) as exc:
                errors.append(exc)
        if errors:
            raise FsError(f"records removed, but {len(errors)} object(s) could not be deleted: {errors[0]}")

    # -- sync ------------------------------------------------------------------------------------------
    def sync(self, dir: Path | str, label: str, keeplocal: bool = True, dry_run: bool = False,
             progress: Progress | None = None) -> SyncPlan:
        """Sync the directory `dir` with `label` both ways (rules: colonies.fs.sync); returns the plan,
        which `dry_run` only computes."""
        root = Path(dir).absolute()
        if root.exists() and not root.is_dir():
            raise FsError(f"{root} is not a directory")
        plan = self.plan(root, label, keeplocal)
        if not dry_run:
            root.mkdir(parents=True, exist_ok=True)
            (root / MARKER).write_bytes(orjson.dumps({"label": plan.label}))  # the original CLI's marker
            self._apply(plan, _locked(progress))
        return plan

    def _remote_labels(self, root: str) -> list[str]:
        return sorted(lb.name for lb in self.labels(root) if under(lb.name, root))

    def plan(self, dir: Path | str, label: str, keeplocal: bool = True) -> SyncPlan:
        """The sync plan: local files hashed, each remote label listed once."""
        root, lab = Path(dir).absolute(), normalise_label(label)
        scanned = scan(root)
        remote_labels = self._remote_labels(lab)
        dirs = label_dirs(root, lab, scanned, remote_labels)
        listed = self._map(lambda lb: (lb, self.files(lb)), remote_labels)
        remote = {lb: {fd.name: RemoteFile(lb, fd.name, dirs[lb] / fd.name, fd.size, fd.checksum, fd.s3filename)
                       for fd in fds} for lb, fds in listed}
        todo = [(sublabel(lab, rel), name, path) for rel, files in scanned.items() for name, path in files.items()]

        def hashed(item: tuple[str, str, Path]) -> LocalFile:
            lb, name, path = item
            return LocalFile(lb, name, path, path.stat().st_size, sha256_file(path))

        local: dict[str, dict[str, LocalFile]] = {sublabel(lab, rel): {} for rel in scanned}
        for lf in self._map(hashed, todo):
            local[lf.label][lf.name] = lf
        return build_plan(root, lab, keeplocal, local, remote)

    def _apply(self, plan: SyncPlan, progress: Progress | None) -> None:
        store = self.store
        ups, downs = plan.uploads(), plan.downloads()
        if not ups and not downs:
            return
        with ThreadPoolExecutor(self.workers) as pool:
            puts = [pool.submit(self._put, store, f.path, f.name, progress) for f in ups]
            gets = [pool.submit(fetch, store, r.key, r.size, r.checksum, r.path, progress) for r in downs]
            failure = _settle(puts + gets)
            stored = [(f, fut.result()) for f, fut in zip(ups, puts, strict=True) if _ok(fut)]
            if failure is not None:
                for _, (key, _d, _s) in stored:
                    store.delete(key)
                raise failure
            records = [self._record(store, key, digest, size, f.label, f.name) for f, (key, digest, size) in stored]
            adds = [pool.submit(self.client.add_file, rec) for rec in records]
            failure = _settle(adds)
            if failure is None:
                return
            for rec, fut in zip(records, adds, strict=True):
                key = rec.ref.s3object.object
                if _ok(fut):  # undo, so the label reads as before the sync
                    with contextlib.suppress(Exception):  # still there: it points at a whole object
                        self.client.remove_file(self.colony, fileid=fut.result().fileid)
                        store.delete(key)
                elif fut.cancelled() or not isinstance(fut.exception(), TransportError):
                    store.delete(key)  # never recorded (a lost reply may have been: that object stays)
            raise failure

    def clean(self, dir: Path | str, label: str, dry_run: bool = False) -> list[Path]:
        """Remove the local files under `dir` that `label` (or the matching sub-label) does not hold, and
        the directories no label maps to; returns what was (or, `dry_run`, would be) removed. Refuses a
        label with no files at all, which would empty the directory."""
        root, lab = Path(dir).absolute(), normalise_label(label)
        if not root.is_dir():
            raise FsError(f"{root} is not a directory")
        remote_labels = self._remote_labels(lab)
        if not remote_labels:
            raise FsError(f"label {lab} holds no files; nothing to clean against")
        names = dict(self._map(lambda lb: (lb, {fd.name for fd in self.files(lb)}), remote_labels))
        doomed = clean_plan(scan(root), names, root, lab)
        if not dry_run:
            for p in doomed:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        return doomed

    # -- snapshots -------------------------------------------------------------------------------------
    def create_snapshot(self, label: str, name: str) -> Snapshot:
        """Freeze the newest revision of every file under `label` and its sub-labels as `name`."""
        return self.client.create_snapshot(self.colony, normalise_label(label), name)

    def download_snapshot(self, dst: Path | str, name: str = "", snapshotid: str = "",
                          progress: Progress | None = None) -> list[Path]:
        """Every file of the snapshot into `dst` (sub-labels as subdirectories); a file already there
        with the same SHA-256 is not fetched again. Returns the files' paths."""
        snap = self.client.get_snapshot(self.colony, snapshotid=snapshotid, name=name)
        root, lab = Path(dst).absolute(), normalise_label(snap.label)
        found = self._map(lambda fid: self.client.get_file(self.colony, fileid=fid), snap.fileids)
        files = [max(fs, key=lambda x: x.sequencenr) for fs in found if fs]
        targets: list[tuple[File, Path]] = []
        for f in files:
            flab = normalise_label(f.label)
            rel = relative(flab, lab) if under(flab, lab) else None
            if rel is None or not safe_part(f.name) or (rel and not all(safe_part(p) for p in rel.split("/"))):
                raise FsError(f"snapshot {snap.name}: file {f.label}/{f.name} does not map to a path under {root}")
            targets.append((f, (root / rel if rel else root) / f.name))
        lock_progress = _locked(progress)

        def one(item: tuple[File, Path]) -> Path:
            f, target = item
            if target.is_file() and sha256_file(target) == f.checksum.lower():
                return target
            return self._fetch_file(f, target, lock_progress)

        return self._map(one, targets)

    def remove_snapshot(self, name: str = "", snapshotid: str = "") -> None:
        """Remove the snapshot (its files stay)."""
        self.client.remove_snapshot(self.colony, snapshotid=snapshotid, name=name)

    def remove_all_snapshots(self) -> None:
        self.client.remove_all_snapshots(self.colony)


def fetch(store: ObjectStore, key: str, size: int, checksum: str, target: Path,
          progress: Progress | None = None) -> Path:
    """Download `key` into `target` through a temp file beside it; the SHA-256 must equal `checksum`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask decides the mode
    want = checksum.lower()
    try:
        if size == 0 and want in ("", EMPTY_SHA256):
            digest = EMPTY_SHA256  # the original stores no object for an empty file
        else:
            digest = store.get(key, tmp, progress)
        if not want:
            raise ChecksumError(f"{target.name}: the file record has no SHA-256 to check against; not kept")
        if digest != want:
            raise ChecksumError(f"{target.name}: SHA-256 {digest} does not match the recorded {want}; not kept")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _ok(fut: Future[Any]) -> bool:
    return fut.done() and not fut.cancelled() and fut.exception() is None


def _settle(futs: list[Future[Any]]) -> BaseException | None:
    """Wait for every future; on the first failure cancel those not started. Returns that failure."""
    if not futs:
        return None
    done, _ = wait(futs, return_when=FIRST_EXCEPTION)
    failed = next((f.exception() for f in futs if f in done and not f.cancelled() and f.exception()), None)
    if failed is not None:
        for f in futs:
            f.cancel()
        wait(futs)
    return failed


class AsyncFileSystem:
    """`FileSystem` for asyncio code: the same calls, each run in a worker thread (`asyncio.to_thread`).
    A call cannot be cancelled mid-transfer from outside; a `progress` that raises stops it."""

    def __init__(self, client: Client, colony: str, store: ObjectStore | None = None,
                 environ: Mapping[str, str] | None = None, *, workers: int = WORKERS) -> None:
        self.fs = FileSystem(client, colony, store, environ, workers=workers)

    async def upload(self, path: Path | str, label: str, name: str | None = None,
                     progress: Progress | None = None) -> File:
        return await asyncio.to_thread(self.fs.upload, path, label, name, progress)

    async def download(self, label: str, name: str, dst: Path | str, fileid: str = "",
                       progress: Progress | None = None) -> Path:
        return await asyncio.to_thread(self.fs.download, label, name, dst, fileid, progress)

    async def labels(self, name: str = "", exact: bool = False) -> list[Label]:
        return await asyncio.to_thread(self.fs.labels, name, exact)

    async def files(self, label: str) -> list[FileData]:
        return await asyncio.to_thread(self.fs.files, label)

    async def revisions(self, label: str, name: str) -> list[File]:
        return await asyncio.to_thread(self.fs.revisions, label, name)

    async def remove(self, label: str, name: str = "", fileid: str = "") -> int:
        return await asyncio.to_thread(self.fs.remove, label, name, fileid)

    async def remove_label(self, label: str) -> int:
        return await asyncio.to_thread(self.fs.remove_label, label)

    async def sync(self, dir: Path | str, label: str, keeplocal: bool = True, dry_run: bool = False,
                   progress: Progress | None = None) -> SyncPlan:
        return await asyncio.to_thread(self.fs.sync, dir, label, keeplocal, dry_run, progress)

    async def plan(self, dir: Path | str, label: str, keeplocal: bool = True) -> SyncPlan:
        return await asyncio.to_thread(self.fs.plan, dir, label, keeplocal)

    async def clean(self, dir: Path | str, label: str, dry_run: bool = False) -> list[Path]:
        return await asyncio.to_thread(self.fs.clean, dir, label, dry_run)

    async def create_snapshot(self, label: str, name: str) -> Snapshot:
        return await asyncio.to_thread(self.fs.create_snapshot, label, name)

    async def download_snapshot(self, dst: Path | str, name: str = "", snapshotid: str = "",
                                progress: Progress | None = None) -> list[Path]:
        return await asyncio.to_thread(self.fs.download_snapshot, dst, name, snapshotid, progress)

    async def remove_snapshot(self, name: str = "", snapshotid: str = "") -> None:
        await asyncio.to_thread(self.fs.remove_snapshot, name, snapshotid)

    async def remove_all_snapshots(self) -> None:
        await asyncio.to_thread(self.fs.remove_all_snapshots)
