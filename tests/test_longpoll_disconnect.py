"""A long-poll whose client went away must not take work: the process stays for a live executor."""

from __future__ import annotations

import time

import httpx
import pytest

from colonies.client import Client, func_spec
from colonies.client.core import ClientCore, signed_envelope
from tests.conftest import ColonyKeys, ServerProc


def test_abandoned_assign_does_not_claim(server: ServerProc, colony: ColonyKeys) -> None:
    call = ClientCore().assign(colony.name, timeout=10)
    with httpx.Client() as http, pytest.raises(httpx.ReadTimeout):
        http.post(f"{server.url}/api", content=signed_envelope(call.msg, colony.executor_prvkey),
                  timeout=0.5)
    time.sleep(0.3)  # let the server notice the closed connection
    with Client("127.0.0.1", server.port, prvkey=colony.user_prvkey) as user:
        p = user.submit(func_spec("f", colony.name, colony.executor_type))
        time.sleep(0.3)
        assert user.get_process(p.processid).state == 0
        got = user.with_key(colony.executor_prvkey).assign(colony.name, 5)
        assert got.processid == p.processid
