"""SQLite: ColonyFS metadata (file revisions, labels, snapshots)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from colonies.clock import to_datetime
from colonies.errors import AlreadyExists
from colonies.model import File, FileData, Label, Ref, Snapshot
from colonies.storage.sqlite_base import SqliteBase

_FILE = "file_id, colony_name, label, name, size, seqnr, checksum, checksum_alg, ref, added"
_SNAP = "snapshot_id, colony_name, label, name, file_ids, added"
_ref_dec = msgspec.json.Decoder(Ref)
_ids_dec = msgspec.json.Decoder(list[str])


def ref_json(ref: Ref) -> str:
    return msgspec.json.encode(ref).decode()


def file_row(row: Sequence[Any]) -> File:
    return File(fileid=row[0], colonyname=row[1], label=row[2], name=row[3], size=row[4], sequencenr=row[5],
                checksum=row[6], checksumalg=row[7], ref=_ref_dec.decode(row[8]), added=to_datetime(row[9]))


def file_data_row(row: Sequence[Any]) -> FileData:
    return FileData(name=row[0], checksum=row[1], size=row[2], s3filename=_ref_dec.decode(row[3]).s3object.object)


def snapshot_row(row: Sequence[Any]) -> Snapshot:
    return Snapshot(snapshotid=row[0], colonyname=row[1], label=row[2], name=row[3],
                    fileids=_ids_dec.decode(row[4]), added=to_datetime(row[5]))


def ids_json(ids: list[str]) -> str:
    return msgspec.json.encode(ids).decode()


def under(col: str, p: str) -> str:
    """SQL: `col` is exactly `p` or a sub-label `p/…` (a character prefix test: no LIKE wildcards)."""
    return f"({col} = {p} OR substr({col}, 1, length({p}) + 1) = {p} || '/')"


def prefix_of(col: str, p: str) -> str:
    """SQL: `col` starts with `p` (raw string prefix, as the original's `exact=false`)."""
    return f"substr({col}, 1, length({p})) = {p}"


def newest_sql(where: str, cols: str) -> str:
    """Columns `cols` of the newest revision of each (label, name) among files matching `where`."""
    return (f"SELECT {cols} FROM files f WHERE {where} AND f.seqnr = (SELECT max(g.seqnr) FROM files g"
            " WHERE g.colony_name = f.colony_name AND g.label = f.label AND g.name = f.name)")


class SqliteFilesMixin(SqliteBase):
    async def add_file(self, file: File, now_ns: int) -> File:
        f = file
        with self._tx() as db:
            db.execute("INSERT INTO files (file_id, colony_name, label, name, size, checksum, checksum_alg, ref,"
                       " added) VALUES (?,?,?,?,?,?,?,?,?)",
                       (f.fileid, f.colonyname, f.label, f.name, f.size, f.checksum, f.checksumalg,
                        ref_json(f.ref), now_ns))
            row = db.execute(f"SELECT {_FILE} FROM files WHERE file_id = ?", (f.fileid,)).fetchone()
        return file_row(row)

    async def get_file(self, colony: str, file_id: str) -> File | None:
        row = self._one(f"SELECT {_FILE} FROM files WHERE colony_name = ? AND file_id = ?", (colony, file_id))
        return file_row(row) if row else None

    async def file_revisions(self, colony: str, label: str, name: str, latest: bool) -> list[File]:
        limit = " LIMIT 1" if latest else ""
        rows = self._all(f"SELECT {_FILE} FROM files WHERE colony_name = ? AND label = ? AND name = ?"
                         f" ORDER BY seqnr DESC{limit}", (colony, label, name))
        return [file_row(r) for r in rows]

    async def list_file_data(self, colony: str, label: str) -> list[FileData]:
        sql = newest_sql("f.colony_name = ? AND f.label = ?", "f.name, f.checksum, f.size, f.ref")
        return [file_data_row(r) for r in self._all(sql + " ORDER BY f.name", (colony, label))]

    async def file_labels(self, colony: str, prefix: str = "", exact: bool = False) -> list[Label]:
        args: tuple[str, ...]
        if exact:
            if self._one("SELECT 1 FROM files WHERE colony_name = ? AND label = ? LIMIT 1", (colony, prefix)) is None:
                return []
            where, args = under("label", "?2"), (colony, prefix)
        elif prefix:
            where, args = prefix_of("label", "?2"), (colony, prefix)
        else:
            where, args = "1", (colony,)
        rows = self._all(f"SELECT label, count(*) FROM files WHERE colony_name = ?1 AND {where}"
                         " GROUP BY label ORDER BY label", args)
        return [Label(name=r[0], files=r[1]) for r in rows]

    async def remove_file(self, colony: str, file_id: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM files WHERE colony_name = ? AND file_id = ?", (colony, file_id))
        return cur.rowcount > 0

    async def remove_file_revisions(self, colony: str, label: str, name: str) -> int:
        with self._tx() as db:
            cur = db.execute("DELETE FROM files WHERE colony_name = ? AND label = ? AND name = ?",
                             (colony, label, name))
        return cur.rowcount

    async def create_snapshot(self, snapshot: Snapshot, now_ns: int) -> Snapshot:
        s = snapshot
        sql = newest_sql("f.colony_name = ?1 AND " + under("f.label", "?2"), "f.file_id")
        try:
            with self._tx() as db:
                ids = [r[0] for r in db.execute(sql + " ORDER BY f.label, f.name", (s.colonyname, s.label))]
                db.execute("INSERT INTO snapshots (snapshot_id, colony_name, label, name, file_ids, added)"
                           " VALUES (?,?,?,?,?,?)",
                           (s.snapshotid, s.colonyname, s.label, s.name, ids_json(ids), now_ns))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"a snapshot named {s.name} already exists in {s.colonyname}") from None
        return Snapshot(snapshotid=s.snapshotid, colonyname=s.colonyname, label=s.label, name=s.name,
                        fileids=ids, added=to_datetime(now_ns))

    async def get_snapshot(self, colony: str, snapshot_id: str = "", name: str = "") -> Snapshot | None:
        key, value = ("snapshot_id", snapshot_id) if snapshot_id else ("name", name)
        row = self._one(f"SELECT {_SNAP} FROM snapshots WHERE colony_name = ? AND {key} = ?", (colony, value))
        return snapshot_row(row) if row else None

    async def list_snapshots(self, colony: str) -> list[Snapshot]:
        rows = self._all(f"SELECT {_SNAP} FROM snapshots WHERE colony_name = ? ORDER BY added DESC, name",
                         (colony,))
        return [snapshot_row(r) for r in rows]

    async def remove_snapshot(self, colony: str, snapshot_id: str = "", name: str = "") -> bool:
        key, value = ("snapshot_id", snapshot_id) if snapshot_id else ("name", name)
        with self._tx() as db:
            cur = db.execute(f"DELETE FROM snapshots WHERE colony_name = ? AND {key} = ?", (colony, value))
        return cur.rowcount > 0

    async def remove_all_snapshots(self, colony: str) -> int:
        with self._tx() as db:
            cur = db.execute("DELETE FROM snapshots WHERE colony_name = ?", (colony,))
        return cur.rowcount

