"""SQLite: blueprint definitions, blueprints and their history (§3, §7.1).

Every write is one transaction with what goes with it (BlueprintWrite): the history row, the location a
blueprint names, and the reconcile cron of (kind, location). SQLite has one writer, so writes of one kind
are serialized already.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from colonies.cron import to_ns
from colonies.errors import AlreadyExists, InUse, NotFound
from colonies.model import Blueprint, BlueprintDefinition, BlueprintHistory, Cron
from colonies.storage import rows
from colonies.storage.base import BlueprintWrite
from colonies.storage.sqlite_base import SqliteBase
from colonies.storage.sqlite_locations import LOCATION_COLS
from colonies.storage.sqlite_schedules import _CRON

BLUEPRINT_COLS = "blueprint_id, colony_name, name, kind, location_name, generation, data, status"
_definition_dec = msgspec.json.Decoder(BlueprintDefinition)
_blueprint_dec = msgspec.json.Decoder(Blueprint)
_history_dec = msgspec.json.Decoder(BlueprintHistory)
_status_dec = msgspec.json.Decoder(dict[str, Any])


def definition_row(row: Sequence[Any]) -> BlueprintDefinition:
    return _definition_dec.decode(row[0])


def blueprint_data(bp: Blueprint) -> bytes:
    """The stored JSON: the blueprint without its status (a column of its own)."""
    return rows.dumps(msgspec.structs.replace(bp, status=msgspec.UNSET))


def status_data(bp: Blueprint) -> bytes | None:
    return rows.dumps(bp.status) if bp.status else None


def blueprint_row(row: Sequence[Any]) -> Blueprint:
    bp = _blueprint_dec.decode(row[6])
    bp.blueprintid = row[0]
    if row[7]:
        bp.status = _status_dec.decode(row[7])
    return bp


def history_row(row: Sequence[Any]) -> BlueprintHistory:
    return _history_dec.decode(row[0])


def duplicate_definition(d: BlueprintDefinition, kind_taken: bool) -> AlreadyExists:
    colony = d.metadata.colonyname
    if kind_taken:
        return AlreadyExists(f"colony {colony} already has a blueprint definition of kind {d.spec.names.kind}")
    return AlreadyExists(f"a blueprint definition named {d.metadata.name} already exists in colony {colony}")


def duplicate_blueprint(bp: Blueprint) -> AlreadyExists:
    return AlreadyExists(f"a blueprint named {bp.metadata.name} already exists in colony {bp.metadata.colonyname}")


def no_definition(bp: Blueprint) -> NotFound:
    return NotFound(f"no blueprint definition of kind {bp.kind} in colony {bp.metadata.colonyname}")


def in_use(colony: str, name: str, kind: str, count: int) -> InUse:
    return InUse(f"blueprint definition {name} is in use: {count} blueprint(s) of kind {kind} exist in colony "
                 f"{colony}")


def cron_values(c: Cron) -> tuple[Any, ...]:
    return (c.cronid, c.initiatorid, c.initiatorname, c.colonyname, c.name, c.cronexpression, c.interval,
            bool(c.random), to_ns(c.nextrun), to_ns(c.lastrun), c.workflowspec, c.prevprocessgraphid,
            bool(c.waitforprevprocessgraph))


class SqliteBlueprintsMixin(SqliteBase):
    # -- definitions -------------------------------------------------------------------------------------------
    async def add_blueprint_definition(self, definition: BlueprintDefinition) -> None:
        d = definition
        colony, kind = d.metadata.colonyname, d.spec.names.kind
        with self._tx() as db:
            if db.execute("SELECT 1 FROM blueprint_definitions WHERE colony_name = ? AND kind = ?",
                          (colony, kind)).fetchone():
                raise duplicate_definition(d, kind_taken=True)
            try:
                db.execute("INSERT INTO blueprint_definitions (definition_id, colony_name, name, kind, data)"
                           " VALUES (?,?,?,?,?)", (d.blueprintdefinitionid, colony, d.metadata.name, kind,
                                                   rows.dumps(d)))
            except sqlite3.IntegrityError:
                raise duplicate_definition(d, kind_taken=False) from None

    async def get_blueprint_definition(self, colony: str, name: str = "", kind: str = ""
                                       ) -> BlueprintDefinition | None:
        key, value = ("name", name) if name else ("kind", kind)
        row = self._one(f"SELECT data FROM blueprint_definitions WHERE colony_name = ? AND {key} = ?",
                        (colony, value))
        return definition_row(row) if row else None

    async def list_blueprint_definitions(self, colony: str) -> list[BlueprintDefinition]:
        return [definition_row(r) for r in self._all(
            "SELECT data FROM blueprint_definitions WHERE colony_name = ? ORDER BY name", (colony,))]

    async def remove_blueprint_definition(self, colony: str, name: str) -> bool:
        with self._tx() as db:
            row = db.execute("SELECT kind FROM blueprint_definitions WHERE colony_name = ? AND name = ?",
                             (colony, name)).fetchone()
            if row is None:
                return False
            count = db.execute("SELECT count(*) FROM blueprints WHERE colony_name = ? AND kind = ?",
                               (colony, row[0])).fetchone()[0]
            if count:
                raise in_use(colony, name, row[0], count)
            db.execute("DELETE FROM blueprint_definitions WHERE colony_name = ? AND name = ?", (colony, name))
        return True

    # -- blueprints --------------------------------------------------------------------------------------------
    def _write_along(self, db: sqlite3.Connection, colony: str, kind: str, w: BlueprintWrite) -> None:
        if w.history is not None:
            h = w.history
            db.execute("INSERT INTO blueprint_history (history_id, blueprint_id, colony_name, data) VALUES (?,?,?,?)",
                       (h.historyid, h.blueprintid, colony, rows.dumps(h)))
        if w.location is not None:
            loc = w.location
            db.execute(f"INSERT OR IGNORE INTO locations ({LOCATION_COLS}) VALUES (?,?,?,?,?,?)",
                       (loc.locationid, loc.colonyname, loc.name, loc.description, loc.long, loc.lat))
        for location, cron in w.crons.items():
            if db.execute("SELECT 1 FROM blueprints WHERE colony_name = ? AND kind = ? AND location_name = ?"
                          " LIMIT 1", (colony, kind, location)).fetchone():
                db.execute(f"INSERT OR IGNORE INTO crons ({_CRON}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           cron_values(cron))
            else:
                db.execute("DELETE FROM crons WHERE colony_name = ? AND name = ?", (colony, cron.name))

    async def add_blueprint(self, blueprint: Blueprint, write: BlueprintWrite) -> None:
        bp, md = blueprint, blueprint.metadata
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM blueprint_definitions WHERE colony_name = ? AND kind = ?",
                              (md.colonyname, bp.kind)).fetchone():
                raise no_definition(bp)
            try:
                db.execute(f"INSERT INTO blueprints ({BLUEPRINT_COLS}) VALUES (?,?,?,?,?,?,?,?)",
                           (bp.blueprintid, md.colonyname, md.name, bp.kind, md.locationname, md.generation,
                            blueprint_data(bp), status_data(bp)))
            except sqlite3.IntegrityError:
                raise duplicate_blueprint(bp) from None
            self._write_along(db, md.colonyname, bp.kind, write)

    async def get_blueprint(self, colony: str, name: str = "", blueprint_id: str = "") -> Blueprint | None:
        if name:
            row = self._one(f"SELECT {BLUEPRINT_COLS} FROM blueprints WHERE colony_name = ? AND name = ?",
                            (colony, name))
        else:
            row = self._one(f"SELECT {BLUEPRINT_COLS} FROM blueprints WHERE blueprint_id = ?", (blueprint_id,))
        return blueprint_row(row) if row else None

    async def list_blueprints(self, colony: str, kind: str = "", location: str = "") -> list[Blueprint]:
        return [blueprint_row(r) for r in self._all(
            f"SELECT {BLUEPRINT_COLS} FROM blueprints WHERE colony_name = ?1 AND (?2 = '' OR kind = ?2)"
            " AND (?3 = '' OR location_name = ?3) ORDER BY name", (colony, kind, location))]

    async def update_blueprint(self, blueprint: Blueprint, expected_generation: int, write: BlueprintWrite) -> bool:
        bp, md = blueprint, blueprint.metadata
        status = ", status = ?" if bp.status else ""
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE blueprints SET location_name = ?, generation = ?, data = ?{status}"
                " WHERE blueprint_id = ? AND generation = ?",
                (md.locationname, md.generation, blueprint_data(bp), *((status_data(bp),) if status else ()),
                 bp.blueprintid, expected_generation))
            if cur.rowcount == 0:
                return False
            self._write_along(db, md.colonyname, bp.kind, write)
        return True

    async def set_blueprint_status(self, colony: str, name: str, status: dict[str, Any]) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE blueprints SET status = ? WHERE colony_name = ? AND name = ?",
                             (rows.dumps(status) if status else None, colony, name))
        return cur.rowcount > 0

    async def remove_blueprint(self, colony: str, name: str, write: BlueprintWrite) -> Blueprint | None:
        with self._tx() as db:
            row = db.execute(f"SELECT {BLUEPRINT_COLS} FROM blueprints WHERE colony_name = ? AND name = ?",
                             (colony, name)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM blueprints WHERE blueprint_id = ?", (row[0],))
            db.execute("DELETE FROM blueprint_history WHERE blueprint_id = ?", (row[0],))
            self._write_along(db, colony, row[3], write)
        return blueprint_row(row)

    async def blueprint_history(self, blueprint_id: str, limit: int) -> list[BlueprintHistory]:
        return [history_row(r) for r in self._all(
            "SELECT data FROM blueprint_history WHERE blueprint_id = ? ORDER BY seq DESC LIMIT ?",
            (blueprint_id, limit))]
