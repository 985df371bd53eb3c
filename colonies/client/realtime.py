"""Realtime subscriptions over WebSocket `/pubsub` (async): process events as they happen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import websockets

from colonies.errors import ClientError
from colonies.model import Process
from colonies.protocol import envelope

_failure = msgspec.json.Decoder(dict[str, Any])
_process = msgspec.json.Decoder(Process)


async def _frames(url: str, msg: dict[str, Any], prvkey: str) -> AsyncIterator[Process]:
    async with websockets.connect(url, max_size=64 * 1024 * 1024) as ws:
        await ws.send(envelope.encode_request(msg, prvkey).decode())
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
                        timeout: int, tls: bool = False) -> AsyncIterator[Process]:
    """Every process of `executortype` in `colony` that reaches `state`, until `timeout` seconds pass."""
    msg = {"msgtype": "subscribeprocessesmsg", "colonyname": colony, "executortype": executortype,
           "state": state, "timeout": timeout}
    return _frames(f"{'wss' if tls else 'ws'}://{host}:{port}/pubsub", msg, prvkey)


def subscribe_process(host: str, port: int, prvkey: str, process: Process, state: int, timeout: int,
                      tls: bool = False) -> AsyncIterator[Process]:
    """The process each time it reaches `state` (at once if it already has), until `timeout`."""
    msg = {"msgtype": "subscribeprocessmsg", "processid": process.processid,
           "colonyname": process.spec.conditions.colonyname,
           "executortype": process.spec.conditions.executortype, "state": state, "timeout": timeout}
    return _frames(f"{'wss' if tls else 'ws'}://{host}:{port}/pubsub", msg, prvkey)


async def wait_for(host: str, port: int, prvkey: str, process: Process, timeout: int,
                   tls: bool = False) -> Process | None:
    """Wait until the process succeeds; None at the timeout."""
    async def first() -> Process | None:
        async for p in subscribe_process(host, port, prvkey, process, 2, timeout, tls):
            return p
        return None

    return await asyncio.wait_for(first(), timeout + 5)
