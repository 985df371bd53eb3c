"""The pilot relay: carries the slots' requests to the server over the login node's own connection.

On many HPC sites compute nodes cannot reach the internet, but they can reach the login nodes. The
allocator (pilot.py) then runs this relay on the login node, and the slots in its allocations send
their requests to it: over a Unix socket (`unix`: the slots run on the same host as the relay, as on a
single-node test cluster, or in a network namespace of their own with the socket's directory shared) or
over TCP on the cluster's internal network (`tcp`: host:port of a login-node address the nodes reach).

It forwards, and nothing else:
* only `POST /api`, the body as it came (at most `max_body` bytes), with its Content-Type; the reply's
  status, Content-Type and body go back as they are. Every request is signed by the slot that made it,
  the server recovers the signer from the signature, and the relay holds no key: it cannot make, change
  or replay a request (the server refuses a replayed nonce) without the server noticing;
* long-polls stay long-polls: no timeout of its own shorter than an hour, so an assign waits as long as
  the slot asked; when a slot goes away, its request to the server is cancelled (the server then sees
  the client leave, as it would without the relay);
* connections to the server are pooled and kept alive (one per request in flight: HTTP/1.1 cannot
  share one between concurrent long-polls);
* when the server cannot be reached, the relay answers 502 with a plain-text body, which the SDK reads
  as a transport error (no reply from the server), so the kit re-sends a close as it would over TCP.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

log = logging.getLogger("colonies.relay")

MAX_BODY = 17 * 1024 * 1024  # the server's default max body (16 MiB) and room for the envelope
UPSTREAM_LIMIT_S = 3600.0  # the longest a forwarded request may take (a long-poll asks for far less)
UNIX_PATH_MAX = 107  # sockaddr_un.sun_path, less the terminating NUL


@dataclass
class RelayStats:
    forwarded: int = 0
    failed: int = 0  # the server could not be reached
    in_flight: int = 0


class Relay:
    """Forwards POST /api from `unix` (a socket path) and/or `tcp` ("host:port") to `upstream`."""

    def __init__(self, upstream: str, unix: str = "", tcp: str = "", ssl_: bool | ssl.SSLContext = True,
                 max_body: int = MAX_BODY) -> None:
        if not unix and not tcp:
            raise ValueError("a relay needs a Unix socket path or a TCP host:port to listen on")
        if unix and len(os.fsencode(unix)) > UNIX_PATH_MAX:
            raise ValueError(f"the relay's socket path is longer than {UNIX_PATH_MAX} bytes (a Unix socket "
                             f"limit): {unix}; set [pilot] relay_socket to a shorter path")
        self.upstream, self.unix, self.tcp, self.ssl = upstream, unix, tcp, ssl_
        self.max_body = max_body
        self.stats = RelayStats()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0  # the TCP port it listens on (when tcp asked for port 0)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ssl=self.ssl, keepalive_timeout=4.0)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=UPSTREAM_LIMIT_S, sock_connect=10))
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/api", self._forward)
        # handler_cancellation: a slot that hangs up cancels its request to the server
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        if self.unix:
            path = Path(self.unix)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a socket left by an earlier run
            old = os.umask(0o177)  # the socket is born 0600: only this user's processes may connect
            try:
                site: web.BaseSite = web.UnixSite(self._runner, self.unix)
                await site.start()
            finally:
                os.umask(old)
            log.info("relay: listening on %s, forwarding to %s", self.unix, self.upstream)
        if self.tcp:
            host, _, port = self.tcp.rpartition(":")
            site = web.TCPSite(self._runner, host or "127.0.0.1", int(port))
            await site.start()
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else int(port)
            log.info("relay: listening on %s:%d, forwarding to %s", host, self.port, self.upstream)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.unix:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix)

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        self.stats.in_flight += 1
        try:
            async with self._session.post(self.upstream, data=body, headers=headers) as r:
                content = await r.read()
                self.stats.forwarded += 1
                return web.Response(status=r.status, body=content,
                                    headers={"Content-Type": r.headers.get("Content-Type", "application/json")})
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.failed += 1
            log.warning("relay: the server did not answer: %s", exc)
            return web.Response(status=502, text=f"relay: the server did not answer: {type(exc).__name__}")
        finally:
            self.stats.in_flight -= 1
