"""Helpers for the pilot tests and bench: a Slurm executor config with a [pilot] table, the allocator as a
subprocess (`colonies executor run --slurm`), and cleanup of its allocations (only its own: the cluster
is shared)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from colonies.client.core import func_spec
from colonies.model import FunctionSpec, ProcessState
from colonies.protocol.crypto import id_of
from tests.conftest import ColonyKeys, ServerProc
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

[commands.whereami]
argv = ["python3", "-c", "import json, os; json.dump([os.environ.get('SLURM_JOB_ID', ''), os.getcwd()], open(os.environ['COLONIES_OUTPUT'], 'w'))"]

[functions.square]
target = "pilotfuncs:square"
"""


def write_config(tmp: Path, pilot: Mapping[str, Any] | None = None, name: str = "slurm.toml",
                 slurm_extra: str = "") -> Path:
    """A Slurm executor config serving KINDS; with `pilot`, its [pilot] table."""
    (tmp / "pilotfuncs.py").write_text("def square(x):\n    print('squaring', x)\n    return x * x\n")
    lines = ["[executor]", f'type = "{TYPE}"', "slots = 8", "", "[slurm]", f'workdir = "{tmp / "jobs"}"',
             'partition = "debug"', "poll_interval = 0.5", "submit_timeout = 20", f'python = "{sys.executable}"',
             f'env = {{ PYTHONPATH = "{tmp}" }}', 'keep_jobdirs = "failed"', slurm_extra]
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
                 slurm_conf: Path = SLURM_CONF, **env: str) -> None:
        self.env = cli_env(server, colony, SLURM_CONF=str(slurm_conf), COLONIES_FS_DIR=str(tmp / "store"), **env)
        self.cfg, self.name, self.log = cfg, name, tmp / f"{name}.log"
        self.slurm_env = {**self.env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = server.client(colony.user_prvkey)
        self.colony = colony
        self.tmp = tmp

    def start(self) -> None:
        self.proc = start_executor(self.env, self.log, "--slurm", str(self.cfg), "--name", self.name,
                                   "--watch", "0.5", "--fs-dir", str(self.tmp / "fs"))

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
        try:
            left = self.jobs(active=True)
        except OSError:
            return  # it never started
        for jobid in left:
            slurm_run(self.slurm_env, "scancel", jobid)

    def tag(self) -> str:
        key = Path(self.env["XDG_STATE_HOME"]) / "colonies" / "executors" / self.colony.name / self.name / "prvkey"
        return f"colonies-pilot:{id_of(key.read_text().strip())[:16]}:"

    def jobs(self, active: bool = False) -> dict[str, str]:
        """Job id -> state of this allocator's allocations that the cluster still lists."""
        out = slurm_run(self.slurm_env, "squeue", "-h", "-t", "all", "-O", "JobID:|,State:|,Comment:|").stdout
        tag = self.tag()
        found = {}
        for line in out.splitlines():
            f = [x.strip() for x in line.split("|")]
            if len(f) >= 3 and f[2].startswith(tag) and (not active or f[1] in ACTIVE):
                found[f[0]] = f[1]
        return found

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
