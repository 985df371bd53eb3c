"""The plumbing PostgresStorage shares with its mixins (workflows, schedules, catalog), declared once.

PostgresStorage implements all of it except the graph helpers, which PostgresWorkflowsMixin does, and the
count reporting, which PostgresTallyMixin does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped,unused-ignore]
from asyncpg import Connection as Con  # type: ignore[import-untyped,unused-ignore]

from colonies.model import Process, ProcessGraph
from colonies.storage.base import Storage
from colonies.storage.tally import Delta

T = TypeVar("T")


class PostgresBase(Storage):
    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError

    def _tx(self) -> AbstractAsyncContextManager[Con]:
        raise NotImplementedError

    async def _run(self, fn: Callable[[Con], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def _one(self, sql: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _all(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    async def _event(self, con: Con, pid: str, now: int, event: str, actor: str = "", detail: str = "") -> None:
        raise NotImplementedError

    async def _add_process(self, con: Con, p: Process) -> None:
        raise NotImplementedError

    async def _delete_processes(self, con: Con, where: str, args: Sequence[Any]) -> None:
        raise NotImplementedError

    async def _insert_graph(self, con: Con, g: ProcessGraph) -> None:
        raise NotImplementedError

    async def _delete_graphs(self, con: Con, where: str, args: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def _tally_add(self, *deltas: Delta) -> None:
        raise NotImplementedError

    def _moved(self, kind: int, colony: str, etype: str, old: int, new: int, ident: str = "") -> None:
        raise NotImplementedError

    async def _delete_counted(self, con: Con, table: str, where: str, args: Sequence[Any]) -> None:
        raise NotImplementedError
