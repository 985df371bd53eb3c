"""How many workers a queue needs: the pure rule shared by the autoscaled ExecutorDeployment.

    desired(current=2, waiting=7, running=2, minimum=0, maximum=3, per_replica=1, idle_for=[0, 0],
            idle_timeout=60)  # -> 3

Up at once, down slowly (as HyperQueue's auto-allocation and Parsl's block scaling): while work waits, the
target is enough workers for the waiting and the running processes (`per_replica` each), never fewer than
now; with nothing waiting, a worker goes only when it has been idle for `idle_timeout` seconds. `idle_for`
gives, per current worker, the seconds since it last ran a process or the type last had waiting work,
whichever is later; the caller removes the longest idle first. The result is always within
[minimum, maximum]. The Slurm pilot allocator (pilot.py) follows the same rule with allocations for workers
and its own limits (backlog, walltime) on top.
"""

from __future__ import annotations

from collections.abc import Sequence


def desired(current: int, waiting: int, running: int, *, minimum: int, maximum: int, per_replica: int,
            idle_for: Sequence[float], idle_timeout: float) -> int:
    """The number of workers to have (see the module)."""
    per = max(per_replica, 1)
    need = -(-(waiting + running) // per)  # ceil
    if waiting > 0:
        target = max(current, need)
    else:
        idle = sum(1 for s in idle_for if s >= idle_timeout)
        target = max(current - idle, -(-running // per))
    return max(minimum, min(maximum, target))

