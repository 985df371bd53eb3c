"""The executor Deployment of deploy/k8s runs under `podman kube play`: two replicas register with a server
on loopback and pull work; `podman kill` of the container running a process re-assigns that process to
the other pod after its maxexectime; every process ends SUCCESSFUL exactly once; `podman kube down`
leaves no pod, container or volume of the play.

The test writes an overlay of deploy/k8s/overlays/kube-play (the documented way to point it at a server
and a colony): the server's port, the colony, the colony owner's key from a Secret, an image built FROM
localhost/colonies-executor:dev with a small module, and a name prefix unique to the run. podman 4.3
reads secretRef from a podman secret holding a JSON map of base64 values, so the rendered Secret is
created that way and left out of the played YAML.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from colonies.client.core import func_spec
from colonies.model import Process, ProcessState
from tests.conftest import ColonyKeys, ServerProc, make_server, setup_colony
from tests.container_support import Images, base_image, colonies_images, podman, podman_env  # noqa: F401
from tests.k8s_support import K8S, containers, dump, load_file, named, of_kind, render

pytestmark = pytest.mark.slow

TYPE = "k8s-test"
T = TypeVar("T")

MODULE = f'''\
"""Functions the pods of tests/test_kube_play.py serve."""
import os
import time

from colonies import Executor

ex = Executor(executortype="{TYPE}", slots=1)


@ex.function
def work(seconds: float, tag: str) -> list[str]:
    time.sleep(seconds)
    return [tag, os.environ["COLONIES_EXECUTOR_NAME"]]
'''


def until(what: str, probe: Callable[[], T | None], timeout: float, explain: Callable[[], str] = str) -> T:
    """Poll `probe` every 0.2 s until it returns a value, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got is not None:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{explain()}")


@dataclass
class Play:
    """One `podman kube play` of the executor Deployment, and what it made."""

    path: Path
    prefix: str
    image: str
    volumes: list[str]  # the pod's emptyDirs: podman 4.3 makes each a named volume
    secrets: list[str] = field(default_factory=list)

    def pods(self) -> list[str]:
        out = podman("pod", "ps", "--filter", f"name=^{self.prefix}", "--format", "{{.Name}}", check=False).stdout
        return sorted(out.split())

    def containers(self) -> list[str]:
        """The containers of the play's pods, their infra containers included."""
        found: list[str] = []
        for pod in self.pods():
            out = podman("ps", "-a", "--filter", f"pod={pod}", "--format", "{{.ID}}", check=False).stdout
            found += out.split()
        return sorted(found)

    def exists(self, container: str) -> bool:
        return podman("container", "exists", container, check=False).returncode == 0

    def has_volume(self, name: str) -> bool:
        return podman("volume", "exists", name, check=False).returncode == 0

    def logs(self) -> str:
        names = [f"{pod}-executor" for pod in self.pods()]
        return "\n".join(f"--- {c}\n{podman('logs', c, check=False).stdout[-3000:]}"
                         f"{podman('logs', c, check=False).stderr[-3000:]}" for c in names)


def build_image(tmp: Path, tag: str, executor_image: str) -> str:
    """The documented way to add functions: an image FROM the executor image with a module in /app."""
    ctx = tmp / "image"
    ctx.mkdir()
    (ctx / "k8sfuncs.py").write_text(MODULE)
    (ctx / "Containerfile").write_text(f'FROM {executor_image}\nCOPY k8sfuncs.py /app/\nCMD ["k8sfuncs"]\n')
    image = f"localhost/colonies-k8s-test:{tag}"
    podman("build", "-q", "--format", "docker", "--label", "colonies.test=1", "-t", image, str(ctx), timeout=300)
    return image


def write_overlay(tmp: Path, srv: ServerProc, keys: ColonyKeys, prefix: str, image: str) -> Path:
    """An overlay of overlays/kube-play as docs/kubernetes.md shows it: server port, colony, image, and
    the Secret left out (podman takes it from a podman secret, see `play`)."""
    site = tmp / "site"
    site.mkdir()
    name, tag = image.rsplit(":", 1)
    (site / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "overlays" / "kube-play", site)],  # kustomize wants it relative
        "namePrefix": f"{prefix}-",
        "labels": [{"pairs": {"colonies.test": "1"}, "includeSelectors": False, "includeTemplates": True}],
        "configMapGenerator": [{"name": "colonies-executor", "behavior": "merge",
                                "literals": [f"COLONIES_SERVER_PORT={srv.port}", f"COLONIES_COLONY_NAME={keys.name}"]}],
        "images": [{"name": "localhost/colonies-executor", "newName": name, "newTag": tag}],
        "patches": [{"patch": "$patch: delete\napiVersion: v1\nkind: Secret\n"
                              "metadata:\n  name: colonies-executor-keys\n"}],
    }, indent=1))
    return site


def play(tmp: Path, site: Path, prefix: str, image: str, keys: ColonyKeys) -> Play:
    """Render the overlay to play.yaml, and create the Secret it reads as podman 4.3 wants it: a podman
    secret holding a JSON map of base64 values."""
    docs = render(site)
    assert of_kind(docs, "Secret") == [], "a Secret in the played YAML would replace the podman secret"
    deployment = named(docs, "Deployment", f"{prefix}-colonies-executor")
    p = Play(path=tmp / "play.yaml", prefix=prefix, image=image,
             volumes=[v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]])
    # the name the pods read (namePrefix renames no reference to a Secret the overlay deleted)
    (secret,) = [src["secretRef"]["name"] for c in containers(deployment) for src in c.get("envFrom", [])
                 if "secretRef" in src]
    value = tmp / "secret.json"
    value.touch(0o600)
    value.write_text(json.dumps({"COLONIES_COLONY_PRVKEY": base64.b64encode(keys.colony_prvkey.encode()).decode()}))
    podman("secret", "create", secret, str(value))
    value.unlink()
    p.secrets.append(secret)
    p.path.write_text(dump(docs))
    return p


@pytest.fixture
def kube(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ServerProc, ColonyKeys, Play]]:
    images: Images = request.getfixturevalue("colonies_images")  # scripts/build-images, once per session
    srv = make_server(tmp_path)
    srv.start()
    tag = secrets.token_hex(4)
    prefix = f"kp{tag}"
    image = ""
    p: Play | None = None
    try:
        keys = setup_colony(srv, name=f"kube{tag}")  # its own executor has type "test", not TYPE
        image = build_image(tmp_path, tag, images.executor)
        site = write_overlay(tmp_path, srv, keys, prefix, image)
        p = play(tmp_path, site, prefix, image, keys)
        yield srv, keys, p
    finally:
        if p is not None:  # whatever the test left: its pods, containers, volumes and secrets
            podman("kube", "down", str(p.path), check=False, timeout=120)
            for pod in p.pods():
                podman("pod", "rm", "-f", "-t", "0", pod, check=False)
            for vol in p.volumes:
                podman("volume", "rm", "-f", vol, check=False)
            for s in p.secrets:
                podman("secret", "rm", s, check=False)
        if image:
            podman("rmi", "-f", image, check=False)
        srv.stop()


def container_running(name: str) -> bool:
    return podman("inspect", name, "--format", "{{.State.Running}}").stdout.strip() == "true"


def events(srv: ServerProc, keys: ColonyKeys, pid: str) -> list[str]:
    with srv.client(keys.user_prvkey) as c:
        return [e.event for e in c.process_events(pid)]


def test_executor_deployment_under_kube_play(kube: tuple[ServerProc, ColonyKeys, Play]) -> None:
    srv, keys, p = kube
    started = time.monotonic()
    deployment = named(load_file(p.path), "Deployment", f"{p.prefix}-colonies-executor")
    replicas = deployment["spec"]["replicas"]
    assert replicas == 2
    volumes = p.volumes
    r = podman("kube", "play", str(p.path), check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(p.pods()) == replicas, p.pods()
    played = p.containers()
    assert len(played) == 2 * replicas, played  # each pod: its infra container and the executor
    assert [v for v in volumes if p.has_volume(v)] == volumes  # emptyDirs become podman volumes

    user = srv.client(keys.user_prvkey)
    with user:
        # Each pod adds and approves itself, named after its pod (COLONIES_EXECUTOR_NAME from metadata.name).
        def registered() -> dict[str, str] | None:
            listed = [e for e in user.get_executors(keys.name) or [] if e.executortype == TYPE]
            return {e.executorid: e.executorname for e in listed} if len(listed) == replicas else None

        executors = until("both pods to register", registered, 60, p.logs)
        pods = {f"{p.prefix}-colonies-executor-pod-{i}" for i in range(replicas)}
        assert set(executors.values()) == pods
        ready = time.monotonic() - started

        # podman runs no probes here (no systemd): run the readiness probe's command in each pod's container
        (probe,) = {tuple(c["readinessProbe"]["exec"]["command"]) for c in containers(deployment)}
        def probe_passes(container: str) -> Callable[[], bool | None]:
            return lambda: podman("exec", container, *probe, check=False).returncode == 0 or None

        for pod in sorted(pods):
            until(f"{pod}'s readiness probe to pass", probe_passes(f"{pod}-executor"), 30, p.logs)

        # Both pods pull work: one slot each, so while one runs a process the other takes the next.
        def submit(seconds: float, tag: str, maxexectime: int) -> Process:
            spec = func_spec("work", keys.name, TYPE, args=[seconds, tag], maxexectime=maxexectime, maxretries=3)
            return user.submit(spec)

        def finished(pid: str) -> Callable[[], Process | None]:
            def probe() -> Process | None:
                proc = user.get_process(pid)
                return proc if proc.state in (ProcessState.SUCCESS, ProcessState.FAILED) else None
            return probe

        warm = [submit(1.5, f"warm-{i}", 30) for i in range(4)]
        done = [until(f"process {w.processid[:8]}", finished(w.processid), 60, p.logs) for w in warm]
        assert [d.state for d in done] == [ProcessState.SUCCESS] * 4
        assert {d.output[1] for d in done if d.output} == pods, [d.output for d in done]

        # Kill the container running a process: the server re-queues it after maxexectime and the
        # other pod runs it to the end.
        victim = submit(4, "victim", 8)

        def running() -> Process | None:
            proc = user.get_process(victim.processid)
            return proc if proc.state == ProcessState.RUNNING and proc.assignedexecutorid else None

        first = until("the victim to run", running, 30, p.logs)
        killed_pod = executors[first.assignedexecutorid]
        killed_at = time.monotonic()
        killed = f"{killed_pod}-executor"  # <pod>-<container>, as podman names a played pod's containers
        podman("kill", killed)
        assert container_running(killed) is False
        end = until("the victim to finish", finished(victim.processid), 60, p.logs)
        requeued_after = time.monotonic() - killed_at
        assert end.state == ProcessState.SUCCESS
        (survivor,) = pods - {killed_pod}
        assert end.output == ["victim", survivor]
        assert executors[end.assignedexecutorid] == survivor
        assert container_running(killed) is False  # podman does not restart a container it was told to kill

        for proc in [*done, end]:
            trail = events(srv, keys, proc.processid)
            assert trail.count("closed") == 1 and "failed" not in trail, (proc.processid, trail)
        trail = events(srv, keys, victim.processid)
        assert trail.count("assigned") == 2 and trail.count("requeued") == 1, trail
    print(f"\nkube play: pods registered in {ready:.1f}s; killed pod's process re-run to the end "
          f"{requeued_after:.1f}s after the kill (maxexectime 8 s)")

    # kube down leaves nothing of the play
    down = time.monotonic()
    r = podman("kube", "down", str(p.path), check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert p.pods() == []
    assert [c for c in played if p.exists(c)] == []
    assert [v for v in volumes if p.has_volume(v)] == []
    print(f"kube play: kube down {time.monotonic() - down:.1f}s; whole test {time.monotonic() - started:.1f}s")
