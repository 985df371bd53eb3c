"""The reconciler kit (colonies/executors/reconciler.py) against a real server: a small in-test reconciler
served by the executor kit reconciles the blueprint a change names and writes its status back with the
generation it observed; a failure is retried, recorded in the status and fails the process with one line;
the (kind, location) cron reconciles every blueprint of the kind at its location and prunes; cleanup runs
with the removed blueprint's name (and the id of a blueprint of the same name added again meanwhile);
`colonies executor run module:object` serves a reconciler; a reconcile an earlier run was given is resumed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from colonies.blueprints import blueprint, blueprint_definition, cron_name
from colonies.client.asyncio import AsyncClient
from colonies.errors import ClientError
from colonies.executors.reconciler import BlueprintRef, ReconcileContext, Reconciler, reconciler_executor
from colonies.executors.retry import RetryPolicy
from colonies.model import Blueprint, Process, ProcessState
from colonies.protocol.crypto import generate_prvkey
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import cli_env, start_executor, stop

T = TypeVar("T")
TYPE = "widget-reconciler"
SCHEMA = {"type": "object", "properties": {"size": {"type": "integer"}, "fail": {"type": "boolean"}},
          "required": ["size"]}
FINAL = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED)


class Widgets(Reconciler):
    """Keeps one "widget" (an entry of `made`) per blueprint, labelled with the blueprint's id; local: one
    at a location hands work for other locations on."""

    kind = "Widget"
    local = True
    retry = RetryPolicy(retries=2, backoff="fixed", delay=0.05)

    def __init__(self) -> None:
        self.made: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, int, str]] = []
        self.cleaned: list[BlueprintRef] = []
        self.pruned: list[list[str]] = []

    async def reconcile(self, bp: Blueprint, ctx: ReconcileContext) -> dict[str, Any]:
        self.calls.append((bp.metadata.name, bp.metadata.generation, ctx.location))
        if bp.spec.get("fail"):
            raise RuntimeError("the widget factory is closed")
        self.made[bp.metadata.name] = {"id": bp.blueprintid, "size": bp.spec["size"]}
        return {"size": bp.spec["size"]}

    def cleanup(self, ref: BlueprintRef, ctx: ReconcileContext) -> None:  # a plain method: runs in a thread
        self.cleaned.append(ref)
        if self.made.get(ref.name, {}).get("id") != ref.replaced_by:
            self.made.pop(ref.name, None)

    async def prune(self, live: list[Blueprint], ctx: ReconcileContext) -> None:
        self.pruned.append(sorted(bp.metadata.name for bp in live))


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 15, what: str = "it") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def finished(c: AsyncClient, pid: str) -> Process:
    async def done() -> Process | None:
        p = await c.get_process(pid)
        return p if p.state in FINAL else None
    return await eventually(done, what=f"process {pid[:12]} to finish")


class Harness:
    def __init__(self, srv: ServerProc, col: ColonyKeys) -> None:
        self.srv, self.col = srv, col
        self.user = AsyncClient("127.0.0.1", srv.port, prvkey=col.user_prvkey)
        self.owner = self.user.with_key(col.colony_prvkey)
        self.runs: list[tuple[Any, asyncio.Task[None]]] = []

    async def define(self, interval: int = 3600) -> None:
        await self.owner.add_blueprint_definition(
            blueprint_definition(self.col.name, "Widget", TYPE, schema=SCHEMA, reconcile_interval=interval))

    async def start(self, w: Widgets, name: str = "widgets-1", location: str = "", key: str = "") -> str:
        ex = reconciler_executor(w, colony=self.col.name, prvkey=key or generate_prvkey(), name=name,
                                 executortype=TYPE, port=self.srv.port, location=location, poll_timeout=2,
                                 capture_output=False)
        if not key:
            await ex.register(self.col.colony_prvkey)
        self.runs.append((ex, asyncio.create_task(ex.run_async())))
        return ex.prvkey

    async def stop(self) -> None:
        for ex, task in self.runs:
            ex.stop()
            await asyncio.wait_for(task, 20)
            await ex.client.aclose()
        self.runs.clear()

    async def status(self, name: str) -> dict[str, Any]:
        bp = await self.user.get_blueprint(self.col.name, name)
        return {} if not bp.status else dict(bp.status)


@pytest.fixture
async def h(server: ServerProc, colony: ColonyKeys) -> AsyncIterator[Harness]:
    harness = Harness(server, colony)
    try:
        yield harness
    finally:
        await harness.stop()
        await harness.user.aclose()


async def test_a_change_is_reconciled_and_its_status_written_with_the_generation(h: Harness) -> None:
    await h.define()
    w = Widgets()
    await h.start(w)
    added = await h.user.add_blueprint(blueprint(h.col.name, "Widget", "w1", {"size": 3}))
    p = await finished(h.user, added.metadata.last_reconciliation_process)
    assert p.state == ProcessState.SUCCESS, p.errors
    status = await h.status("w1")
    assert status["size"] == 3 and status["generation"] == 1 and "error" not in status
    assert status["reconciledAt"].endswith("Z")
    assert p.output == [status]
    assert w.made == {"w1": {"id": added.blueprintid, "size": 3}}

    updated = await h.user.update_blueprint(blueprint(h.col.name, "Widget", "w1", {"size": 5}))
    assert updated.metadata.generation == 2
    p = await finished(h.user, updated.metadata.last_reconciliation_process)
    assert p.state == ProcessState.SUCCESS, p.errors
    status = await h.status("w1")
    assert (status["size"], status["generation"]) == (5, 2)

    # A forced reconcile carries "force" and bumps the generation the status then shows.
    forced = await h.user.reconcile_blueprint(h.col.name, "w1", force=True)
    assert (await finished(h.user, forced.processid)).state == ProcessState.SUCCESS
    assert (await h.status("w1"))["generation"] == 3
    assert [c[:2] for c in w.calls] == [("w1", 1), ("w1", 2), ("w1", 3)]


async def test_a_failed_reconcile_is_retried_then_recorded_and_fails_with_one_line(h: Harness) -> None:
    await h.define()
    w = Widgets()
    await h.start(w)
    added = await h.user.add_blueprint(blueprint(h.col.name, "Widget", "w2", {"size": 1}))
    assert (await finished(h.user, added.metadata.last_reconciliation_process)).state == ProcessState.SUCCESS

    bad = await h.user.update_blueprint(blueprint(h.col.name, "Widget", "w2", {"size": 1, "fail": True}))
    p = await finished(h.user, bad.metadata.last_reconciliation_process)
    assert p.state == ProcessState.FAILED
    assert p.errors == ["reconcile Widget w2: RuntimeError: the widget factory is closed (after 2 retries)"]
    assert [c[:2] for c in w.calls].count(("w2", 2)) == 3  # the first try and two retries
    status = await h.status("w2")
    assert status["error"] == p.errors[0] and status["errorAt"].endswith("Z")
    assert status["generation"] == 1 and status["size"] == 1  # what was last observed stays

    fixed = await h.user.update_blueprint(blueprint(h.col.name, "Widget", "w2", {"size": 2}))
    assert (await finished(h.user, fixed.metadata.last_reconciliation_process)).state == ProcessState.SUCCESS
    status = await h.status("w2")
    assert (status["size"], status["generation"]) == (2, 3) and "error" not in status and "errorAt" not in status


async def test_the_cron_reconciles_every_blueprint_of_the_kind_at_its_location(h: Harness) -> None:
    await h.define(interval=1)
    here, there = Widgets(), Widgets()
    await h.start(here, "widgets-here")
    await h.start(there, "widgets-edge", location="edge")
    for name, loc in (("a", ""), ("b", ""), ("c", "edge")):
        await h.user.add_blueprint(blueprint(h.col.name, "Widget", name, {"size": 1}, location=loc))
    crons = {c.name for c in await h.user.get_crons(h.col.name)}
    assert crons == {cron_name("Widget"), cron_name("Widget", "edge")}

    # The cron's processes (kwargs {"kind"}) reconcile every blueprint of its location. The scheduler may
    # give the edge executor work without a location: it hands that on, so each acts on its location only.
    await eventually(lambda: _at_least(here, {"a": 3, "b": 3}), what="three rounds of a and b")
    await eventually(lambda: _at_least(there, {"c": 3}), what="three rounds of c")
    assert {c[0] for c in here.calls} == {"a", "b"} and {c[2] for c in here.calls} == {""}
    assert {c[0] for c in there.calls} == {"c"} and {c[2] for c in there.calls} == {"edge"}
    assert ["a", "b"] in here.pruned and ["c"] in there.pruned
    for name in ("a", "b", "c"):
        assert (await h.status(name))["generation"] == 1
    # (a cron-fired process gets the previous round's output as its input: the kit ignores it)
    assert await h.user.get_processes(h.col.name, state=ProcessState.FAILED) == []
    fired = await h.user.get_processes(h.col.name, state=ProcessState.SUCCESS, executortype=TYPE)
    assert any(p.spec.kwargs == {"kind": "Widget"} and p.input for p in fired)

    # A removed blueprint is cleaned up, then no longer reconciled, and the cron of its location goes with it.
    await h.user.remove_blueprint(h.col.name, "c")
    await eventually(lambda: _truthy(there.cleaned), what="the cleanup of c")
    assert there.cleaned == [BlueprintRef(h.col.name, "Widget", "c", "edge", "")] and "c" not in there.made
    assert {c.name for c in await h.user.get_crons(h.col.name)} == {cron_name("Widget")}


async def _at_least(w: Widgets, rounds: dict[str, int]) -> bool:
    return all(sum(1 for c in w.calls if c[0] == name) >= n for name, n in rounds.items())


async def _truthy(value: Any) -> Any:
    return value


async def test_cleanup_names_the_removed_blueprint_and_spares_one_added_again(h: Harness) -> None:
    await h.define()
    w = Widgets()
    key = await h.start(w)
    first = await h.user.add_blueprint(blueprint(h.col.name, "Widget", "w3", {"size": 1}))
    assert (await finished(h.user, first.metadata.last_reconciliation_process)).state == ProcessState.SUCCESS

    # Removed and added again while no reconciler runs: the cleanup queued first sees the new one's id.
    await h.stop()
    await h.user.remove_blueprint(h.col.name, "w3")
    with pytest.raises(ClientError) as gone:
        await h.user.get_blueprint(h.col.name, "w3")
    assert gone.value.status == 404
    second = await h.user.add_blueprint(blueprint(h.col.name, "Widget", "w3", {"size": 2}))
    await h.start(w, key=key)
    assert (await finished(h.user, second.metadata.last_reconciliation_process)).state == ProcessState.SUCCESS
    assert w.cleaned == [BlueprintRef(h.col.name, "Widget", "w3", "", second.blueprintid)]
    assert w.made == {"w3": {"id": second.blueprintid, "size": 2}}

    # Removed for good: the cleanup removes the widget.
    await h.user.remove_blueprint(h.col.name, "w3")
    await eventually(lambda: _truthy(len(w.cleaned) == 2), what="the second cleanup")
    assert w.cleaned[1] == BlueprintRef(h.col.name, "Widget", "w3", "", "") and w.made == {}
    cleanups = await h.user.get_processes(h.col.name, state=ProcessState.SUCCESS, executortype=TYPE)
    assert sum(1 for p in cleanups if p.spec.funcname == "cleanup") == 2


async def test_a_kind_it_does_not_reconcile_fails_the_process(h: Harness) -> None:
    await h.define()
    await h.owner.add_blueprint_definition(
        blueprint_definition(h.col.name, "Gadget", TYPE, reconcile_interval=3600))
    await h.start(Widgets())
    added = await h.user.add_blueprint(blueprint(h.col.name, "Gadget", "g1", {}))
    p = await finished(h.user, added.metadata.last_reconciliation_process)
    assert p.state == ProcessState.FAILED
    assert p.errors == ["executor widgets-1 reconciles no kind 'Gadget' (it reconciles Widget)"]


MODULE = '''
import json, pathlib, os
from colonies.executors.reconciler import Reconciler, reconciler_executor

ROOT = pathlib.Path(os.environ["WIDGET_DIR"])


class FileWidgets(Reconciler):
    """One file per blueprint, named after it and holding its id."""
    kind = "Widget"

    def reconcile(self, bp, ctx):
        (ROOT / bp.metadata.name).write_text(json.dumps({"id": bp.blueprintid, "size": bp.spec["size"]}))
        return {"files": sorted(p.name for p in ROOT.iterdir())}

    def cleanup(self, ref, ctx):
        path = ROOT / ref.name
        if path.exists() and json.loads(path.read_text())["id"] != ref.replaced_by:
            path.unlink()


ex = reconciler_executor(FileWidgets())
'''


async def test_executor_run_serves_a_reconciler_module(h: Harness, tmp_path: Path) -> None:
    await h.define()
    (tmp_path / "filewidgets.py").write_text(MODULE)
    widgets = tmp_path / "widgets"
    widgets.mkdir()
    env = cli_env(h.srv, h.col, WIDGET_DIR=str(widgets), COLONIES_EXECUTOR_TYPE=TYPE)
    proc = start_executor(env, tmp_path / "reconciler.log", str(tmp_path / "filewidgets.py") + ":ex",
                          "--name", "file-widgets")
    try:
        added = await h.user.add_blueprint(blueprint(h.col.name, "Widget", "f1", {"size": 4}))
        p = await finished(h.user, added.metadata.last_reconciliation_process)
        assert p.state == ProcessState.SUCCESS, (p.errors, (tmp_path / "reconciler.log").read_text()[-3000:])
        assert (widgets / "f1").exists()
        status = await h.status("f1")
        assert status["files"] == ["f1"] and status["generation"] == 1
        [me] = [e for e in await h.user.get_executors(h.col.name) if e.executorname == "file-widgets"]
        assert me.executortype == TYPE
        await h.user.remove_blueprint(h.col.name, "f1")
        await eventually(lambda: _truthy(not (widgets / "f1").exists()), what="the cleanup to remove f1")
    finally:
        stop(proc)


async def test_work_an_earlier_run_was_given_is_resumed_at_startup(h: Harness) -> None:
    """Reconcile processes have no deadline: one assigned to a run that died would otherwise stay RUNNING."""
    await h.define()
    key = generate_prvkey()
    earlier = reconciler_executor(Widgets(), colony=h.col.name, prvkey=key, name="widgets-1", executortype=TYPE,
                                  port=h.srv.port)
    await earlier.register(h.col.colony_prvkey)
    added = await h.user.add_blueprint(blueprint(h.col.name, "Widget", "w4", {"size": 7}))
    taken = await earlier.client.assign(h.col.name, 5)  # ...and that run dies here
    await earlier.client.aclose()
    assert taken.processid == added.metadata.last_reconciliation_process and taken.state == ProcessState.RUNNING

    w = Widgets()
    await h.start(w, key=key)
    p = await finished(h.user, taken.processid)
    assert p.state == ProcessState.SUCCESS, p.errors
    assert w.calls == [("w4", 1, "")] and (await h.status("w4"))["size"] == 7
