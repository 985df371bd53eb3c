"""Request and reply envelopes: build and sign a request, open one into (message, signer id), and
encode replies and error replies (§1.2, §1.3)."""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import re
from typing import Any

import msgspec

from colonies.errors import BadRequest, ColoniesError, Forbidden
from colonies.model import Failure
from colonies.protocol import crypto
from colonies.protocol.messages import DECODERS, Msg

UNSIGNED = frozenset({"versionmsg", "getserverinfomsg"})


class RPCRequest(msgspec.Struct):
    payloadtype: str = ""
    payload: str = ""
    signature: str = ""


class RPCReply(msgspec.Struct):
    payloadtype: str
    payload: str
    error: bool


_request_decoder = msgspec.json.Decoder(RPCRequest)
_encoder = msgspec.json.Encoder()
_reply_decoder = msgspec.json.Decoder(RPCReply)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_request(body: bytes | str) -> RPCRequest:
    """Decode the outer envelope; 400 when it is not one."""
    try:
        req = _request_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: msgspec skips an unknown field recursively (a deeply nested `{"x": [[[...`)
        raise BadRequest(f"invalid request envelope: {exc}") from None
    if not req.payloadtype:
        raise BadRequest("invalid request envelope: payloadtype missing")
    return req


MAX_DEPTH = 64  # JSON nesting of a payload (README "Security and limits")
_BRACKETS_ONLY = bytes(range(256)).translate(None, b"[]{}")  # every byte but the brackets, to delete
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_DEPTH_STEP = tuple(1 if c in b"[{" else -1 if c in b"]}" else 0 for c in range(256))


def too_deep(raw: bytes) -> bool:
    """Whether JSON text nests arrays/objects deeper than MAX_DEPTH (invalid JSON may answer either way:
    the decoder refuses it next). Without this a payload nested just under msgspec's recursion limit
    decodes, then fails to encode (a 500) wherever the stack is deeper, for every reader of it.
    Linear and mostly in C: most payloads have too few brackets to be deep at all."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    brackets = _STRINGS.sub(b"", raw).translate(_AS_SQUARE, _BRACKETS_ONLY)
    if b"[" * (MAX_DEPTH + 1) in brackets:
        return True
    peeled = 0
    while peeled < 4 and b"[]" in brackets:  # each pass drops the innermost pairs: wide data shrinks fast
        brackets = brackets.replace(b"[]", b"")
        peeled += 1
    if not brackets:
        return False
    return max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets))) + peeled > MAX_DEPTH


def decode_payload(req: RPCRequest) -> Msg:
    """Decode and type-check the payload for its payloadtype (400 on any mismatch)."""
    decoder = DECODERS.get(req.payloadtype)
    if decoder is None:
        raise Forbidden(f"invalid rpcMsg.PayloadType: {req.payloadtype}")
    try:
        raw = base64.b64decode(req.payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("payload is not valid base64") from None
    if too_deep(raw):
        raise BadRequest(f"invalid {req.payloadtype} payload: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        msg: Msg = decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadRequest(f"invalid {req.payloadtype} payload: {exc}") from None
    if msg.msgtype != req.payloadtype and req.payloadtype != "getserverinfomsg":
        raise BadRequest("msg.MsgType does not match payloadType")
    return msg


def open_request(body: bytes | str) -> tuple[RPCRequest, Msg, str]:
    """Envelope → (envelope, message, signer id). Signer is "" for the unsigned message types."""
    req = parse_request(body)
    if req.payloadtype in UNSIGNED:
        return req, decode_payload(req), ""
    if len(req.payload) <= _CACHE_MAX_PAYLOAD:
        signer = _recover_cached(req.payload, req.signature)
    else:
        signer = crypto.recover_id(req.payload, req.signature)
    return req, decode_payload(req), signer


_CACHE_MAX_PAYLOAD = 2048


@functools.lru_cache(maxsize=8192)
def _recover_cached(payload: str, signature: str) -> str:
    """Recovery is a pure function of (payload, signature); executors resend identical assign polls
    (deterministic signatures), so a small cache skips most recoveries. Failures are not cached."""
    return crypto.recover_id(payload, signature)


def encode_reply(payloadtype: str, obj: Any) -> bytes:
    payload = _b64(_encoder.encode(obj if obj is not None else {}))
    return _encoder.encode(RPCReply(payloadtype, payload, False))


def encode_error(exc: ColoniesError) -> bytes:
    payload = _b64(_encoder.encode(Failure(status=exc.status, message=exc.message)))
    return _encoder.encode(RPCReply("error", payload, True))


def error_body(status: int, message: str) -> bytes:
    payload = _b64(_encoder.encode(Failure(status=status, message=message)))
    return _encoder.encode(RPCReply("error", payload, True))


def encode_request(msg: Any, prvkey: str) -> bytes:
    """Client side: sign a message (a Msg struct or a dict with `msgtype`) into an envelope."""
    raw = _encoder.encode(msg)
    payloadtype = msg["msgtype"] if isinstance(msg, dict) else msg.msgtype
    payload = _b64(raw)
    return _encoder.encode(RPCRequest(payloadtype, payload, crypto.sign(payload, prvkey)))


def decode_reply(body: bytes) -> tuple[str, bytes, bool]:
    """Client side: reply envelope → (payloadtype, payload JSON bytes, is_error)."""
    rep = _reply_decoder.decode(body)
    return rep.payloadtype, base64.b64decode(rep.payload), rep.error
