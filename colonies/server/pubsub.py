"""GET /pubsub: WebSocket subscriptions to process events (§1.6).

Each text frame is a signed request envelope that starts one more subscription on the socket. A
subscription pushes reply envelopes (payloadtype `subscribeprocessmsg`) carrying the Process. The
socket closes, without a final frame, when the last subscription's timeout passes. Membership of the
colony is checked for every subscription (a fix over the original).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from colonies.channels import ENDED, Channel
from colonies.errors import BadRequest, ColoniesError, Internal, NotFound
from colonies.model import Process
from colonies.protocol import envelope
from colonies.protocol import messages as m
from colonies.replay import Freshness
from colonies.scheduler import ProcessCallback, Subscription
from colonies.services import Services

log = logging.getLogger("colonies.pubsub")
MAX_FRAME = 1024 * 1024


async def pubsub(ws: WebSocket) -> None:
    s: Services = ws.app.state.services
    fresh: Freshness | None = getattr(ws.app.state, "api", None) and ws.app.state.api.fresh
    await ws.accept()
    outbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
    cancels: list[Callable[[], object]] = []
    loop = asyncio.get_running_loop()
    deadline: list[float] = [0.0]

    def push(p: Process) -> None:
        try:
            outbox.put_nowait(envelope.encode_reply("subscribeprocessmsg", p))
        except asyncio.QueueFull:
            log.warning("subscriber too slow; dropping an event")

    async def reader() -> None:
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            try:
                await _subscribe(s, _text(frame), push, cancels, deadline, loop.time(), outbox.put, fresh)
            except ColoniesError as exc:
                await outbox.put(envelope.encode_error(exc))
            except Exception as exc:
                log.exception("internal error handling a /pubsub frame")
                await outbox.put(envelope.encode_error(Internal(f"internal error: {type(exc).__name__}")))

    async def writer() -> None:
        while True:
            await ws.send_text((await outbox.get()).decode())

    async def timer() -> None:
        while True:
            wait = deadline[0] - loop.time() if deadline[0] else 1.0
            if deadline[0] and wait <= 0:
                return
            await asyncio.sleep(min(max(wait, 0.0), 1.0))

    tasks = [asyncio.create_task(t()) for t in (reader, writer, timer)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.debug("/pubsub connection ended: %r", t.exception())  # a send to a closed socket
        for cancel in cancels:
            cancel()
        # Flush what was already queued, then close.
        try:
            while not outbox.empty():
                await ws.send_text(outbox.get_nowait().decode())
            await ws.close()
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass


def _text(frame: Message) -> str:
    """A frame's text: a text frame, or a binary one holding UTF-8 (400 otherwise, or past MAX_FRAME)."""
    text = frame.get("text")
    if text is None:
        try:
            text = (frame.get("bytes") or b"").decode()
        except UnicodeDecodeError:
            raise BadRequest("a /pubsub frame must be UTF-8 text") from None
    if len(text) > MAX_FRAME:
        raise BadRequest("frame too large")
    return str(text)


async def _follow_channel(channel: Channel | None, msg: m.SubscribeChannelMsg,
                          push_raw: Callable[[bytes], Awaitable[None]]) -> None:
    """Replay entries after `afterseq`, push new ones as they come, then `[]` at the timeout or when
    the channel is freed (its process ended; colonies.channels)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + (msg.timeout if msg.timeout > 0 else 30)
    seq = msg.afterseq
    while channel is not None:
        changed = channel.changed()
        entries = channel.after(seq)
        if entries:
            seq = max(e.sequence for e in entries)
            await push_raw(envelope.encode_reply("subscribechannelmsg", entries))
        remaining = end - loop.time()
        if remaining <= 0 or channel.closed:
            break
        try:
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            pass
    await push_raw(envelope.encode_reply("subscribechannelmsg", []))


async def _subscribe(s: Services, text: str, push: ProcessCallback, cancels: list[Callable[[], object]],
                     deadline: list[float], now: float, push_raw: Callable[[bytes], Awaitable[None]],
                     fresh: Freshness | None = None) -> None:
    _, msg, signer = envelope.open_request(text)
    if fresh is not None and fresh.needed(msg):
        await fresh.check(msg, signer)
    if isinstance(msg, m.SubscribeProcessMsg):
        p = await s.storage.get_process(msg.processid)
        if p is None:
            raise NotFound(f"process {msg.processid} not found")
        await s.guard.member(signer, p.spec.conditions.colonyname)
        etype = msg.executortype or p.spec.conditions.executortype
        sub = Subscription(colony=p.spec.conditions.colonyname, executor_type=etype, state=msg.state,
                           callback=push, process_id=p.processid)
        cancels.append(s.bus.subscribe(sub))
        if p.state == msg.state:
            push(p)
    elif isinstance(msg, m.SubscribeProcessesMsg):
        await s.guard.member(signer, msg.colonyname)
        sub = Subscription(colony=msg.colonyname, executor_type=msg.executortype, state=msg.state,
                           callback=push)
        cancels.append(s.bus.subscribe(sub))
    elif isinstance(msg, m.SubscribeChannelMsg):
        from colonies.server.handlers_channels import channel_process

        p = await channel_process(s, signer, msg.processid)
        channel = s.channels.find(p, msg.name)
        if channel is None and p.state not in ENDED:
            channel = s.channels.open(p, msg.name)
        task = asyncio.create_task(_follow_channel(channel, msg, push_raw))
        cancels.append(task.cancel)
        return
    else:
        raise BadRequest(f"{msg.msgtype} is not a subscription")
    deadline[0] = max(deadline[0], now + max(msg.timeout, 0)) if msg.timeout > 0 else (deadline[0] or now)

