"""POST /api as a plain ASGI app: bounded body read, envelope, signature, dispatch, reply."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from starlette.types import Receive, Scope, Send

from colonies.errors import BadRequest, ColoniesError, Forbidden, Internal, PayloadTooLarge
from colonies.model import Backend, ServerInfo
from colonies.protocol import envelope
from colonies.protocol.messages import Msg, VersionMsg
from colonies.replay import Freshness
from colonies.scheduler import DISCONNECTED
from colonies.server.dispatch import HANDLERS, MEMBERSHIP_CHANGES, REPLY_TYPE
from colonies.server.handlers_channels import CLEANUP as CHANNEL_CLEANUP
from colonies.services import Services

log = logging.getLogger("colonies.api")

_HEADERS = [(b"content-type", b"application/json"), (b"access-control-allow-origin", b"*")]
LONG_POLL = frozenset({"assignprocessmsg"})


class ApiApp:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.max_body = services.config.max_body_bytes
        self.requests = 0
        self.metrics = services.metrics
        c = services.config
        self.fresh = Freshness(services.storage, services.now, c.replay_window_s, c.require_fresh_signatures)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "OPTIONS":
            await _send(send, 204, b"")
            return
        if scope["method"] != "POST":
            await _send(send, 405, envelope.error_body(405, "only POST is allowed on /api"))
            return
        started = perf_counter()
        kind = ""  # the payload type, once the envelope is read
        try:
            body = await self._read_body(scope, receive)
            self.requests += 1
            opened = envelope.open_request(body)
            kind = opened[0].payloadtype
            status, reply = await self._handle(opened, receive)
        except ColoniesError as exc:
            status, reply = exc.status, envelope.encode_error(exc)
        except Exception as exc:  # a bug outside the handlers (envelope, signature): still an envelope
            log.exception("internal error opening a request")
            status, reply = 500, envelope.encode_error(Internal(f"internal error: {type(exc).__name__}"))
        await _send(send, status, reply)
        if self.metrics is not None:
            self.metrics.request(kind, status, perf_counter() - started)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise BadRequest("invalid content-length") from None
                if declared > self.max_body:
                    raise PayloadTooLarge(f"request body exceeds {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(f"request body exceeds {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _handle(self, opened: tuple[envelope.RPCRequest, Msg, str], receive: Receive) -> tuple[int, bytes]:
        req, msg, signer = opened
        if req.payloadtype == "versionmsg":
            return 200, envelope.encode_reply("versionmsg", self._version(msg))
        if req.payloadtype == "getserverinfomsg":
            return 200, envelope.encode_reply("getserverinfomsg", self._server_info())
        handler = HANDLERS.get(req.payloadtype)
        if handler is None:
            raise Forbidden(f"invalid rpcMsg.PayloadType: {req.payloadtype}")
        if self.fresh.needed(msg):
            await self.fresh.check(msg, signer)
        try:
            if req.payloadtype in LONG_POLL:
                token = DISCONNECTED.set(_disconnected(receive))
                try:
                    result = await handler(self.s, signer, msg)
                finally:
                    DISCONNECTED.reset(token)
            else:
                result = await handler(self.s, signer, msg)
            cleanup = CHANNEL_CLEANUP.get(req.payloadtype)
            if cleanup is not None:
                await cleanup(self.s, msg)
        except ColoniesError:
            raise
        except OverflowError:
            # An integer past int64 (msgspec decodes up to uint64); Go refuses it when decoding.
            raise BadRequest("an integer field is out of range") from None
        except Exception as exc:
            log.exception("internal error handling %s", req.payloadtype)
            raise Internal(f"internal error: {type(exc).__name__}") from exc
        finally:
            if req.payloadtype in MEMBERSHIP_CHANGES:
                self.s.guard.forget()
        return 200, envelope.encode_reply(REPLY_TYPE.get(req.payloadtype, req.payloadtype), result)

    def _version(self, msg: Msg) -> dict[str, Any]:
        assert isinstance(msg, VersionMsg)
        c = self.s.config
        return {"msgtype": "versionmsg", "buildversion": c.build_version, "buildtime": c.build_time}

    def _server_info(self) -> ServerInfo:
        c = self.s.config
        return ServerInfo(buildversion=c.build_version, buildtime=c.build_time,
                          backends=[Backend(type="http", host=c.bind, port=c.port, tls=c.tls)])


def _disconnected(receive: Receive) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    return wait


async def _send(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
