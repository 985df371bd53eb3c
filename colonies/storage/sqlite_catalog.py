"""SQLite: users, functions, attributes, the simple executor reads and writes, and counts."""

from __future__ import annotations

import sqlite3

from colonies.clock import NS
from colonies.errors import Conflict, IdInUse
from colonies.model import Attribute, Executor, ExecutorState, Function, ProcessEvent, Statistics, User
from colonies.storage import rows
from colonies.storage.sqlite_base import SqliteBase


class SqliteCatalogMixin(SqliteBase):
    # -- users ---------------------------------------------------------------------------------------------
    async def add_user(self, user: User) -> None:
        with self._tx() as db:
            dup = db.execute("SELECT 1 FROM users WHERE colony_name = ? AND (name = ? OR user_id = ?)",
                             (user.colonyname, user.name, user.userid)).fetchone()
            if dup:
                raise Conflict(f"a user named {user.name} or with that id already exists in {user.colonyname}")
            db.execute(f"INSERT INTO users ({rows.USER_COLS}) VALUES (?,?,?,?,?)",
                       (user.colonyname, user.userid, user.name, user.email, user.phone))

    async def get_user(self, colony: str, name: str) -> User | None:
        row = self._one(f"SELECT {rows.USER_COLS} FROM users WHERE colony_name = ? AND name = ?", (colony, name))
        return rows.user(row) if row else None

    async def get_user_by_id(self, colony: str, user_id: str) -> User | None:
        row = self._one(f"SELECT {rows.USER_COLS} FROM users WHERE user_id = ? AND colony_name = ?",
                        (user_id, colony))
        return rows.user(row) if row else None

    async def list_users(self, colony: str) -> list[User]:
        return [rows.user(r) for r in self._all(
            f"SELECT {rows.USER_COLS} FROM users WHERE colony_name = ? ORDER BY name", (colony,))]

    async def remove_user(self, colony: str, name: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM users WHERE colony_name = ? AND name = ?", (colony, name))
        return cur.rowcount > 0

    async def change_user_id(self, colony: str, old_id: str, new_id: str) -> None:
        with self._tx() as db:
            if new_id != old_id and self._in_use(db, new_id, colony):
                raise IdInUse("that id is already in use")
            db.execute("UPDATE users SET user_id = ? WHERE colony_name = ? AND user_id = ?",
                       (new_id, colony, old_id))

    async def identity_in_use(self, identity: str, colony: str | None) -> bool:
        return self._in_use(self.db, identity, colony)

    def _in_use(self, db: sqlite3.Connection, identity: str, colony: str | None) -> bool:
        if colony is None:
            found = db.execute("SELECT 1 FROM executors WHERE executor_id = ?1 AND state != 3"
                               " UNION ALL SELECT 1 FROM users WHERE user_id = ?1 LIMIT 1", (identity,))
        else:
            found = db.execute("SELECT 1 FROM executors WHERE executor_id = ?1 AND colony_name = ?2 AND state != 3"
                               " UNION ALL SELECT 1 FROM users WHERE user_id = ?1 AND colony_name = ?2 LIMIT 1",
                               (identity, colony))
        return found.fetchone() is not None

    # -- attributes and functions -------------------------------------------------------------------------------
    async def add_attribute(self, attribute: Attribute, now_ns: int) -> None:
        a = attribute
        try:
            with self._tx() as db:
                db.execute(f"INSERT INTO attributes ({rows.ATTRIBUTE_COLS}, added) VALUES (?,?,?,?,?,?,?,?)",
                           (a.attributeid, a.targetid, a.targetcolonyname, a.targetprocessgraphid,
                            a.attributetype, a.key, a.value, now_ns))
        except sqlite3.IntegrityError:
            raise Conflict("an attribute with that key and type already exists on the process") from None

    async def get_attribute(self, attribute_id: str) -> Attribute | None:
        row = self._one(f"SELECT {rows.ATTRIBUTE_COLS} FROM attributes WHERE attribute_id = ?", (attribute_id,))
        if row is None:
            return None
        st = self._one("SELECT state FROM processes WHERE process_id = ?", (row[1],))
        return rows.attribute(row, st[0] if st else 0)

    async def add_function(self, function: Function) -> None:
        f = function
        try:
            with self._tx() as db:
                db.execute(f"INSERT INTO functions ({rows.FUNCTION_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           (f.functionid, f.executorname, f.executortype, f.colonyname, f.funcname, f.description,
                            rows.dumps(f.args) if f.args else None, 0, 0, 0, 0, 0, 0, 0, f.locationname))
        except sqlite3.IntegrityError:
            raise Conflict("a function with that id already exists") from None

    async def get_function(self, function_id: str) -> Function | None:
        row = self._one(f"SELECT {rows.FUNCTION_COLS} FROM functions WHERE function_id = ?", (function_id,))
        return rows.function(row) if row else None

    async def list_functions(self, colony: str, executor_name: str) -> list[Function]:
        if executor_name:
            found = self._all(f"SELECT {rows.FUNCTION_COLS} FROM functions WHERE colony_name = ?"
                              " AND executor_name = ? ORDER BY funcname", (colony, executor_name))
        else:
            found = self._all(f"SELECT {rows.FUNCTION_COLS} FROM functions WHERE colony_name = ?"
                              " ORDER BY executor_name, funcname", (colony,))
        return [rows.function(r) for r in found]

    async def remove_function(self, function_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM functions WHERE function_id = ?", (function_id,))

    async def record_function_run(self, colony: str, executor_name: str, funcname: str, wait_s: float,
                                  exec_s: float) -> None:
        # Most executors register no functions: skip the write transaction when there is nothing to update.
        if self._one("SELECT 1 FROM functions WHERE colony_name = ? AND executor_name = ? AND funcname = ?",
                     (colony, executor_name, funcname)) is None:
            return
        with self._tx() as db:
            db.execute(
                "UPDATE functions SET counter = counter + 1,"
                " min_wait = CASE WHEN counter = 0 THEN ?1 ELSE min(min_wait, ?1) END, max_wait = max(max_wait, ?1),"
                " min_exec = CASE WHEN counter = 0 THEN ?2 ELSE min(min_exec, ?2) END, max_exec = max(max_exec, ?2),"
                " avg_wait = CASE WHEN counter = 0 THEN ?1 ELSE (avg_wait + ?1) / 2 END,"
                " avg_exec = CASE WHEN counter = 0 THEN ?2 ELSE (avg_exec + ?2) / 2 END"
                " WHERE colony_name = ?3 AND executor_name = ?4 AND funcname = ?5",
                (wait_s, exec_s, colony, executor_name, funcname))

    # -- executors (the simple reads and writes; add/remove/reject live with the re-queue) and counts --------
    async def get_executor(self, colony: str, name: str) -> Executor | None:
        row = self._one(f"SELECT {rows.EXECUTOR_COLS} FROM executors WHERE colony_name = ? AND name = ?",
                        (colony, name))
        return rows.executor(row) if row else None

    async def get_executor_by_id(self, executor_id: str) -> Executor | None:
        row = self._one(f"SELECT {rows.EXECUTOR_COLS} FROM executors WHERE executor_id = ? "
                        "ORDER BY state = 3, commission_time DESC LIMIT 1", (executor_id,))
        return rows.executor(row) if row else None

    async def get_colony_executor_by_id(self, colony: str, executor_id: str) -> Executor | None:
        row = self._one(f"SELECT {rows.EXECUTOR_COLS} FROM executors WHERE executor_id = ? AND colony_name = ? "
                        "ORDER BY state = 3 LIMIT 1", (executor_id, colony))
        return rows.executor(row) if row else None

    async def list_executors(self, colony: str) -> list[Executor]:
        return [rows.executor(r) for r in self._all(
            f"SELECT {rows.EXECUTOR_COLS} FROM executors WHERE colony_name = ? ORDER BY name", (colony,))]

    async def set_executor_state(self, colony: str, name: str, state: int) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE executors SET state = ? WHERE colony_name = ? AND name = ?",
                             (state, colony, name))
        return cur.rowcount > 0

    async def touch_executor(self, executor_id: str, now_ns: int) -> None:
        # Skipped when recent, so a busy executor does not turn every call into a write.
        with self._tx() as db:
            db.execute("UPDATE executors SET last_heard = ? WHERE executor_id = ? AND last_heard < ?",
                       (now_ns, executor_id, now_ns - NS))
        if self.tally is not None:
            self.tally.touched(executor_id, now_ns)

    async def update_executor(self, colony: str, name: str, capabilities: bytes | None,
                              allocations: bytes | None) -> None:
        with self._tx() as db:
            if capabilities is not None:
                db.execute("UPDATE executors SET capabilities = ? WHERE colony_name = ? AND name = ?",
                           (capabilities, colony, name))
            if allocations is not None:
                db.execute("UPDATE executors SET allocations = ? WHERE colony_name = ? AND name = ?",
                           (allocations, colony, name))

    async def stale_executors(self, older_than_ns: int) -> list[Executor]:
        return [rows.executor(r) for r in self._all(
            f"SELECT {rows.EXECUTOR_COLS} FROM executors WHERE last_heard > 0 AND last_heard < ? AND state != 3",
            (older_than_ns,))]

    async def statistics(self, colony: str | None) -> Statistics:
        st = Statistics()
        if colony is None:
            st.colonies = self._one("SELECT count(*) FROM colonies")[0]
            ex = self._all("SELECT state, count(*) FROM executors GROUP BY state")
            pr = self._all("SELECT state, count(*) FROM processes GROUP BY state")
            gr = self._all("SELECT state, count(*) FROM processgraphs GROUP BY state")
        else:
            st.colonies = 1
            ex = self._all("SELECT state, count(*) FROM executors WHERE colony_name = ? GROUP BY state", (colony,))
            pr = self._all("SELECT state, count(*) FROM processes WHERE colony_name = ? GROUP BY state", (colony,))
            gr = self._all("SELECT state, count(*) FROM processgraphs WHERE colony_name = ? GROUP BY state",
                           (colony,))
        exs = dict(ex)
        st.executors = sum(n for s, n in exs.items() if s != ExecutorState.UNREGISTERED)
        st.activeexecutors = exs.get(int(ExecutorState.APPROVED), 0)
        st.unregisteredexecutors = exs.get(int(ExecutorState.UNREGISTERED), 0)
        p, g = dict(pr), dict(gr)
        st.waitingprocesses, st.runningprocesses = p.get(0, 0), p.get(1, 0)
        st.successfulprocesses, st.failedprocesses, st.cancelledprocesses = p.get(2, 0), p.get(3, 0), p.get(4, 0)
        st.waitingworkflows, st.runningworkflows = g.get(0, 0), g.get(1, 0)
        st.successfulworkflows, st.failedworkflows, st.cancelledworkflows = g.get(2, 0), g.get(3, 0), g.get(4, 0)
        return st

    async def process_events(self, process_id: str) -> list[ProcessEvent]:
        return [ProcessEvent(seq=r[0], processid=r[1], timestamp=r[2], event=r[3], actorid=r[4], detail=r[5])
                for r in self._all("SELECT seq, process_id, ts, event, actor, detail FROM process_events"
                                   " WHERE process_id = ? ORDER BY seq", (process_id,))]
