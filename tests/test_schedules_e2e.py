"""Generators, crons and logs end to end against a real server, with pycolonies and our SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pycolonies import Colonies, ColoniesConnectionError, Workflow, func_spec

from tests.conftest import ColonyKeys, ServerProc, make_server, setup_colony

T = TypeVar("T")
pytestmark = pytest.mark.e2e


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[ServerProc]:
    """A server whose generator and cron loops tick every 100 ms."""
    srv = make_server(tmp_path, {"COLONIES_CRON_CHECKER_PERIOD": "100",
                                 "COLONIES_GENERATOR_CHECKER_PERIOD": "100"})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def poll(what: Callable[[], T | None], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def _workflow(colony: ColonyKeys) -> Workflow:
    f = func_spec("tick", [], colony.name, colony.executor_type)
    return Workflow(colonyname=colony.name, functionspecs=[f])


def test_cron_fires_and_runs_on_demand(fast: ServerProc) -> None:
    colony = setup_colony(fast)
    c = Colonies("127.0.0.1", fast.port)
    cron: dict[str, Any] = c.add_cron("every-second", "@every 1s", True, _workflow(colony), colony.name,
                                      colony.user_prvkey)
    assert cron["waitforprevprocessgraph"] is True  # sent as pycolonies' misspelt key
    assert cron["interval"] == -1 and cron["cronexpression"] == "@every 1s"
    first = poll(lambda: c.get_cron(cron["cronid"], colony.user_prvkey)["prevprocessgraphid"])
    p = c.assign(colony.name, 5, colony.executor_prvkey)
    assert p.processgraphid == first and p.spec.funcname == "tick"
    # The previous graph is RUNNING, so run_cron does not fire; it returns the cron all the same.
    same = c.run_cron(cron["cronid"], colony.user_prvkey)
    assert same["prevprocessgraphid"] == first
    c.close(p.processid, ["out-1"], colony.executor_prvkey)
    second = poll(lambda: (c.get_cron(cron["cronid"], colony.user_prvkey)["prevprocessgraphid"]
                           not in ("", first)) or None)
    assert second
    nxt = c.assign(colony.name, 5, colony.executor_prvkey)
    assert nxt.input == ["out-1"]  # fed the previous graph's leaf output
    assert [x["cronid"] for x in c.get_crons(colony.name, 10, colony.user_prvkey)] == [cron["cronid"]]
    c.del_cron(cron["cronid"], colony.user_prvkey)
    with pytest.raises(ColoniesConnectionError):
        c.get_cron(cron["cronid"], colony.user_prvkey)


def test_run_cron_fires_now(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    cron = c.add_cron("daily", "0 0 3 * * *", False, _workflow(colony), colony.name, colony.user_prvkey)
    with pytest.raises(ColoniesConnectionError):  # not a member: nothing fires
        c.run_cron(cron["cronid"], colony.colony_prvkey)
    ran = c.run_cron(cron["cronid"], colony.user_prvkey)
    assert ran["cronid"] == cron["cronid"] and ran["prevprocessgraphid"]
    p = c.assign(colony.name, 5, colony.executor_prvkey)
    assert p.processgraphid == ran["prevprocessgraphid"]


def test_generators(fast: ServerProc) -> None:
    colony = setup_colony(fast)
    c = Colonies("127.0.0.1", fast.port)
    spec = json.dumps(_workflow(colony).model_dump(by_alias=True))
    g = c.add_generator({"colonyname": colony.name, "name": "gen", "workflowspec": spec, "trigger": 2,
                         "timeout": 0}, colony.user_prvkey)
    assert g["trigger"] == 2 and g["queuesize"] == 0
    with pytest.raises(ColoniesConnectionError):  # trigger 0 is refused (the original panics)
        c.add_generator({"colonyname": colony.name, "name": "bad", "workflowspec": spec, "trigger": 0},
                        colony.user_prvkey)
    assert [x["name"] for x in c.get_generators(colony.name, colony.user_prvkey)] == ["gen"]
    # pycolonies has no pack: use our SDK.
    with fast.client(colony.user_prvkey) as ours:
        for arg in ("x1", "x2", "x3"):
            ours.pack_generator(g["generatorid"], arg)
        assert ours.resolve_generator(colony.name, "gen").generatorid == g["generatorid"]
        p = c.assign(colony.name, 5, colony.executor_prvkey)
        assert p.spec.args == ["x1", "x2"]
        left = ours.get_generator(g["generatorid"])
        assert left.queuesize == 1 and left.checkerperiod == 100
    c.remove_generator(g["generatorid"], colony.user_prvkey)
    assert c.get_generators(colony.name, colony.user_prvkey) in ([], None)


def test_logs(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    c.submit_func_spec(func_spec("work", [], colony.name, colony.executor_type), colony.user_prvkey)
    p = c.assign(colony.name, 5, colony.executor_prvkey)
    for i in range(3):
        c.add_log(p.processid, f"step {i}", colony.executor_prvkey)
    with pytest.raises(ColoniesConnectionError):  # only the assigned executor may log
        c.add_log(p.processid, "intruder", colony.user_prvkey)
    logs = c.get_process_log(colony.name, p.processid, 100, 0, colony.user_prvkey)
    assert [x["message"] for x in logs] == ["step 0", "step 1", "step 2"]
    assert all(x["executorname"] == colony.executor_name and x["processid"] == p.processid for x in logs)
    later = c.get_process_log(colony.name, p.processid, 100, logs[0]["timestamp"], colony.user_prvkey)
    assert [x["message"] for x in later] == ["step 1", "step 2"]
    by_executor = c.get_executor_log(colony.name, colony.executor_name, 100, 0, colony.user_prvkey)
    assert len(by_executor) == 3
    with server.client(colony.executor_prvkey) as ours:
        ours.add_executor_log(colony.name, colony.executor_name, "idle")
        assert [x.message for x in ours.get_logs(colony.name, p.processid, count=1, latest=True)] == ["step 2"]
        assert [x.message for x in ours.search_logs(colony.name, "idle")] == ["idle"]
    with pytest.raises(ColoniesConnectionError):
        c.get_process_log(colony.name, p.processid, 501, 0, colony.user_prvkey)
