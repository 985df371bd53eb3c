"""PostgreSQL: locations, the named sites executors sit at (§7.1). Names sort with COLLATE "C", as on
SQLite."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped,unused-ignore]

from colonies.model import Location
from colonies.storage.postgres_base import PostgresBase
from colonies.storage.sqlite_locations import LOCATION_COLS, duplicate, location_row


class PostgresLocationsMixin(PostgresBase):
    async def add_location(self, location: Location) -> Location:
        loc = location
        try:
            await self.pool.execute(f"INSERT INTO locations ({LOCATION_COLS}) VALUES ($1,$2,$3,$4,$5,$6)",
                                    loc.locationid, loc.colonyname, loc.name, loc.description, loc.long, loc.lat)
        except asyncpg.UniqueViolationError:
            raise duplicate(loc) from None
        return loc

    async def get_location(self, colony: str, name: str) -> Location | None:
        row = await self._one(f"SELECT {LOCATION_COLS} FROM locations WHERE colony_name = $1 AND name = $2",
                              colony, name)
        return location_row(row) if row else None

    async def list_locations(self, colony: str) -> list[Location]:
        rows = await self._all(f"SELECT {LOCATION_COLS} FROM locations WHERE colony_name = $1"
                               ' ORDER BY name COLLATE "C"', colony)
        return [location_row(r) for r in rows]

    async def remove_location(self, colony: str, name: str) -> bool:
        status = await self.pool.execute("DELETE FROM locations WHERE colony_name = $1 AND name = $2", colony, name)
        return bool(int(status.rsplit(" ", 1)[-1]))  # "DELETE n"
