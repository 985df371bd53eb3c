"""Embedded default backend: one SQLite file, WAL, one connection that serializes every write.

All statements run on the event loop thread: each takes tens of microseconds, and running them
inline means a transaction can never interleave with another, so a claim is atomic by construction.
An acknowledged write is committed to the WAL before the reply is sent, so it survives `kill -9`
(with synchronous=NORMAL; use FULL to survive power loss as well).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

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
from colonies.secure_files import create_private
from colonies.storage import rows
from colonies.storage.base import Changed, ClaimRequest, ProcessQuery
from colonies.storage.migrate import latest_version, migrations
from colonies.storage.sqlite_blueprints import SqliteBlueprintsMixin
from colonies.storage.sqlite_catalog import SqliteCatalogMixin
from colonies.storage.sqlite_files import SqliteFilesMixin
from colonies.storage.sqlite_locations import SqliteLocationsMixin
from colonies.storage.sqlite_schedules import SqliteSchedulesMixin
from colonies.storage.sqlite_tally import SqliteTallyMixin
from colonies.storage.sqlite_workflows import SqliteWorkflowsMixin

_P = rows.PROCESS_COLS
WAITING, RUNNING, SUCCESS, FAILED, CANCELLED = (int(s) for s in ProcessState)

log = logging.getLogger(__name__)

NONCE_FLUSH_S = 0.05  # a nonce no write transaction picked up is written within this
_INSERT_NONCES = "INSERT OR IGNORE INTO nonces (nonce, signer, expires) VALUES (?, ?, ?)"

EXEC_TIMEOUT_ERROR = "Maximum execution time limit exceeded"
WAIT_TIMEOUT_ERROR = "Maximum waiting time limit exceeded"


class SqliteStorage(SqliteWorkflowsMixin, SqliteSchedulesMixin, SqliteCatalogMixin, SqliteFilesMixin,
                    SqliteLocationsMixin, SqliteBlueprintsMixin, SqliteTallyMixin):
    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self._db: sqlite3.Connection | None = None
        self._nonces: dict[tuple[str, str], int] = {}  # accepted, not yet written: (nonce, signer) -> expires
        self._tally_pending = []  # counted-row changes of the open transaction (colonies.storage.sqlite_tally)

    # -- plumbing --------------------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError("storage is not open")
        return self._db

    async def open(self) -> None:
        if self.path != ":memory:" and not self.path.startswith("file:"):
            create_private(self.path)  # 0600 before SQLite creates it (its -wal/-shm copy the mode)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                             cached_statements=256)
        db.execute("PRAGMA journal_mode=WAL")
        if self.synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise StorageError(f"invalid synchronous mode {self.synchronous}")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA foreign_keys=OFF")
        self._db = db
        self._migrate()

    def _migrate(self) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > latest_version("sqlite"):
                raise StorageError(
                    f"database schema version {current} is newer than this server "
                    f"({latest_version('sqlite')}); upgrade the server"
                )
            for version, sql in migrations("sqlite"):
                if version > current:
                    for stmt in _split_sql(sql):
                        db.execute(stmt)
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._db is not None:
            self._flush_nonces()
            self._db.close()
            self._db = None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        nonces = list(self._nonces.items())
        try:
            if nonces:  # accepted nonces commit with the first write after them (see remember_nonce)
                db.executemany(_INSERT_NONCES, [(n, s, e) for (n, s), e in nonces])
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            if self._tally_pending:
                self._tally_committed(False)
            raise
        db.execute("COMMIT")
        if self._tally_pending:
            self._tally_committed(True)
        for key, _ in nonces:
            self._nonces.pop(key, None)

    def _add_process(self, db: sqlite3.Connection, p: Process) -> None:
        self._insert_process(db, p, "")

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self.db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self.db.execute(sql, args).fetchall()

    def _event(self, db: sqlite3.Connection, pid: str, now: int, event: str, actor: str = "",
               detail: str = "") -> None:
        db.execute("INSERT INTO process_events (process_id, ts, event, actor, detail) VALUES (?,?,?,?,?)",
                   (pid, now, event, actor, detail))

    # -- server -------------------------------------------------------------------------------------------
    async def get_server_id(self) -> str:
        row = self._one("SELECT server_id FROM server WHERE id = 1")
        return row[0] if row else ""

    async def set_server_id(self, server_id: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO server (id, server_id) VALUES (1, ?) "
                       "ON CONFLICT (id) DO UPDATE SET server_id = excluded.server_id", (server_id,))

    # -- colonies ----------------------------------------------------------------------------------------
    async def add_colony(self, colony: Colony) -> None:
        try:
            with self._tx() as db:
                db.execute("INSERT INTO colonies (name, colony_id) VALUES (?, ?)", (colony.name, colony.colonyid))
        except sqlite3.IntegrityError:
            raise Conflict(f"a colony named {colony.name} already exists") from None

    async def get_colony(self, name: str) -> Colony | None:
        row = self._one("SELECT colony_id, name FROM colonies WHERE name = ?", (name,))
        return Colony(colonyid=row[0], name=row[1]) if row else None

    async def list_colonies(self) -> list[Colony]:
        return [Colony(colonyid=r[0], name=r[1]) for r in self._all("SELECT colony_id, name FROM colonies ORDER BY name")]

    async def remove_colony(self, name: str) -> None:
        with self._tx() as db:
            pids = "SELECT process_id FROM processes WHERE colony_name = ?"
            db.execute(f"DELETE FROM process_events WHERE process_id IN ({pids})", (name,))
            db.execute(f"DELETE FROM process_targets WHERE process_id IN ({pids})", (name,))
            for table in ("processes", "executors", "users", "attributes", "functions", "processgraphs",
                          "generators", "generator_args", "crons", "logs", "files", "snapshots", "locations",
                          "blueprint_definitions", "blueprints", "blueprint_history"):
                db.execute(f"DELETE FROM {table} WHERE colony_name = ?", (name,))
            db.execute("DELETE FROM colonies WHERE name = ?", (name,))

    async def change_colony_id(self, name: str, colony_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE colonies SET colony_id = ? WHERE name = ?", (colony_id, name))

    async def set_paused(self, colony: str, paused: bool) -> None:
        with self._tx() as db:
            db.execute("UPDATE colonies SET paused = ? WHERE name = ?", (int(paused), colony))

    async def is_paused(self, colony: str) -> bool:
        row = self._one("SELECT paused FROM colonies WHERE name = ?", (colony,))
        return bool(row and row[0])

    # -- executors ---------------------------------------------------------------------------------------
    async def add_executor(self, executor: Executor, replace: bool = False) -> list[str]:
        e = executor
        requeued: list[str] = []
        with self._tx() as db:
            old = db.execute("SELECT executor_id FROM executors WHERE colony_name = ? AND name = ?",
                             (e.colonyname, e.executorname)).fetchone()
            if old is not None and not replace:
                raise Conflict(f"an executor named {e.executorname} already exists in {e.colonyname}")
            if db.execute("SELECT 1 FROM executors WHERE executor_id = ? AND state != 3"
                          " AND NOT (colony_name = ? AND name = ?) LIMIT 1",
                          (e.executorid, e.colonyname, e.executorname)).fetchone():
                raise IdInUse("an executor with that id is already registered")
            if old is not None:
                requeued = self._requeue_executor(db, e.colonyname, old[0], 0)
                db.execute("DELETE FROM functions WHERE colony_name = ? AND executor_name = ?",
                           (e.colonyname, e.executorname))
                db.execute("DELETE FROM executors WHERE colony_name = ? AND name = ?",
                           (e.colonyname, e.executorname))
            db.execute(
                f"INSERT INTO executors ({rows.EXECUTOR_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (e.executorid, e.executortype, e.executorname, e.colonyname, e.state, int(e.requirefuncreg),
                 _ns(e.commissiontime), 0, e.locationname,
                 rows.dumps(e.capabilities), rows.dumps(e.allocations), e.blueprintid or "", e.blueprintgen or 0),
            )
        return requeued

    def _requeue_executor(self, db: sqlite3.Connection, colony: str, executor_id: str, now: int,
                          why: str = "executor removed") -> list[str]:
        """Put an executor's RUNNING processes of `colony` back in the queue, without counting a retry."""
        found = db.execute(
            "SELECT process_id, spec, priority_time, max_wait_time FROM processes "
            "WHERE assigned_executor_id = ? AND state = 1 AND colony_name = ?", (executor_id, colony)).fetchall()
        for pid, spec, prio, max_wait in found:
            self._to_waiting(db, pid, spec, prio, colony, max_wait, now, retry=False)
            self._event(db, pid, now, "requeued", executor_id, why)
        return [r[0] for r in found]

    def _to_waiting(self, db: sqlite3.Connection, pid: str, spec: bytes, prio: int, colony: str,
                    max_wait: int, now: int, retry: bool) -> None:
        wait_deadline = now + max_wait * NS if max_wait > 0 else 0
        db.execute(
            "UPDATE processes SET state = 0, is_assigned = 0, assigned_executor_id = '', exec_deadline = 0,"
            " start_time = 0, end_time = ?, retries = retries + ?, wait_deadline = ? WHERE process_id = ?",
            (now, int(retry), wait_deadline, pid))
        names = rows._spec_dec.decode(spec).conditions.executornames or []
        self._insert_targets(db, colony, names, prio, pid)

    def _insert_targets(self, db: sqlite3.Connection, colony: str, names: list[str], prio: int,
                        pid: str) -> None:
        for name in set(names):
            if name and name != "*":
                db.execute("INSERT OR IGNORE INTO process_targets VALUES (?,?,?,?)", (colony, name, prio, pid))

    async def remove_executor(self, colony: str, name: str, now_ns: int) -> list[str]:
        with self._tx() as db:
            row = db.execute("SELECT executor_id FROM executors WHERE colony_name = ? AND name = ?",
                             (colony, name)).fetchone()
            if row is None:
                return []
            requeued = self._requeue_executor(db, colony, row[0], now_ns)
            db.execute("DELETE FROM functions WHERE colony_name = ? AND executor_name = ?", (colony, name))
            db.execute("UPDATE executors SET state = 3 WHERE colony_name = ? AND name = ?", (colony, name))
        return requeued

    async def reject_executor(self, colony: str, name: str, now_ns: int) -> list[str] | None:
        with self._tx() as db:
            row = db.execute("SELECT executor_id FROM executors WHERE colony_name = ? AND name = ?",
                             (colony, name)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE executors SET state = 2 WHERE colony_name = ? AND name = ?", (colony, name))
            return self._requeue_executor(db, colony, row[0], now_ns, "executor rejected")

    async def change_executor_id(self, colony: str, old_id: str, new_id: str) -> None:
        with self._tx() as db:
            if new_id != old_id and (
                    db.execute("SELECT 1 FROM executors WHERE executor_id = ? AND state != 3 LIMIT 1",
                               (new_id,)).fetchone()
                    or db.execute("SELECT 1 FROM users WHERE user_id = ? AND colony_name = ? LIMIT 1",
                                  (new_id, colony)).fetchone()):
                raise IdInUse("that id is already in use")
            db.execute("UPDATE executors SET executor_id = ? WHERE colony_name = ? AND executor_id = ?",
                       (new_id, colony, old_id))

    # -- processes -----------------------------------------------------------------------------------------------
    async def add_processes(self, processes: list[Process], graph: ProcessGraph | None = None,
                            actor: str = "") -> None:
        with self._tx() as db:
            if graph is not None:
                self._insert_graph(db, graph)
            for p in processes:
                self._insert_process(db, p, actor)

    def _insert_process(self, db: sqlite3.Connection, p: Process, actor: str) -> None:
        s = p.spec
        c = s.conditions
        names = [n for n in (c.executornames or []) if n and n != "*"]
        sub = _ns(p.submissiontime)
        try:
            db.execute(
                "INSERT INTO processes (process_id, colony_name, executor_type, state, targeted, location_name,"
                " cpu, mem, priority_time, submission_time, wait_deadline, max_exec_time, max_wait_time,"
                " max_retries, retries, wait_for_parents, parents, children, processgraph_id, initiator_id,"
                " initiator_name, label, funcname, input, output, errors, spec)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (p.processid, c.colonyname, c.executortype, p.state, int(bool(names)), c.locationname,
                 parse_cpu(c.cpu), parse_mem(c.mem), p.prioritytime, sub, _ns(p.waitdeadline),
                 s.maxexectime, s.maxwaittime, s.maxretries, p.retries, int(p.waitforparents),
                 rows.dumps(p.parents), rows.dumps(p.children), p.processgraphid, p.initiatorid,
                 p.initiatorname, s.label, s.funcname, rows.dumps(p.input or []), rows.dumps(p.output or []),
                 rows.dumps(p.errors), rows.dumps(s)))
        except sqlite3.IntegrityError:
            raise Conflict(f"process {p.processid} already exists") from None
        self._insert_targets(db, c.colonyname, names, p.prioritytime, p.processid)
        for a in p.attributes:
            db.execute(f"INSERT OR REPLACE INTO attributes ({rows.ATTRIBUTE_COLS}, added) VALUES (?,?,?,?,?,?,?,?)",
                       (a.attributeid, a.targetid, a.targetcolonyname, a.targetprocessgraphid, a.attributetype,
                        a.key, a.value, sub))
        self._event(db, p.processid, sub, "submitted", actor or p.initiatorid, p.initiatorname)

    def _get(self, db: sqlite3.Connection, pid: str) -> Process | None:
        row = db.execute(f"SELECT {_P} FROM processes WHERE process_id = ?", (pid,)).fetchone()
        return rows.process(row) if row else None

    async def get_process(self, process_id: str, attributes: bool = True) -> Process | None:
        p = self._get(self.db, process_id)
        if p is not None and attributes:
            p.attributes = self._attributes(process_id, p.state)
        return p

    def _attributes(self, pid: str, state: int) -> list[Attribute]:
        return [rows.attribute(r, state) for r in self._all(
            f"SELECT {rows.ATTRIBUTE_COLS} FROM attributes WHERE target_id = ?", (pid,))]

    _CLAIM_FILTER = " AND (location_name = '' OR location_name = ? COLLATE NOCASE)"

    async def claim(self, req: ClaimRequest, now_ns: int) -> Process | None:
        db = self.db
        if req.approved_only and db.execute(
                "SELECT 1 FROM executors WHERE colony_name = ? AND executor_id = ? AND name = ? AND state = 1",
                (req.colony, req.executor_id, req.executor_name)).fetchone() is None:
            # Nothing awaits between this check and the claim below: no revocation can come in between.
            raise Forbidden(f"access denied, not an approved executor of colony {req.colony}")
        extra = self._CLAIM_FILTER
        args: list[Any] = [req.location]
        if req.cpu_millis is not None:
            extra += " AND cpu <= ?"
            args.append(req.cpu_millis)
        if req.mem_bytes is not None:
            extra += " AND mem <= ?"
            args.append(req.mem_bytes)
        if req.max_exec_s is not None:
            extra += " AND max_exec_time > 0 AND max_exec_time <= ?"
            args.append(req.max_exec_s)
        open_row = db.execute(
            "SELECT process_id, priority_time FROM processes INDEXED BY processes_queue"
            " WHERE colony_name = ? AND executor_type = ? AND state = 0 AND wait_for_parents = 0"
            f" AND targeted = 0{extra} ORDER BY priority_time LIMIT 1",
            (req.colony, req.executor_type, *args)).fetchone()
        named_row = db.execute(
            "SELECT t.process_id, t.priority_time FROM process_targets t JOIN processes p USING (process_id)"
            " WHERE t.colony_name = ? AND t.executor_name = ? AND p.executor_type = ? AND p.state = 0"
            f" AND p.wait_for_parents = 0{extra.replace(' location_name', ' p.location_name')}"
            " ORDER BY t.priority_time LIMIT 1",
            (req.colony, req.executor_name, req.executor_type, *args)).fetchone()
        candidates = [r for r in (open_row, named_row) if r is not None]
        if not candidates:
            return None
        pid = min(candidates, key=lambda r: r[1])[0]
        with self._tx() as db:
            row = db.execute("SELECT max_exec_time, processgraph_id, parents FROM processes WHERE process_id = ?",
                             (pid,)).fetchone()
            max_exec, graph_id, parents = row
            deadline = now_ns + max_exec * NS if max_exec > 0 else 0
            db.execute("UPDATE processes SET state = 1, is_assigned = 1, assigned_executor_id = ?,"
                       " start_time = ?, exec_deadline = ?, end_time = 0 WHERE process_id = ? AND state = 0",
                       (req.executor_id, now_ns, deadline, pid))
            db.execute("DELETE FROM process_targets WHERE process_id = ?", (pid,))
            if graph_id:
                self._on_graph_claim(db, pid, graph_id, rows.strs(parents), now_ns)
            self._event(db, pid, now_ns, "assigned", req.executor_id, req.executor_name)
            p = self._get(db, pid)
        assert p is not None
        p.attributes = self._attributes(pid, p.state)
        return p

    async def finish(self, process_id: str, executor_id: str, success: bool, output: list[object] | None,
                     errors: list[str] | None, now_ns: int, attempt: int | None = None) -> Changed | None:
        with self._tx() as db:
            row = db.execute("SELECT state, assigned_executor_id, processgraph_id, children, retries FROM processes"
                             " WHERE process_id = ?", (process_id,)).fetchone()
            if row is None or row[0] != RUNNING or row[1] != executor_id or attempt not in (None, row[4]):
                return None
            args: list[Any]
            if success:
                sets, args = "state = 2, end_time = ?, exec_deadline = 0", [now_ns]
                if output:
                    sets += ", output = ?"
                    args.append(rows.dumps(output))
            else:
                sets, args = "state = 3, end_time = ?, exec_deadline = 0, errors = ?", [now_ns, rows.dumps(errors or [])]
            db.execute(f"UPDATE processes SET {sets} WHERE process_id = ?", (*args, process_id))
            self._event(db, process_id, now_ns, "closed" if success else "failed", executor_id,
                        "" if success else "; ".join(errors or [])[:1000])
            others = self._resolve(db, row[2], process_id, rows.strs(row[3]), success, now_ns)
            p = self._get(db, process_id)
        return Changed(process=p, others=others)

    async def set_output(self, process_id: str, executor_id: str, output: list[object],
                         attempt: int | None = None) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE processes SET output = ? WHERE process_id = ? AND state = 1"
                             " AND assigned_executor_id = ? AND (? IS NULL OR retries = ?)",
                             (rows.dumps(output), process_id, executor_id, attempt, attempt))
        return cur.rowcount > 0

    async def cancel(self, process_id: str, actor: str, now_ns: int) -> Process | None:
        with self._tx() as db:
            cur = db.execute("UPDATE processes SET state = 4, end_time = ?, exec_deadline = 0"
                             " WHERE process_id = ? AND state IN (0, 1)", (now_ns, process_id))
            if cur.rowcount == 0:
                return None
            db.execute("DELETE FROM process_targets WHERE process_id = ?", (process_id,))
            self._event(db, process_id, now_ns, "cancelled", actor)
            return self._get(db, process_id)

    async def expire(self, now_ns: int, limit: int = 1000) -> list[Process]:
        changed: list[str] = []
        others: list[Process] = []
        with self._tx() as db:
            for pid, spec, prio, colony, max_wait, retries, max_retries, graph_id, children in db.execute(
                "SELECT process_id, spec, priority_time, colony_name, max_wait_time, retries, max_retries,"
                " processgraph_id, children FROM processes INDEXED BY processes_exec_deadline"
                " WHERE state = 1 AND exec_deadline > 0 AND exec_deadline < ? LIMIT ?", (now_ns, limit)
            ).fetchall():
                if max_retries > -1 and retries >= max_retries:
                    self._fail(db, pid, EXEC_TIMEOUT_ERROR, now_ns)
                    others += self._resolve(db, graph_id, pid, rows.strs(children), False, now_ns)
                else:
                    self._to_waiting(db, pid, spec, prio, colony, max_wait, now_ns, retry=True)
                    self._event(db, pid, now_ns, "requeued", "", "execution deadline passed")
                changed.append(pid)
            for pid, graph_id, children in db.execute(
                "SELECT process_id, processgraph_id, children FROM processes INDEXED BY processes_wait_deadline"
                " WHERE state = 0 AND wait_deadline > 0 AND wait_deadline < ? LIMIT ?", (now_ns, limit)
            ).fetchall():
                self._fail(db, pid, WAIT_TIMEOUT_ERROR, now_ns)
                others += self._resolve(db, graph_id, pid, rows.strs(children), False, now_ns)
                changed.append(pid)
            result = [p for p in (self._get(db, pid) for pid in changed) if p is not None]
        return result + others

    def _fail(self, db: sqlite3.Connection, pid: str, error: str, now: int) -> None:
        db.execute("UPDATE processes SET state = 3, end_time = ?, exec_deadline = 0, errors = ?"
                   " WHERE process_id = ?", (now, rows.dumps([error]), pid))
        db.execute("DELETE FROM process_targets WHERE process_id = ?", (pid,))
        self._event(db, pid, now, "failed", "", error)

    _ORDER: ClassVar[dict[int, str]] = {WAITING: "priority_time ASC", RUNNING: "start_time ASC"}

    async def list_processes(self, q: ProcessQuery) -> list[Process]:
        where: list[str] = ["colony_name = ?"]
        args: list[Any] = [q.colony]
        if q.state >= 0:
            where.append("state = ?")
            args.append(q.state)
        if q.processgraphid:
            where.append("processgraph_id = ? AND processgraph_id != ''")  # uses the partial index
            args.append(q.processgraphid)
        if q.executortype:
            where.append("executor_type = ?")
            args.append(q.executortype)
        elif q.initiator:
            where.append("initiator_name = ?")
            args.append(q.initiator)
        elif q.label:
            where.append("label = ?")
            args.append(q.label)
        order = self._ORDER.get(q.state, "end_time DESC" if q.state >= 0 else "submission_time DESC")
        sql = f"SELECT {_P} FROM processes WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        return [rows.process(r) for r in self._all(sql, (*args, q.count))]

    async def process_history(self, colony: str, executor_id: str, since_ns: int, state: int) -> list[Process]:
        sql = f"SELECT {_P} FROM processes WHERE colony_name = ? AND submission_time > ? AND state = ?"
        args: list[Any] = [colony, since_ns, state]
        if executor_id:
            sql += " AND assigned_executor_id = ?"
            args.append(executor_id)
        return [rows.process(r) for r in self._all(sql + " ORDER BY submission_time ASC LIMIT 10000", args)]

    async def remove_process(self, process_id: str) -> None:
        with self._tx() as db:
            self._delete_processes(db, "process_id = ?", (process_id,))

    def _delete_processes(self, db: sqlite3.Connection, where: str, args: Sequence[Any]) -> None:
        sub = f"SELECT process_id FROM processes WHERE {where}"
        for table, col in (("attributes", "target_id"), ("process_targets", "process_id"),
                           ("process_events", "process_id"), ("logs", "process_id")):
            db.execute(f"DELETE FROM {table} WHERE {col} IN ({sub})", args)
        db.execute(f"DELETE FROM processes WHERE {where}", args)

    async def remove_all_processes(self, colony: str, state: int) -> None:
        with self._tx() as db:
            if state < 0:
                self._delete_processes(db, "colony_name = ? AND processgraph_id = '' AND state != 1", (colony,))
            else:
                self._delete_processes(db, "colony_name = ? AND processgraph_id = '' AND state = ?",
                                       (colony, state))

    # -- replay protection ---------------------------------------------------------------------------------
    # One server process owns the file, so the replay test is a lookup in the table plus the nonces
    # accepted but not yet written. Writing is batched rather than one commit per request: the next write
    # transaction carries them (so a request's nonce commits with its own effect), and a timer writes the
    # rest, those of read-only requests, within NONCE_FLUSH_S.
    async def remember_nonce(self, nonce: str, signer: str, expires_ns: int) -> bool:
        key = (nonce, signer)
        if key in self._nonces or self._one("SELECT 1 FROM nonces WHERE nonce = ? AND signer = ?", key):
            return False
        if not self._nonces:
            asyncio.get_running_loop().call_later(NONCE_FLUSH_S, self._flush_nonces)
        self._nonces[key] = expires_ns
        return True

    def _flush_nonces(self) -> None:
        if not self._nonces or self._db is None:
            return
        try:
            with self._tx():
                pass  # _tx writes the pending nonces
        except sqlite3.Error:
            log.exception("writing %d replay nonces failed; retrying", len(self._nonces))
            asyncio.get_running_loop().call_later(NONCE_FLUSH_S, self._flush_nonces)

    async def purge_nonces(self, now_ns: int) -> None:
        self._nonces = {k: e for k, e in self._nonces.items() if e >= now_ns}
        self.db.execute("DELETE FROM nonces WHERE expires < ?", (now_ns,))


def _ns(dt: Any) -> int:
    if dt == ZERO_TIME:
        return 0
    return int(dt.timestamp() * NS)


def _split_sql(sql: str) -> list[str]:
    """Statements of a migration file (no semicolons inside statements in our files)."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
