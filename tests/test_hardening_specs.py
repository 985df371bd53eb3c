"""Function specs the storage cannot hold, and specs as the Go CLI writes them (issue 10 item 4's tail),
on a real server over loopback, on SQLite and PostgreSQL.

* An integer past int64 anywhere in a spec (maxretries 2**63, conditions.nodes, gpu.count, a memory
  size) is one 400 naming the field, on a direct submit too: PostgreSQL answered 500 (asyncpg DataError).
* A spec without a `channels` key (the Go CLI leaves empty lists out) comes back with `channels: []`:
  `null` made pycolonies fail to parse the process it was assigned.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycolonies import Colonies

from colonies.protocol import crypto
from tests.conftest import ColonyKeys, PgDatabase, ServerProc, make_server, setup_colony


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProc]:
    env: dict[str, str] = {}
    if request.param == "postgresql":
        db: PgDatabase = request.getfixturevalue("pg_database")
        env = {**db.server_env(), "COLONIES_ETCD_ENDPOINTS": ""}
    srv = make_server(tmp_path, env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def go_spec(colony: ColonyKeys, **extra: Any) -> dict[str, Any]:
    """A function spec as the Go CLI sends it: no `channels` key, null lists."""
    spec: dict[str, Any] = {"nodename": "", "funcname": "echo", "args": ["a"], "kwargs": None, "priority": 0,
                            "maxwaittime": -1, "maxexectime": -1, "maxretries": -1, "label": "", "env": None,
                            "conditions": {"colonyname": colony.name, "executortype": colony.executor_type,
                                           "executornames": None, "dependencies": None, "nodes": 0,
                                           "cpu": "", "processespernode": 0, "mem": "", "storage": "",
                                           "gpu": {"name": "", "mem": "", "count": 0, "nodecount": 0},
                                           "walltime": 0}}
    for path, value in extra.items():
        node = spec
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return spec


def submit_raw(server: ServerProc, prvkey: str, spec: dict[str, Any]) -> httpx.Response:
    """Signed as the Go CLI signs (no timestamp or nonce); stdlib json, which writes any size of int."""
    payload = base64.b64encode(json.dumps({"msgtype": "submitfuncspecmsg", "spec": spec}).encode()).decode()
    body = {"payloadtype": "submitfuncspecmsg", "payload": payload, "signature": crypto.sign(payload, prvkey)}
    return httpx.post(f"{server.url}/api", content=json.dumps(body), timeout=10)


@pytest.mark.parametrize(("field", "value", "name"), [
    ("maxretries", 2**63, "maxretries"),
    ("priority", -(2**63) - 1, "priority"),
    ("conditions__nodes", 2**63, "conditions.nodes"),
    ("conditions__gpu__count", 2**64, "conditions.gpu.count"),
    ("conditions__walltime", 2**70, "conditions.walltime"),
    ("conditions__mem", "9000000000Ti", "conditions.mem"),
])
def test_a_value_storage_cannot_hold_is_a_400_naming_it(server: ServerProc, field: str, value: Any,
                                                         name: str) -> None:
    colony = setup_colony(server)
    r = submit_raw(server, colony.user_prvkey, go_spec(colony, **{field: value}))
    assert r.status_code == 400, r.text
    reply = r.json()
    assert reply["error"] is True and reply["payloadtype"] == "error"
    message = json.loads(base64.b64decode(reply["payload"]))["message"]
    assert name in message, message
    # The server keeps serving, and int64's edge itself is accepted.
    ok = submit_raw(server, colony.user_prvkey, go_spec(colony, maxretries=2**63 - 1))
    assert ok.status_code == 200, ok.text


def test_a_go_cli_spec_without_channels_reads_back_as_a_list(server: ServerProc) -> None:
    colony = setup_colony(server)
    r = submit_raw(server, colony.user_prvkey, go_spec(colony))
    assert r.status_code == 200, r.text
    process = json.loads(base64.b64decode(r.json()["payload"]))
    assert process["spec"]["channels"] == []
    # pycolonies parses the process it is assigned (it failed on `channels: null`).
    c = Colonies("127.0.0.1", server.port)
    p = c.assign(colony.name, 10, colony.executor_prvkey)
    assert p.processid == process["processid"] and p.spec.channels == []
