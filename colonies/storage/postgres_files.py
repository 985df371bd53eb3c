"""PostgreSQL: ColonyFS metadata (file revisions, labels, snapshots). Names sort with COLLATE "C", as on
SQLite."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped,unused-ignore]

from colonies.clock import to_datetime
from colonies.errors import AlreadyExists
from colonies.model import File, FileData, Label, Snapshot
from colonies.storage.postgres_base import PostgresBase
from colonies.storage.sqlite_files import (
    _FILE,
    _SNAP,
    file_data_row,
    file_row,
    ids_json,
    newest_sql,
    prefix_of,
    ref_json,
    snapshot_row,
    under,
)

_C = ' COLLATE "C"'


def _deleted(status: str) -> int:
    """The row count of a DELETE's status string ("DELETE 3")."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresFilesMixin(PostgresBase):
    async def add_file(self, file: File, now_ns: int) -> File:
        f = file
        row = await self._one(f"INSERT INTO files (file_id, colony_name, label, name, size, checksum, checksum_alg,"
                              f" ref, added) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING {_FILE}",
                              f.fileid, f.colonyname, f.label, f.name, f.size, f.checksum, f.checksumalg,
                              ref_json(f.ref), now_ns)
        return file_row(row)

    async def get_file(self, colony: str, file_id: str) -> File | None:
        row = await self._one(f"SELECT {_FILE} FROM files WHERE colony_name = $1 AND file_id = $2", colony, file_id)
        return file_row(row) if row else None

    async def file_revisions(self, colony: str, label: str, name: str, latest: bool) -> list[File]:
        limit = " LIMIT 1" if latest else ""
        rows = await self._all(f"SELECT {_FILE} FROM files WHERE colony_name = $1 AND label = $2 AND name = $3"
                               f" ORDER BY seqnr DESC{limit}", colony, label, name)
        return [file_row(r) for r in rows]

    async def list_file_data(self, colony: str, label: str) -> list[FileData]:
        sql = newest_sql("f.colony_name = $1 AND f.label = $2", "f.name, f.checksum, f.size, f.ref")
        return [file_data_row(r) for r in await self._all(sql + f" ORDER BY f.name{_C}", colony, label)]

    async def file_labels(self, colony: str, prefix: str = "", exact: bool = False) -> list[Label]:
        args: tuple[str, ...]
        if exact:
            if await self._one("SELECT 1 FROM files WHERE colony_name = $1 AND label = $2 LIMIT 1",
                               colony, prefix) is None:
                return []
            where, args = under("label", "$2::text"), (colony, prefix)
        elif prefix:
            where, args = prefix_of("label", "$2::text"), (colony, prefix)
        else:
            where, args = "TRUE", (colony,)
        rows = await self._all(f"SELECT label, count(*) FROM files WHERE colony_name = $1 AND {where}"
                               f" GROUP BY label ORDER BY label{_C}", *args)
        return [Label(name=r[0], files=r[1]) for r in rows]

    async def remove_file(self, colony: str, file_id: str) -> bool:
        status = await self.pool.execute("DELETE FROM files WHERE colony_name = $1 AND file_id = $2",
                                         colony, file_id)
        return _deleted(status) > 0

    async def remove_file_revisions(self, colony: str, label: str, name: str) -> int:
        status = await self.pool.execute("DELETE FROM files WHERE colony_name = $1 AND label = $2 AND name = $3",
                                         colony, label, name)
        return _deleted(status)

    async def create_snapshot(self, snapshot: Snapshot, now_ns: int) -> Snapshot:
        s = snapshot
        sql = newest_sql("f.colony_name = $1 AND " + under("f.label", "$2::text"), "f.file_id")
        try:
            async with self._tx() as con:
                rows = await con.fetch(sql + f" ORDER BY f.label{_C}, f.name{_C}", s.colonyname, s.label)
                ids = [r[0] for r in rows]
                await con.execute("INSERT INTO snapshots (snapshot_id, colony_name, label, name, file_ids, added)"
                                  " VALUES ($1,$2,$3,$4,$5,$6)",
                                  s.snapshotid, s.colonyname, s.label, s.name, ids_json(ids), now_ns)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"a snapshot named {s.name} already exists in {s.colonyname}") from None
        return Snapshot(snapshotid=s.snapshotid, colonyname=s.colonyname, label=s.label, name=s.name,
                        fileids=ids, added=to_datetime(now_ns))

    async def get_snapshot(self, colony: str, snapshot_id: str = "", name: str = "") -> Snapshot | None:
        key, value = ("snapshot_id", snapshot_id) if snapshot_id else ("name", name)
        row = await self._one(f"SELECT {_SNAP} FROM snapshots WHERE colony_name = $1 AND {key} = $2", colony, value)
        return snapshot_row(row) if row else None

    async def list_snapshots(self, colony: str) -> list[Snapshot]:
        rows = await self._all(f"SELECT {_SNAP} FROM snapshots WHERE colony_name = $1"
                               f" ORDER BY added DESC, name{_C}", colony)
        return [snapshot_row(r) for r in rows]

    async def remove_snapshot(self, colony: str, snapshot_id: str = "", name: str = "") -> bool:
        key, value = ("snapshot_id", snapshot_id) if snapshot_id else ("name", name)
        status = await self.pool.execute(f"DELETE FROM snapshots WHERE colony_name = $1 AND {key} = $2",
                                         colony, value)
        return _deleted(status) > 0

    async def remove_all_snapshots(self, colony: str) -> int:
        return _deleted(await self.pool.execute("DELETE FROM snapshots WHERE colony_name = $1", colony))
