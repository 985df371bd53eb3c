"""Pilot allocations (issue 18) against a real Slurm: the single-node cluster of scripts/slurm (and, for
back-pressure, a second small cluster this module starts), a real server on loopback, the allocator as
`colonies executor run --slurm config.toml` with a [pilot] table, our SDK as the client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonies.model import ProcessState
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import wait_until
from tests.pilot_support import Allocator, write_config
from tests.slurm_support import slurm_env  # noqa: F401

FAST = {"poll_interval": 0.5, "slot_poll": 2, "headroom": 2, "backoff": 0.5, "backoff_max": 2}


@pytest.fixture
def make(server: ServerProc, colony: ColonyKeys, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    request.getfixturevalue("slurm_env")
    made: list[Allocator] = []

    def new(pilot: dict[str, Any], name: str = "pilot-1", **kw: Any) -> Allocator:
        cfg = write_config(tmp_path, {**FAST, **pilot}, name=f"{name}.toml")
        a = Allocator(server, colony, tmp_path, cfg, name=name, **kw)
        made.append(a)
        return a

    yield new
    for a in made:
        a.close()


def test_processes_run_in_one_allocation_and_it_ends_when_idle(make: Any) -> None:
    a = make({"nodes": 1, "slots_per_node": 4, "walltime": 120, "idle_timeout": 3, "max_allocations": 1})
    a.start()
    pids = [a.submit("echo", [f"hello {i}"]) for i in range(20)] + [a.submit("square", [7])]
    done = [a.wait(pid, 60) for pid in pids]
    assert [p.state for p in done] == [ProcessState.SUCCESS] * 21, [p.errors for p in done]
    assert [p.output for p in done[:20]] == [[f"hello {i}"] for i in range(20)]
    assert done[20].output == [49]
    ran_on = {p.assignedexecutorid for p in done}
    assert len(ran_on) == 1  # one node's executor: all four slots are its
    wait_until(lambda: not a.jobs(active=True), 30, "the idle allocation to end")
    t0 = time.monotonic()
    again = a.wait(a.submit("echo", ["again"]), 60)
    assert again.state == ProcessState.SUCCESS and again.assignedexecutorid not in ran_on
    print(f"a new allocation after idle: {time.monotonic() - t0:.1f} s")
