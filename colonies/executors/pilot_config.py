"""The [pilot] table of a Slurm executor config: run allocations of slots instead of a job per process.

    [pilot]
    nodes = 1                 # nodes per allocation (one slot executor per node)
    slots_per_node = 4        # processes each node runs at once
    walltime = 3600           # seconds per allocation (sbatch --time; Slurm rounds up to minutes)
    headroom = 30             # seconds at the end of the walltime no process may use (start, close, sync)
    max_queued = 1            # allocations pending in Slurm at most (the backlog)
    max_allocations = 4       # allocations pending or running at most
    idle_timeout = 300        # a node's slots exit after this long with nothing to do
    poll_interval = 5         # seconds between looks at the colony's waiting processes (and squeue)
    slot_poll = 10            # a slot's assign long-poll, seconds
    max_failures = 10         # submissions failing in a row before the allocator pauses
    max_start_failures = 3    # allocations in a row whose slots never started, before it pauses
    backoff = 5               # seconds before a failed submission is tried again, doubling ...
    backoff_max = 300         # ... up to this
    relay = ""                # "" (slots reach the server directly), "unix" or "tcp://HOST:PORT"
    relay_socket = ""         # the Unix socket's path (default <workdir>/.pilot/<allocator id>.sock)
    server = ""               # direct mode: HOST:PORT the nodes reach the server at (default: the allocator's)
    python = ""               # the nodes' python, with this package installed (default [slurm] python)
    launcher = "srun"         # srun (one slot executor per node) or "none" (1-node allocations only)
    wrap = []                 # argv put before each slot executor (e.g. ["unshare", "--net"], or a container)
    inprocess = false         # [functions.*] run inside the slot's python (warm) instead of one python each
    sbatch_options = []       # sbatch options for allocations, after [slurm]'s partition, account, options

The design, the guarantees and the comparison with HyperQueue's and Parsl's defaults: docs/hpc.md.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

LAUNCHERS = ("srun", "none")
START_MARGIN_S = 5  # what a slot's start may take, kept out of what a process may use


@dataclass(frozen=True)
class PilotConfig:
    nodes: int = 1
    slots_per_node: int = 4
    walltime: int = 3600
    headroom: int = 30
    max_queued: int = 1
    max_allocations: int = 4
    idle_timeout: float = 300.0
    poll_interval: float = 5.0
    slot_poll: int = 10
    max_failures: int = 10
    max_start_failures: int = 3
    backoff: float = 5.0
    backoff_max: float = 300.0
    relay: str = ""
    relay_socket: str = ""
    server: str = ""
    python: str = ""
    launcher: str = "srun"
    wrap: tuple[str, ...] = ()
    inprocess: bool = False
    sbatch_options: tuple[str, ...] = ()

    @property
    def slots(self) -> int:
        """Slots in one allocation."""
        return self.nodes * self.slots_per_node

    @property
    def longest(self) -> int:
        """The longest maxexectime a process may have to run in a fresh allocation: the walltime less the
        headroom, a slot's long-poll (a process taken at its end must still finish) and its start."""
        return self.walltime - self.headroom - self.slot_poll - START_MARGIN_S

    def fits(self, maxexectime: int) -> bool:
        """Whether a process with this maxexectime can run in a fresh allocation (none without one)."""
        return 0 < maxexectime <= self.longest


def _int(path: str, p: dict[str, Any], key: str, default: int, low: int) -> int:
    value = p.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{path}: pilot.{key} must be an integer >= {low}")
    return value


def _num(path: str, p: dict[str, Any], key: str, default: float, low: float) -> float:
    value = p.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < low:
        raise ValueError(f"{path}: pilot.{key} must be a number >= {low:g}")
    return float(value)


def _strings(path: str, p: dict[str, Any], key: str, options: bool = False) -> tuple[str, ...]:
    value = p.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{path}: pilot.{key} must be a list of strings")
    if options and not all(v.startswith("-") for v in value):
        raise ValueError(f"{path}: pilot.{key} must be sbatch options (each starting with -)")
    return tuple(value)


def has_pilot(path: str) -> bool:
    """Whether a Slurm executor config asks for pilot allocations (has a [pilot] table)."""
    with open(path, "rb") as f:
        return isinstance(tomllib.load(f).get("pilot"), dict)


def load_pilot(path: str) -> PilotConfig:
    """The [pilot] table of a config file; ValueError names a bad entry."""
    with open(path, "rb") as f:
        p = tomllib.load(f).get("pilot")
    if not isinstance(p, dict):
        raise ValueError(f"{path} has no [pilot] table")  # noqa: TRY004 - a config error, as the others
    known = set(PilotConfig.__dataclass_fields__)
    unknown = sorted(set(p) - known)
    if unknown:
        raise ValueError(f"{path}: unknown pilot setting(s): {', '.join(unknown)}")
    relay = str(p.get("relay", ""))
    if relay not in ("", "unix") and not (relay.startswith("tcp://") and relay[6:].rpartition(":")[2].isdigit()):
        raise ValueError(f"{path}: pilot.relay must be \"\", \"unix\" or \"tcp://HOST:PORT\"")
    launcher = str(p.get("launcher", "srun"))
    if launcher not in LAUNCHERS:
        raise ValueError(f"{path}: pilot.launcher must be one of {', '.join(LAUNCHERS)}")
    server = str(p.get("server", ""))
    if server and not server.rpartition(":")[2].isdigit():
        raise ValueError(f"{path}: pilot.server must be HOST:PORT")
    cfg = PilotConfig(
        nodes=_int(path, p, "nodes", 1, 1), slots_per_node=_int(path, p, "slots_per_node", 4, 1),
        walltime=_int(path, p, "walltime", 3600, 1), headroom=_int(path, p, "headroom", 30, 0),
        max_queued=_int(path, p, "max_queued", 1, 1), max_allocations=_int(path, p, "max_allocations", 4, 1),
        idle_timeout=_num(path, p, "idle_timeout", 300.0, 0.1), poll_interval=_num(path, p, "poll_interval", 5.0, 0.1),
        slot_poll=_int(path, p, "slot_poll", 10, 1), max_failures=_int(path, p, "max_failures", 10, 1),
        max_start_failures=_int(path, p, "max_start_failures", 3, 1), backoff=_num(path, p, "backoff", 5.0, 0.0),
        backoff_max=_num(path, p, "backoff_max", 300.0, 0.0), relay=relay, relay_socket=str(p.get("relay_socket", "")),
        server=server, python=str(p.get("python", "")), launcher=launcher, wrap=_strings(path, p, "wrap"),
        inprocess=bool(p.get("inprocess", False)),
        sbatch_options=_strings(path, p, "sbatch_options", options=True))
    if cfg.launcher == "none" and cfg.nodes > 1:
        raise ValueError(f"{path}: pilot.launcher \"none\" starts one slot executor: use srun for nodes > 1")
    if cfg.longest < 1:
        raise ValueError(f"{path}: pilot.walltime {cfg.walltime} s leaves no time for a process after the headroom "
                         f"({cfg.headroom} s), a slot's poll ({cfg.slot_poll} s) and its start ({START_MARGIN_S} s)")
    return cfg
