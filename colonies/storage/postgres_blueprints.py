"""PostgreSQL: blueprint definitions, blueprints and their history (§3, §7.1). Names sort with
COLLATE "C", as on SQLite.

Each write holds a transaction-scoped advisory lock on (colony, kind), so concurrent writes of one kind on
several replicas are serialized: a definition is never removed while a blueprint of its kind is being added,
and a reconcile cron is never removed while a blueprint at its location is being added.
"""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
from asyncpg import Connection as Con  # type: ignore[import-untyped,unused-ignore]

from colonies.model import Blueprint, BlueprintDefinition, BlueprintHistory
from colonies.storage.base import BlueprintWrite
from colonies.storage.postgres_base import PostgresBase
from colonies.storage.postgres_catalog import _count, js
from colonies.storage.sqlite_blueprints import (
    BLUEPRINT_COLS,
    blueprint_data,
    blueprint_row,
    cron_values,
    definition_row,
    duplicate_blueprint,
    duplicate_definition,
    history_row,
    in_use,
    no_definition,
    status_data,
)
from colonies.storage.sqlite_locations import LOCATION_COLS
from colonies.storage.sqlite_schedules import _CRON


def _text(data: bytes | None) -> str | None:
    return data.decode() if data is not None else None


async def _lock(con: Con, colony: str, kind: str) -> None:
    await con.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"blueprints\x1f{colony}\x1f{kind}")


class PostgresBlueprintsMixin(PostgresBase):
    # -- definitions -------------------------------------------------------------------------------------------
    async def add_blueprint_definition(self, definition: BlueprintDefinition) -> None:
        d = definition
        colony, kind = d.metadata.colonyname, d.spec.names.kind
        async with self._tx() as con:
            await _lock(con, colony, kind)
            if await con.fetchval("SELECT 1 FROM blueprint_definitions WHERE colony_name = $1 AND kind = $2",
                                  colony, kind):
                raise duplicate_definition(d, kind_taken=True)
            try:
                async with con.transaction():
                    await con.execute("INSERT INTO blueprint_definitions (definition_id, colony_name, name, kind,"
                                      " data) VALUES ($1,$2,$3,$4,$5)", d.blueprintdefinitionid, colony,
                                      d.metadata.name, kind, js(d))
            except asyncpg.UniqueViolationError:
                raise duplicate_definition(d, kind_taken=False) from None

    async def get_blueprint_definition(self, colony: str, name: str = "", kind: str = ""
                                       ) -> BlueprintDefinition | None:
        key, value = ("name", name) if name else ("kind", kind)
        row = await self._one(f"SELECT data FROM blueprint_definitions WHERE colony_name = $1 AND {key} = $2",
                              colony, value)
        return definition_row(row) if row else None

    async def list_blueprint_definitions(self, colony: str) -> list[BlueprintDefinition]:
        return [definition_row(r) for r in await self._all(
            'SELECT data FROM blueprint_definitions WHERE colony_name = $1 ORDER BY name COLLATE "C"', colony)]

    async def remove_blueprint_definition(self, colony: str, name: str) -> bool:
        async with self._tx() as con:
            kind = await con.fetchval("SELECT kind FROM blueprint_definitions WHERE colony_name = $1 AND name = $2",
                                      colony, name)
            if kind is None:
                return False
            await _lock(con, colony, kind)
            count = await con.fetchval("SELECT count(*) FROM blueprints WHERE colony_name = $1 AND kind = $2",
                                       colony, kind)
            if count:
                raise in_use(colony, name, kind, count)
            return _count(await con.execute("DELETE FROM blueprint_definitions WHERE colony_name = $1 AND name = $2",
                                            colony, name)) > 0

    # -- blueprints --------------------------------------------------------------------------------------------
    async def _write_along(self, con: Con, colony: str, kind: str, w: BlueprintWrite) -> None:
        if w.history is not None:
            h = w.history
            await con.execute("INSERT INTO blueprint_history (history_id, blueprint_id, colony_name, data)"
                              " VALUES ($1,$2,$3,$4)", h.historyid, h.blueprintid, colony, js(h))
        if w.location is not None:
            loc = w.location
            await con.execute(f"INSERT INTO locations ({LOCATION_COLS}) VALUES ($1,$2,$3,$4,$5,$6)"
                              " ON CONFLICT DO NOTHING",
                              loc.locationid, loc.colonyname, loc.name, loc.description, loc.long, loc.lat)
        for location, cron in w.crons.items():
            if await con.fetchval("SELECT 1 FROM blueprints WHERE colony_name = $1 AND kind = $2"
                                  " AND location_name = $3 LIMIT 1", colony, kind, location):
                await con.execute(f"INSERT INTO crons ({_CRON}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
                                  " ON CONFLICT DO NOTHING", *cron_values(cron))
            else:
                await con.execute("DELETE FROM crons WHERE colony_name = $1 AND name = $2", colony, cron.name)

    async def add_blueprint(self, blueprint: Blueprint, write: BlueprintWrite) -> None:
        bp, md = blueprint, blueprint.metadata
        async with self._tx() as con:
            await _lock(con, md.colonyname, bp.kind)
            if not await con.fetchval("SELECT 1 FROM blueprint_definitions WHERE colony_name = $1 AND kind = $2",
                                      md.colonyname, bp.kind):
                raise no_definition(bp)
            try:
                async with con.transaction():
                    await con.execute(f"INSERT INTO blueprints ({BLUEPRINT_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                                      bp.blueprintid, md.colonyname, md.name, bp.kind, md.locationname,
                                      md.generation, blueprint_data(bp).decode(), _text(status_data(bp)))
            except asyncpg.UniqueViolationError:
                raise duplicate_blueprint(bp) from None
            await self._write_along(con, md.colonyname, bp.kind, write)

    async def get_blueprint(self, colony: str, name: str = "", blueprint_id: str = "") -> Blueprint | None:
        if name:
            row = await self._one(f"SELECT {BLUEPRINT_COLS} FROM blueprints WHERE colony_name = $1 AND name = $2",
                                  colony, name)
        else:
            row = await self._one(f"SELECT {BLUEPRINT_COLS} FROM blueprints WHERE blueprint_id = $1", blueprint_id)
        return blueprint_row(row) if row else None

    async def list_blueprints(self, colony: str, kind: str = "", location: str = "") -> list[Blueprint]:
        return [blueprint_row(r) for r in await self._all(
            f"SELECT {BLUEPRINT_COLS} FROM blueprints WHERE colony_name = $1 AND ($2 = '' OR kind = $2)"
            ' AND ($3 = \'\' OR location_name = $3) ORDER BY name COLLATE "C"', colony, kind, location)]

    async def update_blueprint(self, blueprint: Blueprint, expected_generation: int, write: BlueprintWrite) -> bool:
        bp, md = blueprint, blueprint.metadata
        status = ", status = $6" if bp.status else ""
        args: list[Any] = [md.locationname, md.generation, blueprint_data(bp).decode(), bp.blueprintid,
                           expected_generation]
        if status:
            args.append(_text(status_data(bp)))
        async with self._tx() as con:
            await _lock(con, md.colonyname, bp.kind)
            done = await con.execute(f"UPDATE blueprints SET location_name = $1, generation = $2, data = $3{status}"
                                     " WHERE blueprint_id = $4 AND generation = $5", *args)
            if _count(done) == 0:
                return False
            await self._write_along(con, md.colonyname, bp.kind, write)
        return True

    async def set_blueprint_status(self, colony: str, name: str, status: dict[str, Any]) -> bool:
        done = await self.pool.execute("UPDATE blueprints SET status = $1 WHERE colony_name = $2 AND name = $3",
                                       js(status) if status else None, colony, name)
        return _count(done) > 0

    async def remove_blueprint(self, colony: str, name: str, write: BlueprintWrite) -> Blueprint | None:
        async with self._tx() as con:
            kind = await con.fetchval("SELECT kind FROM blueprints WHERE colony_name = $1 AND name = $2",
                                      colony, name)
            if kind is None:
                return None
            await _lock(con, colony, kind)
            row = await con.fetchrow(f"DELETE FROM blueprints WHERE colony_name = $1 AND name = $2"
                                     f" RETURNING {BLUEPRINT_COLS}", colony, name)
            if row is None:
                return None
            await con.execute("DELETE FROM blueprint_history WHERE blueprint_id = $1", row[0])
            await self._write_along(con, colony, kind, write)
        return blueprint_row(row)

    async def blueprint_history(self, blueprint_id: str, limit: int) -> list[BlueprintHistory]:
        return [history_row(r) for r in await self._all(
            "SELECT data FROM blueprint_history WHERE blueprint_id = $1 ORDER BY seq DESC LIMIT $2",
            blueprint_id, limit)]
