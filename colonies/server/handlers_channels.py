"""Handlers: process channels (append, read); the subscription is served on /pubsub.

`CLEANUP` frees channels right after a successful removal (`api.py` calls it): a removed process'
channels go at once, a removed colony's all of them. Ended processes are freed by the event bus
(colonies.channels), and a periodic sweep catches what neither saw.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from colonies.channels import MsgEntry, check_access
from colonies.errors import NotFound
from colonies.model import Process
from colonies.protocol import messages as m
from colonies.server.handlers_types import Handler
from colonies.services import Services


async def channel_process(s: Services, signer: str, process_id: str) -> Process:
    p = await s.storage.get_process(process_id, attributes=False)
    if p is None:
        raise NotFound(f"process {process_id} not found")
    await s.guard.member(signer, p.spec.conditions.colonyname)
    check_access(p, signer)
    return p


async def append(s: Services, signer: str, msg: m.ChannelAppendMsg) -> dict[str, Any]:
    p = await channel_process(s, signer, msg.processid)
    await s.channels.append(p, msg.name, signer, msg.sequence, msg.inreplyto, msg.payload, msg.payloadtype)
    return {}


async def read(s: Services, signer: str, msg: m.ChannelReadMsg) -> list[MsgEntry]:
    p = await channel_process(s, signer, msg.processid)
    ch = s.channels.find(p, msg.name)
    return ch.after(msg.afterseq, msg.limit) if ch is not None else []


HANDLERS: dict[str, Handler] = {"channelappendmsg": append, "channelreadmsg": read}


# -- freeing channels after removals -------------------------------------------------------------------
async def _process_removed(s: Services, msg: m.Msg) -> None:
    assert isinstance(msg, m.RemoveProcessMsg)
    s.channels.forget(msg.processid)


async def _colony_swept(s: Services, msg: m.Msg) -> None:
    assert isinstance(msg, m.RemoveAllProcessesMsg | m.RemoveAllProcessGraphsMsg)
    await s.channels.sweep(s.storage, colony=msg.colonyname)


async def _graph_removed(s: Services, msg: m.Msg) -> None:
    assert isinstance(msg, m.RemoveProcessGraphMsg)
    await s.channels.sweep(s.storage, graph_id=msg.processgraphid)


async def _colony_removed(s: Services, msg: m.Msg) -> None:
    assert isinstance(msg, m.RemoveColonyMsg)
    s.channels.forget_colony(msg.colonyname)


CLEANUP: dict[str, Callable[[Services, m.Msg], Awaitable[None]]] = {
    "removeprocessmsg": _process_removed,
    "removeallprocessesmsg": _colony_swept,
    "removeprocessgraphmsg": _graph_removed,
    "removeallprocessgraphsmsg": _colony_swept,
    "removecolonymsg": _colony_removed,
}
