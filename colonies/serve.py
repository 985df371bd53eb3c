"""Run the server under uvicorn: config → storage → app → uvicorn."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from colonies.config import Config
from colonies.errors import ConfigError

log = logging.getLogger("colonies.server")
BACKLOG = 8192


class _Coalescing:
    """The transport a response is written through: writes in one loop iteration go out as one write."""

    __slots__ = ("_buf", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._buf: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._buf:
            self._loop.call_soon(self._flush)
        self._buf.append(data)

    def _flush(self) -> None:
        if self._buf:
            data = b"".join(self._buf)
            self._buf.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def header_deadline_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, plus a deadline for each request's headers.

    uvicorn arms no timer on a new connection, nor while request headers trickle in (its keep-alive
    timer runs only between requests), so a slow-loris client could hold a connection, and a file
    descriptor, for ever. Here the deadline starts when the connection opens and again when each request
    begins, and stops once the headers are in: a long-poll or a WebSocket is not limited by it.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            before = self.cycle
            super().on_headers_complete()
            if self.cycle is not before and self.cycle is not None:
                # uvicorn writes a response's head and body separately: two segments, two wakeups
                # of the client. Writes made in one loop iteration now leave as one.
                self.cycle.transport = _Coalescing(self.transport, self.loop)  # type: ignore[assignment]

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                log.debug("closing %s: no complete request headers within %.0f s", self.client, timeout_s)
                self.transport.close()

    return HeaderDeadlineProtocol


def check_tls_files(config: Config) -> None:
    """The certificate and key load (before anything is served): ConfigError naming them otherwise."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load COLONIES_TLSCERT={config.tls_cert} with COLONIES_TLSKEY={config.tls_key}: "
                          f"{exc.strerror or exc}") from None


def serve(config: Config) -> None:
    import uvicorn

    from colonies.server.app import create_app
    from colonies.storage import create_storage

    config.check()
    if config.tls:
        check_tls_files(config)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(config, create_storage(config))
    scheme = "https" if config.tls else "http"
    where = config.db_path if config.db_type == "sqlite" else f"{config.db_host}:{config.db_port}/{config.db_name}"
    log.info("colonies server %s serving %s://%s:%d (api /api, realtime /pubsub) on %s storage %s",
             config.build_version, scheme, config.bind, config.port, config.db_type, where)
    kwargs: dict[str, Any] = {}
    if config.tls:
        kwargs = {"ssl_certfile": config.tls_cert, "ssl_keyfile": config.tls_key}
    if config.header_timeout_s > 0:
        kwargs["http"] = header_deadline_protocol(config.header_timeout_s)
    # backlog: room for thousands of long-polling executors (re)connecting at once (uvicorn's default
    # is 2048; the kernel caps it at net.core.somaxconn). See bench/load_longpoll.py.
    uvicorn.run(app, host=config.bind, port=config.port, log_level="warning", access_log=False,
                ws="websockets-sansio", lifespan="on", timeout_keep_alive=75, backlog=BACKLOG, **kwargs)
