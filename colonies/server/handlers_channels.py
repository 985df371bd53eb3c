"""Handlers: process channels (append, read); the subscription is served on /pubsub."""

from __future__ import annotations

from typing import Any

from colonies.channels import MsgEntry, check_access
from colonies.errors import NotFound
from colonies.model import Process
from colonies.protocol import messages as m
from colonies.server.handlers_types import Handler
from colonies.server.services import Services


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
    return s.channels.channel(p, msg.name).after(msg.afterseq, msg.limit)


HANDLERS: dict[str, Handler] = {"channelappendmsg": append, "channelreadmsg": read}
