"""SQLite: generators, crons, logs and retention."""

from __future__ import annotations

from colonies.model import Cron, Generator, Log, Process, ProcessGraph
from colonies.storage.base import GraphBuilder, Storage


class SqliteSchedulesMixin(Storage):
    async def add_generator(self, generator: Generator) -> None:
        raise NotImplementedError

    async def get_generator(self, generator_id: str) -> Generator | None:
        raise NotImplementedError

    async def get_generator_by_name(self, colony: str, name: str) -> Generator | None:
        raise NotImplementedError

    async def list_generators(self, colony: str, count: int) -> list[Generator]:
        raise NotImplementedError

    async def remove_generator(self, generator_id: str) -> None:
        raise NotImplementedError

    async def pack_generator(self, generator_id: str, colony: str, arg: str, now_ns: int) -> None:
        raise NotImplementedError

    async def fire_generator(self, generator_id: str, count: int, build: GraphBuilder,
                             now_ns: int) -> list[Process]:
        raise NotImplementedError

    async def generators_due(self) -> list[Generator]:
        raise NotImplementedError

    async def add_cron(self, cron: Cron) -> None:
        raise NotImplementedError

    async def get_cron(self, cron_id: str) -> Cron | None:
        raise NotImplementedError

    async def list_crons(self, colony: str, count: int) -> list[Cron]:
        raise NotImplementedError

    async def remove_cron(self, cron_id: str) -> None:
        raise NotImplementedError

    async def crons_due(self, now_ns: int) -> list[Cron]:
        raise NotImplementedError

    async def set_cron_next(self, cron_id: str, next_run_ns: int) -> None:
        raise NotImplementedError

    async def fire_cron(self, cron_id: str, expected_next_ns: int, next_run_ns: int,
                        processes: list[Process], graph: ProcessGraph, now_ns: int) -> bool:
        raise NotImplementedError

    async def add_log(self, log: Log) -> None:
        raise NotImplementedError

    async def get_logs(self, colony: str, process_id: str, executor_name: str, count: int, since_ns: int,
                       latest: bool) -> list[Log]:
        raise NotImplementedError

    async def search_logs(self, colony: str, text: str, since_ns: int, count: int) -> list[Log]:
        raise NotImplementedError

    async def retain(self, older_than_ns: int) -> int:
        raise NotImplementedError
