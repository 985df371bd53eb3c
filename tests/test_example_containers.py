"""examples/containers/run.sh end to end, with the real podman: a server container, two executor
containers (a user's module on top of the executor image; keys from the environment and from a podman
secret), nine processes from the host, the drain on `podman stop`; and nothing it made is left behind,
whether it runs to the end or is interrupted."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import container_support
from tests.container_support import Images, podman

base_image = container_support.base_image
podman_env = container_support.podman_env
colonies_images = container_support.colonies_images

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "containers" / "run.sh"
TIMEOUT_S = 300


def left_behind(run: str) -> list[str]:
    """What podman still holds of an example run: containers, volumes, secrets, images."""
    label = f"label=colonies.example={run}"
    found = podman("ps", "-aq", "--filter", label).stdout.split()
    found += podman("volume", "ls", "-q", "--filter", label).stdout.split()
    found += [s for s in podman("secret", "ls", "--format", "{{.Name}}").stdout.split() if run in s]
    found += podman("images", "-q", "--filter", label).stdout.split()
    return found


def run_id(output: str) -> str:
    m = re.search(r"removed the containers, volume, secret and image of run ([0-9a-f]{8})", output)
    assert m, output[-3000:]
    return m.group(1)


def test_the_example_runs_end_to_end_and_cleans_up(colonies_images: Images, podman_env: dict[str, str]) -> None:
    start = time.monotonic()
    r = subprocess.run([str(SCRIPT)], env=podman_env, capture_output=True, text=True, timeout=TIMEOUT_S,
                       check=False)
    out = r.stdout + r.stderr
    print(f"run.sh: {time.monotonic() - start:.1f}s")
    assert r.returncode == 0, out[-4000:]
    assert "9 processes in" in out and ", 0 failed" in out, out[-4000:]
    assert len(re.findall(r"^(count_primes|digest|whoami) .* SUCCESS ", out, re.MULTILINE)) == 9, out[-4000:]
    assert "[10001, '/opt/colonies', '/app']" in out  # it ran inside the user's image, as the image's user
    executors = set(re.findall(r" SUCCESS .*(exec[12])$", out, re.MULTILINE))
    print(f"work done by {sorted(executors)}")
    assert {"exec1", "exec2"} >= executors and executors
    for name in ("exec1", "exec2"):
        assert f"executor {name}: healthy" in out
        assert f"executor {name} exited with 0" in out
    assert left_behind(run_id(out)) == []


def test_an_interrupted_example_cleans_up(colonies_images: Images, podman_env: dict[str, str],
                                          tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(SCRIPT)], env={**podman_env, "COLONIES_EXAMPLE_KEEP": "1"}, stdout=f,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while "Ctrl-C here stops and removes it all" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.2)
        run = re.search(r"colonies-example-([0-9a-f]{8})", log.read_text())
        assert run
        assert left_behind(run.group(1)) != []  # all of it still running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out = log.read_text()
    assert run_id(out) == run.group(1)
    assert left_behind(run.group(1)) == []
