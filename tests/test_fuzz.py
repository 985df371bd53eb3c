"""Hostile input never breaks /api: every answer is a success or an error envelope with a protocol
status (never 500), and the server keeps serving. Bounded so the file runs in well under a minute."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonies.protocol.crypto import generate_prvkey, id_of, sign
from colonies.protocol.messages import REGISTRY
from tests.conftest import ColonyKeys, ServerProc
from tests.inproc import ALLOWED, TestClient, app_client, decoded, post, raw_envelope

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
            "attribute": {"targetid": "3" * 64, "key": "k", "value": "v", "attributetype": 1}}


def field_names(msgtype: str) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(REGISTRY[msgtype]) if f.encode_name != "msgtype"]


@st.composite
def mutated(draw: st.DrawFn, msgtype: str) -> dict[str, Any]:
    msg = base_message(msgtype)
    names = field_names(msgtype) + ["spec.conditions", "spec.args", "spec.kwargs", "spec.priority",
                                    "spec.maxexectime", "spec.conditions.cpu", "spec.conditions.mem",
                                    "spec.conditions.executornames", "spec.env"]
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
