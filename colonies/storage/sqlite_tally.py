"""SQLite: the counts behind /metrics (colonies.storage.tally), reported by temporary triggers.

The triggers live only on the server's own connection (TEMP: nothing is added to the database file, and
other connections are unaffected). Each fires on an insert, a delete, or an update that changes a
counted column of processes, processgraphs, executors or colonies, and calls back into Python with the
delta, which is held until the transaction commits (and dropped if it rolls back). So every path that
changes those rows is counted, cascades and retention included, without a line in each of them.
"""

from __future__ import annotations

from colonies.storage.sqlite_base import SqliteBase
from colonies.storage.tally import COLONY, EXECUTOR, GRAPH, PROCESS, Delta, Tally

_FN = "colonies_tally"


def _triggers(table: str, kind: int, colony: str, etype: str, state: str, ident: str, columns: list[str]) -> list[str]:
    """Insert, delete and update triggers for one table; `etype`, `state` and `ident` are SQL expressions
    over the row `{r}` (OLD or NEW)."""
    def call(r: str, n: int) -> str:
        return (f"SELECT {_FN}({kind}, {r}.{colony}, {etype.format(r=r)}, {state.format(r=r)}, {n},"
                f" {ident.format(r=r)});")

    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)
    name = f"tally_{table}"
    return [
        f"CREATE TEMP TRIGGER IF NOT EXISTS {name}_ins AFTER INSERT ON main.{table} BEGIN {call('NEW', 1)} END",
        f"CREATE TEMP TRIGGER IF NOT EXISTS {name}_del AFTER DELETE ON main.{table} BEGIN {call('OLD', -1)} END",
        (f"CREATE TEMP TRIGGER IF NOT EXISTS {name}_upd AFTER UPDATE OF {', '.join(columns)} ON main.{table}"
         f" WHEN {changed} BEGIN {call('OLD', -1)} {call('NEW', 1)} END"),
    ]


TRIGGERS = [
    *_triggers("processes", PROCESS, "colony_name", "{r}.executor_type", "{r}.state", "''",
               ["colony_name", "executor_type", "state"]),
    *_triggers("processgraphs", GRAPH, "colony_name", "''", "{r}.state", "''", ["colony_name", "state"]),
    *_triggers("executors", EXECUTOR, "colony_name", "{r}.executor_type", "{r}.state", "{r}.executor_id",
               ["colony_name", "executor_type", "state", "executor_id"]),
    *_triggers("colonies", COLONY, "name", "''", "0", "''", ["name"]),
]


class SqliteTallyMixin(SqliteBase):
    _tally_pending: list[Delta]

    async def start_tally(self, tally: Tally) -> None:
        """Install the triggers and seed, with no await in between: no write can fall between them."""
        self.tally = tally
        self._tally_pending = []
        db = self.db
        db.create_function(_FN, 6, self._on_tally_row)
        for sql in TRIGGERS:
            db.execute(sql)
        tally.begin_seed()
        counted, heard = self._tally_query()
        tally.finish_seed(counted, heard)

    def _on_tally_row(self, kind: int, colony: str, etype: str, state: int, n: int, ident: str) -> None:
        delta = (kind, colony, etype or "", state, n, ident or "")
        if self.db.in_transaction:
            self._tally_pending.append(delta)
        elif self.tally is not None:  # a statement outside BEGIN … COMMIT commits by itself
            self.tally.apply([delta])

    def _tally_committed(self, committed: bool) -> None:
        """Called by `_tx` after COMMIT (True) or ROLLBACK (False)."""
        pending, self._tally_pending = self._tally_pending, []
        if committed and pending and self.tally is not None:
            self.tally.apply(pending)

    async def tally_rows(self) -> tuple[list[Delta], dict[str, int]]:
        return self._tally_query()

    def _tally_query(self) -> tuple[list[Delta], dict[str, int]]:
        counted: list[Delta] = [(PROCESS, c, t, s, n, "") for c, t, s, n in self._all(
            "SELECT colony_name, executor_type, state, count(*) FROM processes GROUP BY 1, 2, 3")]
        counted += [(GRAPH, c, "", s, n, "") for c, s, n in self._all(
            "SELECT colony_name, state, count(*) FROM processgraphs GROUP BY 1, 2")]
        heard: dict[str, int] = {}
        for c, t, s, ident, last in self._all(
                "SELECT colony_name, executor_type, state, executor_id, last_heard FROM executors"):
            counted.append((EXECUTOR, c, t, s, 1, ident))
            heard[ident] = max(heard.get(ident, 0), last or 0)
        counted += [(COLONY, name, "", 0, 1, "") for (name,) in self._all("SELECT name FROM colonies")]
        return counted, heard
