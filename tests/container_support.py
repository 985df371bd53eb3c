"""Container fixtures: the real podman (Debian's, with runc) and the base image scripts/containers makes.

`podman_env` is os.environ with CONTAINERS_CONF set to deploy/podman/containers.conf (runc, lowered
rlimits, host networking, as these machines need); `base_image` names the debootstrap-made Debian image
with python3 (localhost/colonies-base:bookworm). Without podman or the image the tests skip on a laptop
and fail in CI; `scripts/containers` provisions both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need_service

ROOT = Path(__file__).resolve().parent.parent
PODMAN_CONF = Path(os.environ.get("COLONIES_TEST_PODMAN_CONF", ROOT / "deploy" / "podman" / "containers.conf"))
BASE_IMAGE = os.environ.get("COLONIES_TEST_BASE_IMAGE", "localhost/colonies-base:bookworm")


def podman_environ() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(PODMAN_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS` with the project's containers.conf."""
    return subprocess.run(["podman", *args], env=podman_environ(), capture_output=True, text=True,
                          timeout=timeout, check=check)


@pytest.fixture(scope="session")
def podman_env() -> dict[str, str]:
    if shutil.which("podman") is None:
        need_service("podman", "podman not found (scripts/containers installs it)")
    r = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if r.returncode != 0:
        need_service("podman", f"podman info failed: {r.stderr[-2000:]}")
    return podman_environ()


@pytest.fixture(scope="session")
def base_image(podman_env: dict[str, str]) -> str:
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        need_service("base image", f"{BASE_IMAGE} is missing (scripts/containers builds it)")
    return BASE_IMAGE
