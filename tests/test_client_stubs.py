"""The committed type stubs of Client and AsyncClient match the core they are generated from."""

from __future__ import annotations

import asyncio
import inspect

from colonies.client import AsyncClient, Client
from colonies.client._stubs import targets
from colonies.client.core import API


def test_stubs_are_current() -> None:
    for path, text in targets().items():
        assert path.read_text() == text, f"{path.name} is stale: run python -m colonies.client._stubs"


def test_stubs_cover_every_generated_method() -> None:
    sync_stub, async_stub = (p.read_text() for p in targets())
    for name in API:
        assert f"    def {name}(" in sync_stub
        assert f"    async def {name}(" in async_stub
        assert callable(getattr(Client, name))
        assert asyncio.iscoroutinefunction(getattr(AsyncClient, name))
        assert inspect.getdoc(getattr(Client, name)) == inspect.getdoc(getattr(AsyncClient, name))
