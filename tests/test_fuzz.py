"""Hostile input never breaks /api: every answer is a success or an error envelope with a protocol
status (never 500), and the server keeps serving. Bounded so the file runs in well under a minute."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonies.protocol.crypto import generate_prvkey, id_of, sign
from colonies.protocol.envelope import MAX_DEPTH
from colonies.protocol.messages import REGISTRY
from tests.conftest import ColonyKeys, ServerProc
from tests.inproc import ALLOWED, TestClient, app_client, assert_error, decoded, post, raw_envelope, signed

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
COLONY, TYPE = "fuzz", "t"
DEEP = 100_000

EDGE_INTS = [2**31, 2**53 + 1, 10**11, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                         st.sampled_from(EDGE_INTS),
                         st.floats(allow_nan=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


class Keys:
    def __init__(self) -> None:
        self.server, self.owner, self.user, self.exe = (generate_prvkey() for _ in range(4))
        self.stranger = generate_prvkey()

    def all(self) -> list[str]:
        return [self.server, self.owner, self.user, self.exe, self.stranger]


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def tc(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("fuzz"), keys.server) as client:
        post(client, {"msgtype": "addcolonymsg", "colony": {"colonyid": id_of(keys.owner), "name": COLONY}},
             keys.server)
        post(client, {"msgtype": "addusermsg", "user": {"colonyname": COLONY, "userid": id_of(keys.user),
                                                         "name": "u"}}, keys.owner)
        post(client, {"msgtype": "addexecutormsg", "executor": {
            "colonyname": COLONY, "executorid": id_of(keys.exe), "executorname": "e", "executortype": TYPE}},
            keys.owner)
        post(client, {"msgtype": "approveexecutormsg", "colonyname": COLONY, "executorname": "e"}, keys.owner)
        yield client


def check(resp: httpx.Response) -> None:
    """A protocol answer: allowed status, a reply envelope, and error status == HTTP status."""
    assert resp.status_code in ALLOWED, (resp.status_code, resp.text[:500])
    ptype, payload, error = decoded(resp)
    assert error == (resp.status_code != 200)
    if error:
        assert ptype == "error" and payload["status"] == resp.status_code


def base_message(msgtype: str) -> dict[str, Any]:
    """A plausible message of any type: Go-style decoding ignores the fields a type lacks."""
    spec = {"nodename": "n", "funcname": "f", "args": [1, "a"], "maxexectime": -1, "maxwaittime": -1,
            "maxretries": -1, "conditions": {"colonyname": COLONY, "executortype": TYPE}}
    return {"msgtype": msgtype, "colonyname": COLONY, "executorname": "e", "name": "u", "timeout": -1,
            "count": 5, "state": 0, "spec": {**spec, "colonyname": COLONY, "functionspecs": [spec]},
            "colony": {"colonyid": "0" * 64, "name": "other"},
            "executor": {"colonyname": COLONY, "executorid": "1" * 64, "executorname": "x", "executortype": TYPE},
            "user": {"colonyname": COLONY, "userid": "2" * 64, "name": "x"},
            "fun": {"colonyname": COLONY, "executorname": "e", "funcname": "g"},
            "attribute": {"targetid": "3" * 64, "key": "k", "value": "v", "attributetype": 1},
            "namespace": COLONY, "blueprintname": "b", "status": {"ready": 1}, "blueprintid": "4" * 64,
            "blueprintdefinition": {"metadata": {"name": "d", "colonyname": COLONY}, "spec": {
                "names": {"kind": "K"}, "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
                "handler": {"executorType": "r", "functionName": "reconcile"}}},
            "blueprint": {"kind": "K", "metadata": {"name": "b", "colonyname": COLONY}, "spec": {"n": 1}}}


def field_names(msgtype: str) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(REGISTRY[msgtype]) if f.encode_name != "msgtype"]


@st.composite
def mutated(draw: st.DrawFn, msgtype: str) -> dict[str, Any]:
    msg = base_message(msgtype)
    names = field_names(msgtype) + ["spec.conditions", "spec.args", "spec.kwargs", "spec.priority",
                                    "spec.maxexectime", "spec.conditions.cpu", "spec.conditions.mem",
                                    "spec.conditions.executornames", "spec.env", "blueprint.spec",
                                    "blueprint.metadata", "blueprint.status", "blueprintdefinition.spec.schema",
                                    "blueprintdefinition.spec.handler", "blueprintdefinition.metadata"]
    for path in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)):
        target = msg
        *parents, leaf = path.split(".")
        for p in parents:
            if not isinstance(target.get(p), dict):
                break
            target = target[p]
        else:
            target[leaf] = draw(json_values)
    if msg.get("timeout") not in (None, -1) and isinstance(msg["timeout"], int) and msg["timeout"] > 0:
        msg["timeout"] = -1  # a positive timeout is a legitimate long-poll; keep the run bounded
    return msg


@SETTINGS
@given(body=st.binary(max_size=300))
def test_random_bytes(tc: TestClient, body: bytes) -> None:
    check(tc.post("/api", content=body))


@SETTINGS
@given(value=json_values)
def test_random_json(tc: TestClient, value: Any) -> None:
    check(tc.post("/api", content=json.dumps(value)))


@SETTINGS
@given(payloadtype=st.one_of(st.sampled_from(sorted(REGISTRY)), st.text(max_size=20)),
       payload=json_values, key_index=st.integers(0, 4))
def test_random_payloads_validly_signed(tc: TestClient, keys: Keys, payloadtype: str, payload: Any,
                                        key_index: int) -> None:
    if isinstance(payload, dict) and "timeout" in payload:
        payload["timeout"] = -1
    text = base64.b64encode(json.dumps(payload).encode()).decode()
    check(tc.post("/api", content=raw_envelope(payloadtype, text, sign(text, keys.all()[key_index]))))


@pytest.mark.parametrize("msgtype", sorted(REGISTRY))
def test_every_payloadtype_with_mutated_fields(tc: TestClient, keys: Keys, msgtype: str) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(msg=mutated(msgtype), key_index=st.integers(0, 4))
    def run(msg: dict[str, Any], key_index: int) -> None:
        check(post(tc, msg, keys.all()[key_index]))

    run()


def deep_envelopes(keys: Keys) -> list[bytes]:
    """Nesting the decoder skips (unknown fields) and nesting past MAX_DEPTH in a known one: these were a
    plain-text 500 (RecursionError) or accepted into storage. Each must be a 400 error envelope."""
    deep_list, deep_obj = "[" * DEEP + "]" * DEEP, '{"a":' * DEEP + "1" + "}" * DEEP
    past_limit = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)  # in the message object and spec: MAX_DEPTH + 1
    payloads = [("versionmsg", f'{{"msgtype":"versionmsg","x":{deep_list}}}'),
                ("getcoloniesmsg", f'{{"msgtype":"getcoloniesmsg","x":{deep_obj}}}'),
                ("submitfuncspecmsg", f'{{"msgtype":"submitfuncspecmsg","spec":{{"args":{past_limit}}}}}')]
    bodies = [('{"x":' + deep_list + "}").encode(),
              ('{"payloadtype":"versionmsg","payload":"e30=","y":' + deep_obj + "}").encode()]
    for payloadtype, text in payloads:
        b64 = base64.b64encode(text.encode()).decode()
        bodies.append(raw_envelope(payloadtype, b64, sign(b64, keys.user)))
    return bodies


def odd_values(keys: Keys) -> list[bytes]:
    """Invalid UTF-8, huge and non-finite numbers, in the envelope and in a signed payload: each a 400."""
    bodies = [b'{"payloadtype":"\xff\xfe","payload":"","signature":""}',
              b'{"payloadtype":"versionmsg","payload":1e400}', b'{"payloadtype":NaN}']
    spec = '{"msgtype":"submitfuncspecmsg","spec":{"priority":%s,"conditions":{"colonyname":"' + COLONY + '"}}}'
    for value in ["1e400", "NaN", "-Infinity", "9" * 5000, "-" + "9" * 5000, '"\\ud800"']:
        b64 = base64.b64encode((spec % value).encode()).decode()
        bodies.append(raw_envelope("submitfuncspecmsg", b64, sign(b64, keys.user)))
    bad_utf8 = base64.b64encode(b'{"msgtype":"getcolonymsg","colonyname":"\xff"}').decode()
    bodies.append(raw_envelope("getcolonymsg", bad_utf8, sign(bad_utf8, keys.user)))
    return bodies


def test_deep_nesting_and_odd_values_are_400(tc: TestClient, keys: Keys) -> None:
    for body in [*deep_envelopes(keys), *odd_values(keys)]:
        resp = tc.post("/api", content=body)
        assert resp.status_code == 400, (body[:80], resp.text[:300])
        check(resp)


def test_nesting_up_to_the_limit_is_served(tmp_path: Path, keys: Keys) -> None:
    at_limit = json.loads("[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3))  # + args, spec, message: MAX_DEPTH
    with app_client(tmp_path, keys.server) as fresh:
        post(fresh, {"msgtype": "addcolonymsg", "colony": {"colonyid": id_of(keys.owner), "name": COLONY}},
             keys.server)
        post(fresh, {"msgtype": "addusermsg", "user": {"colonyname": COLONY, "userid": id_of(keys.user),
                                                        "name": "u"}}, keys.owner)
        spec = {"funcname": "deep", "args": [at_limit], "conditions": {"colonyname": COLONY, "executortype": TYPE}}
        resp = post(fresh, {"msgtype": "submitfuncspecmsg", "spec": spec}, keys.user)
        assert resp.status_code == 200, resp.text
        pid = decoded(resp)[1]["processid"]
        got = post(fresh, {"msgtype": "getprocessmsg", "processid": pid}, keys.user)
        assert decoded(got)[1]["spec"]["args"] == [at_limit]
        spec["args"] = [[at_limit]]
        assert "deeper than" in assert_error(post(fresh, {"msgtype": "submitfuncspecmsg", "spec": spec}, keys.user),
                                             400)


def test_pubsub_frames_get_clean_errors(tc: TestClient, keys: Keys) -> None:
    """The same hostile frames on /pubsub: an error frame each (status 400), the socket stays open."""
    frames: list[str | bytes] = [body.decode("utf-8", "replace") for body in deep_envelopes(keys)]
    frames += [b"\xff\xfe{", "{" * DEEP]
    with tc.websocket_connect("/pubsub") as ws:
        for frame in frames:
            ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_text(frame)
            ptype, payload, error = decoded_text(ws.receive_text())
            assert (ptype, error, payload["status"]) == ("error", True, 400), (str(frame)[:80], payload)
        # A binary frame holding UTF-8 is served like text: here, a 404 for a process that does not exist.
        ws.send_bytes(signed({"msgtype": "subscribeprocessmsg", "processid": "0" * 64, "state": 2, "timeout": 1},
                             keys.user))
        ptype, payload, error = decoded_text(ws.receive_text())
        assert (error, payload["status"]) == (True, 404), payload


def decoded_text(frame: str) -> tuple[str, Any, bool]:
    body = json.loads(frame)
    return body["payloadtype"], json.loads(base64.b64decode(body["payload"])), body["error"]


def nasty_bodies(keys: Keys) -> list[bytes]:
    deep = {"msgtype": "submitfuncspecmsg", "spec": {"conditions": {"colonyname": COLONY, "executortype": TYPE}}}
    deep_text = json.dumps(deep).replace('"conditions"', '"args": ' + "[" * DEEP + "]" * DEEP + ', "conditions"')
    deep_payload = base64.b64encode(deep_text.encode()).decode()
    huge = {"msgtype": "submitfuncspecmsg", "spec": {"funcname": "x" * 2_000_000, "label": "y" * 100_000,
                                                      "conditions": {"colonyname": COLONY, "executortype": TYPE}}}
    huge_payload = base64.b64encode(json.dumps(huge).encode()).decode()
    return [
        raw_envelope("submitfuncspecmsg", deep_payload, sign(deep_payload, keys.user)),
        ("[" * DEEP + "]" * DEEP).encode(),
        ('{"payloadtype":' + "[" * DEEP + "]" * DEEP + "}").encode(),
        *deep_envelopes(keys),
        raw_envelope("submitfuncspecmsg", huge_payload, sign(huge_payload, keys.user)),
        raw_envelope("x" * 1_000_000, "e30=", "00" * 65),
        b'{"payloadtype": "getcoloniesmsg", "payload": "' + b"A" * 3_000_000 + b'", "signature": ""}',
    ]


def test_deep_nesting_and_huge_strings(tc: TestClient, keys: Keys) -> None:
    for body in nasty_bodies(keys):
        check(tc.post("/api", content=body))
    # Still serving. (The fuzzing before may legitimately have removed the colony, so ask the server.)
    assert tc.post("/api", content=raw_envelope("versionmsg", b'{"msgtype":"versionmsg"}')).status_code == 200
    assert tc.get("/health").status_code == 200


@pytest.mark.e2e
def test_real_server_survives_hostile_input(server: ServerProc, colony: ColonyKeys) -> None:
    keys = Keys()
    keys.user = colony.user_prvkey
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for body in [*nasty_bodies(keys), b"\x00\xff" * 100, b"{" * 10_000]:
            check(http.post("/api", content=body))
        assert http.get("/health").status_code == 200
    with server.client(colony.user_prvkey) as c:
        assert c.get_colony(colony.name).name == colony.name


def int_paths(msgtype: str) -> list[str]:
    """Dotted paths of the integer fields of a message, one level into nested structs."""
    paths = []
    for f in msgspec.structs.fields(REGISTRY[msgtype]):
        if f.type is int:
            paths.append(f.encode_name)
        elif isinstance(f.type, type) and issubclass(f.type, msgspec.Struct):
            paths += [f"{f.encode_name}.{g.encode_name}" for g in msgspec.structs.fields(f.type) if g.type is int]
    return paths


@pytest.mark.parametrize("msgtype", sorted(m for m in REGISTRY if int_paths(m)))
def test_integer_edges(tc: TestClient, keys: Keys, msgtype: str) -> None:
    """Values at and past int64 in every integer field; then the queue still assigns (no poison pill)."""
    for path in int_paths(msgtype):
        for value in EDGE_INTS:
            if path == "timeout" and value > 0:
                continue
            msg = base_message(msgtype)
            parent, _, leaf = path.rpartition(".")
            target = msg.setdefault(parent, {}) if parent else msg
            target[leaf] = value
            for key in (keys.user, keys.exe, keys.owner, keys.server):
                check(post(tc, msg, key))
    for _ in range(200):
        r = post(tc, {"msgtype": "assignprocessmsg", "colonyname": COLONY, "timeout": -1}, keys.exe)
        check(r)
        if r.status_code != 200:
            break
        pid = decoded(r)[1]["processid"]
        check(post(tc, {"msgtype": "closesuccessfulmsg", "processid": pid, "out": []}, keys.exe))


def test_an_unforeseen_fault_before_the_handler_is_still_an_envelope(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: a bug while opening a request (here a fault injected into the envelope code) is a
    500 error envelope, never uvicorn's plain-text 500."""
    from colonies.protocol import envelope

    def broken(body: bytes | str) -> Any:
        raise ValueError("injected")

    with app_client(tmp_path) as fresh:
        monkeypatch.setattr(envelope, "open_request", broken)
        resp = fresh.post("/api", content=raw_envelope("versionmsg", b'{"msgtype":"versionmsg"}'))
        assert resp.status_code == 500
        ptype, payload, error = decoded(resp)
        assert (ptype, error, payload["status"]) == ("error", True, 500) and "ValueError" in payload["message"]
