"""Container fixtures: the real podman (Debian's, with runc) and the base image scripts/containers makes.

`podman_env` is os.environ with CONTAINERS_CONF set to deploy/podman/containers.conf (runc, lowered
rlimits, host networking, as these machines need); `base_image` names the debootstrap-made Debian image
with python3 (localhost/colonies-base:bookworm). Without podman or the image the tests skip on a laptop
and fail in CI; `scripts/containers` provisions both. `colonies_images` builds the project's server and
executor images on that base (scripts/build-images, cached) and names them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Images:
    """The project's images, as scripts/build-images made them (see deploy/Containerfile.*)."""

    server: str
    executor: str


IMAGES_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def colonies_images(base_image: str) -> Images:
    """Build (or find up to date) localhost/colonies-server:dev and localhost/colonies-executor:dev.

    Runs scripts/build-images once per session: a no-op in under a second when the source, the pins
    and the Containerfiles are unchanged, about 35 s when they changed. A failed build fails the test.
    """
    env = {**podman_environ(), "COLONIES_BASE_IMAGE": base_image}
    try:
        r = subprocess.run([str(ROOT / "scripts" / "build-images")], env=env, capture_output=True, text=True,
                           timeout=IMAGES_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"scripts/build-images took over {IMAGES_TIMEOUT_S}s") from exc
    if r.returncode != 0:
        raise RuntimeError(f"scripts/build-images failed ({r.returncode}): {r.stderr[-3000:]}")
    found = dict(line.removeprefix("export ").split("=", 1) for line in r.stdout.splitlines()
                 if line.startswith("export "))
    return Images(server=found["COLONIES_SERVER_IMAGE"], executor=found["COLONIES_EXECUTOR_IMAGE"])
