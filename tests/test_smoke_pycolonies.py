"""A first end-to-end check with pycolonies against a real server."""

from __future__ import annotations

import pycolonies
from pycolonies import Colonies, func_spec

from tests.conftest import ColonyKeys, ServerProc


def test_submit_assign_close(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    spec = func_spec("echo", ["a", 1], colony.name, colony.executor_type)
    p = c.submit_func_spec(spec, colony.user_prvkey)
    assert p.state == 0
    got = c.assign(colony.name, 5, colony.executor_prvkey)
    assert got.processid == p.processid
    assert got.state == 1
    c.close(got.processid, ["done"], colony.executor_prvkey)
    final = c.get_process(p.processid, colony.user_prvkey)
    assert final.state == 2
    assert final.output == ["done"]
    assert pycolonies is not None
