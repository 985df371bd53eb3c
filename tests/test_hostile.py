"""Hostile traffic on a real server: slow-loris senders and many idle connections do not starve a normal
client, and the documented limits (README "Limits") are enforced with clean 400/413 error envelopes.
tests/test_fuzz.py covers malformed envelopes and payloads."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx

from colonies.client.asyncio import AsyncClient
from colonies.client.core import func_spec
from colonies.errors import ClientError
from colonies.server.handlers_processes import MAX_ARGS, MAX_ATTRIBUTE_BYTES
from colonies.server.handlers_schedules import MAX_LOG_BYTES
from tests.conftest import ColonyKeys, ServerProc, make_server, setup_colony

IDLE, SLOW, CALLS = 200, 20, 50


async def _slow_sender(port: int, stop: asyncio.Event) -> int:
    """Send a request's headers one byte every 50 ms, never finishing; returns bytes sent."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 10_000
    sent = 0
    try:
        for byte in head:
            if stop.is_set():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent += 1
            await asyncio.sleep(0.05)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return sent


async def _hostile_scenario(srv: ServerProc, keys: ColonyKeys) -> list[float]:
    idle = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(IDLE)]
    stop = asyncio.Event()
    slow = [asyncio.create_task(_slow_sender(srv.port, stop)) for _ in range(SLOW)]
    latencies: list[float] = []
    try:
        async with AsyncClient("127.0.0.1", srv.port, prvkey=keys.user_prvkey, timeout=5) as c:
            for i in range(CALLS):
                t0 = time.monotonic()
                if i % 2:
                    await c.get_colony(keys.name)
                else:
                    await c.submit(func_spec("echo", keys.name, "nobody-serves-this"))
                latencies.append(time.monotonic() - t0)
    finally:
        stop.set()
        sent = await asyncio.wait_for(asyncio.gather(*slow), 10)
        for _, writer in idle:
            writer.close()
    assert all(n > 0 for n in sent)
    return latencies


def test_slow_loris_and_idle_connections_do_not_starve_others(server: ServerProc, colony: ColonyKeys) -> None:
    latencies = asyncio.run(_hostile_scenario(server, colony))
    latencies.sort()
    assert len(latencies) == CALLS
    assert latencies[-1] < 2.0, f"slowest call {latencies[-1]:.3f}s"
    assert latencies[len(latencies) // 2] < 0.25, f"median {latencies[len(latencies) // 2]:.3f}s"
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def _status(call: Any) -> int:
    try:
        call()
    except ClientError as e:
        return e.status
    return 200


def test_limits_are_clean_400s(server: ServerProc, colony: ColonyKeys) -> None:
    with server.client(colony.user_prvkey) as user, server.client(colony.executor_prvkey) as exe:
        many = func_spec("echo", colony.name, colony.executor_type, args=list(range(MAX_ARGS + 1)))
        assert _status(lambda: user.submit(many)) == 400
        split = func_spec("echo", colony.name, colony.executor_type, args=list(range(MAX_ARGS // 2 + 1)),
                          kwargs={str(i): i for i in range(MAX_ARGS // 2)})
        assert _status(lambda: user.submit(split)) == 400
        ok = user.submit(func_spec("echo", colony.name, colony.executor_type, args=list(range(MAX_ARGS))))
        assert exe.assign(colony.name, 5).processid == ok.processid
        assert _status(lambda: exe.add_attribute(ok.processid, "k", "x" * (MAX_ATTRIBUTE_BYTES + 1))) == 400
        assert _status(lambda: exe.add_attribute(ok.processid, "k" * 257, "v")) == 400
        assert _status(lambda: exe.add_attribute(ok.processid, "k", "x" * MAX_ATTRIBUTE_BYTES)) == 200
        assert _status(lambda: exe.add_log(ok.processid, "x" * (MAX_LOG_BYTES + 1))) == 400
        assert _status(lambda: exe.add_log(ok.processid, "x" * MAX_LOG_BYTES)) == 200
        exe.close(ok.processid, ["done"])


def test_request_body_limit_is_a_413_envelope(tmp_path: Path) -> None:
    srv = make_server(tmp_path, {"COLONIES_MAX_BODY_BYTES": str(64 * 1024)})
    srv.start()
    try:
        keys = setup_colony(srv)
        with srv.client(keys.user_prvkey) as user:
            big = func_spec("echo", keys.name, keys.executor_type, args=["x" * (64 * 1024)])
            assert _status(lambda: user.submit(big)) == 413
            # A declared length over the limit is refused before the body is read.
            r = httpx.post(f"{srv.url}/api", content=b"{" + b" " * (65 * 1024) + b"}", timeout=10)
            assert r.status_code == 413
            env = r.json()
            assert env["error"] is True and json.loads(base64.b64decode(env["payload"]))["status"] == 413
            assert user.get_colony(keys.name).name == keys.name
    finally:
        srv.stop()


def test_server_serves_after_hostile_connections_close(server: ServerProc, colony: ColonyKeys) -> None:
    """Half-sent requests that disconnect leave nothing behind."""
    async def half_requests() -> None:
        for _ in range(100):
            _, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"payloadtype\":")
            await w.drain()
            w.close()
    asyncio.run(half_requests())
    with server.client(colony.user_prvkey) as user:
        assert user.get_colony(colony.name).name == colony.name


async def _closed_within(port: int, send: bytes, limit_s: float) -> float:
    """Open a connection, send `send` (maybe nothing) and wait for the server to close it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    try:
        if send:
            writer.write(send)
            await writer.drain()
        assert await asyncio.wait_for(reader.read(), limit_s) == b""  # EOF: closed without a reply
        return time.monotonic() - t0
    finally:
        writer.close()


def test_header_deadline_closes_silent_and_trickling_connections(tmp_path: Path) -> None:
    """COLONIES_HEADER_TIMEOUT: a connection that never completes its request headers is closed; a
    long-poll and a WebSocket that outlive the deadline are not (the deadline stops at the headers)."""
    from colonies.client.realtime import wait_for

    srv = make_server(tmp_path, {"COLONIES_HEADER_TIMEOUT": "1"})
    srv.start()
    try:
        keys = setup_colony(srv)

        async def scenario() -> None:
            silent = await _closed_within(srv.port, b"", 5)
            partial = await _closed_within(srv.port, b"POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A", 5)
            assert 0.8 < silent < 4 and 0.8 < partial < 4, (silent, partial)
            async with AsyncClient("127.0.0.1", srv.port, prvkey=keys.executor_prvkey, timeout=10) as ex:
                t0 = time.monotonic()
                try:
                    await ex.assign(keys.name, 2)  # parks longer than the header deadline
                except ClientError as e:
                    assert e.status == 404
                assert time.monotonic() - t0 > 1.8
                user = ex.with_key(keys.user_prvkey)
                p = await user.submit(func_spec("echo", keys.name, keys.executor_type))
                watch = asyncio.create_task(wait_for("127.0.0.1", srv.port, keys.user_prvkey, p, 10))
                await asyncio.sleep(2.5)  # the WebSocket outlives the header deadline
                got = await ex.assign(keys.name, 5)
                await ex.close(got.processid, ["ok"])
                done = await watch
                assert done is not None and done.state == 2

        asyncio.run(scenario())
    finally:
        srv.stop()


def test_deep_nesting_and_odd_values_are_clean_400s_without_tracebacks(server: ServerProc, colony: ColonyKeys) -> None:
    """A deeply nested envelope was a plain-text 500 with a traceback in the log (issue 10 item 9). On the
    real server: every hostile body of tests/test_fuzz.py (nesting, invalid UTF-8, huge or non-finite
    numbers) is a 400 error envelope on /api and an error frame on /pubsub, and nothing is logged."""
    import websockets

    from tests.test_fuzz import Keys, deep_envelopes, odd_values

    keys = Keys()
    keys.user = colony.user_prvkey
    bodies = [*deep_envelopes(keys), *odd_values(keys)]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for body in bodies:
            r = http.post("/api", content=body)
            assert r.status_code == 400, (body[:80], r.text[:200])
            env = r.json()
            assert env["error"] is True and json.loads(base64.b64decode(env["payload"]))["status"] == 400

    async def frames() -> list[int]:
        statuses = []
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/pubsub", max_size=None) as ws:
            for body in deep_envelopes(keys):
                await ws.send(body.decode())
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                statuses.append(json.loads(base64.b64decode(reply["payload"]))["status"])
        return statuses

    assert asyncio.run(frames()) == [400] * len(deep_envelopes(keys))
    with server.client(colony.user_prvkey) as c:
        assert c.get_colony(colony.name).name == colony.name
    log = server.log_path.read_text() if server.log_path else ""
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
