"""The Slurm executor (issue 13 items 1-2) against a real Slurm: the single-node cluster of scripts/slurm,
a real server on loopback, `colonies executor run --slurm config.toml` as a subprocess, our SDK as the
client. Jobs are found again in Slurm by the comment the executor gives them (colonies:<id>:<pid>:<attempt>).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonies.client.core import func_spec
from colonies.model import FunctionSpec, ProcessState
from colonies.protocol.crypto import id_of
from tests.conftest import ColonyKeys, ServerProc
from tests.container_support import BASE_IMAGE, PODMAN_CONF, base_image, podman, podman_env  # noqa: F401
from tests.kit_support import cli_env, process_in_state, start_executor, stop, wait_until
from tests.slurm_support import SLURM_CONF, active_jobs, jobs_tagged, slurm, slurm_env  # noqa: F401

FINAL = {ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED}
POLL = 0.5
NAP = ("import json, os, sys, time; time.sleep(float(sys.argv[1])); "
       "json.dump([sys.argv[2]], open(os.environ['COLONIES_OUTPUT'], 'w'))")
CONTAINER_JOB = """\
#!/bin/bash
# a job step that runs a container: podman's conmon leaves the job's process tree, so a cancel
# (SIGTERM to the job's processes) must remove the container itself
name="colonies-slurm-test-${COLONIES_PROCESS_ID:0:16}"
trap 'podman rm -f -t 0 "$name" >/dev/null 2>&1; exit 143' TERM
podman run --name "$name" --label colonies.test=1 --label "colonies.slurmtest=${COLONIES_PROCESS_ID:0:16}" "$1" sleep 300 &
wait $!
"""


def config(tmp: Path, slots: int = 4, extra: str = "") -> Path:
    (tmp / "slurmfuncs.py").write_text("def square(x, plus=0):\n    print('squaring', x)\n    return x * x + plus\n")
    path = tmp / "slurm.toml"
    path.write_text(textwrap.dedent(f"""\
        [executor]
        type = "slurm"
        slots = {slots}

        [slurm]
        workdir = "{tmp / 'jobs'}"
        partition = "debug"
        poll_interval = {POLL}
        submit_timeout = 30
        python = "{sys.executable}"
        env = {{ PYTHONPATH = "{tmp}" }}
        process_env = ["GREETING"]

        [commands.echo_json]
        argv = ["python3", "-c", "import json, os, sys; json.dump(sys.argv[1:], open(os.environ['COLONIES_OUTPUT'], 'w')); print('hello from job', os.environ['SLURM_JOB_ID'], os.environ.get('GREETING', ''))"]

        [commands.fail]
        argv = ["bash", "-c", "echo about to fail >&2; exit \\"$1\\"", "fail"]

        [commands.nap]
        argv = ["python3", "-c", "{NAP}"]

        [commands.sleep]
        argv = ["sleep"]

        [functions.square]
        target = "slurmfuncs:square"
        """) + extra)
    return path


class Run:
    """One executor subprocess (restartable) and the client to submit to it."""

    def __init__(self, server: ServerProc, colony: ColonyKeys, tmp: Path, cfg: Path, **env: str) -> None:
        self.env = cli_env(server, colony, **env)
        self.cfg, self.log = cfg, tmp / "executor.log"
        self.proc: Any = None
        self.user = server.client(colony.user_prvkey)
        self.colony = colony

    def start(self) -> None:
        self.proc = start_executor(self.env, self.log, "--slurm", str(self.cfg), "--name", "slurm-1",
                                   "--watch", "0.5", "--fs-dir", str(self.cfg.parent / "fs"))

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def close(self) -> None:
        """Kill the executor, cancel what is left of its own jobs (only its own: the cluster is shared)."""
        self.stop()
        self.user.close_client()
        if self.proc is None:
            return  # it never started
        prefix = self.prefix()
        for jobid in active_jobs(prefix):
            slurm("scancel", jobid, check=False)

    def submit(self, funcname: str, args: list[Any], **kw: Any) -> str:
        spec = func_spec(funcname, self.colony.name, "slurm", args=args, maxexectime=kw.pop("maxexectime", 120),
                         maxretries=kw.pop("maxretries", -1))
        for key, value in kw.items():
            setattr(spec.conditions, key, value)
        return self.submit_spec(spec)

    def submit_spec(self, spec: FunctionSpec) -> str:
        return self.user.submit(spec).processid

    def wait(self, pid: str, timeout: float = 60) -> Any:
        return wait_until(process_in_state(self.user, pid, set(FINAL)), timeout, f"process {pid[:8]} to end")

    def log_text(self, pid: str) -> str:
        return "".join(entry.message for entry in self.user.get_logs(self.colony.name, pid, count=500))

    def prefix(self) -> str:
        """The comment prefix of this executor's jobs."""
        key = (Path(self.env["XDG_STATE_HOME"]) / "colonies" / "executors" / self.colony.name / "slurm-1" / "prvkey")
        wait_until(key.exists, 20, "the executor's key")  # written by its first start
        return f"colonies:{id_of(key.read_text().strip())[:16]}:"


@pytest.fixture
def run(server: ServerProc, colony: ColonyKeys, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Run]:
    request.getfixturevalue("slurm_env")
    r = Run(server, colony, tmp_path, config(tmp_path), SLURM_CONF=str(SLURM_CONF))
    r.start()
    try:
        yield r
    finally:
        r.close()


def test_a_job_succeeds_with_its_output_log_and_resources(run: Run) -> None:
    spec = func_spec("echo_json", run.colony.name, "slurm", args=["a", 2, {"k": 1}], maxexectime=60,
                     env={"GREETING": "hi there"})
    spec.conditions.cpu, spec.conditions.mem, spec.conditions.walltime = "1500m", "100Mi", 150
    pid = run.submit_spec(spec)
    square = run.submit("square", [7])
    done = run.wait(pid)
    assert done.state == ProcessState.SUCCESS, done.errors
    assert done.output == ["a", "2", '{"k": 1}']  # argv items: strings as they are, the rest as JSON
    log = run.log_text(pid)
    assert "hello from job" in log and "hi there" in log and "COMPLETED" in log
    jobid = log.split("submitted Slurm job ")[1].split()[0]
    show = slurm("scontrol", "-o", "show", "job", jobid).stdout
    assert "NumCPUs=2" in show and "TimeLimit=00:03:00" in show and "MinMemoryNode=100M" in show, show
    assert f"Comment={run.prefix()}{pid}:0" in show
    got = run.wait(square)
    assert got.state == ProcessState.SUCCESS and got.output == [49], got.errors
    assert "squaring 7" in run.log_text(square)


@pytest.mark.usefixtures("slurm_env")
def test_spec_fs_is_staged_for_the_job_and_its_output_synced_up(server: ServerProc, colony: ColonyKeys,
                                                                tmp_path: Path) -> None:
    """A snapshot goes down into the job's working directory (the kit's --fs-dir/<processid>, on the
    filesystem the node shares), the job reads it there and writes a synced dir, which goes up after."""
    from colonies.fs import FileSystem, store_from_env

    store = {"COLONIES_FS_DIR": str(tmp_path / "store")}
    extra = textwrap.dedent("""
        [commands.shout]
        argv = ["bash", "-c", "tr a-z A-Z < in/words.txt > out/loud.txt; pwd"]
        args = false
        output = "lines"
        """)
    r = Run(server, colony, tmp_path, config(tmp_path, extra=extra), SLURM_CONF=str(SLURM_CONF), **store)
    (tmp_path / "words.txt").write_text("hello slurm\n")
    fs = FileSystem(r.user, colony.name, store=store_from_env(store))
    fs.upload(tmp_path / "words.txt", "/inputs")
    snap = fs.create_snapshot("/inputs", "inputs-1")
    spec = func_spec("shout", colony.name, "slurm", maxexectime=60)
    spec.fs = {"snapshots": [{"snapshotid": snap.snapshotid, "label": "/inputs", "dir": "/in"}],
               "dirs": [{"label": "/loud/{processid}", "dir": "/out"}]}
    pid = r.submit_spec(spec)
    r.start()
    try:
        done = r.wait(pid)
        assert done.state == ProcessState.SUCCESS, done.errors
        assert done.output == [str(tmp_path / "fs" / pid)]  # the job ran in the staged working directory
        fs.download(f"/loud/{pid}", "loud.txt", tmp_path / "got")
        assert (tmp_path / "got" / "loud.txt").read_text() == "HELLO SLURM\n"
    finally:
        r.close()


def test_a_non_zero_exit_fails_with_the_state_exit_code_and_log_tail(run: Run) -> None:
    pid = run.submit("fail", ["3"])
    done = run.wait(pid)
    assert done.state == ProcessState.FAILED
    errors = "\n".join(done.errors or [])
    assert "FAILED" in errors and "exit code 3" in errors and "about to fail" in errors, errors


def test_a_process_env_name_not_allowed_fails_before_any_job(run: Run) -> None:
    pid = run.submit_spec(func_spec("echo_json", run.colony.name, "slurm", args=[], env={"LD_PRELOAD": "/x.so"}))
    done = run.wait(pid)
    assert done.state == ProcessState.FAILED and "LD_PRELOAD" in "\n".join(done.errors or [])
    assert not jobs_tagged(f"{run.prefix()}{pid}:")


def test_a_cancel_scancels_the_job(run: Run) -> None:
    pid = run.submit("sleep", ["300"])
    wait_until(lambda: "RUNNING" in run.log_text(pid), 30, "the job to run")
    tag = f"{run.prefix()}{pid}:"
    assert active_jobs(tag)
    run.user.cancel(pid)
    wait_until(lambda: not active_jobs(tag), 20, "the job to be cancelled")
    assert [state for state, _ in jobs_tagged(tag).values()] == ["CANCELLED"]
    assert run.user.get_process(pid).state == ProcessState.CANCELLED


def test_maxexectime_passing_scancels_the_job_of_each_attempt(run: Run) -> None:
    """Each attempt past its deadline has its job cancelled; the server re-queues the process once
    (maxretries 1), then fails it. No attempt's job outlives it."""
    pid = run.submit("sleep", ["300"], maxexectime=3, maxretries=1)
    done = run.wait(pid, 40)
    assert done.state == ProcessState.FAILED
    tag = f"{run.prefix()}{pid}:"
    wait_until(lambda: not active_jobs(tag), 20, "the last job to be cancelled")
    jobs = jobs_tagged(tag)
    assert sorted(comment for _, comment in jobs.values()) == [f"{tag}0", f"{tag}1"]  # one job per attempt
    assert {state for state, _ in jobs.values()} == {"CANCELLED"}
    assert run.log.read_text().count("[colonies] scancel") == 2  # (the last one after the process failed)


@pytest.mark.usefixtures("slurm_env")
def test_an_sbatch_that_blocks_is_given_up_and_tried_again(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    """Slurm at MaxJobCount makes sbatch sleep and retry for minutes (INFRA): the executor bounds each
    sbatch by submit_timeout and submits again; the job goes in once. Here the first sbatch call blocks
    (a wrapper first on PATH sleeps before it runs the real sbatch)."""
    real = shutil.which("sbatch")
    assert real
    bin_dir, marker = tmp_path / "bin", tmp_path / "blocked-once"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ ! -e {marker} ]; then
          touch {marker}
          echo "sbatch: Slurm temporarily unable to accept job, sleeping and retrying" >&2
          sleep 30
        fi
        exec {real} "$@"
        """))
    (bin_dir / "sbatch").chmod(0o755)
    cfg = config(tmp_path)
    cfg.write_text(cfg.read_text().replace("submit_timeout = 30", "submit_timeout = 1.5"))
    r = Run(server, colony, tmp_path, cfg, SLURM_CONF=str(SLURM_CONF), PATH=f"{bin_dir}:{os.environ['PATH']}")
    pid = r.submit("nap", [0.1, "once"])
    r.start()
    try:
        done = r.wait(pid, 40)
        assert done.state == ProcessState.SUCCESS and done.output == ["once"], done.errors
        assert "sbatch did not return within 1.5 s" in r.log_text(pid)
        assert len(jobs_tagged(f"{r.prefix()}{pid}:")) == 1
    finally:
        r.close()


def test_a_walltime_overrun_ends_timeout_and_fails_the_process(run: Run) -> None:
    """Slurm checks time limits about every 30 s: a 1-minute --time ends between 1:00 and 1:40."""
    started = time.monotonic()
    pid = run.submit("sleep", ["300"], walltime=60, maxexectime=150)
    done = run.wait(pid, timeout=140)
    assert done.state == ProcessState.FAILED
    errors = "\n".join(done.errors or [])
    assert "TIMEOUT" in errors, errors
    assert 55 < time.monotonic() - started < 140
    assert not active_jobs(f"{run.prefix()}{pid}:")


@pytest.mark.usefixtures("slurm_env")
def test_twenty_processes_through_a_restart_end_once_each(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    r = Run(server, colony, tmp_path, config(tmp_path, slots=8), SLURM_CONF=str(SLURM_CONF))
    pids = [r.submit("nap", [0.5 + (i % 3) * 0.5, f"p{i}"]) for i in range(20)]
    r.start()
    try:
        wait_until(lambda: sum(r.user.get_process(p).state == ProcessState.SUCCESS for p in pids) >= 4, 60,
                   "the first processes to end")
        prefix = r.prefix()
        assert active_jobs(prefix), "jobs should be in flight when the executor is killed"
        r.proc.send_signal(signal.SIGKILL)
        r.proc.wait(10)
        time.sleep(2)  # jobs end while no executor watches them
        r.start()
        for p in pids:
            r.wait(p, timeout=90)
        for i, p in enumerate(pids):
            done = r.user.get_process(p)
            assert done.state == ProcessState.SUCCESS and done.output == [f"p{i}"], (i, done.errors)
            events = [e.event for e in r.user.process_events(p)]
            assert events.count("assigned") == 1 and events.count("closed") == 1, (i, events)
        per_process: dict[str, int] = {}
        for _state, comment in jobs_tagged(prefix).values():
            pid = comment[len(prefix):].split(":")[0]
            per_process[pid] = per_process.get(pid, 0) + 1
        assert per_process == dict.fromkeys(pids, 1)  # one job each: none submitted twice
        assert not active_jobs(prefix)
        assert re.search(r"[1-9][0-9]* process\(es\) resumed", r.log.read_text())  # picked up, not re-run
    finally:
        r.close()


@pytest.mark.usefixtures("slurm_env")
def test_a_restart_adopts_a_job_its_state_file_missed_and_cancels_one_it_does_not_know(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    """Crash points, made by editing the state file of a killed executor: P1's entry has no job id (killed
    between sbatch and the write), so the job with P1's comment is adopted, not submitted again; P2 has no
    entry at all, so its job is an orphan and is cancelled, and P2 runs again once the server re-queues it
    at its deadline (attempt 1). Each process still ends once, with one job per attempt."""
    r = Run(server, colony, tmp_path, config(tmp_path, slots=2), SLURM_CONF=str(SLURM_CONF))
    p1 = r.submit("nap", [4, "one"], maxexectime=12, maxretries=2)
    p2 = r.submit("nap", [4, "two"], maxexectime=12, maxretries=2)
    r.start()
    try:
        prefix = r.prefix()
        wait_until(lambda: sorted(s for s, _ in active_jobs(prefix).values()) == ["RUNNING", "RUNNING"], 30,
                   "both jobs to run")
        r.stop()
        state = next((tmp_path / "jobs" / ".state").glob("*.json"))
        entries = json.loads(state.read_text())
        entries[p1]["jobid"] = ""
        del entries[p2]
        state.write_text(json.dumps(entries))
        r.start()
        one, two = r.wait(p1, 30), r.wait(p2, 60)
        assert (one.state, one.output, one.retries) == (ProcessState.SUCCESS, ["one"], 0), one.errors
        assert (two.state, two.output, two.retries) == (ProcessState.SUCCESS, ["two"], 1), two.errors
        jobs = sorted((comment[len(prefix):], state) for state, comment in jobs_tagged(prefix).values())
        assert jobs == sorted([(f"{p1}:0", "COMPLETED"), (f"{p2}:0", "CANCELLED"), (f"{p2}:1", "COMPLETED")])
        assert "1 process(es) resumed, 1 job(s) cancelled" in r.log.read_text()
    finally:
        r.close()


@pytest.mark.usefixtures("slurm_env")
def test_one_squeue_call_per_poll_for_all_jobs(
    server: ServerProc, colony: ColonyKeys, tmp_path: Path
) -> None:
    real = shutil.which("squeue", path=os.environ.get("PATH"))
    assert real
    bin_dir, calls = tmp_path / "bin", tmp_path / "squeue-calls"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(f'#!/bin/sh\necho "$(date +%s.%N) $*" >> {calls}\nexec {real} "$@"\n')
    (bin_dir / "squeue").chmod(0o755)
    r = Run(server, colony, tmp_path, config(tmp_path, slots=8), SLURM_CONF=str(SLURM_CONF),
            PATH=f"{bin_dir}:{os.environ['PATH']}")
    pids = [r.submit("nap", [1, f"n{i}"]) for i in range(8)]
    r.start()
    try:
        for p in pids:
            assert r.wait(p, timeout=60).state == ProcessState.SUCCESS
    finally:
        r.close()
    lines = calls.read_text().splitlines()
    polls = [line for line in lines if " -j " in line]
    assert polls, lines
    first, last = float(polls[0].split()[0]), float(polls[-1].split()[0])
    most = max(len(line.split(" -j ")[1].split()[0].split(",")) for line in polls)
    assert most >= 4, polls  # several jobs in one call
    # one call per poll interval (each call takes some time too, so fewer fit), whatever the job count
    assert len(polls) <= (last - first) / POLL + 2, (len(polls), last - first)
    assert len(lines) - len(polls) <= 2, lines  # the rest: one look for an earlier run's jobs at start


@pytest.mark.usefixtures("slurm_env", "podman_env", "base_image")
def test_a_container_in_a_job_is_removed_on_cancel(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    script = tmp_path / "container-job.sh"
    script.write_text(CONTAINER_JOB)
    extra = textwrap.dedent(f"""
        [commands.container]
        argv = ["bash", "{script}", "{BASE_IMAGE}"]
        args = false
        env = {{ CONTAINERS_CONF = "{PODMAN_CONF}" }}
        """)
    r = Run(server, colony, tmp_path, config(tmp_path, extra=extra), SLURM_CONF=str(SLURM_CONF))
    pid = r.submit("container", [])
    name = f"colonies-slurm-test-{pid[:16]}"

    def running() -> bool:
        out = podman("ps", "--filter", f"name={name}", "--format", "{{.Names}}", check=False).stdout
        return name in out

    r.start()
    try:
        wait_until(running, 60, "the job's container to run")
        r.user.cancel(pid)
        wait_until(lambda: not active_jobs(f"{r.prefix()}{pid}:"), 30, "the job to end")
        wait_until(lambda: not podman("ps", "-a", "--filter", f"name={name}", "-q", check=False).stdout.strip(), 15,
                   "the container to be removed")
    finally:
        r.close()
        left = podman("ps", "-a", "--filter", f"label=colonies.slurmtest={pid[:16]}", "-q", check=False).stdout.split()
        if left:
            podman("rm", "-f", "-t", "0", *left, check=False)
    assert not left, "a container outlived its job"


def test_the_config_is_checked_before_the_executor_starts(tmp_path: Path) -> None:
    from colonies.executors.slurm_config import load_config

    bad = tmp_path / "bad.toml"
    bad.write_text('[slurm]\nworkdir = "relative"\n[commands.x]\nargv = ["true"]\n')
    with pytest.raises(ValueError, match="workdir"):
        load_config(str(bad))
    bad.write_text('[slurm]\nworkdir = "/tmp/x"\nsbatch_options = ["qos=high"]\n[commands.x]\nargv = ["true"]\n')
    with pytest.raises(ValueError, match="sbatch options"):
        load_config(str(bad))
    bad.write_text('[slurm]\nworkdir = "/tmp/x"\n[functions.f]\ntarget = "no colon"\n')
    with pytest.raises(ValueError, match="module:function"):
        load_config(str(bad))


def test_conditions_map_to_sbatch_options() -> None:
    from colonies.errors import ProcessFailed
    from colonies.executors.slurm_config import batch_script, sbatch_resources
    from colonies.model import GPU, Conditions

    c = Conditions(nodes=2, processes=8, processespernode=4, cpu="2500m", mem="1Gi", storage="10G", walltime=3725,
                   gpu=GPU(name="a100", count=2))
    assert sbatch_resources(c) == ["--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--cpus-per-task=3",
                                   "--mem=1024M", "--tmp=9537M", "--time=0-01:02:05", "--gres=gpu:a100:2"]
    assert sbatch_resources(Conditions()) == []
    assert sbatch_resources(Conditions(cpu="500m", gpu=GPU(count=1))) == ["--cpus-per-task=1", "--gres=gpu:1"]
    for bad in (Conditions(cpu="lots"), Conditions(mem="12 parsecs"), Conditions(gpu=GPU(name="a;b", count=1))):
        with pytest.raises(ProcessFailed):
            sbatch_resources(bad)
    script = batch_script(["echo", "$(reboot)", "a b; rm -rf /"], {"X": "'quoted'"}, "/tmp/d d")
    assert "exec echo '$(reboot)' 'a b; rm -rf /'" in script and "export X=''\"'\"'quoted'\"'\"''" in script
    assert "cd '/tmp/d d' || exit 1" in script


@pytest.mark.usefixtures("slurm_env")
def test_the_poller_reads_ends_and_exit_codes_from_squeue_and_sacct(tmp_path: Path) -> None:
    """Poller against the real cluster: the end of a job from squeue (-t all), and the same end from
    sacct, which is where it comes from once squeue has forgotten the job (after MinJobAge)."""
    import asyncio

    from colonies.executors.slurm_queue import Poller

    ids = [slurm("sbatch", "--parsable", f"--output={tmp_path}/%j.out", "--wrap", f"exit {code}").stdout.strip()
           for code in (0, 3)]

    async def main() -> tuple[list[Any], dict[str, Any]]:
        poller = Poller(interval=0.2, env={**os.environ, "SLURM_CONF": str(SLURM_CONF)})
        ends = await asyncio.wait_for(asyncio.gather(*(poller.watch(j) for j in ids)), 30)
        return list(ends), await poller.from_sacct(ids)

    ends, later = asyncio.run(main())
    assert [(e.state, e.exit_code) for e in ends] == [("COMPLETED", 0), ("FAILED", 3)]
    assert "exit code 3" in ends[1].describe()
    assert [(later[j].state, later[j].exit_code) for j in ids] == [("COMPLETED", 0), ("FAILED", 3)]
