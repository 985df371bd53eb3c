"""colonies.serve: a response's writes in one loop iteration leave as one transport write."""

from __future__ import annotations

import asyncio
from typing import Any

from colonies.serve import _Coalescing


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_writes_in_one_iteration_are_one_write() -> None:
    rec = Recorder()
    t: Any = _Coalescing(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    t.write(b"{}")
    assert rec.writes == []
    await asyncio.sleep(0)
    assert rec.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    t.write(b"next")
    t.close()  # a close flushes first
    assert rec.writes[-1] == b"next" and rec.closed
    await asyncio.sleep(0)
    assert len(rec.writes) == 2  # the scheduled flush finds nothing left
    assert t.get_extra_info("peername") == "info:peername"  # everything else is the real transport's
