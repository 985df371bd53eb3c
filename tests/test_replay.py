"""Replay protection (colonies.replay): a signed request carrying a timestamp and a nonce is accepted
once, within the window; old SDKs (no fields) are accepted by default and refused in strict mode."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from pycolonies import Colonies
from pycolonies import func_spec as py_func_spec

from colonies.client.core import func_spec, signed_envelope
from colonies.client.realtime import wait_for
from colonies.protocol import crypto
from colonies.protocol.crypto import id_of
from colonies.storage.postgres import PostgresStorage
from colonies.storage.sqlite import SqliteStorage
from tests.conftest import ColonyKeys, PgDatabase, ServerProc, make_server, setup_colony

NS = 1_000_000_000


def signed(msg: dict[str, Any], prvkey: str) -> bytes:
    """Exactly what our SDK sends: the payload stamped with a timestamp and nonce, then signed."""
    return signed_envelope(msg, prvkey)


def raw_signed(payload: dict[str, Any], prvkey: str) -> bytes:
    """A request with the payload as given (no stamping)."""
    b64 = base64.b64encode(json.dumps(payload).encode()).decode()
    return json.dumps({"payloadtype": payload["msgtype"], "payload": b64,
                       "signature": crypto.sign(b64, prvkey)}).encode()


def post(srv: ServerProc, body: bytes) -> tuple[int, dict[str, Any]]:
    r = httpx.post(f"{srv.url}/api", content=body, timeout=10)
    env = r.json()
    payload = json.loads(base64.b64decode(env["payload"]))
    if r.status_code != 200:
        assert env["error"] is True and env["payloadtype"] == "error" and payload["status"] == r.status_code
    return r.status_code, payload


def test_captured_request_replayed_is_refused(server: ServerProc, colony: ColonyKeys) -> None:
    body = signed({"msgtype": "getcolonymsg", "colonyname": colony.name}, colony.user_prvkey)
    assert post(server, body)[0] == 200
    status, failure = post(server, body)
    assert status == 403 and "replay" in failure["message"]
    # A replayed submit creates nothing: one process, not two.
    submit = signed({"msgtype": "submitfuncspecmsg",
                     "spec": {"funcname": "f", "maxexectime": -1, "maxwaittime": -1, "maxretries": -1,
                              "conditions": {"colonyname": colony.name, "executortype": "test"}}},
                    colony.user_prvkey)
    assert post(server, submit)[0] == 200
    for _ in range(3):
        assert post(server, submit)[0] == 403
    with server.client(colony.user_prvkey) as c:
        assert len(c.get_processes(colony.name, state=0)) == 1


def test_timestamps_outside_the_window_are_refused(server: ServerProc, colony: ColonyKeys) -> None:
    now = time.time_ns()
    base = {"msgtype": "getcolonymsg", "colonyname": colony.name}
    for ts in (now - 301 * NS, now + 301 * NS, 1):
        status, failure = post(server, raw_signed({**base, "timestamp": ts, "nonce": f"{ts:032x}"},
                                                  colony.user_prvkey))
        assert status == 403 and "window" in failure["message"]
    assert post(server, raw_signed({**base, "timestamp": now - 200 * NS, "nonce": "a" * 32},
                                   colony.user_prvkey))[0] == 200


@pytest.mark.parametrize("fields", [{"nonce": "b" * 32}, {"timestamp": "now"}, {"nonce": "short", "timestamp": 0},
                                    {"nonce": "c" * 200}])
def test_malformed_fresh_fields_are_refused(server: ServerProc, colony: ColonyKeys,
                                            fields: dict[str, Any]) -> None:
    if fields.get("timestamp") == 0:
        fields = {**fields, "timestamp": time.time_ns()}
    status, _ = post(server, raw_signed({"msgtype": "getcolonymsg", "colonyname": colony.name, **fields},
                                        colony.user_prvkey))
    assert status in (400, 403)  # a string timestamp is a payload type error (400), the rest 403


def test_pycolonies_works_by_default(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    p = c.submit_func_spec(py_func_spec("echo", ["x"], colony.name, colony.executor_type), colony.user_prvkey)
    assert c.assign(colony.name, 5, colony.executor_prvkey).processid == p.processid
    c.close(p.processid, ["ok"], colony.executor_prvkey)
    # The same unstamped request twice is accepted (the original protocol's behaviour).
    body = raw_signed({"msgtype": "getcolonymsg", "colonyname": colony.name}, colony.user_prvkey)
    assert post(server, body)[0] == post(server, body)[0] == 200


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[ServerProc]:
    srv = make_server(tmp_path, {"COLONIES_REQUIRE_FRESH_SIGNATURES": "true", "COLONIES_REPLAY_WINDOW": "60"})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_strict_mode_refuses_pycolonies_and_serves_our_sdk(strict: ServerProc) -> None:
    keys = setup_colony(strict)  # our SDK, through every admin call
    c = Colonies("127.0.0.1", strict.port)
    with pytest.raises(Exception, match="403|timestamp"):
        c.submit_func_spec(py_func_spec("echo", ["x"], keys.name, keys.executor_type), keys.user_prvkey)
    body = raw_signed({"msgtype": "getcolonymsg", "colonyname": keys.name}, keys.user_prvkey)
    status, failure = post(strict, body)
    assert status == 403 and "COLONIES_REQUIRE_FRESH_SIGNATURES" in failure["message"]
    # Unsigned calls stay open.
    assert post(strict, raw_signed({"msgtype": "versionmsg"}, keys.user_prvkey))[0] == 200

    with strict.client(keys.user_prvkey) as user, strict.client(keys.executor_prvkey) as exe:
        p = user.submit(func_spec("echo", keys.name, keys.executor_type, args=["x"]))
        assert exe.assign(keys.name, 5).processid == p.processid
        exe.close(p.processid, ["done"])
        # The realtime client stamps its subscription frames too.
        got = asyncio.run(wait_for("127.0.0.1", strict.port, keys.user_prvkey, p, 5))
        assert got is not None and got.state == 2 and got.output == ["done"]


def test_a_request_replayed_on_another_replica_is_refused(tmp_path: Path, pg_database: PgDatabase) -> None:
    """Two replicas on one PostgreSQL database: the nonce store is shared, not per process."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_server(tmp_path / "a", pg_database.server_env())
    second = make_server(tmp_path / "b", {**pg_database.server_env(), "COLONIES_SERVER_ID": id_of(first.server_prvkey)})
    first.start()
    try:
        second.start()
        try:
            keys = setup_colony(first)
            body = signed({"msgtype": "getcolonymsg", "colonyname": keys.name}, keys.user_prvkey)
            assert post(first, body)[0] == 200
            assert post(second, body)[0] == 403
            fresh = signed({"msgtype": "getcolonymsg", "colonyname": keys.name}, keys.user_prvkey)
            assert post(second, fresh)[0] == 200
            assert post(first, fresh)[0] == 403
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_replay_after_a_restart_is_refused(tmp_path: Path) -> None:
    """SQLite batches nonce writes; a stop (and a write's own transaction) still persists them."""
    srv = make_server(tmp_path)
    srv.start()
    try:
        keys = setup_colony(srv)
        read = signed({"msgtype": "getcolonymsg", "colonyname": keys.name}, keys.user_prvkey)
        assert post(srv, read)[0] == 200
        spec = msgspec.to_builtins(func_spec("f", keys.name, keys.executor_type))
        write = signed({"msgtype": "submitfuncspecmsg", "spec": spec}, keys.user_prvkey)
        assert post(srv, write)[0] == 200
        srv.kill9()  # the submit's nonce committed with the submit itself
        srv.start()
        assert post(srv, write)[0] == 403
        srv.stop()  # a clean stop writes the read's nonce too, if no timer did
        srv.start()
        assert post(srv, read)[0] == 403
    finally:
        srv.stop()


async def _nonce_contract(store: Any) -> None:
    await store.open()
    try:
        now = time.time_ns()
        assert await store.remember_nonce("n1" * 8, "s1", now + 10 * NS)
        assert not await store.remember_nonce("n1" * 8, "s1", now + 10 * NS)
        assert await store.remember_nonce("n1" * 8, "s2", now + 10 * NS)  # another signer's nonce
        assert await store.remember_nonce("n2" * 8, "s1", now - NS)
        await store.purge_nonces(now)
        assert await store.remember_nonce("n2" * 8, "s1", now + NS)     # the expired one was purged
        assert not await store.remember_nonce("n1" * 8, "s1", now + NS)  # the live one was kept
    finally:
        await store.close()


def test_nonce_store_sqlite(tmp_path: Path) -> None:
    asyncio.run(_nonce_contract(SqliteStorage(str(tmp_path / "n.db"))))


def test_nonce_store_postgresql(pg_database: PgDatabase) -> None:
    asyncio.run(_nonce_contract(PostgresStorage(dsn=pg_database.dsn)))


def test_our_sdk_requests_are_stamped() -> None:
    env = json.loads(signed_envelope({"msgtype": "getcolonymsg", "colonyname": "c"}, ""))
    payload = json.loads(base64.b64decode(env["payload"]))
    assert abs(payload["timestamp"] - time.time_ns()) < 5 * NS and len(payload["nonce"]) == 32
    again = json.loads(base64.b64decode(json.loads(signed_envelope(payload, ""))["payload"]))
    assert again["nonce"] != payload["nonce"]
