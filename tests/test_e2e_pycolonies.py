"""End to end with the official SDK (pycolonies 1.0.25) against a real server on loopback (§4, §12).

One server serves the whole module; every test gets a colony of its own.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pycolonies import Colonies, ColoniesConnectionError, func_spec

from colonies.errors import ClientError
from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ColonyKeys, ServerProc, make_server, setup_colony

pytestmark = pytest.mark.e2e
_names = itertools.count()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    s = make_server(tmp_path_factory.mktemp("e2e"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def col(srv: ServerProc) -> ColonyKeys:
    return setup_colony(srv, name=f"colony{next(_names)}")


@pytest.fixture
def sdk(srv: ServerProc) -> Colonies:
    return Colonies("127.0.0.1", srv.port)


def poll(check: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> Any:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


def add_executor(sdk: Colonies, col: ColonyKeys, name: str, approve: bool = True) -> str:
    key = generate_prvkey()
    e = {"executorname": name, "executorid": id_of(key), "colonyname": col.name, "executortype": col.executor_type}
    added = sdk.add_executor(e, col.colony_prvkey)
    assert added["state"] == 0  # PENDING
    if approve:
        sdk.approve_executor(col.name, name, col.colony_prvkey)
    return key


def spec(col: ColonyKeys, **kw: Any) -> Any:
    return func_spec(kw.pop("func", "echo"), kw.pop("args", []), col.name, col.executor_type, **kw)


def test_executor_registration(sdk: Colonies, col: ColonyKeys) -> None:
    key = add_executor(sdk, col, "newbie", approve=False)
    assert sdk.get_executor(col.name, "newbie", col.user_prvkey)["state"] == 0
    sdk.submit_func_spec(spec(col), col.user_prvkey)
    with pytest.raises(ColoniesConnectionError, match="access denied"):
        sdk.assign(col.name, 1, key)
    sdk.approve_executor(col.name, "newbie", col.colony_prvkey)
    assert sdk.get_executor(col.name, "newbie", col.user_prvkey)["state"] == 1
    assert sdk.assign(col.name, 5, key).state == 1
    sdk.reject_executor(col.name, "newbie", col.colony_prvkey)
    with pytest.raises(ColoniesConnectionError, match="access denied"):
        sdk.assign(col.name, 1, key)
    names = {e["executorname"] for e in sdk.list_executors(col.name, col.user_prvkey)}
    assert names == {"executor-1", "newbie"}


def test_submit_assign_close(sdk: Colonies, col: ColonyKeys) -> None:
    p = sdk.submit_func_spec(spec(col, args=["a", 1]), col.user_prvkey)
    assert (p.state, p.isassigned, p.retries, p.initiatorname) == (0, False, 0, f"{col.name}-user")
    got = sdk.assign(col.name, 5, col.executor_prvkey)
    assert got.processid == p.processid and got.isassigned and got.spec.args == ["a", 1]
    assert got.assignedexecutorid == id_of(col.executor_prvkey)
    sdk.set_output(p.processid, ["partial"], col.executor_prvkey)
    sdk.close(p.processid, ["done", 2], col.executor_prvkey)
    final = sdk.get_process(p.processid, col.user_prvkey)
    assert final.state == 2 and final.output == ["done", 2]
    with pytest.raises(ColoniesConnectionError):
        sdk.close(p.processid, ["again"], col.executor_prvkey)
    with pytest.raises(ColoniesConnectionError):
        sdk.fail(p.processid, ["late"], col.executor_prvkey)


def test_fail_stores_errors(sdk: Colonies, col: ColonyKeys) -> None:
    p = sdk.submit_func_spec(spec(col), col.user_prvkey)
    sdk.assign(col.name, 5, col.executor_prvkey)
    sdk.fail(p.processid, ["boom", "bang"], col.executor_prvkey)
    final = sdk.get_process(p.processid, col.user_prvkey)
    assert final.state == 3 and final.errors == ["boom", "bang"]


def test_priorities_then_fifo(sdk: Colonies, col: ColonyKeys) -> None:
    low1 = sdk.submit_func_spec(spec(col, priority=0), col.user_prvkey)
    low2 = sdk.submit_func_spec(spec(col, priority=0), col.user_prvkey)
    high = sdk.submit_func_spec(spec(col, priority=5), col.user_prvkey)
    low3 = sdk.submit_func_spec(spec(col, priority=0), col.user_prvkey)
    order = [sdk.assign(col.name, 5, col.executor_prvkey).processid for _ in range(4)]
    assert order == [high.processid, low1.processid, low2.processid, low3.processid]


def test_targeting_by_executor_name(sdk: Colonies, col: ColonyKeys) -> None:
    key2 = add_executor(sdk, col, "executor-2")
    for_two = sdk.submit_func_spec(spec(col, executorname="executor-2"), col.user_prvkey)
    for_any = sdk.submit_func_spec(spec(col), col.user_prvkey)
    assert sdk.assign(col.name, 5, col.executor_prvkey).processid == for_any.processid
    with pytest.raises(ColoniesConnectionError):
        sdk.assign(col.name, -1, col.executor_prvkey)
    assert sdk.assign(col.name, 5, key2).processid == for_two.processid


def test_requeue_on_exec_timeout(sdk: Colonies, col: ColonyKeys) -> None:
    p = sdk.submit_func_spec(spec(col, maxexectime=1, maxretries=3), col.user_prvkey)
    assert sdk.assign(col.name, 5, col.executor_prvkey).processid == p.processid
    requeued = poll(lambda: (q := sdk.get_process(p.processid, col.user_prvkey)).state == 0 and q)
    assert requeued.retries == 1 and not requeued.isassigned and requeued.assignedexecutorid == ""
    assert requeued.prioritytime == p.prioritytime
    with pytest.raises(ColoniesConnectionError, match="not assigned"):
        sdk.close(p.processid, ["late"], col.executor_prvkey)
    # It is handed out again.
    assert sdk.assign(col.name, 5, col.executor_prvkey).processid == p.processid


def test_exec_timeout_fails_after_max_retries(sdk: Colonies, col: ColonyKeys) -> None:
    p = sdk.submit_func_spec(spec(col, maxexectime=1, maxretries=0), col.user_prvkey)
    sdk.assign(col.name, 5, col.executor_prvkey)
    failed = poll(lambda: (q := sdk.get_process(p.processid, col.user_prvkey)).state == 3 and q)
    assert failed.errors == ["Maximum execution time limit exceeded"]


def test_maxwaittime_fails_waiting_process(sdk: Colonies, col: ColonyKeys) -> None:
    p = sdk.submit_func_spec(spec(col, maxwaittime=1), col.user_prvkey)
    failed = poll(lambda: (q := sdk.get_process(p.processid, col.user_prvkey)).state == 3 and q)
    assert failed.errors == ["Maximum waiting time limit exceeded"]


def test_cancel(srv: ServerProc, sdk: Colonies, col: ColonyKeys) -> None:
    p = sdk.submit_func_spec(spec(col), col.user_prvkey)
    with srv.client(col.user_prvkey) as c:
        c.cancel(p.processid)
        assert c.get_process(p.processid).state == 4
        with pytest.raises(ClientError) as e:
            c.cancel(p.processid)
        assert e.value.status == 400
    with pytest.raises(ColoniesConnectionError):
        sdk.assign(col.name, -1, col.executor_prvkey)


def test_remove(sdk: Colonies, col: ColonyKeys) -> None:
    p = sdk.submit_func_spec(spec(col), col.user_prvkey)
    sdk.remove_process(p.processid, col.user_prvkey)
    with pytest.raises(ColoniesConnectionError):
        sdk.get_process(p.processid, col.user_prvkey)
    running = sdk.submit_func_spec(spec(col), col.user_prvkey)
    sdk.assign(col.name, 5, col.executor_prvkey)
    with pytest.raises(ColoniesConnectionError):
        sdk.remove_process(running.processid, col.user_prvkey)


def test_list_by_state_and_stats(sdk: Colonies, col: ColonyKeys) -> None:
    ids = [sdk.submit_func_spec(spec(col), col.user_prvkey).processid for _ in range(4)]
    sdk.assign(col.name, 5, col.executor_prvkey)
    done = sdk.assign(col.name, 5, col.executor_prvkey)
    sdk.close(done.processid, [], col.executor_prvkey)
    waiting = sdk.list_processes(col.name, 100, 0, col.user_prvkey)
    assert [p["processid"] for p in waiting] == ids[2:]
    assert [p["processid"] for p in sdk.list_processes(col.name, 100, 1, col.user_prvkey)] == [ids[0]]
    assert [p["processid"] for p in sdk.list_processes(col.name, 100, 2, col.user_prvkey)] == [ids[1]]
    assert sdk.list_processes(col.name, 100, 3, col.user_prvkey) == []
    stats = sdk.stats(col.name, col.user_prvkey)
    assert (stats["waitingprocesses"], stats["runningprocesses"], stats["successfulprocesses"],
            stats["failedprocesses"], stats["colonies"]) == (2, 1, 1, 0, 1)
    assert stats["executors"] == 1


def test_attributes(sdk: Colonies, col: ColonyKeys) -> None:
    p = sdk.submit_func_spec(spec(col), col.user_prvkey)
    sdk.assign(col.name, 5, col.executor_prvkey)
    a = sdk.add_attribute(p.processid, "color", "blue", col.executor_prvkey)
    got = sdk.get_attribute(a["attributeid"], col.user_prvkey)
    assert (got["key"], got["value"], got["targetid"], got["attributetype"]) == ("color", "blue", p.processid, 1)
    keys = [x.key for x in sdk.get_process(p.processid, col.user_prvkey).attributes or []]
    assert keys == ["color"]
    with pytest.raises(ColoniesConnectionError):
        sdk.add_attribute(p.processid, "color", "blue", col.user_prvkey)  # not the assigned executor
    with pytest.raises(ColoniesConnectionError):
        sdk.get_attribute("0" * 64, col.user_prvkey)


def test_functions(sdk: Colonies, col: ColonyKeys) -> None:
    sdk.add_function(col.name, "executor-1", "echo", col.executor_prvkey)
    sdk.add_function(col.name, "executor-1", "sum", col.executor_prvkey)
    funcs = sdk.get_functions_by_executor(col.name, "executor-1", col.user_prvkey)
    assert sorted(f["funcname"] for f in funcs) == ["echo", "sum"]
    assert len(sdk.get_functions_by_colony(col.name, col.user_prvkey)) == 2
    with pytest.raises(ColoniesConnectionError):
        sdk.add_function(col.name, "executor-1", "x", col.user_prvkey)  # users have no functions


def test_long_poll_wakes_on_submit(sdk: Colonies, col: ColonyKeys) -> None:
    submitted = threading.Event()

    def submit_later() -> None:
        # Give the assign a head start. Nothing depends on it: if the submit won the race the assign
        # would return at once. test_api_inprocess checks the parked-waiter wakeup exactly.
        time.sleep(0.3)
        sdk.submit_func_spec(spec(col), col.user_prvkey)
        submitted.set()

    t = threading.Thread(target=submit_later)
    start = time.monotonic()
    t.start()
    try:
        p = sdk.assign(col.name, 10, col.executor_prvkey)
    finally:
        t.join()
    took = time.monotonic() - start
    assert submitted.is_set() and p.state == 1
    assert took < 5, f"long-poll took {took:.2f}s; the submit should have woken it"


def test_assign_timeout_is_404_after_timeout(srv: ServerProc, col: ColonyKeys) -> None:
    with srv.client(col.executor_prvkey) as c:
        start = time.monotonic()
        with pytest.raises(ClientError) as e:
            c.assign(col.name, 1)
        took = time.monotonic() - start
    assert e.value.status == 404
    assert 0.9 <= took < 5
