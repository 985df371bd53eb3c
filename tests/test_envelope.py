"""The request/reply envelopes (§1.2, §1.3), without a server."""

from __future__ import annotations

import base64
import json

import pytest

from colonies.errors import BadRequest, Forbidden, NotFound
from colonies.protocol import crypto, envelope

KEY = "fcc79953d8a751bf41db661592dc34d30004b1a651ffa0725b03ac227641499d"


def test_open_request_recovers_signer() -> None:
    body = envelope.encode_request({"msgtype": "getcoloniesmsg"}, KEY)
    req, msg, signer = envelope.open_request(body)
    assert req.payloadtype == "getcoloniesmsg"
    assert msg.msgtype == "getcoloniesmsg"
    assert signer == crypto.id_of(KEY)


def test_signature_covers_the_base64_text() -> None:
    body = json.loads(envelope.encode_request({"msgtype": "getcoloniesmsg"}, KEY))
    assert crypto.recover_id(body["payload"], body["signature"]) == crypto.id_of(KEY)


def test_go_style_decoding_ignores_unknown_keys() -> None:
    body = envelope.encode_request({"msgtype": "getcolonymsg", "colonyname": "c", "extra": [1, 2]}, KEY)
    _, msg, _ = envelope.open_request(body)
    assert msg.colonyname == "c"  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"payloadtype": 5}', b"{}"])
def test_malformed_envelope_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest) as e:
        envelope.open_request(body)
    assert e.value.status == 400


def test_msgtype_mismatch_is_400() -> None:
    payload = base64.b64encode(b'{"msgtype":"getcolonymsg"}').decode()
    body = json.dumps({"payloadtype": "getcoloniesmsg", "payload": payload,
                       "signature": crypto.sign(payload, KEY)})
    with pytest.raises(BadRequest, match="does not match"):
        envelope.open_request(body)


def test_unknown_payloadtype_is_403() -> None:
    body = envelope.encode_request({"msgtype": "nosuchmsg"}, KEY)
    with pytest.raises(Forbidden):
        envelope.open_request(body)


def test_bad_signature_is_403() -> None:
    body = json.loads(envelope.encode_request({"msgtype": "getcoloniesmsg"}, KEY))
    body["signature"] = "00" * 65
    with pytest.raises(Forbidden):
        envelope.open_request(json.dumps(body))


def test_unsigned_types_need_no_signature() -> None:
    payload = base64.b64encode(b'{"msgtype":"versionmsg"}').decode()
    _, msg, signer = envelope.open_request(json.dumps({"payloadtype": "versionmsg", "payload": payload}))
    assert signer == "" and msg.msgtype == "versionmsg"


def test_error_envelope_has_int_status() -> None:
    ptype, payload, error = envelope.decode_reply(envelope.encode_error(NotFound("gone")))
    assert (ptype, error) == ("error", True)
    assert json.loads(payload) == {"status": 404, "message": "gone"}


def test_empty_success_is_e30() -> None:
    body = json.loads(envelope.encode_reply("removecolonymsg", {}))
    assert body == {"payloadtype": "removecolonymsg", "payload": "e30=", "error": False}
