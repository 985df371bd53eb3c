"""The kit's resume hook: a restarted executor runs again the processes an earlier run of it left
assigned (Executor.on_startup + Executor.resume), once each, before it pulls new work; a resumed
process with spec.fs keeps the working directory the earlier run staged.

Real parts: a server on loopback, the kit's Executor in this process, our SDK as the client.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from colonies.client.core import func_spec
from colonies.executors import Context, Executor
from colonies.fs import FileSystem, store_from_env
from colonies.model import ProcessState
from tests.conftest import ColonyKeys, ServerProc


def _executor(server: ServerProc, colony: ColonyKeys, **kw: Any) -> Executor:
    return Executor(colony=colony.name, prvkey=colony.executor_prvkey, executortype=colony.executor_type,
                    port=server.port, capture_output=False, **kw)


def _run_resuming(ex: Executor, process_id: str) -> None:
    """Run `ex` until idle, with a startup hook that resumes `process_id` (as a restart would)."""

    @ex.on_startup
    async def pick_up(e: Executor) -> None:
        e.resume(await e.client.get_process(process_id))

    async def main() -> None:
        try:
            await ex.run_async(until_idle=True)
        finally:
            await ex.client.aclose()

    asyncio.run(main())


def test_a_resumed_process_runs_once_in_a_slot_before_new_work(server: ServerProc, colony: ColonyKeys) -> None:
    with server.client(colony.user_prvkey) as user, server.client(colony.executor_prvkey) as me:
        left = user.submit(func_spec("work", colony.name, colony.executor_type, args=["left"]))
        earlier = me.assign(colony.name, 5)  # an earlier run of this executor got it, then died
        assert earlier.processid == left.processid
        new = user.submit(func_spec("work", colony.name, colony.executor_type, args=["new"]))
        calls: list[tuple[str, bool]] = []
        ex = _executor(server, colony, slots=1)

        @ex.function
        async def work(x: str, ctx: Context) -> list[Any]:
            calls.append((x, ctx.resumed))
            return [x, ctx.resumed]

        _run_resuming(ex, left.processid)
        assert calls == [("left", True), ("new", False)]  # the resumed one first, each once
        done = user.get_process(left.processid)
        assert done.state == ProcessState.SUCCESS and done.output == ["left", True]
        assert user.get_process(new.processid).output == ["new", False]


def test_a_resumed_process_keeps_its_staged_working_directory(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLONIES_FS_DIR", str(tmp_path / "store"))
    fs_dir = tmp_path / "workdirs"
    with server.client(colony.user_prvkey) as user, server.client(colony.executor_prvkey) as me:
        spec = func_spec("finish", colony.name, colony.executor_type)
        spec.fs = {"dirs": [{"label": "/results", "dir": "/out"}]}
        p = user.submit(spec)
        me.assign(colony.name, 5)
        # what the earlier run left in the process' working directory before it died
        (fs_dir / p.processid / "out").mkdir(parents=True)
        (fs_dir / p.processid / "out" / "first-half.txt").write_text("from the earlier run")
        ex = _executor(server, colony, fs_dir=fs_dir)

        @ex.function
        def finish(ctx: Context) -> list[Any]:
            assert ctx.workdir is not None
            (ctx.workdir / "out" / "second-half.txt").write_text("from the resumed run")
            return sorted(f.name for f in (ctx.workdir / "out").iterdir())

        _run_resuming(ex, p.processid)
        done = user.get_process(p.processid)
        assert done.state == ProcessState.SUCCESS, done.errors
        assert done.output == ["first-half.txt", "second-half.txt"]
        synced = FileSystem(user, colony.name, store=store_from_env({"COLONIES_FS_DIR": str(tmp_path / "store")}))
        assert sorted(f.name for f in synced.files("/results")) == ["first-half.txt", "second-half.txt"]
        assert not (fs_dir / p.processid).exists()  # cleaned up as usual
