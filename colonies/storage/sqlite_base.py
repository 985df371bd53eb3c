"""The plumbing SqliteStorage shares with its mixins (workflows, schedules, catalog), declared once.

SqliteStorage implements all of it except the graph helpers, which SqliteWorkflowsMixin does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from colonies.model import Process, ProcessGraph
from colonies.storage.base import Storage


class SqliteBase(Storage):
    @property
    def db(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def _event(self, db: sqlite3.Connection, pid: str, now: int, event: str, actor: str = "",
               detail: str = "") -> None:
        raise NotImplementedError

    def _add_process(self, db: sqlite3.Connection, p: Process) -> None:
        raise NotImplementedError

    def _delete_processes(self, db: sqlite3.Connection, where: str, args: Sequence[Any]) -> None:
        raise NotImplementedError

    def _insert_graph(self, db: sqlite3.Connection, g: ProcessGraph) -> None:
        raise NotImplementedError

    def _delete_graphs(self, db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> None:
        raise NotImplementedError
