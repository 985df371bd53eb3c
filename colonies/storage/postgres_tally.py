"""PostgreSQL: the counts behind /metrics (colonies.storage.tally).

Each statement that inserts, deletes or changes the state of a counted row (processes, processgraphs,
executors, colonies) reports the delta with `_tally_add`, knowing the old state from its own WHERE clause,
its RETURNING list or a row it locked first. Inside `_tx` the deltas wait for the commit (a per-task
context variable, so concurrent transactions never mix); a statement outside a transaction commits by
itself and reports at once. No trigger is involved: replicas with metrics off pay nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar, Token
from typing import Any

from asyncpg import Connection as Con  # type: ignore[import-untyped,unused-ignore]

from colonies.storage.postgres_base import PostgresBase
from colonies.storage.tally import COLONY, EXECUTOR, GRAPH, PROCESS, Delta

_PENDING: ContextVar[list[Delta] | None] = ContextVar("colonies_tally_pending", default=None)

# table -> (DELETE … RETURNING that yields (colony, executor type, state, n, executor id) rows, kind)
_DELETE = {
    "processes": (("WITH d AS (DELETE FROM processes WHERE {where} RETURNING colony_name, executor_type, state)"
                   " SELECT colony_name, executor_type, state, count(*), '' FROM d GROUP BY 1, 2, 3"), PROCESS),
    "processgraphs": (("WITH d AS (DELETE FROM processgraphs WHERE {where} RETURNING colony_name, state)"
                       " SELECT colony_name, '', state, count(*), '' FROM d GROUP BY 1, 3"), GRAPH),
    "executors": ("DELETE FROM executors WHERE {where} RETURNING colony_name, executor_type, state, 1, executor_id",
                  EXECUTOR),
    "colonies": ("DELETE FROM colonies WHERE {where} RETURNING name, '', 0, 1, ''", COLONY),
}


class PostgresTallyMixin(PostgresBase):
    def _tally_add(self, *deltas: Delta) -> None:
        """Report committed-or-to-be-committed changes of counted rows (no-op without metrics)."""
        if self.tally is None:
            return
        pending = _PENDING.get()
        if pending is None:
            self.tally.apply(deltas)
        else:
            pending.extend(deltas)

    def _tally_begin(self) -> Token[list[Delta] | None] | None:
        return _PENDING.set([]) if self.tally is not None else None

    def _tally_end(self, token: Token[list[Delta] | None] | None, committed: bool) -> None:
        if token is None:
            return
        pending = _PENDING.get()
        _PENDING.reset(token)
        if committed and pending and self.tally is not None:
            self.tally.apply(pending)

    def _moved(self, kind: int, colony: str, etype: str, old: int, new: int, ident: str = "") -> None:
        if old != new:
            self._tally_add((kind, colony, etype, old, -1, ident), (kind, colony, etype, new, 1, ident))

    async def _delete_counted(self, con: Con, table: str, where: str, args: Sequence[Any]) -> None:
        """DELETE FROM a counted table, reporting what went (a plain DELETE without metrics)."""
        if self.tally is None:
            await con.execute(f"DELETE FROM {table} WHERE {where}", *args)
            return
        sql, kind = _DELETE[table]
        self._tally_add(*[(kind, c, t or "", s, -n, i or "") for c, t, s, n, i in
                      await con.fetch(sql.format(where=where), *args)])

    async def tally_rows(self) -> tuple[list[Delta], dict[str, int]]:
        async with self.pool.acquire() as con, con.transaction(isolation="repeatable_read", readonly=True):
            counted: list[Delta] = [(PROCESS, c, t, s, n, "") for c, t, s, n in await con.fetch(
                "SELECT colony_name, executor_type, state, count(*) FROM processes GROUP BY 1, 2, 3")]
            counted += [(GRAPH, c, "", s, n, "") for c, s, n in await con.fetch(
                "SELECT colony_name, state, count(*) FROM processgraphs GROUP BY 1, 2")]
            heard: dict[str, int] = {}
            for c, t, s, ident, last in await con.fetch(
                    "SELECT colony_name, executor_type, state, executor_id, last_heard FROM executors"):
                counted.append((EXECUTOR, c, t, s, 1, ident))
                heard[ident] = max(heard.get(ident, 0), last or 0)
            counted += [(COLONY, r[0], "", 0, 1, "") for r in await con.fetch("SELECT name FROM colonies")]
        return counted, heard
