"""SQLite: workflow (process graph) resolution, run inside the caller's transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

from colonies.model import Process, ProcessGraph
from colonies.storage import rows
from colonies.storage.base import Storage


class SqliteWorkflowsMixin(Storage):
    """Graph bookkeeping shared by claim, close and expiry."""

    async def get_graph(self, graph_id: str) -> ProcessGraph | None:
        raise NotImplementedError

    async def list_graphs(self, colony: str, state: int, count: int) -> list[ProcessGraph]:
        raise NotImplementedError

    async def remove_graph(self, graph_id: str) -> None:
        raise NotImplementedError

    async def remove_all_graphs(self, colony: str, state: int) -> None:
        raise NotImplementedError

    async def cancel_graph(self, graph_id: str, actor: str, now_ns: int) -> list[Process]:
        raise NotImplementedError

    async def add_child(self, graph_id: str, parent_id: str, child_id: str, process: Process,
                        insert: bool, now_ns: int) -> Process:
        raise NotImplementedError

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
        states = [r[0] for r in db.execute("SELECT state FROM processes WHERE processgraph_id = ?", (graph_id,))]
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
                "SELECT process_id FROM processes WHERE processgraph_id = ? AND state IN (0, 1)", (graph_id,))]
            for victim in victims:
                db.execute("UPDATE processes SET state = 3, exec_deadline = 0 WHERE process_id = ?", (victim,))
                db.execute("DELETE FROM process_targets WHERE process_id = ?", (victim,))
                db.execute("INSERT INTO process_events (process_id, ts, event, actor, detail) VALUES (?,?,?,?,?)",
                           (victim, now, "failed", "", f"workflow parent {pid} failed"))
            changed += victims
        self._update_graph_state(db, graph_id, now)
        out = []
        for cid in changed:
            row = db.execute(f"SELECT {rows.PROCESS_COLS} FROM processes WHERE process_id = ?", (cid,)).fetchone()
            if row:
                out.append(rows.process(row))
        return out
