"""Helpers for tests that drive the app in-process with Starlette's TestClient."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

with warnings.catch_warnings():
    # Starlette 1.x prefers the `httpx2` fork for its TestClient; plain httpx still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient as TestClient  # noqa: PLC0414 - re-exported for the tests

from colonies.config import Config
from colonies.protocol import envelope
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.server.app import create_app
from colonies.storage.sqlite import SqliteStorage

ALLOWED = {200, 400, 403, 404, 408, 409, 413, 429, 503}


@contextmanager
def app_client(tmp_path: Path, server_prvkey: str = "", **config: Any) -> Iterator[TestClient]:
    """A TestClient over a fresh app and SQLite file; the lifespan runs for the `with` block."""
    db = str(tmp_path / "inproc.db")
    cfg = Config(db_path=db, server_id=id_of(server_prvkey) if server_prvkey else "", **config)
    with TestClient(create_app(cfg, SqliteStorage(db), run_loops=False)) as tc:
        yield tc


def signed(msg: dict[str, Any], prvkey: str) -> bytes:
    return envelope.encode_request(msg, prvkey)


def raw_envelope(payloadtype: str, payload: bytes | str, signature: str = "") -> bytes:
    text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
    return json.dumps({"payloadtype": payloadtype, "payload": text, "signature": signature}).encode()


def decoded(resp: httpx.Response) -> tuple[str, Any, bool]:
    """(payloadtype, decoded payload JSON, error flag) of a reply envelope."""
    body = resp.json()
    return body["payloadtype"], json.loads(base64.b64decode(body["payload"])), body["error"]


def assert_error(resp: httpx.Response, status: int) -> str:
    """The reply is an error envelope with this HTTP and payload status; returns the message."""
    assert resp.status_code == status, resp.text
    ptype, payload, error = decoded(resp)
    assert (ptype, error) == ("error", True)
    assert payload["status"] == status and isinstance(payload["status"], int)
    return str(payload["message"])


def post(tc: TestClient, msg: dict[str, Any], prvkey: str) -> httpx.Response:
    resp: httpx.Response = tc.post("/api", content=signed(msg, prvkey))
    return resp


def new_key() -> str:
    return generate_prvkey()
