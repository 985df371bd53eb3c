"""The SDK's transports: a call that gets no reply raises TransportError (status 0) from both clients,
and an AsyncClient can be used again under a new event loop once closed in the old one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from colonies.client import AsyncClient, Client
from colonies.errors import ClientError, TransportError
from tests.conftest import ServerProc, free_port


def test_no_server_is_a_transport_error() -> None:
    port = free_port()  # nothing listens here
    with Client("127.0.0.1", port, timeout=2) as c, pytest.raises(TransportError) as sync_err:
        c.version()
    assert sync_err.value.status == 0 and isinstance(sync_err.value, ClientError)

    async def call() -> None:
        async with AsyncClient("127.0.0.1", port, timeout=2) as c:
            await c.version()

    with pytest.raises(TransportError) as async_err:
        asyncio.run(call())
    assert async_err.value.status == 0 and "Connect" in async_err.value.message


def test_async_client_across_event_loops(server: ServerProc) -> None:
    c = AsyncClient("127.0.0.1", server.port)

    async def once() -> dict[str, Any]:
        try:
            return await c.version()
        finally:
            await c.aclose()

    assert asyncio.run(once()) == asyncio.run(once())


def test_a_refused_call_is_a_client_error_with_its_status(server: ServerProc) -> None:
    async def call() -> None:
        async with AsyncClient("127.0.0.1", server.port) as c:
            await c.get_colony("nope")  # unsigned: refused

    with pytest.raises(ClientError) as err:
        asyncio.run(call())
    assert err.value.status == 403 and not isinstance(err.value, TransportError)
