"""Helpers for the pilot tests and bench: a Slurm executor config with a [pilot] table, the allocator as a
subprocess (`colonies executor run --slurm`), and cleanup of its allocations (only its own: the cluster
is shared)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from colonies.client.core import func_spec
from colonies.client.sync import Client
from colonies.model import FunctionSpec, ProcessState
from colonies.protocol.crypto import id_of
from tests.conftest import ColonyKeys, ServerProc, free_port
from tests.kit_support import cli_env, process_in_state, start_executor, wait_until
from tests.slurm_support import ACTIVE, SLURM_CONF

FINAL = {ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED}
TYPE = "hpc"
KINDS = """
[commands.echo]
argv = ["echo"]
output = "text"

[commands.nap]
argv = ["python3", "-c", "import sys, time; time.sleep(float(sys.argv[1])); print('napped', sys.argv[1])"]
output = "lines"

[commands.envnames]
argv = ["python3", "-c", "import os; print(' '.join(sorted(k for k in os.environ if k.startswith(('COLONIES_', 'AWS_')))))"]
output = "text"

[commands.reach]
argv = ["python3", "-c", "import socket, sys; r = socket.socket().connect_ex(('127.0.0.1', int(sys.argv[1]))); print('reached' if r == 0 else f'unreachable: errno {r}')"]
output = "text"

[commands.shout]
argv = ["bash", "-c", "tr a-z A-Z < in/words.txt > out/loud.txt; pwd"]
args = false
output = "lines"

[functions.square]
target = "pilotfuncs:square"
"""


def write_config(tmp: Path, pilot: Mapping[str, Any] | None = None, name: str = "slurm.toml",
                 slurm: Mapping[str, Any] | None = None) -> Path:
    """A Slurm executor config serving KINDS; with `pilot`, its [pilot] table; `slurm` overrides [slurm]."""
    (tmp / "pilotfuncs.py").write_text("def square(x):\n    print('squaring', x)\n    return x * x\n")
    table = {"workdir": str(tmp / "jobs"), "partition": "debug", "poll_interval": 0.5, "submit_timeout": 20,
             "python": sys.executable, "keep_jobdirs": "failed", **(slurm or {})}
    lines = ["[executor]", f'type = "{TYPE}"', "slots = 8", "", "[slurm]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in table.items()] + [f'env = {{ PYTHONPATH = "{tmp}" }}']
    if pilot is not None:
        lines += ["", "[pilot]"] + [f"{k} = {toml_value(v)}" for k, v in pilot.items()]
    path = tmp / name
    path.write_text("\n".join(lines) + "\n" + textwrap.dedent(KINDS))
    return path


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Allocator:
    """`colonies executor run --slurm CONFIG` as a subprocess (restartable), and a user client."""

    def __init__(self, server: ServerProc, colony: ColonyKeys, tmp: Path, cfg: Path, name: str = "pilot-1",
                 slurm_conf: Path = SLURM_CONF, watch: float = 0.5, **env: str) -> None:
        self.env = cli_env(server, colony, SLURM_CONF=str(slurm_conf), COLONIES_FS_DIR=str(tmp / "store"), **env)
        self.cfg, self.name, self.log = cfg, name, tmp / f"{name}.log"
        self.slurm_env = {**self.env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = server.client(colony.user_prvkey)
        self.server_port = server.port
        self.colony = colony
        self.tmp = tmp
        self.watch = watch  # seconds between a running process' reads (the slots get the allocator's)

    def start(self) -> None:
        self.proc = start_executor(self.env, self.log, "--slurm", str(self.cfg), "--name", self.name,
                                   "--watch", str(self.watch), "--fs-dir", str(self.tmp / "fs"))

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (it cancels its allocations), SIGKILL if it is still there after `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        """Stop it, then cancel whatever of its own allocations is left."""
        self.stop()
        self.user.close_client()
        for jobid in self.jobs(active=True):
            slurm_run(self.slurm_env, "scancel", jobid)

    def tag(self) -> str:
        key = Path(self.env["XDG_STATE_HOME"]) / "colonies" / "executors" / self.colony.name / self.name / "prvkey"
        return f"colonies-pilot:{id_of(key.read_text().strip())[:16]}:"

    def jobs(self, active: bool = False) -> dict[str, str]:
        """Job id -> state of this allocator's allocations that the cluster still lists."""
        try:
            tag = self.tag()
        except OSError:
            return {}  # it has no identity yet
        out = slurm_run(self.slurm_env, "squeue", "-h", "-t", "all", "-O", "JobID:|,State:|,Comment:|").stdout
        found = {}
        for line in out.splitlines():
            f = [x.strip() for x in line.split("|")]
            if len(f) >= 3 and f[2].startswith(tag) and (not active or f[1] in ACTIVE):
                found[f[0]] = f[1]
        return found

    def client(self, prvkey: str) -> Client:
        return Client("127.0.0.1", self.server_port, prvkey=prvkey)

    def submit(self, funcname: str, args: list[Any], maxexectime: int = 60, **kw: Any) -> str:
        spec = func_spec(funcname, self.colony.name, TYPE, args=args, maxexectime=maxexectime,
                         maxretries=kw.pop("maxretries", 3), **kw)
        return self.submit_spec(spec)

    def submit_spec(self, spec: FunctionSpec) -> str:
        return self.user.submit(spec).processid

    def wait(self, pid: str, timeout: float = 60) -> Any:
        return wait_until(process_in_state(self.user, pid, set(FINAL)), timeout, f"process {pid[:8]} to end")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def executor_log(self) -> str:
        return "\n".join(e.message for e in self.user.get_logs(self.colony.name, executor_name=self.name, count=500))


def slurm_run(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=dict(env), capture_output=True, text=True, timeout=30, check=False)


# -- a second, small cluster (back-pressure) -------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def small_cluster(base: Path, directory: Path, max_jobs: int) -> Iterator[Path]:
    """A second single-node cluster beside the shared one (its own slurmctld and slurmd on other ports,
    its own state; the shared munged), that keeps at most `max_jobs` jobs of any state (MaxJobCount is
    one more: slurmctld counts it exclusive) and forgets ended ones after 2 s (MinJobAge). Yields its
    slurm.conf; stops its daemons (by their pids) after cancelling its jobs."""
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (directory / sub).mkdir(mode=0o700, exist_ok=True)
    text = base.read_text()
    ctld, slurmd = free_port(), free_port()
    while slurmd == ctld:
        slurmd = free_port()
    subs = {"SlurmctldPort": str(ctld), "SlurmdPort": str(slurmd), "ClusterName": "colonies-small",
            "StateSaveLocation": str(directory / "state"), "SlurmdSpoolDir": str(directory / "spool"),
            "SlurmctldPidFile": str(directory / "slurmctld.pid"), "SlurmdPidFile": str(directory / "slurmd.pid"),
            "SlurmctldLogFile": str(directory / "slurmctld.log"), "SlurmdLogFile": str(directory / "slurmd.log"),
            "JobCompLoc": str(directory / "jobcomp.txt"), "MinJobAge": "2"}
    for key, value in subs.items():
        text = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", text)
    text = text.replace("MinJobAge=2", f"MinJobAge=2\nMaxJobCount={max_jobs + 1}")
    conf = directory / "slurm.conf"
    conf.write_text(text)
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    pids: list[int] = []
    try:
        for argv in (["slurmctld", "-f", str(conf)], ["slurmd", "-f", str(conf), "-N", "localhost"]):
            subprocess.run(argv, env=env, check=True, timeout=30, capture_output=True)
        for name in ("slurmctld.pid", "slurmd.pid"):
            pidfile = directory / name
            wait_until(lambda pidfile=pidfile: pidfile.exists() and pidfile.read_text().strip(), 10, name)  # type: ignore[misc]
            pids.append(int((directory / name).read_text()))
        wait_until(lambda: "idle" in slurm_run(env, "sinfo", "-h", "-o", "%T").stdout, 30, "the small cluster")
        yield conf
    finally:
        if pids:
            slurm_run(env, "scancel", "--quiet", f"--user={os.getuid()}")
            with contextlib.suppress(AssertionError):  # stop the daemons all the same
                wait_until(lambda: not slurm_run(env, "squeue", "-h", "-o", "%i").stdout.strip(), 20, "its jobs")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            wait_until(lambda pid=pid: not _alive(pid), 20, f"slurm daemon {pid} to stop")  # type: ignore[misc]
