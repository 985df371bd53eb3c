"""POST /api driven in-process: the pipeline of §1.2 and the error envelopes of §1.3."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from colonies.protocol import crypto
from tests.inproc import app_client, assert_error, decoded, new_key, post, raw_envelope, signed


@pytest.fixture
def admin_key() -> str:
    return new_key()


def test_health(tmp_path: Path) -> None:
    with app_client(tmp_path) as tc:
        r = tc.get("/health")
        assert r.status_code == 200


@pytest.mark.parametrize("body", [b"not json", b"{", b"[1,2]", b'{"payloadtype": 1}', b""])
def test_malformed_json_is_400_error_envelope(tmp_path: Path, body: bytes) -> None:
    with app_client(tmp_path) as tc:
        assert_error(tc.post("/api", content=body), 400)


def test_msgtype_mismatch_is_400(tmp_path: Path, admin_key: str) -> None:
    payload = base64.b64encode(b'{"msgtype":"getcolonymsg"}').decode()
    with app_client(tmp_path, admin_key) as tc:
        msg = assert_error(tc.post("/api", content=raw_envelope("getcoloniesmsg", payload,
                                                                crypto.sign(payload, admin_key))), 400)
        assert "does not match" in msg


def test_unknown_payloadtype_is_403(tmp_path: Path, admin_key: str) -> None:
    with app_client(tmp_path, admin_key) as tc:
        assert_error(post(tc, {"msgtype": "getnodemsg"}, admin_key), 403)
        assert_error(post(tc, {"msgtype": "nosuchthingmsg"}, admin_key), 403)


@pytest.mark.parametrize("signature", ["", "00" * 65, "zz" * 65, "ab" * 64])
def test_bad_signature_is_403(tmp_path: Path, admin_key: str, signature: str) -> None:
    payload = base64.b64encode(b'{"msgtype":"getcoloniesmsg"}').decode()
    with app_client(tmp_path, admin_key) as tc:
        assert_error(tc.post("/api", content=raw_envelope("getcoloniesmsg", payload, signature)), 403)


def test_signed_by_server_owner_is_200(tmp_path: Path, admin_key: str) -> None:
    with app_client(tmp_path, admin_key) as tc:
        r = post(tc, {"msgtype": "getcoloniesmsg"}, admin_key)
        assert r.status_code == 200
        assert decoded(r) == ("getcoloniesmsg", [], False)
        assert_error(post(tc, {"msgtype": "getcoloniesmsg"}, new_key()), 403)


def test_version_unsigned(tmp_path: Path) -> None:
    with app_client(tmp_path, build_version="1.2.3") as tc:
        r = tc.post("/api", content=raw_envelope("versionmsg", b'{"msgtype":"versionmsg"}'))
        assert r.status_code == 200
        ptype, payload, error = decoded(r)
        assert (ptype, error) == ("versionmsg", False)
        assert payload["buildversion"] == "1.2.3" and payload["msgtype"] == "versionmsg"


def test_server_info_unsigned(tmp_path: Path) -> None:
    with app_client(tmp_path) as tc:
        r = tc.post("/api", content=raw_envelope("getserverinfomsg", b"{}"))
        assert r.status_code == 200
        ptype, payload, _ = decoded(r)
        assert ptype == "getserverinfomsg"
        assert payload["backends"][0]["type"] == "http"


def test_body_over_limit_is_413(tmp_path: Path, admin_key: str) -> None:
    with app_client(tmp_path, admin_key, max_body_bytes=1000) as tc:
        big = {"msgtype": "getcolonymsg", "colonyname": "x" * 2000}
        assert_error(post(tc, big, admin_key), 413)
        # Streamed without a content-length, the limit still holds.
        body = signed(big, admin_key)
        r = tc.post("/api", content=iter([body[:500], body[500:]]))
        assert_error(r, 413)
        # Under the limit, the same server answers normally.
        assert post(tc, {"msgtype": "getcoloniesmsg"}, admin_key).status_code == 200


def test_wrong_field_type_is_400(tmp_path: Path, admin_key: str) -> None:
    with app_client(tmp_path, admin_key) as tc:
        assert_error(post(tc, {"msgtype": "getcolonymsg", "colonyname": 5}, admin_key), 400)


def test_payload_not_base64_is_400(tmp_path: Path, admin_key: str) -> None:
    with app_client(tmp_path, admin_key) as tc:
        payload = "!!!notbase64"
        r = tc.post("/api", content=raw_envelope("getcoloniesmsg", payload, crypto.sign(payload, admin_key)))
        assert_error(r, 400)


def test_non_post_is_refused(tmp_path: Path) -> None:
    with app_client(tmp_path) as tc:
        r = tc.get("/api")
        assert r.status_code == 405
        assert json.loads(base64.b64decode(r.json()["payload"]))["status"] == 405


def test_submit_assign_close_in_process(tmp_path: Path, admin_key: str) -> None:
    colony_key, exe_key = new_key(), new_key()
    with app_client(tmp_path, admin_key) as tc:
        assert post(tc, {"msgtype": "addcolonymsg", "colony": {"colonyid": crypto.id_of(colony_key),
                                                                "name": "c"}}, admin_key).status_code == 200
        exe = {"colonyname": "c", "executorid": crypto.id_of(exe_key), "executorname": "e", "executortype": "t"}
        assert post(tc, {"msgtype": "addexecutormsg", "executor": exe}, colony_key).status_code == 200
        assert post(tc, {"msgtype": "approveexecutormsg", "colonyname": "c", "executorname": "e"},
                    colony_key).status_code == 200
        spec = {"funcname": "f", "conditions": {"colonyname": "c", "executortype": "t"}}
        r = post(tc, {"msgtype": "submitfuncspecmsg", "spec": spec}, exe_key)
        _, p, _ = decoded(r)
        assert p["state"] == 0 and p["spec"]["args"] == [] and p["errors"] == []
        r = post(tc, {"msgtype": "assignprocessmsg", "colonyname": "c", "timeout": -1}, exe_key)
        assert decoded(r)[1]["processid"] == p["processid"]
        assert post(tc, {"msgtype": "closesuccessfulmsg", "processid": p["processid"], "out": [1]},
                    exe_key).status_code == 200
        _, got, _ = decoded(post(tc, {"msgtype": "getprocessmsg", "processid": p["processid"]}, exe_key))
        assert got["state"] == 2 and got["out"] == [1]
        assert_error(post(tc, {"msgtype": "assignprocessmsg", "colonyname": "c", "timeout": -1}, exe_key), 404)
        assert_error(post(tc, {"msgtype": "assignprocessmsg", "colonyname": "c", "timeout": 0}, exe_key), 400)


def test_parked_assign_wakes_on_submit(tmp_path: Path, admin_key: str) -> None:
    colony_key, exe_key = new_key(), new_key()
    with app_client(tmp_path, admin_key) as tc:
        post(tc, {"msgtype": "addcolonymsg", "colony": {"colonyid": crypto.id_of(colony_key), "name": "c"}},
             admin_key)
        exe = {"colonyname": "c", "executorid": crypto.id_of(exe_key), "executorname": "e", "executortype": "t"}
        post(tc, {"msgtype": "addexecutormsg", "executor": exe}, colony_key)
        post(tc, {"msgtype": "approveexecutormsg", "colonyname": "c", "executorname": "e"}, colony_key)
        bus = tc.app.state.services.bus  # type: ignore[attr-defined]
        result: list[httpx.Response] = []
        t = threading.Thread(target=lambda: result.append(
            post(tc, {"msgtype": "assignprocessmsg", "colonyname": "c", "timeout": 20}, exe_key)))
        start = time.monotonic()
        t.start()
        deadline = time.monotonic() + 10
        while bus.waiting() == 0:
            assert time.monotonic() < deadline, "assign never parked"
            time.sleep(0.01)
        spec = {"funcname": "f", "conditions": {"colonyname": "c", "executortype": "t"}}
        submitted = decoded(post(tc, {"msgtype": "submitfuncspecmsg", "spec": spec}, exe_key))[1]
        t.join(15)
        assert not t.is_alive()
        assert time.monotonic() - start < 5
        assert decoded(result[0])[1]["processid"] == submitted["processid"]
        assert bus.waiting() == 0
