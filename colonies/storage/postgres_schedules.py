"""PostgreSQL: generators, crons, logs and retention."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import asyncpg  # type: ignore[import-untyped,unused-ignore]
from asyncpg import Connection as Con  # type: ignore[import-untyped,unused-ignore]

from colonies.cron import to_ns
from colonies.errors import Conflict
from colonies.model import Cron, Generator, Log, Process, ProcessGraph
from colonies.storage.base import GraphBuilder
from colonies.storage.postgres_base import PostgresBase
from colonies.storage.sqlite_schedules import (
    _CRON,
    _GEN,
    _LOG,
    _QUEUED,
    RETAIN_BATCH,
    _cron,
    _generator,
    _log,
)

T = TypeVar("T")


class PostgresSchedulesMixin(PostgresBase):
    # -- generators -------------------------------------------------------------------------------------------
    async def add_generator(self, generator: Generator) -> None:
        g = generator
        try:
            async with self._tx() as con:
                await con.execute("INSERT INTO generators (generator_id, colony_name, name, workflow_spec,"
                                  " trigger_count, timeout, initiator_id, initiator_name)"
                                  " VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                                  g.generatorid, g.colonyname, g.name, g.workflowspec, g.trigger, g.timeout,
                                  g.initiatorid, g.initiatorname)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a generator named {g.name} already exists in {g.colonyname}") from None

    async def get_generator(self, generator_id: str) -> Generator | None:
        row = await self._one(f"SELECT {_GEN}, {_QUEUED} FROM generators g WHERE g.generator_id = $1", generator_id)
        return _generator(row) if row else None

    async def get_generator_by_name(self, colony: str, name: str) -> Generator | None:
        row = await self._one(f"SELECT {_GEN}, {_QUEUED} FROM generators g WHERE g.colony_name = $1"
                              " AND g.name = $2", colony, name)
        return _generator(row) if row else None

    async def list_generators(self, colony: str, count: int) -> list[Generator]:
        found = await self._all(f"SELECT {_GEN}, {_QUEUED} FROM generators g WHERE g.colony_name = $1"
                                " ORDER BY g.name COLLATE \"C\" LIMIT $2", colony, count)
        return [_generator(r) for r in found]

    async def remove_generator(self, generator_id: str) -> None:
        async with self._tx() as con:
            await con.execute("SELECT 1 FROM generators WHERE generator_id = $1 FOR UPDATE", generator_id)
            await con.execute("DELETE FROM generator_args WHERE generator_id = $1", generator_id)
            await con.execute("DELETE FROM generators WHERE generator_id = $1", generator_id)

    async def pack_generator(self, generator_id: str, colony: str, arg: str, now_ns: int) -> None:
        async with self._tx() as con:
            # The generator row lock orders packs against fires, so `firstpack` is set exactly once.
            await con.execute("SELECT 1 FROM generators WHERE generator_id = $1 FOR UPDATE", generator_id)
            empty = await con.fetchval("SELECT 1 FROM generator_args WHERE generator_id = $1 LIMIT 1",
                                       generator_id) is None
            await con.execute("INSERT INTO generator_args (generator_id, colony_name, arg) VALUES ($1,$2,$3)",
                              generator_id, colony, arg)
            if empty:
                await con.execute("UPDATE generators SET first_pack = $1 WHERE generator_id = $2",
                                  now_ns, generator_id)

    async def fire_generator(self, generator_id: str, count: int, build: GraphBuilder,
                             now_ns: int) -> list[Process]:
        """Does nothing (returns []) unless `count` args are still queued: a concurrent fire (on any
        replica; the generator row is locked) or a removal got there first."""
        if count < 1:
            return []

        async def tx(con: Con) -> list[Process]:
            exists = await con.fetchval("SELECT 1 FROM generators WHERE generator_id = $1 FOR UPDATE", generator_id)
            taken = await con.fetch("SELECT seq, arg FROM generator_args WHERE generator_id = $1 ORDER BY seq"
                                    " LIMIT $2", generator_id, count)
            if exists is None or len(taken) < count:
                return []
            processes, graph = build([r[1] for r in taken])
            await self._insert_graph(con, graph)
            for p in processes:
                await self._add_process(con, p)
            await con.execute("DELETE FROM generator_args WHERE generator_id = $1 AND seq <= $2",
                              generator_id, taken[-1][0])
            await con.execute("UPDATE generators SET last_run = $1 WHERE generator_id = $2", now_ns, generator_id)
            return processes

        return await self._run(tx)

    async def generators_due(self) -> list[Generator]:
        found = await self._all(
            f"SELECT {_GEN}, a.n FROM generators g JOIN (SELECT generator_id, count(*) AS n FROM generator_args"
            " GROUP BY generator_id) a ON a.generator_id = g.generator_id")
        return [_generator(r) for r in found]

    # -- crons ------------------------------------------------------------------------------------------------
    async def add_cron(self, cron: Cron) -> None:
        c = cron
        try:
            async with self._tx() as con:
                await con.execute(f"INSERT INTO crons ({_CRON}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                                  c.cronid, c.initiatorid, c.initiatorname, c.colonyname, c.name, c.cronexpression,
                                  c.interval, bool(c.random), to_ns(c.nextrun), to_ns(c.lastrun), c.workflowspec,
                                  c.prevprocessgraphid, bool(c.waitforprevprocessgraph))
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a cron named {c.name} already exists in {c.colonyname}") from None

    async def get_cron(self, cron_id: str) -> Cron | None:
        row = await self._one(f"SELECT {_CRON} FROM crons WHERE cron_id = $1", cron_id)
        return _cron(row) if row else None

    async def list_crons(self, colony: str, count: int) -> list[Cron]:
        found = await self._all(f"SELECT {_CRON} FROM crons WHERE colony_name = $1 ORDER BY name COLLATE \"C\""
                                " LIMIT $2", colony, count)
        return [_cron(r) for r in found]

    async def remove_cron(self, cron_id: str) -> None:
        async with self._tx() as con:
            await con.execute("DELETE FROM crons WHERE cron_id = $1", cron_id)

    async def crons_due(self, now_ns: int) -> list[Cron]:
        found = await self._all(f"SELECT {_CRON} FROM crons WHERE next_run = 0 OR next_run < $1", now_ns)
        return [_cron(r) for r in found]

    async def set_cron_next(self, cron_id: str, next_run_ns: int) -> None:
        async with self._tx() as con:
            await con.execute("UPDATE crons SET next_run = $1 WHERE cron_id = $2", next_run_ns, cron_id)

    async def fire_cron(self, cron_id: str, expected_next_ns: int, next_run_ns: int,
                        processes: list[Process], graph: ProcessGraph, now_ns: int) -> bool:
        """The fence allows 1 µs of slack: the expected value has been through a datetime. The UPDATE
        row-locks the cron, so a concurrent fire on another replica waits and then fails the fence."""
        async with self._tx() as con:
            row = await con.fetchrow("UPDATE crons SET next_run = $1, last_run = $2, prev_processgraph_id = $3"
                                     " WHERE cron_id = $4 AND abs(next_run - $5) <= 1000 RETURNING cron_id",
                                     next_run_ns, now_ns, graph.processgraphid, cron_id, expected_next_ns)
            if row is None:
                return False
            await self._insert_graph(con, graph)
            for p in processes:
                await self._add_process(con, p)
        return True

    # -- logs -------------------------------------------------------------------------------------------------
    async def add_log(self, log: Log) -> None:
        async with self._tx() as con:
            await con.execute("INSERT INTO logs (process_id, colony_name, executor_name, ts, message)"
                              " VALUES ($1,$2,$3,$4,$5)",
                              log.processid, log.colonyname, log.executorname, log.timestamp, log.message)

    async def get_logs(self, colony: str, process_id: str, executor_name: str, count: int, since_ns: int,
                       latest: bool) -> list[Log]:
        """An executor's logs if `executor_name` is set, else the process' logs; after `since_ns`.
        `latest`: the newest `count`, else the oldest; chronological either way."""
        who, value = ("executor_name", executor_name) if executor_name else ("process_id", process_id)
        order = "DESC" if latest else "ASC"
        found = await self._all(f"SELECT {_LOG} FROM logs WHERE colony_name = $1 AND {who} = $2 AND ts > $3"
                                f" ORDER BY ts {order}, seq {order} LIMIT $4", colony, value, since_ns, count)
        logs = [_log(r) for r in found]
        return logs[::-1] if latest else logs

    async def search_logs(self, colony: str, text: str, since_ns: int, count: int) -> list[Log]:
        """Case-sensitive substring match; the newest `count` matches, chronological."""
        found = await self._all(f"SELECT {_LOG} FROM logs WHERE colony_name = $1 AND ts > $2"
                                " AND strpos(message, $3) > 0 ORDER BY ts DESC, seq DESC LIMIT $4",
                                colony, since_ns, text, count)
        return [_log(r) for r in reversed(found)]

    # -- retention --------------------------------------------------------------------------------------------
    async def retain(self, older_than_ns: int) -> int:
        """In batches, each its own transaction: SUCCESS graphs with their processes, standalone SUCCESS
        processes, then logs. A SUCCESS process inside a graph that is not itself SUCCESS is kept."""
        cut = (older_than_ns,)
        deleted = 0
        graphs = ("processgraph_id IN (SELECT processgraph_id FROM processgraphs WHERE state = 2"
                  f" AND submission_time < $1 ORDER BY submission_time LIMIT {RETAIN_BATCH})")
        standalone = ("process_id IN (SELECT process_id FROM processes WHERE state = 2 AND processgraph_id = ''"
                      f" AND submission_time < $1 ORDER BY submission_time LIMIT {RETAIN_BATCH})")
        for _ in range(1_000_000):
            async with self._tx() as con:
                ids = [r[0] for r in await con.fetch(f"SELECT processgraph_id FROM processgraphs WHERE {graphs}",
                                                     *cut)]
                n = int(await con.fetchval("SELECT count(*) FROM processes WHERE processgraph_id = ANY($1::text[])",
                                           ids))
                await self._delete_graphs(con, "processgraph_id = ANY($1::text[])", (ids,))
            deleted += n
            if len(ids) < RETAIN_BATCH:
                break
            await asyncio.sleep(0)
        for _ in range(1_000_000):
            async with self._tx() as con:
                ids = [r[0] for r in await con.fetch(f"SELECT process_id FROM processes WHERE {standalone}", *cut)]
                await self._delete_processes(con, "process_id = ANY($1::text[])", (ids,))
            deleted += len(ids)
            if len(ids) < RETAIN_BATCH:
                break
            await asyncio.sleep(0)
        async with self._tx() as con:
            await con.execute("DELETE FROM logs WHERE ts < $1", *cut)
        return deleted
