"""The executor kit: write an executor in a few lines (see kit.py), run it with `colonies executor run`.

    kit.py        Executor: declare functions, register, pull with slots, drain on SIGTERM
    running.py    one assignment: deadline, cancel detection, retries, the attempt fence, reporting
    functions.py  how args, kwargs and parents' outputs become a call; type-hint conversion
    context.py    Context, the running function's view of its process
    retry.py      RetryPolicy
    capture.py    print/logging output of a running function to its process log
    state.py      an executor's identity kept in a state directory across restarts
    loader.py     load_executor("module:object")
    commands.py   a ready executor for the shell commands of a TOML allowlist
    containers.py a ready executor running each process in a container (podman, or the docker CLI)
    slurm.py      a ready executor turning each process into a Slurm batch job (slurm_config.py: its
                  TOML and the conditions -> sbatch mapping; slurm_queue.py: sbatch, scancel, one squeue
                  poll for all jobs; slurm_job.py: runs a Python function inside a job)
    reconciler.py Reconciler: a class that makes blueprints of a kind so (reconcile, cleanup, status)
    deployment.py the ExecutorDeployment reconciler: N executor containers per blueprint (podman)
"""

from __future__ import annotations

from colonies.errors import ArgumentError, Cancelled, ProcessFailed
from colonies.executors.context import Context
from colonies.executors.kit import Executor
from colonies.executors.loader import load_executor
from colonies.executors.retry import RetryPolicy

__all__ = ["ArgumentError", "Cancelled", "Context", "Executor", "ProcessFailed", "RetryPolicy", "load_executor"]
