"""SQLite: workflow (process graph) resolution, run inside the caller's transaction."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from colonies.model import Process, ProcessGraph
from colonies.storage import rows
from colonies.storage.base import GraphMember
from colonies.storage.sqlite_base import SqliteBase

# The second term lets the planner use the partial index processes_by_graph (without it, a scan).
_IN_GRAPH = "processgraph_id = ? AND processgraph_id != ''"


class SqliteWorkflowsMixin(SqliteBase):
    """Graph bookkeeping shared by claim, close and expiry."""

    async def get_graph(self, graph_id: str) -> ProcessGraph | None:
        db = self.db
        row = db.execute(f"SELECT {rows.GRAPH_COLS} FROM processgraphs WHERE processgraph_id = ?",
                         (graph_id,)).fetchone()
        return rows.graph(row, self._graph_pids(db, graph_id)) if row else None

    def _graph_pids(self, db: sqlite3.Connection, graph_id: str) -> list[str]:
        return [r[0] for r in db.execute(
            f"SELECT process_id FROM processes WHERE {_IN_GRAPH} ORDER BY submission_time, rowid",
            (graph_id,))]

    async def graph_members(self, graph_id: str) -> list[GraphMember]:
        return [GraphMember(r[0], r[1] or "", r[2], rows.strs(r[3]), rows.strs(r[4])) for r in self.db.execute(
            "SELECT process_id, json_extract(CAST(spec AS TEXT), '$.nodename'), state, parents, children"
            f" FROM processes WHERE {_IN_GRAPH} ORDER BY submission_time, rowid", (graph_id,))]

    async def list_graphs(self, colony: str, state: int, count: int) -> list[ProcessGraph]:
        db = self.db
        if state >= 0:
            found = db.execute(f"SELECT {rows.GRAPH_COLS} FROM processgraphs WHERE colony_name = ? AND state = ?"
                               " ORDER BY submission_time DESC LIMIT ?", (colony, state, count)).fetchall()
        else:
            found = db.execute(f"SELECT {rows.GRAPH_COLS} FROM processgraphs WHERE colony_name = ?"
                               " ORDER BY submission_time DESC LIMIT ?", (colony, count)).fetchall()
        graphs = []
        for r in found:
            # Up to 100 graphs of up to 1,000 processes: let other requests run between graphs.
            await asyncio.sleep(0)
            graphs.append(rows.graph(r, self._graph_pids(db, r[0])))
        return graphs

    async def remove_graph(self, graph_id: str) -> None:
        with self._tx() as db:
            self._delete_graphs(db, "processgraph_id = ?", (graph_id,))

    def _delete_graphs(self, db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> None:
        ids = [r[0] for r in db.execute(f"SELECT processgraph_id FROM processgraphs WHERE {where}", args)]
        for gid in ids:
            self._delete_processes(db, _IN_GRAPH, (gid,))
            db.execute("DELETE FROM processgraphs WHERE processgraph_id = ?", (gid,))

    async def remove_all_graphs(self, colony: str, state: int) -> None:
        with self._tx() as db:
            if state >= 0:
                self._delete_graphs(db, "colony_name = ? AND state = ?", (colony, state))
            else:
                self._delete_graphs(db, "colony_name = ? AND state != 1", (colony,))

    async def cancel_graph(self, graph_id: str, actor: str, now_ns: int) -> list[Process]:
        with self._tx() as db:
            victims = [r[0] for r in db.execute(
                f"SELECT process_id FROM processes WHERE {_IN_GRAPH} AND state IN (0, 1)", (graph_id,))]
            for pid in victims:
                db.execute("UPDATE processes SET state = 4, end_time = ?, exec_deadline = 0 WHERE process_id = ?",
                           (now_ns, pid))
                db.execute("DELETE FROM process_targets WHERE process_id = ?", (pid,))
                self._event(db, pid, now_ns, "cancelled", actor, "workflow cancelled")
            db.execute("UPDATE processgraphs SET state = 4, end_time = ? WHERE processgraph_id = ?",
                       (now_ns, graph_id))
            return self._fetch(db, victims)

    async def add_child(self, graph_id: str, parent_id: str, child_id: str, process: Process,
                        insert: bool, now_ns: int) -> Process:
        with self._tx() as db:
            parent_children = rows.strs(db.execute("SELECT children FROM processes WHERE process_id = ?",
                                                   (parent_id,)).fetchone()[0])
            new_id = process.processid
            process.parents = [parent_id]
            process.waitforparents = True
            process.processgraphid = graph_id
            if insert:
                process.children = list(parent_children)
                for old in parent_children:
                    parents = [new_id if q == parent_id else q for q in self._parents(db, old)]
                    db.execute("UPDATE processes SET parents = ? WHERE process_id = ?", (rows.dumps(parents), old))
                parent_children = [new_id]
            else:
                parent_children.append(new_id)
                if child_id:
                    process.children = [child_id]
                    parents = [*self._parents(db, child_id), new_id]
                    db.execute("UPDATE processes SET parents = ?, wait_for_parents = 1 WHERE process_id = ?",
                               (rows.dumps(parents), child_id))
            db.execute("UPDATE processes SET children = ? WHERE process_id = ?",
                       (rows.dumps(parent_children), parent_id))
            self._add_process(db, process)
            self._update_graph_state(db, graph_id, now_ns)
            return self._fetch(db, [new_id])[0]

    def _parents(self, db: sqlite3.Connection, pid: str) -> list[str]:
        row = db.execute("SELECT parents FROM processes WHERE process_id = ?", (pid,)).fetchone()
        return rows.strs(row[0]) if row else []

    def _fetch(self, db: sqlite3.Connection, pids: list[str]) -> list[Process]:
        out = []
        for pid in pids:
            row = db.execute(f"SELECT {rows.PROCESS_COLS} FROM processes WHERE process_id = ?", (pid,)).fetchone()
            if row:
                out.append(rows.process(row))
        return out

    def _insert_graph(self, db: sqlite3.Connection, g: ProcessGraph) -> None:
        db.execute(
            f"INSERT INTO processgraphs ({rows.GRAPH_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (g.processgraphid, g.initiatorid, g.initiatorname, g.colonyname, rows.dumps(g.rootprocessids),
             g.state, int(g.submissiontime.timestamp() * 1_000_000_000), 0, 0))

    def _on_graph_claim(self, db: sqlite3.Connection, pid: str, graph_id: str, parents: list[str],
                        now: int) -> None:
        """A graph member was assigned: its input is its parents' output, in parent order."""
        if parents:
            outs: list[Any] = []
            for parent in parents:
                row = db.execute("SELECT output FROM processes WHERE process_id = ?", (parent,)).fetchone()
                if row and row[0]:
                    outs.extend(rows.anylist(row[0]) or [])
            db.execute("UPDATE processes SET input = ? WHERE process_id = ?", (rows.dumps(outs), pid))
        self._update_graph_state(db, graph_id, now)

    def _update_graph_state(self, db: sqlite3.Connection, graph_id: str, now: int) -> None:
        states = [r[0] for r in db.execute(f"SELECT state FROM processes WHERE {_IN_GRAPH}", (graph_id,))]
        new = rows.graph_state(states)
        row = db.execute("SELECT state FROM processgraphs WHERE processgraph_id = ?", (graph_id,)).fetchone()
        if row is None or row[0] == new:
            return
        if new == 1:
            db.execute("UPDATE processgraphs SET state = 1, start_time = CASE WHEN start_time = 0 THEN ? "
                       "ELSE start_time END WHERE processgraph_id = ?", (now, graph_id))
        elif new in (2, 3, 4):
            db.execute("UPDATE processgraphs SET state = ?, end_time = ? WHERE processgraph_id = ?",
                       (new, now, graph_id))
        else:
            db.execute("UPDATE processgraphs SET state = ? WHERE processgraph_id = ?", (new, graph_id))

    def _resolve(self, db: sqlite3.Connection, graph_id: str, pid: str, children: list[str], success: bool,
                 now: int) -> list[Process]:
        """After a graph member closed: release children whose parents all succeeded, or cascade a
        failure to the whole graph (only when the failed process has children). Returns the processes
        changed, for events."""
        if not graph_id:
            return []
        changed: list[str] = []
        if success:
            for child in children:
                row = db.execute("SELECT parents, wait_for_parents, state FROM processes WHERE process_id = ?",
                                 (child,)).fetchone()
                if row is None or not row[1] or row[2] != 0:
                    continue
                parents = rows.strs(row[0])
                if not parents:
                    continue
                marks = ",".join("?" * len(parents))
                done = db.execute(f"SELECT count(*) FROM processes WHERE process_id IN ({marks}) AND state = 2",
                                  parents).fetchone()[0]
                if done == len(set(parents)):
                    db.execute("UPDATE processes SET wait_for_parents = 0 WHERE process_id = ?", (child,))
                    changed.append(child)
        elif children:
            victims = [r[0] for r in db.execute(
                f"SELECT process_id FROM processes WHERE {_IN_GRAPH} AND state IN (0, 1)", (graph_id,))]
            for victim in victims:
                db.execute("UPDATE processes SET state = 3, exec_deadline = 0 WHERE process_id = ?", (victim,))
                db.execute("DELETE FROM process_targets WHERE process_id = ?", (victim,))
                self._event(db, victim, now, "failed", "", f"workflow parent {pid} failed")
            changed += victims
        self._update_graph_state(db, graph_id, now)
        return self._fetch(db, changed)
