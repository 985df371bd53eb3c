"""SQLite: generators, crons, logs and retention."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

from colonies.clock import to_datetime
from colonies.cron import to_ns
from colonies.errors import Conflict
from colonies.model import Cron, Generator, Log, Process, ProcessGraph
from colonies.storage.base import GraphBuilder
from colonies.storage.sqlite_base import SqliteBase

_GEN = ("g.generator_id, g.initiator_id, g.initiator_name, g.colony_name, g.name, g.workflow_spec,"
        " g.trigger_count, g.timeout, g.first_pack, g.last_run")
_QUEUED = "(SELECT count(*) FROM generator_args a WHERE a.generator_id = g.generator_id)"
_CRON = ("cron_id, initiator_id, initiator_name, colony_name, name, cron_expression, interval_s, random,"
         " next_run, last_run, workflow_spec, prev_processgraph_id, wait_for_prev_processgraph")
_LOG = "process_id, colony_name, executor_name, message, ts"
RETAIN_BATCH = 500


def _generator(row: Sequence[Any]) -> Generator:
    return Generator(generatorid=row[0], initiatorid=row[1], initiatorname=row[2], colonyname=row[3],
                     name=row[4], workflowspec=row[5], trigger=row[6], timeout=row[7],
                     firstpack=to_datetime(row[8]), lastrun=to_datetime(row[9]), queuesize=row[10])


def _cron(row: Sequence[Any]) -> Cron:
    return Cron(cronid=row[0], initiatorid=row[1], initiatorname=row[2], colonyname=row[3], name=row[4],
                cronexpression=row[5], interval=row[6], random=bool(row[7]), nextrun=to_datetime(row[8]),
                lastrun=to_datetime(row[9]), workflowspec=row[10], prevprocessgraphid=row[11],
                waitforprevprocessgraph=bool(row[12]))


def _log(row: Sequence[Any]) -> Log:
    return Log(processid=row[0], colonyname=row[1], executorname=row[2], message=row[3], timestamp=row[4])


class SqliteSchedulesMixin(SqliteBase):
    # -- generators -------------------------------------------------------------------------------------
    async def add_generator(self, generator: Generator) -> None:
        g = generator
        try:
            with self._tx() as db:
                db.execute("INSERT INTO generators (generator_id, colony_name, name, workflow_spec, trigger_count,"
                           " timeout, initiator_id, initiator_name) VALUES (?,?,?,?,?,?,?,?)",
                           (g.generatorid, g.colonyname, g.name, g.workflowspec, g.trigger, g.timeout,
                            g.initiatorid, g.initiatorname))
        except sqlite3.IntegrityError:
            raise Conflict(f"a generator named {g.name} already exists in {g.colonyname}") from None

    async def get_generator(self, generator_id: str) -> Generator | None:
        row = self.db.execute(f"SELECT {_GEN}, {_QUEUED} FROM generators g WHERE g.generator_id = ?",
                                   (generator_id,)).fetchone()
        return _generator(row) if row else None

    async def get_generator_by_name(self, colony: str, name: str) -> Generator | None:
        row = self.db.execute(f"SELECT {_GEN}, {_QUEUED} FROM generators g WHERE g.colony_name = ?"
                                   " AND g.name = ?", (colony, name)).fetchone()
        return _generator(row) if row else None

    async def list_generators(self, colony: str, count: int) -> list[Generator]:
        found = self.db.execute(f"SELECT {_GEN}, {_QUEUED} FROM generators g WHERE g.colony_name = ?"
                                     " ORDER BY g.name LIMIT ?", (colony, count)).fetchall()
        return [_generator(r) for r in found]

    async def remove_generator(self, generator_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM generator_args WHERE generator_id = ?", (generator_id,))
            db.execute("DELETE FROM generators WHERE generator_id = ?", (generator_id,))

    async def pack_generator(self, generator_id: str, colony: str, arg: str, now_ns: int) -> None:
        with self._tx() as db:
            empty = db.execute("SELECT 1 FROM generator_args WHERE generator_id = ? LIMIT 1",
                               (generator_id,)).fetchone() is None
            db.execute("INSERT INTO generator_args (generator_id, colony_name, arg) VALUES (?,?,?)",
                       (generator_id, colony, arg))
            if empty:
                db.execute("UPDATE generators SET first_pack = ? WHERE generator_id = ?", (now_ns, generator_id))

    async def fire_generator(self, generator_id: str, count: int, build: GraphBuilder,
                             now_ns: int) -> list[Process]:
        """Does nothing (returns []) unless `count` args are still queued: a concurrent fire or a removal
        got there first."""
        if count < 1:
            return []
        with self._tx() as db:
            taken = db.execute("SELECT seq, arg FROM generator_args WHERE generator_id = ? ORDER BY seq LIMIT ?",
                               (generator_id, count)).fetchall()
            exists = db.execute("SELECT 1 FROM generators WHERE generator_id = ?", (generator_id,)).fetchone()
            if exists is None or len(taken) < count:
                return []
            processes, graph = build([arg for _, arg in taken])
            self._insert_graph(db, graph)
            for p in processes:
                self._add_process(db, p)
            db.execute("DELETE FROM generator_args WHERE generator_id = ? AND seq <= ?",
                       (generator_id, taken[-1][0]))
            db.execute("UPDATE generators SET last_run = ? WHERE generator_id = ?", (now_ns, generator_id))
        return processes

    async def generators_due(self) -> list[Generator]:
        found = self.db.execute(
            f"SELECT {_GEN}, a.n FROM generators g JOIN (SELECT generator_id, count(*) AS n FROM generator_args"
            " GROUP BY generator_id) a ON a.generator_id = g.generator_id").fetchall()
        return [_generator(r) for r in found]

    # -- crons ---------------------------------------------------------------------------------------------
    async def add_cron(self, cron: Cron) -> None:
        c = cron
        try:
            with self._tx() as db:
                db.execute(f"INSERT INTO crons ({_CRON}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           (c.cronid, c.initiatorid, c.initiatorname, c.colonyname, c.name, c.cronexpression,
                            c.interval, int(c.random), to_ns(c.nextrun), to_ns(c.lastrun), c.workflowspec,
                            c.prevprocessgraphid, int(c.waitforprevprocessgraph)))
        except sqlite3.IntegrityError:
            raise Conflict(f"a cron named {c.name} already exists in {c.colonyname}") from None

    async def get_cron(self, cron_id: str) -> Cron | None:
        row = self.db.execute(f"SELECT {_CRON} FROM crons WHERE cron_id = ?", (cron_id,)).fetchone()
        return _cron(row) if row else None

    async def list_crons(self, colony: str, count: int) -> list[Cron]:
        found = self.db.execute(f"SELECT {_CRON} FROM crons WHERE colony_name = ? ORDER BY name LIMIT ?",
                                     (colony, count)).fetchall()
        return [_cron(r) for r in found]

    async def remove_cron(self, cron_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM crons WHERE cron_id = ?", (cron_id,))

    async def crons_due(self, now_ns: int) -> list[Cron]:
        found = self.db.execute(f"SELECT {_CRON} FROM crons WHERE next_run = 0 OR next_run < ?",
                                     (now_ns,)).fetchall()
        return [_cron(r) for r in found]

    async def set_cron_next(self, cron_id: str, next_run_ns: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE crons SET next_run = ? WHERE cron_id = ?", (next_run_ns, cron_id))

    async def fire_cron(self, cron_id: str, expected_next_ns: int, next_run_ns: int,
                        processes: list[Process], graph: ProcessGraph, now_ns: int) -> bool:
        """The fence allows 1 µs of slack: the expected value has been through a datetime."""
        with self._tx() as db:
            cur = db.execute("UPDATE crons SET next_run = ?, last_run = ?, prev_processgraph_id = ?"
                             " WHERE cron_id = ? AND abs(next_run - ?) <= 1000",
                             (next_run_ns, now_ns, graph.processgraphid, cron_id, expected_next_ns))
            if cur.rowcount == 0:
                return False
            self._insert_graph(db, graph)
            for p in processes:
                self._add_process(db, p)
        return True

    # -- logs -----------------------------------------------------------------------------------------------
    async def add_log(self, log: Log) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO logs (process_id, colony_name, executor_name, ts, message) VALUES (?,?,?,?,?)",
                       (log.processid, log.colonyname, log.executorname, log.timestamp, log.message))

    async def get_logs(self, colony: str, process_id: str, executor_name: str, count: int, since_ns: int,
                       latest: bool) -> list[Log]:
        """An executor's logs if `executor_name` is set, else the process' logs; after `since_ns`.
        `latest`: the newest `count`, else the oldest; chronological either way."""
        who, value = ("executor_name", executor_name) if executor_name else ("process_id", process_id)
        order = "DESC" if latest else "ASC"
        found = self.db.execute(
            f"SELECT {_LOG} FROM logs WHERE colony_name = ? AND {who} = ? AND ts > ?"
            f" ORDER BY ts {order}, seq {order} LIMIT ?", (colony, value, since_ns, count)).fetchall()
        logs = [_log(r) for r in found]
        return logs[::-1] if latest else logs

    async def search_logs(self, colony: str, text: str, since_ns: int, count: int) -> list[Log]:
        """Case-sensitive substring match; the newest `count` matches, chronological."""
        found = self.db.execute(
            f"SELECT {_LOG} FROM logs WHERE colony_name = ? AND ts > ? AND instr(message, ?) > 0"
            " ORDER BY ts DESC, seq DESC LIMIT ?", (colony, since_ns, text, count)).fetchall()
        return [_log(r) for r in reversed(found)]

    # -- retention --------------------------------------------------------------------------------------------
    async def retain(self, older_than_ns: int) -> int:
        """Deletes in batches (yielding to the event loop between them): SUCCESS graphs with their
        processes, standalone SUCCESS processes, then logs. A SUCCESS process inside a graph that is not
        itself SUCCESS is kept, since its graph still needs it to resolve."""
        cut = (older_than_ns,)
        deleted = 0
        graphs = ("processgraph_id IN (SELECT processgraph_id FROM processgraphs WHERE state = 2"
                  f" AND submission_time < ? ORDER BY submission_time LIMIT {RETAIN_BATCH})")
        standalone = ("process_id IN (SELECT process_id FROM processes WHERE state = 2 AND processgraph_id = ''"
                      f" AND submission_time < ? ORDER BY submission_time LIMIT {RETAIN_BATCH})")
        while True:
            with self._tx() as db:
                n = int(db.execute(f"SELECT count(*) FROM processes WHERE {graphs}", cut).fetchone()[0])
                gone = int(db.execute(f"SELECT count(*) FROM processgraphs WHERE {graphs}", cut).fetchone()[0])
                self._delete_graphs(db, graphs, cut)
            deleted += n
            if gone < RETAIN_BATCH:
                break
            await asyncio.sleep(0)
        while True:
            with self._tx() as db:
                n = int(db.execute(f"SELECT count(*) FROM processes WHERE {standalone}", cut).fetchone()[0])
                self._delete_processes(db, standalone, cut)
            deleted += n
            if n < RETAIN_BATCH:
                break
            await asyncio.sleep(0)
        with self._tx() as db:
            db.execute("DELETE FROM logs WHERE ts < ?", cut)
        return deleted
