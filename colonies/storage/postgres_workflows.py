"""PostgreSQL: workflow (process graph) bookkeeping, run inside the caller's transaction.

Every step that reads the states of a graph's processes to decide something (release a child, cascade a
failure, the graph's own state) first locks the graph row, so concurrent closes within one graph are
serialized and each sees the others' committed results.
"""

from __future__ import annotations

from typing import Any, TypeVar

from asyncpg import Connection as Con  # type: ignore[import-untyped,unused-ignore]

from colonies.model import Process, ProcessGraph
from colonies.storage import rows
from colonies.storage.base import GraphMember
from colonies.storage.postgres_base import PostgresBase
from colonies.storage.tally import GRAPH, PROCESS

T = TypeVar("T")


def _js(obj: Any) -> str:
    return rows.dumps(obj).decode()


# The second term lets the planner use the partial index processes_by_graph (without it, a scan).
_IN_GRAPH = "processgraph_id = $1 AND processgraph_id != ''"


class PostgresWorkflowsMixin(PostgresBase):
    async def get_graph(self, graph_id: str) -> ProcessGraph | None:
        row = await self._one(f"SELECT {rows.GRAPH_COLS} FROM processgraphs WHERE processgraph_id = $1", graph_id)
        return rows.graph(row, await self._graph_pids(graph_id)) if row else None

    async def _graph_pids(self, graph_id: str) -> list[str]:
        return [r[0] for r in await self._all(
            f"SELECT process_id FROM processes WHERE {_IN_GRAPH} ORDER BY submission_time, seq", graph_id)]

    async def graph_members(self, graph_id: str) -> list[GraphMember]:
        return [GraphMember(r[0], r[1] or "", r[2], rows.strs(r[3]), rows.strs(r[4])) for r in await self._all(
            "SELECT process_id, spec::json->>'nodename', state, parents, children FROM processes"
            f" WHERE {_IN_GRAPH} ORDER BY submission_time, seq", graph_id)]

    async def list_graphs(self, colony: str, state: int, count: int) -> list[ProcessGraph]:
        if state >= 0:
            found = await self._all(f"SELECT {rows.GRAPH_COLS} FROM processgraphs WHERE colony_name = $1"
                                    " AND state = $2 ORDER BY submission_time DESC LIMIT $3", colony, state, count)
        else:
            found = await self._all(f"SELECT {rows.GRAPH_COLS} FROM processgraphs WHERE colony_name = $1"
                                    " ORDER BY submission_time DESC LIMIT $2", colony, count)
        return [rows.graph(r, await self._graph_pids(r[0])) for r in found]

    async def remove_graph(self, graph_id: str) -> None:
        async with self._tx() as con:
            await self._delete_graphs(con, "processgraph_id = $1", (graph_id,))

    async def _delete_graphs(self, con: Con, where: str, args: tuple[Any, ...]) -> None:
        ids = [r[0] for r in await con.fetch(f"SELECT processgraph_id FROM processgraphs WHERE {where}", *args)]
        for gid in ids:
            await self._delete_processes(con, _IN_GRAPH, (gid,))
            await self._delete_counted(con, "processgraphs", "processgraph_id = $1", (gid,))

    async def remove_all_graphs(self, colony: str, state: int) -> None:
        async with self._tx() as con:
            if state >= 0:
                await self._delete_graphs(con, "colony_name = $1 AND state = $2", (colony, state))
            else:
                await self._delete_graphs(con, "colony_name = $1 AND state != 1", (colony,))

    async def cancel_graph(self, graph_id: str, actor: str, now_ns: int) -> list[Process]:
        async def tx(con: Con) -> list[Process]:
            await self._lock_graph(con, graph_id)
            found = await con.fetch(
                f"SELECT process_id, colony_name, executor_type, state FROM processes WHERE {_IN_GRAPH}"
                " AND state IN (0, 1) ORDER BY seq FOR UPDATE", graph_id)
            victims = [r[0] for r in found]
            for pid, colony, etype, state in found:
                await con.execute("UPDATE processes SET state = 4, end_time = $1, exec_deadline = 0"
                                  " WHERE process_id = $2", now_ns, pid)
                self._moved(PROCESS, colony, etype, state, 4)
                await con.execute("DELETE FROM process_targets WHERE process_id = $1", pid)
                await self._event(con, pid, now_ns, "cancelled", actor, "workflow cancelled")
            graph = await con.fetchrow("SELECT colony_name, state FROM processgraphs WHERE processgraph_id = $1",
                                       graph_id)  # locked above
            await con.execute("UPDATE processgraphs SET state = 4, end_time = $1 WHERE processgraph_id = $2",
                              now_ns, graph_id)
            if graph is not None:
                self._moved(GRAPH, graph[0], "", graph[1], 4)
            return await self._fetch(con, victims)

        return await self._run(tx)

    async def add_child(self, graph_id: str, parent_id: str, child_id: str, process: Process,
                        insert: bool, now_ns: int) -> Process:
        async def tx(con: Con) -> Process:
            await self._lock_graph(con, graph_id)
            parent_children = rows.strs(await con.fetchval("SELECT children FROM processes WHERE process_id = $1",
                                                           parent_id))
            new_id = process.processid
            process.parents = [parent_id]
            process.waitforparents = True
            process.processgraphid = graph_id
            if insert:
                process.children = list(parent_children)
                for old in parent_children:
                    parents = [new_id if q == parent_id else q for q in await self._parents(con, old)]
                    await con.execute("UPDATE processes SET parents = $1 WHERE process_id = $2", _js(parents), old)
                parent_children = [new_id]
            else:
                parent_children.append(new_id)
                if child_id:
                    process.children = [child_id]
                    parents = [*await self._parents(con, child_id), new_id]
                    await con.execute("UPDATE processes SET parents = $1, wait_for_parents = TRUE"
                                      " WHERE process_id = $2", _js(parents), child_id)
            await con.execute("UPDATE processes SET children = $1 WHERE process_id = $2",
                              _js(parent_children), parent_id)
            await self._add_process(con, process)
            await self._update_graph_state(con, graph_id, now_ns)
            return (await self._fetch(con, [new_id]))[0]

        return await self._run(tx)

    async def _parents(self, con: Con, pid: str) -> list[str]:
        raw = await con.fetchval("SELECT parents FROM processes WHERE process_id = $1", pid)
        return rows.strs(raw)

    async def _fetch(self, con: Con, pids: list[str]) -> list[Process]:
        if not pids:
            return []
        found = {r[0]: rows.process(r) for r in await con.fetch(
            f"SELECT {rows.PROCESS_COLS} FROM processes WHERE process_id = ANY($1::text[])", pids)}
        return [found[pid] for pid in pids if pid in found]

    async def _lock_graph(self, con: Con, graph_id: str) -> None:
        await con.execute("SELECT 1 FROM processgraphs WHERE processgraph_id = $1 FOR UPDATE", graph_id)

    async def _insert_graph(self, con: Con, g: ProcessGraph) -> None:
        await con.execute(
            f"INSERT INTO processgraphs ({rows.GRAPH_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
            g.processgraphid, g.initiatorid, g.initiatorname, g.colonyname, _js(g.rootprocessids), g.state,
            int(g.submissiontime.timestamp() * 1_000_000_000), 0, 0)
        self._tally_add((GRAPH, g.colonyname, "", g.state, 1, ""))

    async def _on_graph_claim(self, con: Con, pid: str, graph_id: str, parents: list[str], now: int) -> None:
        """A graph member was assigned: its input is its parents' output, in parent order."""
        await self._lock_graph(con, graph_id)
        if parents:
            outs: list[Any] = []
            for parent in parents:
                raw = await con.fetchval("SELECT output FROM processes WHERE process_id = $1", parent)
                if raw:
                    outs.extend(rows.anylist(raw) or [])
            await con.execute("UPDATE processes SET input = $1 WHERE process_id = $2", _js(outs), pid)
        await self._update_graph_state(con, graph_id, now)

    async def _update_graph_state(self, con: Con, graph_id: str, now: int) -> None:
        states = [r[0] for r in await con.fetch(f"SELECT state FROM processes WHERE {_IN_GRAPH}", graph_id)]
        new = rows.graph_state(states)
        row = await con.fetchrow("SELECT state, colony_name FROM processgraphs WHERE processgraph_id = $1", graph_id)
        if row is None or row[0] == new:
            return
        self._moved(GRAPH, row[1], "", row[0], new)
        if new == 1:
            await con.execute("UPDATE processgraphs SET state = 1, start_time = CASE WHEN start_time = 0 THEN $1"
                              " ELSE start_time END WHERE processgraph_id = $2", now, graph_id)
        elif new in (2, 3, 4):
            await con.execute("UPDATE processgraphs SET state = $1, end_time = $2 WHERE processgraph_id = $3",
                              new, now, graph_id)
        else:
            await con.execute("UPDATE processgraphs SET state = $1 WHERE processgraph_id = $2", new, graph_id)

    async def _resolve(self, con: Con, graph_id: str, pid: str, children: list[str], success: bool,
                       now: int) -> list[Process]:
        """After a graph member closed: release children whose parents all succeeded, or cascade a
        failure to the whole graph (only when the failed process has children)."""
        if not graph_id:
            return []
        await self._lock_graph(con, graph_id)
        changed: list[str] = []
        if success:
            for child in children:
                row = await con.fetchrow("SELECT parents, wait_for_parents, state FROM processes"
                                         " WHERE process_id = $1", child)
                if row is None or not row[1] or row[2] != 0:
                    continue
                parents = rows.strs(row[0])
                if not parents:
                    continue
                done = await con.fetchval("SELECT count(*) FROM processes WHERE process_id = ANY($1::text[])"
                                          " AND state = 2", list(set(parents)))
                if done == len(set(parents)):
                    await con.execute("UPDATE processes SET wait_for_parents = FALSE WHERE process_id = $1", child)
                    changed.append(child)
        elif children:
            found = await con.fetch(
                f"SELECT process_id, colony_name, executor_type, state FROM processes WHERE {_IN_GRAPH}"
                " AND state IN (0, 1) ORDER BY seq", graph_id)
            victims = [r[0] for r in found]
            for victim, colony, etype, state in found:
                await con.execute("UPDATE processes SET state = 3, exec_deadline = 0 WHERE process_id = $1", victim)
                self._moved(PROCESS, colony, etype, state, 3)
                await con.execute("DELETE FROM process_targets WHERE process_id = $1", victim)
                await self._event(con, victim, now, "failed", "", f"workflow parent {pid} failed")
            changed += victims
        await self._update_graph_state(con, graph_id, now)
        return await self._fetch(con, changed)
