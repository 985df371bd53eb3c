"""Realtime subscriptions over WebSocket `/pubsub` (async): process events as they happen."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import websockets

from colonies.errors import ClientError
from colonies.model import Process
from colonies.protocol import envelope
from colonies.replay import stamp

_failure = msgspec.json.Decoder(dict[str, Any])
_process = msgspec.json.Decoder(Process)


def _ssl(url: str, verify: bool | str) -> ssl.SSLContext | None:
    """For wss: the default trust store, a CA bundle file (`verify="ca.pem"`), or no checks (False)."""
    if not url.startswith("wss:"):
        return None
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)


async def _frames(url: str, msg: dict[str, Any], prvkey: str, verify: bool | str = True
                  ) -> AsyncGenerator[Process, None]:
    async with websockets.connect(url, max_size=64 * 1024 * 1024, ssl=_ssl(url, verify)) as ws:
        await ws.send(envelope.encode_request(stamp(msg), prvkey).decode())
        while True:
            try:
                frame = await ws.recv()
            except websockets.ConnectionClosed:
                return
            _, payload, is_error = envelope.decode_reply(frame if isinstance(frame, bytes) else frame.encode())
            if is_error:
                failure = _failure.decode(payload)
                raise ClientError(int(failure.get("status", 400)), str(failure.get("message", "")))
            yield _process.decode(payload)


def subscribe_processes(host: str, port: int, prvkey: str, colony: str, executortype: str, state: int,
                        timeout: int, tls: bool = False, verify: bool | str = True
                        ) -> AsyncGenerator[Process, None]:
    """Every process of `executortype` in `colony` that reaches `state`, until `timeout` seconds pass."""
    msg = {"msgtype": "subscribeprocessesmsg", "colonyname": colony, "executortype": executortype,
           "state": state, "timeout": timeout}
    return _frames(f"{'wss' if tls else 'ws'}://{host}:{port}/pubsub", msg, prvkey, verify)


def subscribe_process(host: str, port: int, prvkey: str, process: Process, state: int, timeout: int,
                      tls: bool = False, verify: bool | str = True) -> AsyncGenerator[Process, None]:
    """The process each time it reaches `state` (at once if it already has), until `timeout`."""
    msg = {"msgtype": "subscribeprocessmsg", "processid": process.processid,
           "colonyname": process.spec.conditions.colonyname,
           "executortype": process.spec.conditions.executortype, "state": state, "timeout": timeout}
    return _frames(f"{'wss' if tls else 'ws'}://{host}:{port}/pubsub", msg, prvkey, verify)


async def wait_for(host: str, port: int, prvkey: str, process: Process, timeout: int,
                   tls: bool = False, verify: bool | str = True) -> Process | None:
    """Wait until the process succeeds; None at the timeout."""
    async def first() -> Process | None:
        async with contextlib.aclosing(subscribe_process(host, port, prvkey, process, 2, timeout, tls, verify)) as frames:
            async for p in frames:
                return p
        return None

    return await asyncio.wait_for(first(), timeout + 5)
