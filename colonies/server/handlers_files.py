"""Handlers: ColonyFS metadata, files and snapshots (§7, §7.1). The server never touches the bytes.

Members only (users and approved executors; the colony owner's key alone is not one). Unlike the
original: unknown file or snapshot → 404, duplicate snapshot name → 409, a request naming neither an id
nor a (label, name) → 400, and a file's `ref` is stored without its access, secret and encryption keys.
"""

from __future__ import annotations

import re
from typing import Any

from colonies.errors import BadRequest, NotFound
from colonies.model import File, FileData, Label, Ref, S3Object, Snapshot
from colonies.protocol import messages as m
from colonies.server.handlers_types import Handler
from colonies.services import Services, new_id
from colonies.services import check_text as _text

MAX_LABEL = 1024  # characters; labels are path-like ("/a/b")
MAX_FILE_NAME = 1024
MAX_SNAPSHOT_NAME = 256
MAX_REF_FIELD = 1024  # each string of a ref (server, bucket, object key, ...)
MAX_CHECKSUM = 128  # hex digits (SHA-512 is the longest common digest)
MAX_CHECKSUM_ALG = 32
MAX_PROTOCOL = 32
MAX_SIZE = 2**63 - 1  # int64, as the original's File.Size
_HEX = re.compile(r"[0-9a-fA-F]+")


async def _member(s: Services, signer: str, colony: str) -> None:
    await s.guard.member(signer, _text(colony, "colonyname", 256))


def _label(value: str | None, required: bool = True) -> str:
    return _text(value, "label", MAX_LABEL, required)


def _file_name(value: str | None, required: bool = True) -> str:
    return _text(value, "file name", MAX_FILE_NAME, required)


def _ref(ref: Ref) -> Ref:
    """The ref as stored and returned to every member: the object's address, never a key."""
    o = ref.s3object
    fields = {k: _text(getattr(o, k), f"ref.s3object.{k}", MAX_REF_FIELD)
              for k in ("server", "region", "encryptionalg", "object", "bucket")}
    if not 0 <= o.port <= 65535:
        raise BadRequest("ref.s3object.port must be 0 to 65535")
    return Ref(protocol=_text(ref.protocol, "ref.protocol", MAX_PROTOCOL, required=True),
               s3object=S3Object(port=o.port, tls=o.tls, **fields))


# -- files ------------------------------------------------------------------------------------------------------
async def add_file(s: Services, signer: str, msg: m.AddFileMsg) -> File:
    f = msg.file
    await _member(s, signer, f.colonyname)
    if not 0 <= f.size <= MAX_SIZE:
        raise BadRequest(f"size must be 0 to {MAX_SIZE}")
    checksum = _text(f.checksum, "checksum", MAX_CHECKSUM, required=True)
    if not _HEX.fullmatch(checksum):
        raise BadRequest("checksum must be hexadecimal")
    stored = File(fileid=new_id(), colonyname=f.colonyname, label=_label(f.label), name=_file_name(f.name),
                  size=f.size, checksum=checksum.lower(),
                  checksumalg=_text(f.checksumalg, "checksumalg", MAX_CHECKSUM_ALG), ref=_ref(f.ref))
    return await s.storage.add_file(stored, s.now())


async def get_file(s: Services, signer: str, msg: m.GetFileMsg) -> list[File]:
    await _member(s, signer, msg.colonyname)
    fileid, label, name = _selector(msg.fileid, msg.label, msg.name)
    if fileid:
        found = await s.storage.get_file(msg.colonyname, fileid)
        files = [found] if found is not None else []
    else:
        files = await s.storage.file_revisions(msg.colonyname, label, name, msg.latest)
    if not files:
        raise NotFound(f"file {fileid or f'{label}/{name}'} not found in colony {msg.colonyname}")
    return files


def _selector(fileid: str | None, label: str | None, name: str | None) -> tuple[str, str, str]:
    """A file id, or else a label and a name; neither is a malformed request."""
    fileid = _text(fileid, "fileid", 64)
    label, name = _label(label, required=False), _file_name(name, required=False)
    if not fileid and not (label and name):
        raise BadRequest("give a fileid, or a label and a name")
    return fileid, label, name


async def get_files(s: Services, signer: str, msg: m.GetFilesMsg) -> list[FileData]:
    await _member(s, signer, msg.colonyname)
    return await s.storage.list_file_data(msg.colonyname, _label(msg.label, required=False))


async def get_file_labels(s: Services, signer: str, msg: m.GetFileLabelsMsg) -> list[Label]:
    await _member(s, signer, msg.colonyname)
    name = _label(msg.name, required=False)
    return await s.storage.file_labels(msg.colonyname, name, msg.exact and bool(name))


async def remove_file(s: Services, signer: str, msg: m.RemoveFileMsg) -> dict[str, Any]:
    await _member(s, signer, msg.colonyname)
    fileid, label, name = _selector(msg.fileid, msg.label, msg.name)
    if fileid:
        removed = int(await s.storage.remove_file(msg.colonyname, fileid))
    else:
        removed = await s.storage.remove_file_revisions(msg.colonyname, label, name)
    if not removed:
        raise NotFound(f"file {fileid or f'{label}/{name}'} not found in colony {msg.colonyname}")
    return {}


# -- snapshots --------------------------------------------------------------------------------------------------
async def create_snapshot(s: Services, signer: str, msg: m.CreateSnapshotMsg) -> Snapshot:
    await _member(s, signer, msg.colonyname)
    label = _label(msg.label).rstrip("/")  # "/" (or "") is the whole colony, as the original
    name = _text(msg.name, "snapshot name", MAX_SNAPSHOT_NAME, required=True)
    snapshot = Snapshot(snapshotid=new_id(), colonyname=msg.colonyname, label=label, name=name)
    return await s.storage.create_snapshot(snapshot, s.now())


def _snapshot_selector(snapshotid: str | None, name: str | None) -> tuple[str, str]:
    snapshotid, name = _text(snapshotid, "snapshotid", 64), _text(name, "snapshot name", MAX_SNAPSHOT_NAME)
    if not snapshotid and not name:
        raise BadRequest("give a snapshotid or a snapshot name")
    return snapshotid, name


async def get_snapshot(s: Services, signer: str, msg: m.GetSnapshotMsg) -> Snapshot:
    await _member(s, signer, msg.colonyname)
    snapshotid, name = _snapshot_selector(msg.snapshotid, msg.name)
    found = await s.storage.get_snapshot(msg.colonyname, snapshotid, name)
    if found is None:
        raise NotFound(f"snapshot {snapshotid or name} not found in colony {msg.colonyname}")
    return found


async def get_snapshots(s: Services, signer: str, msg: m.GetSnapshotsMsg) -> list[Snapshot]:
    await _member(s, signer, msg.colonyname)
    return await s.storage.list_snapshots(msg.colonyname)


async def remove_snapshot(s: Services, signer: str, msg: m.RemoveSnapshotMsg) -> dict[str, Any]:
    await _member(s, signer, msg.colonyname)
    snapshotid, name = _snapshot_selector(msg.snapshotid, msg.name)
    if not await s.storage.remove_snapshot(msg.colonyname, snapshotid, name):
        raise NotFound(f"snapshot {snapshotid or name} not found in colony {msg.colonyname}")
    return {}


async def remove_all_snapshots(s: Services, signer: str, msg: m.RemoveAllSnapshotsMsg) -> dict[str, Any]:
    await _member(s, signer, msg.colonyname)
    await s.storage.remove_all_snapshots(msg.colonyname)
    return {}


HANDLERS: dict[str, Handler] = {
    "addfilemsg": add_file,
    "getfilemsg": get_file,
    "getfilesmsg": get_files,
    "getfilelabelsmsg": get_file_labels,
    "removefilemsg": remove_file,
    "createsnapshotmsg": create_snapshot,
    "getsnapshotmsg": get_snapshot,
    "getsnapshotsmsg": get_snapshots,
    "removesnapshotmsg": remove_snapshot,
    "removeallsnapshotmsg": remove_all_snapshots,
}
