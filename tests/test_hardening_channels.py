"""Issue 10 item 5: channel memory is capped (413 message and colony caps, 429 append rate, oldest
dropped in a full channel) and freed when a process ends, is removed, or its colony is removed.

In-process tests assert on the channel registry (`ChannelHub.stats`), never on RSS; the last test
runs the same story over HTTP and /pubsub against a real server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from colonies.channels import CHANNEL_OVERHEAD, ENTRY_OVERHEAD, ChannelHub, ChannelStats
from colonies.clock import FakeClock
from colonies.config import Config
from colonies.loops.runner import Runner
from colonies.protocol import envelope
from colonies.protocol.crypto import id_of
from colonies.server.app import create_app
from colonies.storage.base import Storage
from colonies.storage.sqlite import SqliteStorage
from tests.conftest import fresh_pg_database, make_server, setup_colony
from tests.inproc import TestClient, assert_error, decoded, new_key, post, signed

A, B, TYPE = "chan-a", "chan-b", "t"
EMPTY = ChannelStats(processes=0, channels=0, bytes=0)
BACKENDS = ["sqlite", "postgresql"]  # where freeing reads storage (removals, the sweep, process ends)


@dataclass
class Env:
    tc: TestClient
    clock: FakeClock
    storage: Storage
    server: str
    owner: str
    user: str
    exe: str
    user_b: str

    @property
    def hub(self) -> ChannelHub:
        hub: ChannelHub = self.tc.app.state.services.channels  # type: ignore[attr-defined]
        return hub

    def ok(self, msg: dict[str, Any], key: str) -> Any:
        resp = post(self.tc, msg, key)
        assert resp.status_code == 200, resp.text
        return decoded(resp)[1]


def _colony(env_tc: TestClient, server: str, name: str, owner: str, user: str, exe: str) -> None:
    steps: list[tuple[dict[str, Any], str]] = [
        ({"msgtype": "addcolonymsg", "colony": {"colonyid": id_of(owner), "name": name}}, server),
        ({"msgtype": "addusermsg", "user": {"colonyname": name, "userid": id_of(user), "name": "u"}}, owner),
        ({"msgtype": "addexecutormsg", "executor": {"colonyname": name, "executorid": id_of(exe),
                                                    "executorname": "e", "executortype": TYPE}}, owner),
        ({"msgtype": "approveexecutormsg", "colonyname": name, "executorname": "e"}, owner),
    ]
    for msg, key in steps:
        assert post(env_tc, msg, key).status_code == 200


@contextmanager
def channel_app(tmp_path: Path, backend: str = "sqlite", **config: Any) -> Iterator[Env]:
    keys = [new_key() for _ in range(7)]
    server, owner, user, exe, owner_b, user_b, exe_b = keys
    clock = FakeClock()
    with ExitStack() as stack:
        storage: Storage
        if backend == "postgresql":
            from colonies.storage.postgres import PostgresStorage

            storage, cfg = PostgresStorage(dsn=stack.enter_context(fresh_pg_database()).dsn), Config(
                db_type="postgresql", server_id=id_of(server), **config)
        else:
            db = str(tmp_path / "channels.db")
            storage, cfg = SqliteStorage(db), Config(db_path=db, server_id=id_of(server), **config)
        tc = stack.enter_context(TestClient(create_app(cfg, storage, clock=clock, run_loops=False)))
        _colony(tc, server, A, owner, user, exe)
        _colony(tc, server, B, owner_b, user_b, exe_b)
        yield Env(tc, clock, storage, server, owner, user, exe, user_b)


def spec(colony: str = A) -> dict[str, Any]:
    return {"funcname": "f", "channels": ["log"], "maxexectime": -1, "maxwaittime": -1,
            "conditions": {"colonyname": colony, "executortype": TYPE}}


def submit(env: Env, key: str = "", colony: str = A) -> str:
    p = env.ok({"msgtype": "submitfuncspecmsg", "spec": spec(colony)}, key or env.user)
    return str(p["processid"])


def running(env: Env) -> str:
    pid = submit(env)
    assert env.ok({"msgtype": "assignprocessmsg", "colonyname": A, "timeout": -1}, env.exe)["processid"] == pid
    return pid


def append(env: Env, pid: str, key: str, seq: int, payload: bytes | list[int] = b"x") -> httpx.Response:
    body: str | list[int] = base64.b64encode(payload).decode() if isinstance(payload, bytes) else payload
    return post(env.tc, {"msgtype": "channelappendmsg", "processid": pid, "name": "log", "sequence": seq,
                         "payload": body}, key)


def read(env: Env, pid: str, key: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = env.ok({"msgtype": "channelreadmsg", "processid": pid, "name": "log"}, key)
    return entries


def test_a_message_over_the_limit_is_a_413(tmp_path: Path) -> None:
    with channel_app(tmp_path, channel_max_message_bytes=1000) as env:
        pid = running(env)
        assert_error(append(env, pid, env.exe, 1, b"x" * 1001), 413)
        assert_error(append(env, pid, env.exe, 2, [7] * 1001), 413)  # pycolonies' int-array form
        assert append(env, pid, env.exe, 3, b"x" * 1000).status_code == 200
        assert append(env, pid, env.exe, 4, [7] * 1000).status_code == 200
        assert [e["sequence"] for e in read(env, pid, env.user)] == [3, 4]
        assert_error(post(env.tc, {"msgtype": "channelappendmsg", "processid": pid, "name": "log",
                                   "sequence": 5, "payload": "not base64!"}, env.exe), 400)


def test_the_issue_reproduction_is_refused_by_default(tmp_path: Path) -> None:
    """144 appends of 1.3 MB were accepted: with the defaults each is a 413 and nothing is held."""
    with channel_app(tmp_path) as env:
        pid = running(env)
        for seq in range(1, 4):
            assert_error(append(env, pid, env.exe, seq, b"\x00" * 1_300_000), 413)
        assert env.hub.stats().bytes == 0


def test_a_full_channel_drops_its_oldest_messages(tmp_path: Path) -> None:
    cap = CHANNEL_OVERHEAD + 3 * (100 + ENTRY_OVERHEAD)
    with channel_app(tmp_path, channel_max_bytes=cap) as env:
        pid = running(env)
        for seq in range(1, 6):
            assert append(env, pid, env.exe, seq, bytes([seq]) * 100).status_code == 200
        assert [e["sequence"] for e in read(env, pid, env.user)] == [3, 4, 5]
        assert env.hub.stats() == ChannelStats(processes=1, channels=1, bytes=cap)
        assert append(env, pid, env.exe, 2, b"y" * 100).status_code == 200  # a dropped sequence may come again
        assert [e["sequence"] for e in read(env, pid, env.user)] == [4, 5, 2]


def test_a_full_colony_is_a_413_and_other_colonies_still_append(tmp_path: Path) -> None:
    cost = 1000 + ENTRY_OVERHEAD
    with channel_app(tmp_path, channel_colony_max_bytes=CHANNEL_OVERHEAD + 2 * cost + 10,
                     channel_grace_s=0) as env:
        pid = running(env)
        assert append(env, pid, env.exe, 1, b"a" * 1000).status_code == 200
        assert append(env, pid, env.exe, 2, b"b" * 1000).status_code == 200
        message = assert_error(append(env, pid, env.exe, 3, b"c" * 1000), 413)
        assert "colony" in message
        other = submit(env, env.user_b, B)
        assert append(env, other, env.user_b, 1, b"d" * 1000).status_code == 200
        env.ok({"msgtype": "closesuccessfulmsg", "processid": pid, "out": []}, env.exe)
        assert env.hub.stats(A) == EMPTY  # the end of the process gave the colony its room back
        assert append(env, submit(env), env.user, 1, b"e" * 1000).status_code == 200


def test_the_append_rate_per_caller_is_a_429(tmp_path: Path) -> None:
    with channel_app(tmp_path, channel_rate=1.0, channel_burst=3) as env:
        pid = running(env)
        for seq in range(1, 4):
            assert append(env, pid, env.user, seq).status_code == 200
        assert "rate" in assert_error(append(env, pid, env.user, 4), 429)
        assert append(env, pid, env.exe, 1).status_code == 200  # another caller has its own budget
        env.clock.advance(1.0)
        assert append(env, pid, env.user, 4).status_code == 200
        assert_error(append(env, pid, env.user, 5), 429)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("end", ["closesuccessfulmsg", "closefailedmsg", "cancelprocessmsg"])
def test_channels_are_freed_when_the_process_ends(tmp_path: Path, end: str, backend: str) -> None:
    with channel_app(tmp_path, backend, channel_grace_s=0) as env:
        pid = running(env)
        assert append(env, pid, env.exe, 1, b"z" * 5000).status_code == 200
        assert append(env, pid, env.user, 1).status_code == 200
        assert env.hub.stats().bytes > 5000
        key = env.user if end == "cancelprocessmsg" else env.exe
        env.ok({"msgtype": end, "processid": pid, "out": [], "errors": ["e"]}, key)
        assert env.hub.stats() == EMPTY
        assert read(env, pid, env.user) == []
        assert "closed" in assert_error(append(env, pid, env.exe, 2), 400)
        assert env.hub.stats() == EMPTY


def test_ended_channels_stay_readable_during_the_grace(tmp_path: Path) -> None:
    with channel_app(tmp_path, channel_grace_s=3600) as env:
        pid = running(env)
        assert append(env, pid, env.exe, 1, b"last words").status_code == 200
        env.ok({"msgtype": "closesuccessfulmsg", "processid": pid, "out": []}, env.exe)
        assert [base64.b64decode(e["payload"]) for e in read(env, pid, env.user)] == [b"last words"]
        assert env.hub.stats().channels == 1
        assert_error(append(env, pid, env.exe, 2), 400)


def test_the_grace_ends_and_the_channel_goes(tmp_path: Path) -> None:
    with channel_app(tmp_path, channel_grace_s=0.05) as env:
        pid = running(env)
        assert append(env, pid, env.exe, 1).status_code == 200
        env.ok({"msgtype": "closesuccessfulmsg", "processid": pid, "out": []}, env.exe)

        async def freed() -> None:
            while env.hub.stats() != EMPTY:
                await asyncio.sleep(0.01)

        env.tc.portal.call(asyncio.wait_for, freed(), 10)  # type: ignore[union-attr]


def _workflow(env: Env) -> tuple[str, str]:
    graph = env.ok({"msgtype": "submitworkflowspecmsg", "spec": {
        "colonyname": A, "functionspecs": [{**spec(), "nodename": "a"}]}}, env.user)
    return str(graph["processgraphid"]), str(graph["processids"][0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("removal", ["removeprocessmsg", "removeallprocessesmsg", "removeprocessgraphmsg",
                                     "removeallprocessgraphsmsg", "removecolonymsg"])
def test_channels_are_freed_when_removed(tmp_path: Path, removal: str, backend: str) -> None:
    with channel_app(tmp_path, backend, channel_grace_s=3600) as env:
        graph_id = ""
        if "graph" in removal:
            graph_id, pid = _workflow(env)
        else:
            pid = submit(env)  # WAITING: the initiator may already write to it
        assert append(env, pid, env.user, 1, b"q" * 3000).status_code == 200
        kept = submit(env, env.user_b, B)
        assert append(env, kept, env.user_b, 1).status_code == 200
        assert env.hub.stats(A).bytes > 3000
        msg: dict[str, Any] = {"msgtype": removal, "processid": pid, "processgraphid": graph_id, "colonyname": A,
                               "state": 0}
        key = {"removeallprocessesmsg": env.owner, "removeallprocessgraphsmsg": env.owner,
               "removecolonymsg": env.server}.get(removal, env.user)
        env.ok(msg, key)
        assert env.hub.stats(A) == EMPTY
        assert env.hub.stats(B).channels == 1  # another colony's channels are untouched


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_sweep_frees_what_no_event_reported(tmp_path: Path, backend: str) -> None:
    """Processes removed or ended where this server did not see it (another replica): the periodic sweep."""
    with channel_app(tmp_path, backend, channel_grace_s=0) as env:
        ended = running(env)
        gone, alive = submit(env), submit(env)
        for pid in (gone, ended, alive):
            assert append(env, pid, env.user, 1).status_code == 200
        portal = env.tc.portal
        assert portal is not None
        portal.call(env.storage.remove_process, gone)
        portal.call(env.storage.finish, ended, id_of(env.exe), True, [], None, env.clock.now_ns())
        assert env.hub.stats().processes == 3
        runner: Runner = env.tc.app.state.runner  # type: ignore[attr-defined]
        portal.call(runner.tick_all)  # the periodic steps, the channel sweep among them
        assert env.hub.stats().processes == 1
        assert len(read(env, alive, env.user)) == 1


# -- over HTTP and /pubsub, against a real server -------------------------------------------------------------
async def _follow_until_end(port: int, pid: str, key: str, close: Any) -> list[list[dict[str, Any]]]:
    """Subscribe to the channel (timeout 600 s), call `close()` once the first frame is in, and collect the
    frames until the end of the stream (`[]`)."""
    frames: list[list[dict[str, Any]]] = []
    msg = {"msgtype": "subscribechannelmsg", "processid": pid, "name": "log", "afterseq": 0, "timeout": 600}
    async with websockets.connect(f"ws://127.0.0.1:{port}/pubsub") as ws:
        await ws.send(envelope.encode_request(msg, key).decode())
        while not frames or frames[-1]:
            raw = await ws.recv()
            _, payload, error = envelope.decode_reply(raw if isinstance(raw, bytes) else raw.encode())
            assert not error, payload
            frames.append(json.loads(payload))
            if len(frames) == 1:
                await asyncio.to_thread(close)
    return frames


@pytest.mark.e2e
def test_limits_and_freeing_over_http(tmp_path: Path) -> None:
    srv = make_server(tmp_path, {"COLONIES_CHANNEL_MAX_MESSAGE_BYTES": "1024", "COLONIES_CHANNEL_RATE": "0.001",
                                 "COLONIES_CHANNEL_BURST": "4", "COLONIES_CHANNEL_GRACE": "0"})
    srv.start()
    try:
        keys = setup_colony(srv)
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            def call(msg: dict[str, Any], key: str) -> httpx.Response:
                return http.post("/api", content=signed(msg, key))

            p = call({"msgtype": "submitfuncspecmsg", "spec": {**spec(keys.name), "conditions": {
                "colonyname": keys.name, "executortype": keys.executor_type}}}, keys.user_prvkey)
            pid = decoded(p)[1]["processid"]
            call({"msgtype": "assignprocessmsg", "colonyname": keys.name, "timeout": 5}, keys.executor_prvkey)

            def add(seq: int, size: int, key: str = keys.user_prvkey) -> httpx.Response:
                return call({"msgtype": "channelappendmsg", "processid": pid, "name": "log", "sequence": seq,
                             "payload": list(b"m" * size)}, key)

            assert_error(add(1, 1_300_000), 413)  # the issue's 1.3 MB message
            for seq in range(1, 5):
                assert add(seq, 1024).status_code == 200
            assert_error(add(5, 10), 429)
            # A subscriber gets the entries, then the end of the stream once the process ends (bounded
            # far below its own 600 s timeout).
            frames = asyncio.run(asyncio.wait_for(_follow_until_end(
                srv.port, pid, keys.user_prvkey,
                lambda: call({"msgtype": "closesuccessfulmsg", "processid": pid, "out": []}, keys.executor_prvkey)),
                60))
            assert [e["sequence"] for e in frames[0]] == [1, 2, 3, 4] and frames[-1] == []
            r = call({"msgtype": "channelreadmsg", "processid": pid, "name": "log"}, keys.user_prvkey)
            assert r.status_code == 200 and decoded(r)[1] == []
            assert_error(add(6, 10, keys.executor_prvkey), 400)
        assert "Traceback" not in (srv.log_path.read_text() if srv.log_path else "")
    finally:
        srv.stop()


def test_freeing_at_the_end_event_does_not_skip_other_subscribers(tmp_path: Path) -> None:
    """The channels are freed from inside the event bus' publish of the end; that must not unhook the
    process' other subscribers (a /pubsub wait for SUCCESS registered after the channel) mid-iteration."""
    with channel_app(tmp_path, channel_grace_s=0) as env:
        pid = running(env)
        assert append(env, pid, env.exe, 1).status_code == 200
        with env.tc.websocket_connect("/pubsub") as ws:
            ws.send_bytes(signed({"msgtype": "subscribeprocessmsg", "processid": pid, "executortype": TYPE,
                                  "state": 2, "timeout": 5}, env.user))
            env.ok({"msgtype": "closesuccessfulmsg", "processid": pid, "out": ["done"]}, env.exe)
            body = json.loads(ws.receive_text())  # the socket closes without a frame at the timeout
            assert body["payloadtype"] == "subscribeprocessmsg" and not body["error"]
            assert json.loads(base64.b64decode(body["payload"]))["out"] == ["done"]
        assert env.hub.stats() == EMPTY
