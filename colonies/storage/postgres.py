"""Production backend: PostgreSQL through an asyncpg pool.

Several server replicas share one database, so every composite change runs in one transaction and
every contended step is a row lock, never a read-then-write race:
- claim is one `UPDATE … FROM (SELECT … ORDER BY priority_time LIMIT 1 FOR UPDATE SKIP LOCKED)` over
  the partial queue index (untargeted queue) and the targets table (targeted by name);
- finish, set_output and cancel are compare-and-set UPDATEs;
- expire takes its rows with SKIP LOCKED, so every replica may run it;
- workflow resolution locks the graph row first, so two parents closing at once see each other.
A transaction aborted by a deadlock or a serialization failure is retried a bounded number of times.
Statements are prepared once per connection (asyncpg's cache, `COLONIES_DB_STATEMENT_CACHE`); set it to 0
behind PgBouncer in transaction mode, which cannot keep prepared statements before PgBouncer 1.21.
"""

from __future__ import annotations

import asyncio
import functools
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import asyncpg  # type: ignore[import-untyped,unused-ignore]
from asyncpg import Connection as Con  # type: ignore[import-untyped,unused-ignore]

from colonies.clock import NS, ZERO_TIME
from colonies.errors import Conflict, Forbidden, IdInUse, StorageError
from colonies.model import (
    Attribute,
    Colony,
    Executor,
    Process,
    ProcessGraph,
    ProcessState,
)
from colonies.resources import parse_cpu, parse_mem
from colonies.storage import rows
from colonies.storage.base import Changed, ClaimRequest, ProcessQuery
from colonies.storage.migrate import latest_version, migrations
from colonies.storage.postgres_blueprints import PostgresBlueprintsMixin
from colonies.storage.postgres_catalog import PostgresCatalogMixin, _count, js
from colonies.storage.postgres_files import PostgresFilesMixin
from colonies.storage.postgres_locations import PostgresLocationsMixin
from colonies.storage.postgres_schedules import PostgresSchedulesMixin
from colonies.storage.postgres_tally import PostgresTallyMixin
from colonies.storage.postgres_workflows import PostgresWorkflowsMixin
from colonies.storage.tally import COLONY, EXECUTOR, PROCESS

if TYPE_CHECKING:
    from colonies.cluster_events import ClusterEvents
    from colonies.config import Config
    from colonies.scheduler import EventBus

_P = rows.PROCESS_COLS
_P_Q = ", ".join(f"processes.{c.strip()}" for c in _P.split(","))  # qualified, for UPDATE … FROM
WAITING, RUNNING, SUCCESS, FAILED, CANCELLED = (int(s) for s in ProcessState)
EXEC_TIMEOUT_ERROR = "Maximum execution time limit exceeded"
WAIT_TIMEOUT_ERROR = "Maximum waiting time limit exceeded"
MIGRATION_LOCK = 0x636F6C6F6E696573  # "colonies"
RETRIES = 8
T = TypeVar("T")


def dsn_of(config: Config) -> str:
    """The connection URL; user, password and database name are percent-encoded, so a password with
    `@`, `/`, `#`, `?` or `%` reaches the server as it is written."""
    q = functools.partial(urllib.parse.quote, safe="")
    host = f"[{config.db_host}]" if ":" in config.db_host else config.db_host  # an IPv6 literal
    return (f"postgresql://{q(config.db_user)}:{q(config.db_password)}@{host}:{config.db_port}/"
            f"{q(config.db_name)}")


class PostgresStorage(PostgresWorkflowsMixin, PostgresSchedulesMixin, PostgresCatalogMixin,
                      PostgresFilesMixin, PostgresLocationsMixin, PostgresBlueprintsMixin, PostgresTallyMixin):
    def __init__(self, config: Config | None = None, dsn: str | None = None, min_size: int = 2,
                 max_size: int | None = None, statement_cache: int | None = None) -> None:
        if dsn is None:
            if config is None:
                raise StorageError("PostgresStorage needs a config or a dsn")
            dsn = dsn_of(config)
        self.dsn = dsn
        self.max_size = max_size if max_size is not None else (config.db_pool_size if config else 10)
        self.min_size = min(min_size, self.max_size)
        self.statement_cache = (statement_cache if statement_cache is not None
                                else config.db_statement_cache if config else 100)
        self._pool: asyncpg.Pool | None = None

    # -- plumbing ------------------------------------------------------------------------------------------
    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("storage is not open")
        return self._pool

    async def open(self) -> None:
        pool = await asyncpg.create_pool(self.dsn, min_size=self.min_size, max_size=self.max_size,
                                         statement_cache_size=self.statement_cache, command_timeout=60,
                                         reset=_no_session_reset)
        assert pool is not None
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        async with self.pool.acquire() as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = await con.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            latest = latest_version("postgresql")
            if current > latest:
                raise StorageError(f"database schema version {current} is newer than this server "
                                   f"({latest}); upgrade the server")
            for version, sql in migrations("postgresql"):
                if version > current:
                    await con.execute(sql)
                    await con.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def listen(self, bus: EventBus) -> ClusterEvents:
        """Start cross-replica wakeups for `bus` (LISTEN/NOTIFY on a dedicated connection); the caller
        stops the returned object before closing the storage."""
        from colonies.cluster_events import ClusterEvents

        events = ClusterEvents(self.dsn, bus, self)
        await events.start()
        return events

    async def schema_version(self) -> int:
        return int(await self.pool.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Con]:
        token = self._tally_begin()  # counted-row changes wait for the commit (colonies.storage.postgres_tally)
        try:
            async with self.pool.acquire() as con, con.transaction():
                yield con
        except BaseException:
            self._tally_end(token, committed=False)
            raise
        self._tally_end(token, committed=True)

    async def _run(self, fn: Callable[[Con], Awaitable[T]]) -> T:
        """`fn` in one transaction, retried (bounded) when PostgreSQL aborts it on a deadlock."""
        for attempt in range(RETRIES):
            try:
                async with self._tx() as con:
                    return await fn(con)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(0.001 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _one(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchrow(sql, *args)

    async def _all(self, sql: str, *args: Any) -> list[Any]:
        return list(await self.pool.fetch(sql, *args))

    async def _event(self, con: Con, pid: str, now: int, event: str, actor: str = "", detail: str = "") -> None:
        await con.execute("INSERT INTO process_events (process_id, ts, event, actor, detail) VALUES ($1,$2,$3,$4,$5)",
                          pid, now, event, actor, detail)

    async def _get(self, con: Con, pid: str) -> Process | None:
        row = await con.fetchrow(f"SELECT {_P} FROM processes WHERE process_id = $1", pid)
        return rows.process(row) if row else None

    # -- server ------------------------------------------------------------------------------------------------
    async def get_server_id(self) -> str:
        row = await self._one("SELECT server_id FROM server WHERE id = 1")
        return str(row[0]) if row else ""

    async def set_server_id(self, server_id: str) -> None:
        await self.pool.execute("INSERT INTO server (id, server_id) VALUES (1, $1) "
                                "ON CONFLICT (id) DO UPDATE SET server_id = excluded.server_id", server_id)

    # -- colonies ----------------------------------------------------------------------------------------------
    async def add_colony(self, colony: Colony) -> None:
        try:
            await self.pool.execute("INSERT INTO colonies (name, colony_id) VALUES ($1, $2)",
                                    colony.name, colony.colonyid)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a colony named {colony.name} already exists") from None
        self._tally_add((COLONY, colony.name, "", 0, 1, ""))

    async def get_colony(self, name: str) -> Colony | None:
        row = await self._one("SELECT colony_id, name FROM colonies WHERE name = $1", name)
        return Colony(colonyid=row[0], name=row[1]) if row else None

    async def list_colonies(self) -> list[Colony]:
        return [Colony(colonyid=r[0], name=r[1])
                for r in await self._all("SELECT colony_id, name FROM colonies ORDER BY name COLLATE \"C\"")]

    async def remove_colony(self, name: str) -> None:
        async with self._tx() as con:
            pids = "SELECT process_id FROM processes WHERE colony_name = $1"
            await con.execute(f"DELETE FROM process_events WHERE process_id IN ({pids})", name)
            await con.execute(f"DELETE FROM process_targets WHERE process_id IN ({pids})", name)
            for table in ("processes", "executors", "users", "attributes", "functions", "processgraphs",
                          "generators", "generator_args", "crons", "logs", "files", "snapshots", "locations",
                          "blueprint_definitions", "blueprints", "blueprint_history"):
                if table in ("processes", "executors", "processgraphs"):
                    await self._delete_counted(con, table, "colony_name = $1", (name,))
                else:
                    await con.execute(f"DELETE FROM {table} WHERE colony_name = $1", name)
            await self._delete_counted(con, "colonies", "name = $1", (name,))

    async def change_colony_id(self, name: str, colony_id: str) -> None:
        await self.pool.execute("UPDATE colonies SET colony_id = $1 WHERE name = $2", colony_id, name)

    async def set_paused(self, colony: str, paused: bool) -> None:
        await self.pool.execute("UPDATE colonies SET paused = $1 WHERE name = $2", paused, colony)

    async def is_paused(self, colony: str) -> bool:
        row = await self._one("SELECT paused FROM colonies WHERE name = $1", colony)
        return bool(row and row[0])

    # -- executors ---------------------------------------------------------------------------------------------
    async def add_executor(self, executor: Executor, replace: bool = False) -> list[str]:
        e = executor

        async def tx(con: Con) -> list[str]:
            requeued: list[str] = []
            await _lock_identity(con, e.executorid)
            old = await con.fetchrow("SELECT executor_id, executor_type, state FROM executors"
                                     " WHERE colony_name = $1 AND name = $2 FOR UPDATE", e.colonyname, e.executorname)
            if old is not None and not replace:
                raise Conflict(f"an executor named {e.executorname} already exists in {e.colonyname}")
            if await con.fetchval("SELECT 1 FROM executors WHERE executor_id = $1 AND state != 3"
                                  " AND NOT (colony_name = $2 AND name = $3) LIMIT 1",
                                  e.executorid, e.colonyname, e.executorname):
                raise IdInUse("an executor with that id is already registered")
            if old is not None:
                requeued = await self._requeue_executor(con, e.colonyname, old[0], 0)
                await con.execute("DELETE FROM functions WHERE colony_name = $1 AND executor_name = $2",
                                  e.colonyname, e.executorname)
                await con.execute("DELETE FROM executors WHERE colony_name = $1 AND name = $2",
                                  e.colonyname, e.executorname)
                self._tally_add((EXECUTOR, e.colonyname, old[1], old[2], -1, old[0]))
            try:
                async with con.transaction():
                    await con.execute(
                        f"INSERT INTO executors ({rows.EXECUTOR_COLS}) VALUES ({', '.join(f'${i}' for i in range(1, 14))})",
                        e.executorid, e.executortype, e.executorname, e.colonyname, e.state, e.requirefuncreg, _ns(e.commissiontime),
                        0, e.locationname, js(e.capabilities), js(e.allocations), e.blueprintid or "", e.blueprintgen or 0)
            except asyncpg.UniqueViolationError:
                raise Conflict(f"an executor named {e.executorname} already exists in {e.colonyname}") from None
            self._tally_add((EXECUTOR, e.colonyname, e.executortype, e.state, 1, e.executorid))
            return requeued

        return await self._run(tx)

    async def _requeue_executor(self, con: Con, colony: str, executor_id: str, now: int,
                                why: str = "executor removed") -> list[str]:
        """Put an executor's RUNNING processes of `colony` back in the queue, without counting a retry."""
        found = await con.fetch(
            "SELECT process_id, spec, priority_time, max_wait_time, executor_type FROM processes"
            " WHERE assigned_executor_id = $1 AND state = 1 AND colony_name = $2 FOR UPDATE", executor_id, colony)
        for pid, spec, prio, max_wait, etype in found:
            await self._to_waiting(con, pid, spec, prio, colony, max_wait, now, retry=False)
            self._moved(PROCESS, colony, etype, RUNNING, WAITING)
            await self._event(con, pid, now, "requeued", executor_id, why)
        return [r[0] for r in found]

    async def _to_waiting(self, con: Con, pid: str, spec: str, prio: int, colony: str, max_wait: int, now: int,
                          retry: bool) -> None:
        wait_deadline = now + max_wait * NS if max_wait > 0 else 0
        await con.execute(
            "UPDATE processes SET state = 0, is_assigned = FALSE, assigned_executor_id = '', exec_deadline = 0,"
            " start_time = 0, end_time = $1, retries = retries + $2, wait_deadline = $3 WHERE process_id = $4",
            now, int(retry), wait_deadline, pid)
        names = rows._spec_dec.decode(spec).conditions.executornames or []
        await self._insert_targets(con, colony, names, prio, pid)

    async def _insert_targets(self, con: Con, colony: str, names: list[str], prio: int, pid: str) -> None:
        targets = [(colony, n, prio, pid) for n in sorted(set(names)) if n and n != "*"]
        if targets:
            await con.executemany("INSERT INTO process_targets VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING",
                                  targets)

    async def remove_executor(self, colony: str, name: str, now_ns: int) -> list[str]:
        async def tx(con: Con) -> list[str]:
            row = await con.fetchrow("SELECT executor_id, executor_type, state FROM executors"
                                     " WHERE colony_name = $1 AND name = $2 FOR UPDATE", colony, name)
            if row is None:
                return []
            # The row lock (FOR UPDATE) waits for claims holding FOR KEY SHARE on it, and makes later
            # ones see the new state: the re-queue below then sees every process claimed before it.
            requeued = await self._requeue_executor(con, colony, row[0], now_ns)
            await con.execute("DELETE FROM functions WHERE colony_name = $1 AND executor_name = $2", colony, name)
            await con.execute("UPDATE executors SET state = 3 WHERE colony_name = $1 AND name = $2", colony, name)
            self._moved(EXECUTOR, colony, row[1], row[2], 3, row[0])
            return requeued

        return await self._run(tx)

    async def reject_executor(self, colony: str, name: str, now_ns: int) -> list[str] | None:
        async def tx(con: Con) -> list[str] | None:
            row = await con.fetchrow("SELECT executor_id, executor_type, state FROM executors"
                                     " WHERE colony_name = $1 AND name = $2 FOR UPDATE", colony, name)
            if row is None:
                return None
            await con.execute("UPDATE executors SET state = 2 WHERE colony_name = $1 AND name = $2", colony, name)
            self._moved(EXECUTOR, colony, row[1], row[2], 2, row[0])
            return await self._requeue_executor(con, colony, row[0], now_ns, "executor rejected")

        return await self._run(tx)

    async def change_executor_id(self, colony: str, old_id: str, new_id: str) -> None:
        async with self._tx() as con:
            if new_id != old_id:
                await _lock_identity(con, new_id)
                if await con.fetchval("SELECT 1 FROM executors WHERE executor_id = $1 AND state != 3"
                                      " UNION ALL SELECT 1 FROM users WHERE user_id = $1 AND colony_name = $2 LIMIT 1",
                                      new_id, colony):
                    raise IdInUse("that id is already in use")
            for etype, state in await con.fetch("UPDATE executors SET executor_id = $1 WHERE colony_name = $2"
                                                " AND executor_id = $3 RETURNING executor_type, state",
                                                new_id, colony, old_id):
                self._tally_add((EXECUTOR, colony, etype, state, -1, old_id), (EXECUTOR, colony, etype, state, 1, new_id))

    # -- processes ---------------------------------------------------------------------------------------------
    async def add_processes(self, processes: list[Process], graph: ProcessGraph | None = None,
                            actor: str = "") -> None:
        if graph is None and len(processes) == 1 and not _targets(processes[0]) and not processes[0].attributes:
            # A plain submit is one statement (process row and its event), atomic without BEGIN/COMMIT.
            async with self.pool.acquire() as con:
                await self._insert_process(con, processes[0], actor)
            return
        async with self._tx() as con:
            if graph is not None:
                await self._insert_graph(con, graph)
            for p in processes:
                await self._insert_process(con, p, actor)

    async def _add_process(self, con: Con, p: Process) -> None:
        await self._insert_process(con, p, "")

    async def _insert_process(self, con: Con, p: Process, actor: str) -> None:
        s = p.spec
        c = s.conditions
        names = _targets(p)
        sub = _ns(p.submissiontime)
        # One round trip for the row and its "submitted" event; a duplicate id inserts neither.
        try:
            inserted = await con.fetchval(
                "WITH ins AS (INSERT INTO processes (process_id, colony_name, executor_type, state, targeted,"
                " location_name, cpu, mem, priority_time, submission_time, wait_deadline, max_exec_time,"
                " max_wait_time, max_retries, retries, wait_for_parents, parents, children, processgraph_id,"
                " initiator_id, initiator_name, label, funcname, input, output, errors, spec) VALUES ($1,$2,$3,$4,"
                "$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27)"
                " ON CONFLICT (process_id) DO NOTHING RETURNING process_id),"
                " ev AS (INSERT INTO process_events (process_id, ts, event, actor, detail)"
                "  SELECT process_id, $10, 'submitted', $28, $29 FROM ins)"
                " SELECT process_id FROM ins",
                p.processid, c.colonyname, c.executortype, p.state, bool(names), c.locationname,
                parse_cpu(c.cpu), parse_mem(c.mem), p.prioritytime, sub, _ns(p.waitdeadline),
                s.maxexectime, s.maxwaittime, s.maxretries, p.retries, bool(p.waitforparents),
                js(p.parents), js(p.children), p.processgraphid, p.initiatorid, p.initiatorname, s.label,
                s.funcname, js(p.input or []), js(p.output or []), js(p.errors), js(s), actor or p.initiatorid,
                p.initiatorname)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"process {p.processid} already exists") from None
        if inserted is None:
            raise Conflict(f"process {p.processid} already exists")
        self._tally_add((PROCESS, c.colonyname, c.executortype, p.state, 1, ""))
        await self._insert_targets(con, c.colonyname, names, p.prioritytime, p.processid)
        if p.attributes:
            await con.executemany(
                f"INSERT INTO attributes ({rows.ATTRIBUTE_COLS}, added) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
                " ON CONFLICT (attribute_id) DO UPDATE SET target_id = excluded.target_id,"
                " colony_name = excluded.colony_name, processgraph_id = excluded.processgraph_id,"
                " attribute_type = excluded.attribute_type, key = excluded.key, value = excluded.value,"
                " added = excluded.added",
                [(a.attributeid, a.targetid, a.targetcolonyname, a.targetprocessgraphid, a.attributetype,
                  a.key, a.value, sub) for a in p.attributes])

    async def get_process(self, process_id: str, attributes: bool = True) -> Process | None:
        row = await self._one(f"SELECT {_P} FROM processes WHERE process_id = $1", process_id)
        if row is None:
            return None
        p = rows.process(row)
        if attributes:
            p.attributes = await self._attributes(self.pool, process_id, p.state)
        return p

    async def _attributes(self, con: Con | asyncpg.Pool, pid: str, state: int) -> list[Attribute]:
        return [rows.attribute(r, state) for r in await con.fetch(
            f"SELECT {rows.ATTRIBUTE_COLS} FROM attributes WHERE target_id = $1", pid)]

    async def claim(self, req: ClaimRequest, now_ns: int) -> Process | None:
        args: list[Any] = [req.colony, req.executor_type, req.location, req.executor_name, req.executor_id, now_ns]
        extra = " AND (p.location_name = '' OR lower(p.location_name) = lower($3))"
        if req.cpu_millis is not None:
            args.append(req.cpu_millis)
            extra += f" AND p.cpu <= ${len(args)}"
        if req.mem_bytes is not None:
            args.append(req.mem_bytes)
            extra += f" AND p.mem <= ${len(args)}"
        if req.max_exec_s is not None:
            args.append(req.max_exec_s)
            extra += f" AND p.max_exec_time > 0 AND p.max_exec_time <= ${len(args)}"
        # The revocation fence: the executor's row, still APPROVED, under a key-share lock that reject and
        # remove (SELECT … FOR UPDATE) wait for, and that waits for them (then re-reads the new state).
        elig, pick_if = "", ""
        if req.approved_only:
            elig = (" elig AS (SELECT 1 FROM executors WHERE colony_name = $1 AND executor_id = $5 AND name = $4"
                    "  AND state = 1 FOR KEY SHARE),")
            pick_if = "WHERE EXISTS (SELECT 1 FROM elig)"
        sql = (
            "WITH open AS (SELECT p.process_id, p.priority_time FROM processes p"
            "  WHERE p.colony_name = $1 AND p.executor_type = $2 AND p.state = 0 AND NOT p.wait_for_parents"
            f"  AND NOT p.targeted{extra} ORDER BY p.priority_time LIMIT 1 FOR UPDATE SKIP LOCKED),"
            " named AS (SELECT p.process_id, t.priority_time FROM process_targets t"
            "  JOIN processes p ON p.process_id = t.process_id"
            "  WHERE t.colony_name = $1 AND t.executor_name = $4 AND p.executor_type = $2 AND p.state = 0"
            f"  AND NOT p.wait_for_parents{extra} ORDER BY t.priority_time LIMIT 1 FOR UPDATE OF p SKIP LOCKED),"
            f"{elig} pick AS (SELECT process_id FROM (SELECT * FROM open UNION ALL SELECT * FROM named) c"
            f"  {pick_if} ORDER BY priority_time LIMIT 1),"
            # One round trip: claim, drop the targets rows, record the event, return the claimed row.
            " upd AS (UPDATE processes SET state = 1, is_assigned = TRUE, assigned_executor_id = $5, start_time = $6,"
            "  exec_deadline = CASE WHEN max_exec_time > 0 THEN $6 + max_exec_time * 1000000000 ELSE 0 END,"
            f"  end_time = 0 FROM pick WHERE processes.process_id = pick.process_id RETURNING {_P_Q}),"
            " del AS (DELETE FROM process_targets t USING upd WHERE t.process_id = upd.process_id),"
            " ev AS (INSERT INTO process_events (process_id, ts, event, actor, detail)"
            "  SELECT process_id, $6, 'assigned', $5, $4 FROM upd)"
            + (" SELECT upd.*, (SELECT count(*) FROM elig) FROM (SELECT 1) one LEFT JOIN upd ON TRUE"
               if req.approved_only else " SELECT * FROM upd"))

        async def tx(con: Con) -> Process | None:
            row = await con.fetchrow(sql, *args)
            if req.approved_only and row is not None and not row[-1]:
                raise Forbidden(f"access denied, not an approved executor of colony {req.colony}")
            if row is None or row[0] is None:
                return None
            p = rows.process(row)
            pid = p.processid
            self._moved(PROCESS, req.colony, p.spec.conditions.executortype, WAITING, RUNNING)
            if p.processgraphid:
                await self._on_graph_claim(con, pid, p.processgraphid, list(p.parents or []), now_ns)
                claimed = await self._get(con, pid)  # the graph claim set its input
                assert claimed is not None
                p = claimed
            p.attributes = await self._attributes(con, pid, p.state)
            return p

        return await self._run(tx)

    async def finish(self, process_id: str, executor_id: str, success: bool, output: list[object] | None,
                     errors: list[str] | None, now_ns: int, attempt: int | None = None) -> Changed | None:
        args: list[Any]
        if success:
            sets, args = "state = 2, end_time = $3, exec_deadline = 0", [now_ns]
            if output:
                sets += ", output = $4"
                args.append(js(output))
        else:
            sets, args = "state = 3, end_time = $3, exec_deadline = 0, errors = $4", [now_ns, js(errors or [])]
        fence = ""
        if attempt is not None:  # the attempt fence: only the attempt the executor was given may close
            args.append(attempt)
            fence = f" AND retries = ${len(args) + 2}"
        detail = "" if success else "; ".join(errors or [])[:1000]
        # A process outside any graph (the common case) closes in one statement, atomic without
        # BEGIN/COMMIT: the update, its event and the new row. Graph members, and processes not RUNNING
        # for this executor, take the transaction below.
        n = len(args) + 2
        fast = (f"WITH upd AS (UPDATE processes SET {sets} WHERE process_id = $1 AND state = 1"
                f" AND assigned_executor_id = $2 AND processgraph_id = ''{fence} RETURNING {_P}),"
                " ev AS (INSERT INTO process_events (process_id, ts, event, actor, detail)"
                f"  SELECT process_id, $3, ${n + 1}, $2, ${n + 2} FROM upd)"
                " SELECT * FROM upd")

        row = await self.pool.fetchrow(fast, process_id, executor_id, *args, "closed" if success else "failed",
                                       detail)
        if row is not None:
            closed = rows.process(row)
            self._moved(PROCESS, closed.spec.conditions.colonyname, closed.spec.conditions.executortype, RUNNING,
                        closed.state)
            return Changed(process=closed, others=[])

        async def tx(con: Con) -> Changed | None:
            graph_id = await con.fetchval("SELECT processgraph_id FROM processes WHERE process_id = $1", process_id)
            if graph_id is None:
                return None
            if graph_id:
                await self._lock_graph(con, graph_id)
            row = await con.fetchrow(f"UPDATE processes SET {sets} WHERE process_id = $1 AND state = 1"
                                     f" AND assigned_executor_id = $2{fence} RETURNING children, colony_name,"
                                     " executor_type", process_id, executor_id, *args)
            if row is None:
                return None
            self._moved(PROCESS, row[1], row[2], RUNNING, SUCCESS if success else FAILED)
            await self._event(con, process_id, now_ns, "closed" if success else "failed", executor_id, detail)
            others = await self._resolve(con, graph_id, process_id, rows.strs(row[0]), success, now_ns)
            return Changed(process=await self._get(con, process_id), others=others)

        return await self._run(tx)

    async def set_output(self, process_id: str, executor_id: str, output: list[object],
                         attempt: int | None = None) -> bool:
        status = await self.pool.execute("UPDATE processes SET output = $1 WHERE process_id = $2 AND state = 1"
                                         " AND assigned_executor_id = $3 AND ($4::bigint IS NULL OR retries = $4)",
                                         js(output), process_id, executor_id, attempt)
        return _count(status) > 0

    async def cancel(self, process_id: str, actor: str, now_ns: int) -> Process | None:
        async with self._tx() as con:
            # Locked first, so the state read is the one cancelled (the old state, for the counts).
            row = await con.fetchrow("SELECT state, colony_name, executor_type FROM processes WHERE process_id = $1"
                                     " AND state IN (0, 1) FOR UPDATE", process_id)
            if row is None:
                return None
            await con.execute("UPDATE processes SET state = 4, end_time = $1, exec_deadline = 0 WHERE process_id = $2",
                              now_ns, process_id)
            self._moved(PROCESS, row[1], row[2], row[0], CANCELLED)
            await con.execute("DELETE FROM process_targets WHERE process_id = $1", process_id)
            await self._event(con, process_id, now_ns, "cancelled", actor)
            return await self._get(con, process_id)

    async def expire(self, now_ns: int, limit: int = 1000) -> list[Process]:
        async def tx(con: Con) -> list[Process]:
            changed: list[str] = []
            others: list[Process] = []
            for pid, spec, prio, colony, max_wait, retries, max_retries, graph_id, children, etype in await con.fetch(
                "SELECT process_id, spec, priority_time, colony_name, max_wait_time, retries, max_retries,"
                " processgraph_id, children, executor_type FROM processes WHERE state = 1 AND exec_deadline > 0"
                " AND exec_deadline < $1 ORDER BY exec_deadline LIMIT $2 FOR UPDATE SKIP LOCKED", now_ns, limit
            ):
                if max_retries > -1 and retries >= max_retries:
                    await self._fail(con, pid, EXEC_TIMEOUT_ERROR, now_ns)
                    self._moved(PROCESS, colony, etype, RUNNING, FAILED)
                    others += await self._resolve(con, graph_id, pid, rows.strs(children), False, now_ns)
                else:
                    await self._to_waiting(con, pid, spec, prio, colony, max_wait, now_ns, retry=True)
                    self._moved(PROCESS, colony, etype, RUNNING, WAITING)
                    await self._event(con, pid, now_ns, "requeued", "", "execution deadline passed")
                changed.append(pid)
            for pid, graph_id, children, colony, etype in await con.fetch(
                "SELECT process_id, processgraph_id, children, colony_name, executor_type FROM processes"
                " WHERE state = 0 AND wait_deadline > 0"
                " AND wait_deadline < $1 ORDER BY wait_deadline LIMIT $2 FOR UPDATE SKIP LOCKED", now_ns, limit
            ):
                await self._fail(con, pid, WAIT_TIMEOUT_ERROR, now_ns)
                self._moved(PROCESS, colony, etype, WAITING, FAILED)
                others += await self._resolve(con, graph_id, pid, rows.strs(children), False, now_ns)
                changed.append(pid)
            result = [p for p in [await self._get(con, pid) for pid in changed] if p is not None]
            return result + others

        return await self._run(tx)

    async def _fail(self, con: Con, pid: str, error: str, now: int) -> None:
        await con.execute("UPDATE processes SET state = 3, end_time = $1, exec_deadline = 0, errors = $2"
                          " WHERE process_id = $3", now, js([error]), pid)
        await con.execute("DELETE FROM process_targets WHERE process_id = $1", pid)
        await self._event(con, pid, now, "failed", "", error)

    _ORDER: ClassVar[dict[int, str]] = {WAITING: "priority_time ASC", RUNNING: "start_time ASC"}

    async def list_processes(self, q: ProcessQuery) -> list[Process]:
        where: list[str] = ["colony_name = $1"]
        args: list[Any] = [q.colony]

        def add(cond: str, value: Any) -> None:
            args.append(value)
            where.append(f"{cond} = ${len(args)}")

        if q.state >= 0:
            add("state", q.state)
        if q.processgraphid:
            add("processgraph_id", q.processgraphid)
        if q.executortype:
            add("executor_type", q.executortype)
        elif q.initiator:
            add("initiator_name", q.initiator)
        elif q.label:
            add("label", q.label)
        order = self._ORDER.get(q.state, "end_time DESC" if q.state >= 0 else "submission_time DESC")
        args.append(q.count)
        sql = f"SELECT {_P} FROM processes WHERE {' AND '.join(where)} ORDER BY {order}, seq LIMIT ${len(args)}"
        return [rows.process(r) for r in await self._all(sql, *args)]

    async def process_history(self, colony: str, executor_id: str, since_ns: int, state: int) -> list[Process]:
        sql = f"SELECT {_P} FROM processes WHERE colony_name = $1 AND submission_time > $2 AND state = $3"
        args: list[Any] = [colony, since_ns, state]
        if executor_id:
            sql += " AND assigned_executor_id = $4"
            args.append(executor_id)
        return [rows.process(r) for r in await self._all(sql + " ORDER BY submission_time ASC, seq LIMIT 10000",
                                                         *args)]

    async def remove_process(self, process_id: str) -> None:
        async with self._tx() as con:
            await self._delete_processes(con, "process_id = $1", (process_id,))

    async def _delete_processes(self, con: Con, where: str, args: Sequence[Any]) -> None:
        sub = f"SELECT process_id FROM processes WHERE {where}"
        for table, col in (("attributes", "target_id"), ("process_targets", "process_id"),
                           ("process_events", "process_id"), ("logs", "process_id")):
            await con.execute(f"DELETE FROM {table} WHERE {col} IN ({sub})", *args)
        await self._delete_counted(con, "processes", where, args)

    async def remove_all_processes(self, colony: str, state: int) -> None:
        async with self._tx() as con:
            if state < 0:
                await self._delete_processes(con, "colony_name = $1 AND processgraph_id = '' AND state != 1",
                                             (colony,))
            else:
                await self._delete_processes(con, "colony_name = $1 AND processgraph_id = '' AND state = $2",
                                             (colony, state))


def _targets(p: Process) -> list[str]:
    """The executor names a process is targeted at (none for `*` or empty names)."""
    return [n for n in (p.spec.conditions.executornames or []) if n and n != "*"]


async def _lock_identity(con: Con, identity: str) -> None:
    """Serialize registrations and id changes that claim `identity`, so an in-use check cannot race."""
    await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "identity/" + identity)


async def _no_session_reset(con: Con) -> None:
    """Pool release without asyncpg's reset query (`SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`), a round trip on every release. asyncpg still rolls back an open
    transaction first. This storage keeps no session state on pooled connections: only transaction-
    scoped advisory locks, no cursors outside transactions, no SET, and LISTEN runs on ClusterEvents'
    own connection. (Behind PgBouncer in transaction mode the reset query would not help anyway.)"""


def _ns(dt: Any) -> int:
    if dt == ZERO_TIME:
        return 0
    return int(dt.timestamp() * NS)
