"""The sync client: sends the core's calls with httpx.Client."""

from __future__ import annotations

from typing import Any, Self, TypeVar

import httpx

from colonies.client.core import HEADERS, Call, ClientCore, bind_sync, decode, signed_envelope, tls_verify
from colonies.errors import TransportError

T = TypeVar("T")


@bind_sync
class Client(ClientCore):
    def __init__(self, host: str = "127.0.0.1", port: int = 50080, prvkey: str = "", tls: bool = False,
                 verify: bool | str = True, timeout: float = 30.0, socket: str = "") -> None:
        """`socket`: send every request over this Unix socket (a relay's) instead of TCP to host:port."""
        scheme = "https" if tls and not socket else "http"
        self.url = f"{scheme}://{host}:{port}/api"
        self.prvkey = prvkey
        self.socket = socket
        transport = httpx.HTTPTransport(uds=socket) if socket else None
        self._http = httpx.Client(timeout=timeout, verify=tls_verify(verify), transport=transport)

    def with_key(self, prvkey: str) -> Client:
        """A client sharing this one's connection pool, signing with another key."""
        other = object.__new__(Client)
        other.url, other.prvkey, other._http, other.socket = self.url, prvkey, self._http, self.socket
        return other

    def _run(self, call: Call[T]) -> T:
        body = signed_envelope(call.msg, self.prvkey)
        timeout: Any = call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT
        try:
            r = self._http.post(self.url, content=body, headers=HEADERS, timeout=timeout)
        except httpx.TransportError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return decode(call, r.status_code, r.content)

    def close_client(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_client()
