"""The async client: sends the core's calls with aiohttp.

aiohttp rather than httpx here: on loopback it spends about a fifth of httpx.AsyncClient's client CPU
per request (bench/README.md), and executors and load generators are where that CPU matters.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Self, TypeVar

import aiohttp

from colonies.client.core import HEADERS, Call, ClientCore, bind_async, decode, signed_envelope, tls_verify
from colonies.errors import TransportError

T = TypeVar("T")


class _Pool:
    """The aiohttp session, made on first use inside the running loop and shared by `with_key` copies.
    A client used again under another event loop (a second `asyncio.run`) gets a new session there;
    close the client (`aclose`) in each loop that used it, or its connections leak."""

    def __init__(self, ssl_: bool | ssl.SSLContext, timeout: float, max_connections: int, socket: str = "") -> None:
        self.ssl, self.timeout, self.max_connections = ssl_, timeout, max_connections
        self.socket = socket  # a Unix socket path: every request goes there (a relay), not to host:port
        self.session: aiohttp.ClientSession | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self.session is not None and self.loop is not loop:
            if self.loop is not None and not self.loop.is_closed() and not self.session.closed:
                raise RuntimeError("an AsyncClient is in use by another running event loop")
            self.session = None
        if self.session is None or self.session.closed:
            self.loop = loop
            # keep-alive under uvicorn's 5 s default, so an idle connection is dropped here first
            connector: aiohttp.BaseConnector
            if self.socket:
                connector = aiohttp.UnixConnector(path=self.socket, limit=self.max_connections, keepalive_timeout=4.0)
            else:
                connector = aiohttp.TCPConnector(limit=self.max_connections, ssl=self.ssl, keepalive_timeout=4.0)
            self.session = aiohttp.ClientSession(connector=connector,
                                                 timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


@bind_async
class AsyncClient(ClientCore):
    def __init__(self, host: str = "127.0.0.1", port: int = 50080, prvkey: str = "", tls: bool = False,
                 verify: bool | str = True, timeout: float = 30.0, max_connections: int = 100,
                 socket: str = "") -> None:
        """`socket`: send every request over this Unix socket (a relay's, colonies/executors/relay.py)
        instead of TCP to host:port; the request is signed as always, so the relay only forwards it."""
        scheme = "https" if tls and not socket else "http"
        self.url = f"{scheme}://{host}:{port}/api"
        self.prvkey = prvkey
        self.socket = socket
        self._pool = _Pool(tls_verify(verify), timeout, max_connections, socket)

    def with_key(self, prvkey: str) -> AsyncClient:
        """A client sharing this one's connection pool, signing with another key."""
        other = object.__new__(AsyncClient)
        other.url, other.prvkey, other._pool, other.socket = self.url, prvkey, self._pool, self.socket
        return other

    async def _run(self, call: Call[T]) -> T:
        body = signed_envelope(call.msg, self.prvkey)
        session = self._pool.get()
        try:
            if call.timeout is None:  # the session's default (passing timeout=None would mean none at all)
                request = session.post(self.url, data=body, headers=HEADERS)
            else:
                request = session.post(self.url, data=body, headers=HEADERS,
                                       timeout=aiohttp.ClientTimeout(total=call.timeout))
            async with request as r:
                content = await r.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return decode(call, r.status, content)

    async def aclose(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
