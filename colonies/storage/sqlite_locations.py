"""SQLite: locations, the named sites executors sit at (§7.1)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from colonies.errors import AlreadyExists
from colonies.model import Location
from colonies.storage.sqlite_base import SqliteBase

LOCATION_COLS = "location_id, colony_name, name, description, long, lat"


def location_row(row: Sequence[Any]) -> Location:
    return Location(locationid=row[0], colonyname=row[1], name=row[2], description=row[3], long=row[4],
                    lat=row[5])


def duplicate(location: Location) -> AlreadyExists:
    return AlreadyExists(f"a location named {location.name} already exists in colony {location.colonyname}")


class SqliteLocationsMixin(SqliteBase):
    async def add_location(self, location: Location) -> Location:
        loc = location
        try:
            with self._tx() as db:
                db.execute(f"INSERT INTO locations ({LOCATION_COLS}) VALUES (?,?,?,?,?,?)",
                           (loc.locationid, loc.colonyname, loc.name, loc.description, loc.long, loc.lat))
        except sqlite3.IntegrityError:
            raise duplicate(loc) from None
        return loc

    async def get_location(self, colony: str, name: str) -> Location | None:
        row = self._one(f"SELECT {LOCATION_COLS} FROM locations WHERE colony_name = ? AND name = ?", (colony, name))
        return location_row(row) if row else None

    async def list_locations(self, colony: str) -> list[Location]:
        rows = self._all(f"SELECT {LOCATION_COLS} FROM locations WHERE colony_name = ? ORDER BY name", (colony,))
        return [location_row(r) for r in rows]

    async def remove_location(self, colony: str, name: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM locations WHERE colony_name = ? AND name = ?", (colony, name))
        return cur.rowcount > 0
