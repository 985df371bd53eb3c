"""The async client: sends the core's calls with httpx.AsyncClient."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from colonies.client.core import (
    Call,
    ClientCore,
    SigningAuth,
    bind_async,
    decode,
    tls_verify,
    unsigned_envelope,
)

T = TypeVar("T")


@bind_async
class AsyncClient(ClientCore):
    def __init__(self, host: str = "127.0.0.1", port: int = 50080, prvkey: str = "", tls: bool = False,
                 verify: bool | str = True, timeout: float = 30.0, max_connections: int = 100) -> None:
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{host}:{port}/api"
        self.prvkey = prvkey
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(timeout=timeout, verify=tls_verify(verify), limits=limits)

    def with_key(self, prvkey: str) -> AsyncClient:
        other = object.__new__(AsyncClient)
        other.url, other.prvkey, other._http = self.url, prvkey, self._http
        return other

    async def _run(self, call: Call[T]) -> T:
        body = unsigned_envelope(call.msg)
        timeout: Any = call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT
        r = await self._http.post(self.url, content=body, auth=SigningAuth(self.prvkey), timeout=timeout)
        return decode(call, r.status_code, r.content)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
