"""The Slurm executor's configuration (the TOML file) and what it makes of a process: sbatch options
from its conditions, the batch script, the job's environment. The file's format and the mapping are
described in slurm.py."""

from __future__ import annotations

import math
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from colonies.errors import ProcessFailed
from colonies.executors.containers import cpus_arg, memory_arg
from colonies.model import Conditions

OUTPUTS = ("file", "text", "lines", "json")
KEEP = ("never", "failed", "always")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_GPU_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class JobKind:
    """A [commands.NAME] or [functions.NAME] entry: what a job of that function runs."""

    name: str
    argv: tuple[str, ...] = ()
    target: str = ""  # [functions.*]: module:function
    args: bool = True
    output: str = "file"
    cwd: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    sbatch_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlurmConfig:
    """The [slurm] table."""

    workdir: Path
    partition: str = ""
    account: str = ""
    sbatch_options: tuple[str, ...] = ()
    poll_interval: float = 5.0
    submit_timeout: float = 60.0
    python: str = "python3"
    env: Mapping[str, str] = field(default_factory=dict)
    process_env: tuple[str, ...] = ()
    keep_jobdirs: str = "failed"
    state_file: str = ""


def _strings(path: str, where: str, value: Any, options: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{path}: {where} must be a list of strings")
    if options and not all(v.startswith("-") for v in value):
        raise ValueError(f"{path}: {where} must be sbatch options (each starting with -)")
    return tuple(value)


def _env(path: str, where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {where} must be a table")  # noqa: TRY004 - a config error, as the others
    for key in value:
        if not ENV_KEY.match(key):
            raise ValueError(f"{path}: {where} key {key!r} is not a variable name")
    return {str(k): str(v) for k, v in value.items()}


def load_config(path: str) -> tuple[dict[str, Any], SlurmConfig, dict[str, JobKind]]:
    """The [executor] table, the [slurm] table and the job kinds of a config file; ValueError names a bad entry."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    head, s = data.get("executor", {}), data.get("slurm", {})
    if not isinstance(s, dict) or not isinstance(s.get("workdir"), str) or not s["workdir"].startswith("/"):
        raise ValueError(f"{path}: slurm.workdir (an absolute path on the shared filesystem) is required")
    keep = s.get("keep_jobdirs", "failed")
    if keep not in KEEP:
        raise ValueError(f"{path}: slurm.keep_jobdirs must be one of {', '.join(KEEP)}")
    cfg = SlurmConfig(
        workdir=Path(s["workdir"]), partition=str(s.get("partition", "")), account=str(s.get("account", "")),
        sbatch_options=_strings(path, "slurm.sbatch_options", s.get("sbatch_options", []), options=True),
        poll_interval=float(s.get("poll_interval", 5.0)), submit_timeout=float(s.get("submit_timeout", 60.0)),
        python=str(s.get("python", "python3")), env=_env(path, "slurm.env", s.get("env", {})),
        process_env=_strings(path, "slurm.process_env", s.get("process_env", [])), keep_jobdirs=keep,
        state_file=str(s.get("state_file", "")))
    if cfg.poll_interval <= 0 or cfg.submit_timeout <= 0:
        raise ValueError(f"{path}: slurm.poll_interval and slurm.submit_timeout must be positive")
    kinds: dict[str, JobKind] = {}
    for table in ("commands", "functions"):
        for name, c in (data.get(table) or {}).items():
            where = f"{table}.{name}"
            if name in kinds:
                raise ValueError(f"{path}: {where}: the name is also a command")
            output = c.get("output", "file")
            if output not in OUTPUTS:
                raise ValueError(f"{path}: {where}.output must be one of {', '.join(OUTPUTS)}")
            argv: tuple[str, ...] = ()
            target = ""
            if table == "commands":
                argv = _strings(path, f"{where}.argv", c.get("argv"))
            else:
                target = c.get("target", "")
                if not isinstance(target, str) or not _TARGET.match(target):
                    raise ValueError(f"{path}: {where}.target must be module:function")
            kinds[name] = JobKind(
                name=name, argv=argv, target=target, args=bool(c.get("args", True)), output=output,
                cwd=str(c.get("cwd", "")), env=_env(path, f"{where}.env", c.get("env", {})),
                sbatch_options=_strings(path, f"{where}.sbatch_options", c.get("sbatch_options", []), options=True))
    if not kinds:
        raise ValueError(f"{path} lists no [commands.NAME] or [functions.NAME] tables")
    return head, cfg, kinds


# -- conditions -> sbatch options ---------------------------------------------------------------------
def _cpus(cpu: str) -> int:
    """Whole CPUs for conditions.cpu (read as the container executor reads it), rounded up."""
    return math.ceil(Decimal(cpus_arg(cpu) or "0"))


def _mib(what: str, amount: str) -> int:
    """MiB, rounded up, for conditions.mem or .storage (read as the container executor reads memory)."""
    try:
        return math.ceil(int(memory_arg(amount) or "0") / 2**20)
    except ProcessFailed:
        raise ProcessFailed(f"conditions.{what} {amount!r} is not an amount (e.g. 512Mi, 4Gi)") from None


def walltime(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days}-{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def sbatch_resources(c: Conditions) -> list[str]:
    """The sbatch options a process' conditions ask for (see the module docstring)."""
    for what in ("nodes", "processes", "processespernode", "walltime"):
        if getattr(c, what) < 0:
            raise ProcessFailed(f"conditions.{what} must not be negative")
    opts = []
    if c.nodes:
        opts.append(f"--nodes={c.nodes}")
    if c.processes:
        opts.append(f"--ntasks={c.processes}")
    if c.processespernode:
        opts.append(f"--ntasks-per-node={c.processespernode}")
    if cpus := _cpus(c.cpu):
        opts.append(f"--cpus-per-task={cpus}")
    if mem := _mib("mem", c.mem):
        opts.append(f"--mem={mem}M")
    if tmp := _mib("storage", c.storage):
        opts.append(f"--tmp={tmp}M")
    if c.walltime:
        opts.append(f"--time={walltime(c.walltime)}")
    if c.gpu.count < 0:
        raise ProcessFailed("conditions.gpu.count must not be negative")
    if c.gpu.count:
        if c.gpu.name and not _GPU_NAME.match(c.gpu.name):
            raise ProcessFailed(f"conditions.gpu.name {c.gpu.name!r} is not a GRES type name")
        opts.append(f"--gres=gpu:{c.gpu.name + ':' if c.gpu.name else ''}{c.gpu.count}")
    return opts


def batch_script(argv: list[str], env: Mapping[str, str], cwd: str) -> str:
    """A bash script that exports `env`, enters `cwd` and execs `argv`, every value shell-quoted."""
    lines = ["#!/bin/bash", "# written by the colonies Slurm executor"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items() if ENV_KEY.match(k)]
    lines += [f"cd {shlex.quote(cwd)} || exit 1", "exec " + " ".join(shlex.quote(a) for a in argv), ""]
    return "\n".join(lines)


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What sbatch runs with (and, by Slurm's default --export=ALL, what the job starts from): the
    executor's environment without the COLONIES_* and AWS_* variables, which may hold keys."""
    return {k: v for k, v in environ.items() if not k.startswith(("COLONIES_", "AWS_"))}
