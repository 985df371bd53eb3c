"""Our SDK: one core that does no I/O, a sync shell over httpx and an async shell over aiohttp."""

from colonies.client.asyncio import AsyncClient
from colonies.client.core import Call, ClientCore, func_spec
from colonies.client.sync import Client

__all__ = ["AsyncClient", "Call", "Client", "ClientCore", "func_spec"]
