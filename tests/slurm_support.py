"""Slurm fixtures: the single-node cluster scripts/slurm runs on loopback (Debian's slurm-wlm and munge).

`slurm_env` is os.environ with SLURM_CONF naming that cluster's slurm.conf (COLONIES_TEST_SLURM_CONF,
which scripts/test exports; /tmp/colonies-slurm/slurm.conf by default). Without sbatch, or when the
cluster does not answer, tests skip on a laptop and fail in CI; `scripts/slurm` provisions it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need_service

SLURM_CONF = Path(os.environ.get("COLONIES_TEST_SLURM_CONF", "/tmp/colonies-slurm/slurm.conf"))
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING",
          "STAGE_OUT"}


def slurm_environ() -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(SLURM_CONF)}


def slurm(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a Slurm client command (sbatch, squeue, scontrol...) against the test cluster."""
    return subprocess.run(list(args), env=slurm_environ(), capture_output=True, text=True, timeout=timeout,
                          check=check)


def jobs_tagged(prefix: str = "colonies:") -> dict[str, tuple[str, str]]:
    """Job id -> (state, comment) of every job the cluster still lists whose comment starts with `prefix`."""
    out = slurm("squeue", "-h", "-t", "all", "-O", "JobID:|,State:|,Comment:|").stdout
    jobs = {}
    for line in out.splitlines():
        f = [x.strip() for x in line.split("|")]
        if len(f) >= 3 and f[2].startswith(prefix):
            jobs[f[0]] = (f[1], f[2])
    return jobs


def active_jobs(prefix: str = "colonies:") -> dict[str, tuple[str, str]]:
    """The jobs tagged `prefix` that are queued or running."""
    return {j: v for j, v in jobs_tagged(prefix).items() if v[0] in ACTIVE}


@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    if shutil.which("sbatch") is None:
        need_service("slurm", "sbatch not found (scripts/slurm installs and starts Slurm)")
    if not SLURM_CONF.exists():
        need_service("slurm", f"{SLURM_CONF} is missing (scripts/slurm starts a test cluster)")
    try:
        r = slurm("sinfo", "-h", "-o", "%T", check=False, timeout=20)
    except subprocess.TimeoutExpired:
        need_service("slurm", "sinfo did not answer within 20 s (is slurmctld running? scripts/slurm)")
        raise
    if r.returncode != 0 or not any(s in r.stdout for s in ("idle", "mixed", "allocated")):
        need_service("slurm", f"the test cluster is not ready: {r.stdout.strip()} {r.stderr.strip()[-1000:]}")
    return slurm_environ()
