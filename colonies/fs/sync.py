"""Sync planning: which files go up, which come down, between a local directory and a label.

The rules are the original ColonyFS client's (`pkg/fs` CalcSyncPlans), with its bugs fixed:

* A directory maps to a label; each subdirectory `a/b` maps to the sub-label `<label>/a/b`, and
  every remote sub-label of `<label>` maps back to the subdirectory of the same relative path.
* Per label, the local regular files of that directory (by name) meet the server's newest revision
  of each name in that label (`getfilesmsg`, one call per label that exists on the server):
  - only local             -> uploaded (a new file on the server);
  - only remote            -> downloaded;
  - both, same SHA-256      -> nothing;
  - both, checksums differ -> a conflict: `keeplocal=True` uploads the local copy as a new
    revision, `keeplocal=False` downloads the server's copy over the local one.
* Sync never deletes, on either side. (`clean_plan` names the local files the server does not know.)
* The `.cfs` file (the original CLI's marker holding the label) and our own partial downloads
  (`.cfs-tmp-*`) are never synced. Symlinked directories are not followed.
* Labels are normalised one way: a leading "/" added, trailing "/" removed, so "data", "/data" and
  "/data/" are one label.
* A remote name or sub-label that is not a plain path component ("", ".", "..", or holding "/" or
  NUL) would write outside the directory: the plan refuses it with an FsError before any transfer.

This module does no network I/O: `scan` reads the directory, `plan_label` / `build_plan` are pure.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from colonies.errors import FsError

MARKER = ".cfs"
TMP_PREFIX = ".cfs-tmp-"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_CHUNK = 1 << 20


def normalise_label(label: str) -> str:
    """`data`, `/data` and `/data/` -> `/data`; `""` and `/` -> `/`."""
    return "/" + label.strip("/")


def under(label: str, root: str) -> bool:
    """Whether `label` is `root` or one of its sub-labels (`/data/x` is under `/data`; `/database` is not)."""
    return label == root or label.startswith(root.rstrip("/") + "/")


def relative(label: str, root: str) -> str:
    """`/data/a/b` relative to `/data` -> `a/b` ("" for the root itself)."""
    return label[len(root.rstrip("/")):].strip("/") if label != root else ""


def sublabel(root: str, rel: str) -> str:
    return root.rstrip("/") + "/" + rel if rel else root


def safe_part(part: str) -> bool:
    """A plain path component: it cannot climb out of or reach across directories."""
    return part not in ("", ".", "..") and "/" not in part and "\\" not in part and "\0" not in part


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class LocalFile:
    """A local file of the plan: `path` is where it is read from."""

    label: str
    name: str
    path: Path
    size: int
    checksum: str


@dataclass(frozen=True)
class RemoteFile:
    """The server's newest revision of a name in a label (a FileData row); `path` is where it goes."""

    label: str
    name: str
    path: Path
    size: int
    checksum: str
    key: str  # the object's key (FileData.s3filename)


@dataclass
class SyncPlan:
    """The whole sync of `dir` with `label`. `conflicts` holds the side that wins: LocalFile entries
    (uploaded as new revisions) when `keeplocal`, RemoteFile entries (downloaded over the local copy)
    otherwise, as the original's plan does."""

    dir: Path
    label: str
    keeplocal: bool
    upload: list[LocalFile] = field(default_factory=list)                    # only local
    download: list[RemoteFile] = field(default_factory=list)                 # only remote
    conflicts: list[LocalFile | RemoteFile] = field(default_factory=list)    # both, checksums differ
    labels: list[str] = field(default_factory=list)                         # every label compared

    def uploads(self) -> list[LocalFile]:
        """Every file that goes up: the local-only ones, and the conflicts when keeplocal."""
        return self.upload + [f for f in self.conflicts if isinstance(f, LocalFile)]

    def downloads(self) -> list[RemoteFile]:
        """Every file that comes down: the remote-only ones, and the conflicts unless keeplocal."""
        return self.download + [f for f in self.conflicts if isinstance(f, RemoteFile)]

    @property
    def empty(self) -> bool:
        return not (self.upload or self.download or self.conflicts)

    def bytes_up(self) -> int:
        return sum(f.size for f in self.uploads())

    def bytes_down(self) -> int:
        return sum(f.size for f in self.downloads())


def scan(root: Path) -> dict[str, dict[str, Path]]:
    """The regular files under `root` by relative directory ("" = root) and name; the marker and
    partial downloads left out; symlinked directories not followed. A missing root scans empty."""
    out: dict[str, dict[str, Path]] = {}
    if not root.is_dir():
        return out
    for dirpath, _dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else Path(rel).as_posix()
        files = out.setdefault(rel, {})
        for name in filenames:
            if name == MARKER or name.startswith(TMP_PREFIX):
                continue
            path = Path(dirpath, name)
            if path.is_file():  # follows a symlink to a file; skips sockets, fifos, dangling links
                files[name] = path
    return out


def plan_label(plan: SyncPlan, label: str, local: Mapping[str, LocalFile],
               remote: Mapping[str, RemoteFile]) -> None:
    """Compare one directory's files with one label's newest revisions; add the outcome to `plan`."""
    unsafe = sorted(n for n in remote if not safe_part(n))
    if unsafe:
        raise FsError(f"label {label} holds file names that are not plain file names: {unsafe!r}")
    plan.labels.append(label)
    for name in sorted(local.keys() | remote.keys()):
        loc, rem = local.get(name), remote.get(name)
        if rem is None and loc is not None:
            plan.upload.append(loc)
        elif loc is None and rem is not None:
            plan.download.append(rem)
        elif loc is not None and rem is not None and loc.checksum != rem.checksum.lower():
            plan.conflicts.append(loc if plan.keeplocal else rem)


def label_dirs(dir: Path, label: str, local_rels: Iterable[str], remote_labels: Iterable[str]) -> dict[str, Path]:
    """Every label of the sync and its directory: the local subdirectories' labels and the remote
    labels under `label` (an FsError for a sub-label that does not map to a path under `dir`)."""
    out = {sublabel(label, rel): dir / rel if rel else dir for rel in local_rels}
    for lab in remote_labels:
        if not under(lab, label):
            raise FsError(f"label {lab} is not under {label}")
        rel = relative(lab, label)
        if rel and not all(safe_part(p) for p in rel.split("/")):
            raise FsError(f"sub-label {lab} does not map to a directory under {dir}")
        out.setdefault(lab, dir / rel if rel else dir)
    return out


def build_plan(dir: Path, label: str, keeplocal: bool, local: Mapping[str, Mapping[str, LocalFile]],
               remote: Mapping[str, Mapping[str, RemoteFile]]) -> SyncPlan:
    """The sync plan from the local files and the remote files, both keyed by label and name (pure);
    every label must be `label` or under it (`label_dirs` gives each label's directory)."""
    label = normalise_label(label)
    plan = SyncPlan(dir=dir, label=label, keeplocal=keeplocal)
    for lab in sorted(local.keys() | remote.keys()):
        if not under(lab, label):
            raise FsError(f"label {lab} is not under {label}")
        plan_label(plan, lab, local.get(lab, {}), remote.get(lab, {}))
    return plan


def clean_plan(local: Mapping[str, Mapping[str, Path]], remote_names: Mapping[str, set[str]],
               root: Path, label: str) -> list[Path]:
    """The local files (and directories) of a synced tree that the server does not know: a file whose
    name is not in its label, a directory whose label (nor any label under it) does not exist (pure)."""
    label = normalise_label(label)
    out: list[Path] = []
    for rel in sorted(local):
        lab = sublabel(label, rel)
        if rel and not any(under(r, lab) for r in remote_names):
            parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
            if parent == "" or any(under(r, sublabel(label, parent)) for r in remote_names):
                out.append(root / rel)  # the topmost unknown directory; what is inside goes with it
            continue
        names = remote_names.get(lab, set())
        out += [p for n, p in sorted(local[rel].items()) if n not in names]
    return out
