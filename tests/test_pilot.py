"""Pilot allocations (issue 18) against a real Slurm: the single-node cluster of scripts/slurm (and, for
back-pressure, a second small cluster this module starts), a real server on loopback, the allocator as
`colonies executor run --slurm config.toml` with a [pilot] table, our SDK as the client."""

from __future__ import annotations

import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonies.client.core import func_spec
from colonies.errors import ClientError
from colonies.model import ExecutorState, ProcessState
from colonies.protocol.crypto import id_of
from tests.conftest import ColonyKeys, ServerProc
from tests.container_support import base_image, podman_env  # noqa: F401
from tests.kit_support import process_in_state, run_cli_inprocess, wait_until
from tests.pilot_support import FINAL, TYPE, Allocator, slurm_run, small_cluster, write_config
from tests.slurm_support import SLURM_CONF, slurm_env  # noqa: F401
from tests.test_browser import CHROMIUM, browser_tools
from tests.test_meta_os import load

FAST = {"poll_interval": 0.5, "slot_poll": 2, "headroom": 2, "backoff": 0.5, "backoff_max": 2}


@pytest.fixture
def make(server: ServerProc, colony: ColonyKeys, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    request.getfixturevalue("slurm_env")
    made: list[Allocator] = []

    def new(pilot: dict[str, Any] | None, name: str = "pilot-1", slurm: dict[str, Any] | None = None,
            **kw: Any) -> Allocator:
        """An allocator (a config with a [pilot] table), or with `pilot` None the job-per-process executor."""
        cfg = write_config(tmp_path, {**FAST, **pilot} if pilot is not None else None, name=f"{name}.toml",
                           slurm=slurm)
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


def run_all(a: Allocator, n: int, timeout: float) -> tuple[float, list[Any]]:
    t0 = time.monotonic()
    pids = [a.submit("echo", [f"p{i}"]) for i in range(n)]
    done = [a.wait(pid, timeout) for pid in pids]
    return time.monotonic() - t0, done


def exactly_once(a: Allocator, done: list[Any]) -> None:
    """Every process ended SUCCESS with its own output, closed once and assigned once."""
    assert [p.state for p in done] == [ProcessState.SUCCESS] * len(done), [p.errors for p in done if p.errors][:3]
    assert [p.output for p in done] == [[f"p{i}"] for i in range(len(done))]
    for p in done:
        events = [e.event for e in a.user.process_events(p.processid)]
        assert events.count("closed") == 1 and events.count("assigned") == 1 and "failed" not in events, events


JOBS_N = 40  # 300 jobs take ~140 s on this 2-CPU test cluster (2 jobs/s): the bench runs all 300 that way


def test_300_processes_through_one_allocation_of_4_slots_and_through_jobs(make: Any) -> None:
    """The same processes through the pilot's one allocation and through the job-per-process mode, in one
    run: each ends exactly once (SUCCESS, its output, one assignment, one close) in both."""
    pilot = make({"nodes": 1, "slots_per_node": 4, "walltime": 300, "idle_timeout": 2, "max_allocations": 1})
    pilot.start()
    took, done = run_all(pilot, 300, 120)
    exactly_once(pilot, done)
    assert len({p.assignedexecutorid for p in done}) == 1
    assert len(pilot.jobs()) == 1  # one allocation ran them all
    assert pilot.stop() == 0
    jobs = make(None, name="jobs-1")
    jobs.start()
    jobs_took, jobs_done = run_all(jobs, JOBS_N, 120)
    exactly_once(jobs, jobs_done)
    print(f"pilot: 300 in {took:.1f} s ({300 / took:.0f}/s); jobs: {JOBS_N} in {jobs_took:.1f} s "
          f"({JOBS_N / jobs_took:.1f}/s)")


def test_a_process_that_does_not_fit_the_remaining_walltime_runs_in_a_new_allocation(make: Any) -> None:
    """Walltime 25 s (headroom 2, slot poll 2): the allocator counts on a fresh allocation for processes up
    to 16 s (25 - 2 - 2 - 5 for the slot's start); allocation A, 9 s in, gives at most 12 s. A process with maxexectime 15 is not started in A (the server
    gives A's slots only processes that fit what A has left): the allocator submits B, which runs it.
    A process that could never fit (maxexectime 100) is named in the allocator's log and starts nowhere;
    A's key cannot close B's process (the fence: only the assigned executor, in the current attempt)."""
    a = make({"nodes": 1, "slots_per_node": 2, "walltime": 25, "idle_timeout": 60, "max_allocations": 2,
              "max_queued": 1})
    a.start()
    first = a.wait(a.submit("echo", ["p0"], maxexectime=10), 30)
    assert first.state == ProcessState.SUCCESS
    on_a = first.assignedexecutorid
    never = a.submit("echo", ["never"], maxexectime=100)
    time.sleep(max(0.0, 9 - (time.time() - first.starttime.timestamp())))
    assert len(a.jobs(active=True)) == 1
    pid = a.submit("nap", ["1"], maxexectime=15)
    done = a.wait(pid, 30)
    assert done.state == ProcessState.SUCCESS and done.output == ["napped 1"]
    assert done.assignedexecutorid != on_a
    assigned = [e for e in a.user.process_events(pid) if e.event == "assigned"]
    assert [e.actorid for e in assigned] == [done.assignedexecutorid]
    assert len(a.jobs()) == 2
    assert a.user.get_process(never).state == ProcessState.WAITING
    log = a.executor_log()
    assert f"process {never[:12]} can never run in these allocations" in log and "maxexectime 100 s" in log
    key_a = next(k for k in (a.tmp / "jobs" / ".pilot").glob("*/*/node-0.key")
                 if id_of(k.read_text().strip()) == on_a).read_text().strip()
    late = a.submit("nap", ["3"], maxexectime=15)
    running = wait_until(process_in_state(a.user, late, {ProcessState.RUNNING}), 20, "the nap to run")
    assert running.assignedexecutorid != on_a
    with a.client(key_a) as c, pytest.raises(ClientError) as err:
        c.close(late, ["forged"], attempt=running.retries)
    assert err.value.status == 403
    assert a.wait(late).output == ["napped 3"]


def test_scancel_of_an_allocation_requeues_its_processes_which_finish_in_another(make: Any) -> None:
    a = make({"nodes": 1, "slots_per_node": 4, "walltime": 120, "idle_timeout": 30, "max_allocations": 1})
    a.start()
    pids = [a.submit("nap", ["2"], maxexectime=30) for _ in range(12)]
    wait_until(lambda: sum(a.user.get_process(p).state == ProcessState.RUNNING for p in pids) == 4, 30,
               "four processes to run")
    [(jobid, _)] = a.jobs(active=True).items()
    slurm_run(a.slurm_env, "scancel", jobid)
    done = [a.wait(p, 60) for p in pids]
    assert [p.state for p in done] == [ProcessState.SUCCESS] * 12, [p.errors for p in done]
    requeued = 0
    for p in done:
        events = [e.event for e in a.user.process_events(p.processid)]
        assert events.count("closed") == 1, events
        requeued += "requeued" in events
    assert requeued >= 4  # the ones the cancelled allocation held came back at once, not at their deadline
    assert len(a.jobs()) == 2 and a.jobs()[jobid] == "CANCELLED"
    assert "Slurm job " + jobid + " CANCELLED" in a.executor_log()


def test_a_full_cluster_holds_allocations_back_and_all_processes_finish(make: Any, tmp_path: Path) -> None:
    """A cluster that keeps one job at most (MaxJobCount): sbatch blocks for every allocation past the
    first; the allocator gives each up after submit_timeout, backs off, keeps serving, and every process
    finishes, none failed. Once the first allocation has ended (idle) and Slurm forgot it, new work gets
    a new allocation."""
    with small_cluster(SLURM_CONF, tmp_path / "small", max_jobs=1) as conf:
        a = make({"nodes": 1, "slots_per_node": 2, "walltime": 120, "idle_timeout": 2, "max_allocations": 3,
                  "max_queued": 3, "max_failures": 50}, slurm_conf=conf, slurm={"submit_timeout": 3})
        a.start()
        pids = [a.submit("nap", ["0.5"], maxexectime=30) for _ in range(16)]
        seen: set[str] = set()
        while not all(a.user.get_process(p).state in FINAL for p in pids):
            seen |= set(a.jobs())
            assert len(a.jobs(active=True)) <= 1
            time.sleep(0.3)
        assert [a.user.get_process(p).state for p in pids] == [ProcessState.SUCCESS] * 16
        assert len(seen) == 1
        log = a.executor_log()
        assert "sbatch did not return within 3 s (Slurm is full or busy)" in log, log
        st = a.user.get_executor(a.colony.name, a.name).allocations.projects["pilot"]
        assert st["failures"] >= 1
        wait_until(lambda: not a.jobs(active=True), 20, "the first allocation to end idle")
        later = a.wait(a.submit("echo", ["p0"]), 60)
        assert later.state == ProcessState.SUCCESS
        t0 = time.monotonic()
        assert a.stop() == 0 and time.monotonic() - t0 < 15  # never stuck in a blocked sbatch


def test_repeated_refusals_pause_the_allocator_with_the_reason_shown(make: Any) -> None:
    a = make({"max_failures": 2, "backoff": 0.2}, slurm={"partition": "no-such-partition"})
    a.start()
    pid = a.submit("echo", ["p0"])
    wait_until(lambda: "paused" in a.executor_log(), 30, "the pause")
    log = a.executor_log()
    assert "2 submissions failed in a row" in log and "invalid partition" in log.lower(), log
    st = a.user.get_executor(a.colony.name, a.name).allocations.projects["pilot"]
    assert st["state"] == "paused" and "invalid partition" in st["reason"].lower()
    shown = run_cli_inprocess(a.env, "executor", "get", "--name", a.name)
    assert shown.returncode == 0 and "paused" in shown.stdout and "invalid partition" in shown.stdout.lower(), shown
    time.sleep(1)
    assert a.user.get_process(pid).state == ProcessState.WAITING  # back-pressure, not a failure
    assert not a.jobs()


def test_relayed_slots_reach_the_server_only_through_the_relay_socket(make: Any, tmp_path: Path) -> None:
    """The slot executor runs under `unshare --net` in the job: no network at all, only the relay's Unix
    socket on the (shared) filesystem. Processes run, a spec.fs snapshot is staged down and a synced dir
    goes up through the relay; a process there cannot reach the server's TCP port; the keys in the
    allocation's directory are 0600 and no colony owner key is in it or in the job's environment."""
    from colonies.fs import FileSystem, store_from_env

    sock = tmp_path / "relay.sock"
    a = make({"nodes": 1, "slots_per_node": 2, "walltime": 120, "idle_timeout": 3, "max_allocations": 1,
              "relay": "unix", "relay_socket": str(sock), "wrap": ["unshare", "--net"]})
    (tmp_path / "words.txt").write_text("hello relay\n")
    fs = FileSystem(a.user, a.colony.name, store=store_from_env({"COLONIES_FS_DIR": str(tmp_path / "store")}))
    fs.upload(tmp_path / "words.txt", "/inputs")
    snap = fs.create_snapshot("/inputs", "inputs-1")
    a.start()
    reach = a.submit("reach", [str(a.server_port)])
    envnames = a.submit("envnames", [])
    pids = [a.submit("echo", [f"p{i}"]) for i in range(10)]
    spec = func_spec("shout", a.colony.name, TYPE, maxexectime=60)
    spec.fs = {"snapshots": [{"snapshotid": snap.snapshotid, "label": "/inputs", "dir": "/in"}],
               "dirs": [{"label": "/loud/{processid}", "dir": "/out"}]}
    shout = a.submit_spec(spec)
    got = a.wait(reach, 60)
    assert got.state == ProcessState.SUCCESS and got.output[0].startswith("unreachable"), got.output
    names = set(a.wait(envnames).output[0].split())
    assert names <= {"COLONIES_PROCESS_ID", "COLONIES_JOB_DIR", "COLONIES_WORKDIR", "COLONIES_INPUT",
                     "COLONIES_OUTPUT", "COLONIES_PILOT_STARTED", "COLONIES_FS_DIR"}, names  # no key of any kind
    keys = list((tmp_path / "jobs" / ".pilot").glob("*/*/node-0.key"))
    assert keys and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    alloc_dir = keys[0].parent
    assert stat.S_IMODE(alloc_dir.stat().st_mode) == 0o700
    owner = a.colony.colony_prvkey
    assert not any(owner in f.read_text(errors="replace") for f in alloc_dir.rglob("*") if f.is_file())
    assert [a.wait(p).output for p in pids] == [[f"p{i}"] for i in range(10)]
    done = a.wait(shout)
    assert done.state == ProcessState.SUCCESS, done.errors
    fs.download(f"/loud/{shout}", "loud.txt", tmp_path / "got")
    assert (tmp_path / "got" / "loud.txt").read_text() == "HELLO RELAY\n"
    wait_until(lambda: not a.jobs(active=True), 30, "the idle allocation to end")

    def removed() -> bool:  # the node executors are removed once the allocator has seen the job end
        slots = [e for e in a.user.get_executors(a.colony.name) if e.executorname.startswith(f"{a.name}-")]
        return bool(slots) and all(e.state == ExecutorState.UNREGISTERED for e in slots)

    wait_until(removed, 10, "the allocation's executors to be removed")
    assert not list((tmp_path / "jobs" / ".pilot").glob("*/*/node-*.key"))


@pytest.mark.e2e
def test_the_meta_os_example_runs_its_slurm_step_in_a_pilot_allocation(
        slurm_env: dict[str, str], podman_env: dict[str, str], base_image: str, tmp_path: Path) -> None:  # noqa: F811
    """examples/meta-os with --slurm-mode pilot: the same slurm.toml plus a [pilot] table; `train` runs in
    the slot of an allocation (its executor slurm-1-<token>-0, at hpc-centre), the rest as before."""
    browser_tools()
    metaos = load("metaos")
    env = {**slurm_env, "CONTAINERS_CONF": podman_env["CONTAINERS_CONF"], "COLONIES_CHROMIUM": CHROMIUM}
    with metaos.MetaOS(tmp_path / "run", environ=env, timeout=90, slurm_mode="pilot") as m:
        report = m.run(tmp_path / "shot.png")
        steps = report.steps
        assert report.state == "successful", {n: (s.state, s.errors) for n, s in steps.items()}
        train = steps["train"]
        assert re.fullmatch(r"slurm-1-[0-9a-f]{6}-0", train.executor) and train.location == "hpc-centre"
        assert steps["evaluate"].executor == "podman-1" and steps["predict"].executor == "browser-1"
        assert "submitted allocation" in (m.dir / "logs" / "hpc-slurm-1.log").read_text()
