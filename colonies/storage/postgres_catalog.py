"""PostgreSQL: users, functions, attributes, replay nonces, the simple executor reads and writes, counts."""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]

from colonies.clock import NS
from colonies.errors import Conflict, IdInUse
from colonies.model import Attribute, Executor, ExecutorState, Function, ProcessEvent, Statistics, User
from colonies.storage import rows
from colonies.storage.postgres_base import PostgresBase
from colonies.storage.tally import EXECUTOR


def js(obj: Any) -> str:
    """JSON text for a TEXT column, byte-identical to the SQLite backend's."""
    return rows.dumps(obj).decode()


def _count(status: str) -> int:
    """Rows touched, from an asyncpg command status such as `UPDATE 1`."""
    return int(status.rsplit(" ", 1)[-1])



class PostgresCatalogMixin(PostgresBase):
    # -- users -------------------------------------------------------------------------------------------------
    async def add_user(self, user: User) -> None:
        async with self._tx() as con:
            # Serialize adds per colony, so the name-or-id check cannot race.
            await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "users/" + user.colonyname)
            dup = await con.fetchrow("SELECT 1 FROM users WHERE colony_name = $1 AND (name = $2 OR user_id = $3)",
                                     user.colonyname, user.name, user.userid)
            if dup:
                raise Conflict(f"a user named {user.name} or with that id already exists in {user.colonyname}")
            await con.execute(f"INSERT INTO users ({rows.USER_COLS}) VALUES ($1,$2,$3,$4,$5)",
                              user.colonyname, user.userid, user.name, user.email, user.phone)

    async def get_user(self, colony: str, name: str) -> User | None:
        row = await self._one(f"SELECT {rows.USER_COLS} FROM users WHERE colony_name = $1 AND name = $2",
                              colony, name)
        return rows.user(row) if row else None

    async def get_user_by_id(self, colony: str, user_id: str) -> User | None:
        row = await self._one(f"SELECT {rows.USER_COLS} FROM users WHERE user_id = $1 AND colony_name = $2",
                              user_id, colony)
        return rows.user(row) if row else None

    async def list_users(self, colony: str) -> list[User]:
        return [rows.user(r) for r in await self._all(
            f"SELECT {rows.USER_COLS} FROM users WHERE colony_name = $1 ORDER BY name COLLATE \"C\"", colony)]

    async def remove_user(self, colony: str, name: str) -> bool:
        return _count(await self.pool.execute("DELETE FROM users WHERE colony_name = $1 AND name = $2",
                                              colony, name)) > 0

    async def change_user_id(self, colony: str, old_id: str, new_id: str) -> None:
        async with self._tx() as con:
            if new_id != old_id:
                await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "users/" + colony)
                if await self._in_use(con, new_id, colony):
                    raise IdInUse("that id is already in use")
            await con.execute("UPDATE users SET user_id = $1 WHERE colony_name = $2 AND user_id = $3",
                              new_id, colony, old_id)

    async def identity_in_use(self, identity: str, colony: str | None) -> bool:
        return await self._in_use(self.pool, identity, colony)

    async def _in_use(self, con: Any, identity: str, colony: str | None) -> bool:
        if colony is None:
            return bool(await con.fetchval(
                "SELECT 1 FROM executors WHERE executor_id = $1 AND state != 3"
                " UNION ALL SELECT 1 FROM users WHERE user_id = $1 LIMIT 1", identity))
        return bool(await con.fetchval(
            "SELECT 1 FROM executors WHERE executor_id = $1 AND colony_name = $2 AND state != 3"
            " UNION ALL SELECT 1 FROM users WHERE user_id = $1 AND colony_name = $2 LIMIT 1", identity, colony))

    # -- attributes and functions --------------------------------------------------------------------------------
    async def add_attribute(self, attribute: Attribute, now_ns: int) -> None:
        a = attribute
        try:
            await self.pool.execute(
                f"INSERT INTO attributes ({rows.ATTRIBUTE_COLS}, added) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                a.attributeid, a.targetid, a.targetcolonyname, a.targetprocessgraphid, a.attributetype, a.key,
                a.value, now_ns)
        except asyncpg.UniqueViolationError:
            raise Conflict("an attribute with that key and type already exists on the process") from None

    async def get_attribute(self, attribute_id: str) -> Attribute | None:
        row = await self._one(f"SELECT {rows.ATTRIBUTE_COLS} FROM attributes WHERE attribute_id = $1", attribute_id)
        if row is None:
            return None
        st = await self._one("SELECT state FROM processes WHERE process_id = $1", row[1])
        return rows.attribute(row, st[0] if st else 0)

    async def add_function(self, function: Function) -> None:
        f = function
        try:
            await self.pool.execute(
                f"INSERT INTO functions ({rows.FUNCTION_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
                f.functionid, f.executorname, f.executortype, f.colonyname, f.funcname, f.description,
                js(f.args) if f.args else None, 0, 0, 0, 0, 0, 0, 0, f.locationname)
        except asyncpg.UniqueViolationError:
            raise Conflict("a function with that id already exists") from None

    async def get_function(self, function_id: str) -> Function | None:
        row = await self._one(f"SELECT {rows.FUNCTION_COLS} FROM functions WHERE function_id = $1", function_id)
        return rows.function(row) if row else None

    async def list_functions(self, colony: str, executor_name: str) -> list[Function]:
        if executor_name:
            found = await self._all(f"SELECT {rows.FUNCTION_COLS} FROM functions WHERE colony_name = $1"
                                    " AND executor_name = $2 ORDER BY funcname COLLATE \"C\"", colony, executor_name)
        else:
            found = await self._all(f"SELECT {rows.FUNCTION_COLS} FROM functions WHERE colony_name = $1"
                                    " ORDER BY executor_name COLLATE \"C\", funcname COLLATE \"C\"", colony)
        return [rows.function(r) for r in found]

    async def remove_function(self, function_id: str) -> None:
        await self.pool.execute("DELETE FROM functions WHERE function_id = $1", function_id)

    async def record_function_run(self, colony: str, executor_name: str, funcname: str, wait_s: float,
                                  exec_s: float) -> None:
        # One statement; a no-op when the executor registered no such function.
        await self.pool.execute(
            "UPDATE functions SET counter = counter + 1,"
            " min_wait = CASE WHEN counter = 0 THEN $1 ELSE least(min_wait, $1) END, max_wait = greatest(max_wait, $1),"
            " min_exec = CASE WHEN counter = 0 THEN $2 ELSE least(min_exec, $2) END, max_exec = greatest(max_exec, $2),"
            " avg_wait = CASE WHEN counter = 0 THEN $1 ELSE (avg_wait + $1) / 2 END,"
            " avg_exec = CASE WHEN counter = 0 THEN $2 ELSE (avg_exec + $2) / 2 END"
            " WHERE colony_name = $3 AND executor_name = $4 AND funcname = $5",
            float(wait_s), float(exec_s), colony, executor_name, funcname)

    # -- replay protection ---------------------------------------------------------------------------------
    # The insert commits asynchronously: `set_config(..., true)` turns synchronous_commit off for this
    # statement's own transaction only (so it is safe behind PgBouncer too). Other replicas see the row at
    # once, and the request's own write, committed synchronously after it, flushes the WAL past it, so a
    # database crash can lose only nonces of requests that changed nothing.
    async def remember_nonce(self, nonce: str, signer: str, expires_ns: int) -> bool:
        status = await self.pool.execute(
            "INSERT INTO nonces (nonce, signer, expires) SELECT $1, $2, $3"
            " WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL ON CONFLICT DO NOTHING",
            nonce, signer, expires_ns)
        return _count(status) == 1

    async def purge_nonces(self, now_ns: int) -> None:
        await self.pool.execute("DELETE FROM nonces WHERE expires < $1", now_ns)

    # -- executors (the simple reads and writes; add/remove/reject live with the re-queue) and counts --------
    async def get_executor(self, colony: str, name: str) -> Executor | None:
        row = await self._one(f"SELECT {rows.EXECUTOR_COLS} FROM executors WHERE colony_name = $1 AND name = $2",
                              colony, name)
        return rows.executor(row) if row else None

    async def get_executor_by_id(self, executor_id: str) -> Executor | None:
        row = await self._one(f"SELECT {rows.EXECUTOR_COLS} FROM executors WHERE executor_id = $1 "
                              "ORDER BY state = 3, commission_time DESC LIMIT 1", executor_id)
        return rows.executor(row) if row else None

    async def get_colony_executor_by_id(self, colony: str, executor_id: str) -> Executor | None:
        row = await self._one(f"SELECT {rows.EXECUTOR_COLS} FROM executors WHERE executor_id = $1 AND"
                              " colony_name = $2 ORDER BY state = 3 LIMIT 1", executor_id, colony)
        return rows.executor(row) if row else None

    async def list_executors(self, colony: str) -> list[Executor]:
        return [rows.executor(r) for r in await self._all(
            f"SELECT {rows.EXECUTOR_COLS} FROM executors WHERE colony_name = $1 ORDER BY name COLLATE \"C\"",
            colony)]

    async def set_executor_state(self, colony: str, name: str, state: int) -> bool:
        if self.tally is None:
            status = await self.pool.execute("UPDATE executors SET state = $1 WHERE colony_name = $2 AND name = $3",
                                             state, colony, name)
            return _count(status) > 0
        async with self._tx() as con:  # counted: the old state, read under the row lock
            row = await con.fetchrow("SELECT executor_type, state, executor_id FROM executors"
                                     " WHERE colony_name = $1 AND name = $2 FOR UPDATE", colony, name)
            if row is None:
                return False
            await con.execute("UPDATE executors SET state = $1 WHERE colony_name = $2 AND name = $3",
                              state, colony, name)
            self._moved(EXECUTOR, colony, row[0], row[1], state, row[2])
            return True

    async def touch_executor(self, executor_id: str, now_ns: int) -> None:
        # Skipped when recent, so a busy executor does not turn every call into a write.
        await self.pool.execute("UPDATE executors SET last_heard = $1 WHERE executor_id = $2 AND last_heard < $3",
                                now_ns, executor_id, now_ns - NS)
        if self.tally is not None:
            self.tally.touched(executor_id, now_ns)

    async def update_executor(self, colony: str, name: str, capabilities: bytes | None,
                              allocations: bytes | None) -> None:
        async with self._tx() as con:
            if capabilities is not None:
                await con.execute("UPDATE executors SET capabilities = $1 WHERE colony_name = $2 AND name = $3",
                                  capabilities.decode(), colony, name)
            if allocations is not None:
                await con.execute("UPDATE executors SET allocations = $1 WHERE colony_name = $2 AND name = $3",
                                  allocations.decode(), colony, name)

    async def stale_executors(self, older_than_ns: int) -> list[Executor]:
        return [rows.executor(r) for r in await self._all(
            f"SELECT {rows.EXECUTOR_COLS} FROM executors WHERE last_heard > 0 AND last_heard < $1 AND state != 3",
            older_than_ns)]

    async def statistics(self, colony: str | None) -> Statistics:
        st = Statistics()
        if colony is None:
            st.colonies = int(await self.pool.fetchval("SELECT count(*) FROM colonies"))
            ex = await self._all("SELECT state, count(*) FROM executors GROUP BY state")
            pr = await self._all("SELECT state, count(*) FROM processes GROUP BY state")
            gr = await self._all("SELECT state, count(*) FROM processgraphs GROUP BY state")
        else:
            st.colonies = 1
            ex = await self._all("SELECT state, count(*) FROM executors WHERE colony_name = $1 GROUP BY state",
                                 colony)
            pr = await self._all("SELECT state, count(*) FROM processes WHERE colony_name = $1 GROUP BY state",
                                 colony)
            gr = await self._all("SELECT state, count(*) FROM processgraphs WHERE colony_name = $1 GROUP BY state",
                                 colony)
        exs = {r[0]: int(r[1]) for r in ex}
        st.executors = sum(n for s, n in exs.items() if s != ExecutorState.UNREGISTERED)
        st.activeexecutors = exs.get(int(ExecutorState.APPROVED), 0)
        st.unregisteredexecutors = exs.get(int(ExecutorState.UNREGISTERED), 0)
        p = {r[0]: int(r[1]) for r in pr}
        g = {r[0]: int(r[1]) for r in gr}
        st.waitingprocesses, st.runningprocesses = p.get(0, 0), p.get(1, 0)
        st.successfulprocesses, st.failedprocesses, st.cancelledprocesses = p.get(2, 0), p.get(3, 0), p.get(4, 0)
        st.waitingworkflows, st.runningworkflows = g.get(0, 0), g.get(1, 0)
        st.successfulworkflows, st.failedworkflows, st.cancelledworkflows = g.get(2, 0), g.get(3, 0), g.get(4, 0)
        return st

    async def process_events(self, process_id: str) -> list[ProcessEvent]:
        return [ProcessEvent(seq=r[0], processid=r[1], timestamp=r[2], event=r[3], actorid=r[4], detail=r[5])
                for r in await self._all("SELECT seq, process_id, ts, event, actor, detail FROM process_events"
                                         " WHERE process_id = $1 ORDER BY seq", process_id)]
