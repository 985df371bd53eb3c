"""The ExecutorDeployment reconciler (colonies/executors/deployment.py) with real podman and the executor image:
`colonies executor run colonies.executors.deployment:deployment_executor` against a real server keeps a
blueprint's executor containers running. Declare 2 → 2 containers and 2 registered executors (carrying
blueprintid/blueprintgen) that pull and run work; kill one → back to 2 within one reconcile interval; update
to 3 → 3 with the first two untouched; change the env → all replaced by the new generation; an executor
removed by hand → its container replaced; scale to 1 → the others drained and deregistered; delete → no
container, executor or secret left.

Every container, secret and image made here carries the label colonies.test=1 and is removed at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from colonies.blueprints import blueprint
from colonies.client.asyncio import AsyncClient
from colonies.client.core import func_spec
from colonies.client.sync import Client
from colonies.errors import ProcessFailed
from colonies.executors.deployment import (
    L_COLONY,
    L_EXECUTOR,
    L_GEN,
    L_ID,
    L_NAME,
    L_REPLICA,
    L_TEMPLATE,
    ExecutorDeployment,
    executor_deployment_definition,
    parse_spec,
)
from colonies.executors.reconciler import reconciler_executor
from colonies.model import Blueprint, Executor, ExecutorState, Process, ProcessState
from colonies.protocol.crypto import generate_prvkey
from tests import container_support
from tests.conftest import ColonyKeys, ServerProc, make_server, setup_colony
from tests.container_support import Images, podman
from tests.kit_support import cli_env, start_executor, wait_until

base_image = container_support.base_image
podman_env = container_support.podman_env
colonies_images = container_support.colonies_images
pytestmark = pytest.mark.slow

LABEL = "colonies.test=1"
INTERVAL = 2  # s, the definition's reconcileInterval
WORK_TYPE = "bpwork"
DEPLOYER = "deployer"
WORK = """
import os
from colonies import Executor

ex = Executor()

@ex.function
def whoami(tag: str) -> list:
    return [os.environ["COLONIES_EXECUTOR_NAME"], os.environ.get("WORK_TAG", ""), tag]
"""


@pytest.fixture(scope="module")
def work_image(colonies_images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A user's module on the executor image, built as docs/containers.md says."""
    ctx = tmp_path_factory.mktemp("bpwork")
    (ctx / "bpwork.py").write_text(WORK)
    (ctx / "Containerfile").write_text(f'FROM {colonies_images.executor}\nCOPY bpwork.py /app/\nCMD ["bpwork"]\n')
    tag = f"localhost/colonies-bptest-{secrets.token_hex(3)}:dev"
    podman("build", "-q", "--format", "docker", "--pull=never", "--label", LABEL, "-t", tag, str(ctx))
    try:
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)


@dataclass
class Deployer:
    srv: ServerProc
    col: ColonyKeys
    user: Client
    log: Path

    def containers(self) -> list[dict[str, Any]]:
        """This colony's deployment containers, as `podman ps -a` shows them."""
        out = podman("ps", "-a", "--filter", f"label={L_COLONY}={self.col.name}", "--format", "json").stdout
        return list(json.loads(out or "[]"))

    def running(self) -> dict[str, dict[str, str]]:
        """name → labels of the running ones."""
        return {c["Names"][0]: c["Labels"] for c in self.containers() if c["State"] == "running"}

    def executors(self, bp: Blueprint) -> list[Executor]:
        """The blueprint's registered executors (a removed one stays listed, UNREGISTERED)."""
        return [e for e in self.user.get_executors(self.col.name) or []
                if e.blueprintid == bp.blueprintid and e.state != ExecutorState.UNREGISTERED]

    def status(self, name: str) -> dict[str, Any]:
        bp = self.user.get_blueprint(self.col.name, name)
        return {} if not bp.status else dict(bp.status)

    def secrets(self) -> list[str]:
        names = podman("secret", "ls", "--format", "{{.Name}}").stdout.split()
        return [n for n in names if n.startswith(f"colonies.{self.col.name}.")]

    def settled(self, bp: Blueprint, replicas: int, generation: int) -> dict[str, dict[str, str]] | None:
        """The running containers once `replicas` of them run for `bp`, each with its executor approved and
        the status reporting them at `generation`; else None."""
        running = self.running()
        names = sorted(labels[L_EXECUTOR] for labels in running.values())
        if len(running) != replicas or len(self.containers()) != replicas:
            return None
        executors = self.executors(bp)
        if sorted(e.executorname for e in executors) != names or any(
                e.state != ExecutorState.APPROVED for e in executors):
            return None
        status = self.status(bp.metadata.name)
        if (status.get("ready"), status.get("generation"), sorted(status.get("executors", []))) != (
                replicas, generation, names):
            return None
        return running

    def settled_without(self, bp: Blueprint, replicas: int, generation: int,
                        old: set[str]) -> dict[str, dict[str, str]] | None:
        """As `settled`, and none of the containers named in `old` among them."""
        running = self.settled(bp, replicas, generation)
        return running if running is not None and not set(running) & old else None

    def finished(self, pid: str) -> Process:
        def final() -> Process | None:
            p = self.user.get_process(pid)
            return p if p.state in (ProcessState.SUCCESS, ProcessState.FAILED) else None
        return wait_until(final, 30, f"process {pid[:12]}")

    def run_work(self, tag: str, count: int) -> list[list[str]]:
        pids = [self.user.submit(func_spec("whoami", self.col.name, WORK_TYPE, kwargs={"tag": f"{tag}-{i}"},
                                           maxexectime=30)).processid for i in range(count)]
        done = [self.finished(pid) for pid in pids]
        assert all(p.state == ProcessState.SUCCESS for p in done), [p.errors for p in done]
        return [list(p.output or []) for p in done]




def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the reconciler finishes what it is doing (a `podman run` in flight too), then exits."""
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def deployer(podman_env: dict[str, str], tmp_path: Path) -> Iterator[Deployer]:
    srv = make_server(tmp_path, {"COLONIES_CRON_CHECKER_PERIOD": "100"})
    srv.start()
    col = setup_colony(srv, name=f"xd{secrets.token_hex(3)}")
    proc: subprocess.Popen[bytes] | None = None
    d: Deployer | None = None
    try:
        with srv.client(col.colony_prvkey) as owner:
            owner.add_blueprint_definition(executor_deployment_definition(col.name, DEPLOYER,
                                                                          reconcile_interval=INTERVAL))
        env = {**cli_env(srv, col), **podman_env}
        log = tmp_path / "deployer.log"
        proc = start_executor(env, log, "colonies.executors.deployment:deployment_executor", "--type", DEPLOYER,
                              "--name", "deployer-1")
        with srv.client(col.user_prvkey) as user:
            d = Deployer(srv, col, user, log)
            yield d
    finally:
        if d is not None:  # shown when the test failed
            print(f"--- reconciler log:\n{d.log.read_text()[-8000:]}")
        if proc is not None:
            _stop(proc)
        left = podman("ps", "-a", "-q", "--filter", f"label={L_COLONY}={col.name}").stdout.split()
        if left:
            podman("rm", "-f", "-t", "0", *left, check=False)
        keys = [n for n in podman("secret", "ls", "--format", "{{.Name}}").stdout.split()
                if n.startswith(f"colonies.{col.name}.")]
        if keys:
            podman("secret", "rm", *keys, check=False)
        srv.stop()


def test_declare_heal_scale_update_and_delete(deployer: Deployer, work_image: str) -> None:
    d, colony = deployer, deployer.col.name
    spec = {"replicas": 2, "image": work_image, "executorType": WORK_TYPE, "labels": {"colonies.test": "1"}}
    t0 = time.monotonic()
    bp = d.user.add_blueprint(blueprint(colony, "ExecutorDeployment", "workers", spec))

    # Declared 2: two containers, two approved executors carrying the blueprint, reported in the status.
    running = wait_until(lambda: d.settled(bp, 2, 1), 60, "2 replicas")
    print(f"declare 2 -> 2 running and registered: {time.monotonic() - t0:.1f}s")
    assert sorted(labels[L_REPLICA] for labels in running.values()) == ["0", "1"]
    for labels in running.values():
        assert (labels[L_NAME], labels[L_ID], labels[L_GEN], labels["colonies.test"]) == (
            "workers", bp.blueprintid, "1", "1")
    assert all((e.blueprintgen, e.executortype, e.locationname) == (1, WORK_TYPE, "")
               for e in d.executors(bp))
    some = next(iter(running))
    env = podman("inspect", "--format", "{{json .Config.Env}}", some).stdout
    assert "COLONIES_EXECUTOR_PRVKEY_FILE=/run/secrets/executor-key" in env
    assert "COLONIES_EXECUTOR_PRVKEY=" not in env and "COLONIES_COLONY_PRVKEY" not in env
    assert len(d.secrets()) == 2

    # The executors in those containers pull and run work.
    outputs = d.run_work("first", 2)
    names = {labels[L_EXECUTOR] for labels in running.values()}
    assert {o[0] for o in outputs} <= names and [o[2] for o in outputs] == ["first-0", "first-1"]

    # Killed: replaced within one reconcile interval (the cron's next round), its executor deregistered.
    killed = min(running)
    podman("kill", killed)
    t_kill = time.monotonic()
    healed = wait_until(lambda: d.settled_without(bp, 2, 1, {killed}), 30, "the replacement")
    took = time.monotonic() - t_kill
    print(f"kill one -> 2 running again: {took:.1f}s (reconcile interval {INTERVAL}s)")
    assert took <= INTERVAL + 3, f"healed after {took:.1f}s"
    assert running[killed][L_EXECUTOR] not in {e.executorname for e in d.executors(bp)}
    assert running[killed][L_REPLICA] in {labels[L_REPLICA] for labels in healed.values()}
    assert "is exited; replacing it" in d.log.read_text()

    # Scaled to 3: one more; the running two are not restarted.
    spec["replicas"] = 3
    bp = d.user.update_blueprint(blueprint(colony, "ExecutorDeployment", "workers", spec))
    assert bp.metadata.generation == 2
    scaled = wait_until(lambda: d.settled(bp, 3, 2), 30, "3 replicas")
    assert set(healed) < set(scaled)
    [new] = set(scaled) - set(healed)
    assert scaled[new][L_GEN] == "2" and sorted(labels[L_REPLICA] for labels in scaled.values()) == ["0", "1", "2"]

    # Another env: every replica replaced by generation 3, which sees it.
    spec["env"] = {"WORK_TAG": "v3"}
    bp = d.user.update_blueprint(blueprint(colony, "ExecutorDeployment", "workers", spec))
    updated = wait_until(lambda: d.settled_without(bp, 3, 3, set(scaled)), 60, "the update")
    assert {labels[L_GEN] for labels in updated.values()} == {"3"}
    assert len({labels[L_TEMPLATE] for labels in updated.values()} | {scaled[new][L_TEMPLATE]}) == 2
    assert {e.blueprintgen for e in d.executors(bp)} == {3}
    assert [o[1] for o in d.run_work("second", 2)] == ["v3", "v3"]

    # An executor removed by hand: its container is replaced by one with a new identity.
    victim = min(updated)
    with d.srv.client(d.col.colony_prvkey) as owner:
        owner.remove_executor(colony, updated[victim][L_EXECUTOR])
    after = wait_until(lambda: d.settled_without(bp, 3, 3, {victim}), 30, "the replacement of the removed one")
    assert set(updated) - {victim} < set(after)  # the other two untouched

    # Scaled down to 1: replica 0 stays, the others drain and go, their executors with them.
    spec["replicas"] = 1
    bp = d.user.update_blueprint(blueprint(colony, "ExecutorDeployment", "workers", spec))
    [(last, labels)] = wait_until(lambda: d.settled(bp, 1, 4), 30, "1 replica").items()
    assert labels[L_REPLICA] == "0" and last in after
    gone = {after[n][L_EXECUTOR] for n in after if n != last}
    assert not gone & {e.executorname for e in d.executors(bp)} and len(d.secrets()) == 1

    # Deleted: no container, no executor of the blueprint, no key secret.
    d.user.remove_blueprint(colony, "workers")
    t_del = time.monotonic()
    wait_until(lambda: not d.containers() and not d.executors(bp) and not d.secrets(), 30, "the cleanup")
    print(f"delete -> 0 containers, executors deregistered: {time.monotonic() - t_del:.1f}s")
    cleanups = d.user.get_processes(colony, state=ProcessState.SUCCESS, executortype=DEPLOYER)
    assert any(p.spec.funcname == "cleanup" for p in cleanups)
    failed = d.user.get_processes(colony, state=ProcessState.FAILED, executortype=DEPLOYER)
    assert failed == [], [p.errors for p in failed]


NO_KEY = ("reconcile ExecutorDeployment w: the ExecutorDeployment reconciler needs the colony owner's key to add "
          "and remove executors: set COLONIES_COLONY_PRVKEY or COLONIES_COLONY_PRVKEY_FILE where it runs")


def test_spec_errors_name_the_field() -> None:
    assert parse_spec({"executorType": "ml", "replicas": 2.0}).replicas == 2  # the original's schema: "number"
    assert parse_spec({"executorType": "ml"}).image == "localhost/colonies-executor:dev"
    base = {"executorType": "ml"}
    for spec, line in (
        ({}, "spec.executorType is required"),
        ({**base, "replicas": 2.5}, "spec.replicas must be an integer from 0 to 100, not 2.5"),
        ({**base, "env": {"COLONIES_EXECUTOR_PRVKEY": "x"}}, "spec.env.COLONIES_EXECUTOR_PRVKEY is set by"),
        ({**base, "env": {"A-B": "x"}}, "spec.env: 'A-B' is not a variable name"),
        ({**base, "labels": {"colonies.blueprint": "x"}}, "spec.labels.colonies.blueprint is set by"),
        ({**base, "cpu": "lots"}, "conditions.cpu 'lots' is not a CPU amount"),
        ({**base, "command": "bpwork --slots 2"}, ""),
    ):
        if not line:
            assert parse_spec(spec).command == ("bpwork --slots 2",)
            continue
        with pytest.raises(ProcessFailed) as err:
            parse_spec(spec)
        assert str(err.value).startswith(line), err.value
    a, b = parse_spec({**base, "replicas": 1}), parse_spec({**base, "replicas": 5})
    assert a.template() == b.template() != parse_spec({**base, "env": {"X": "1"}}).template()


async def test_without_the_owner_key_the_reconcile_fails_with_one_line(server: ServerProc, colony: ColonyKeys) -> None:
    """No podman needed: the key is looked for before any container is touched."""
    async with AsyncClient("127.0.0.1", server.port, prvkey=colony.user_prvkey) as user:
        await user.with_key(colony.colony_prvkey).add_blueprint_definition(
            executor_deployment_definition(colony.name, DEPLOYER))
        ex = reconciler_executor(ExecutorDeployment(environ={}), colony=colony.name, prvkey=generate_prvkey(),
                                 name="deployer-x", executortype=DEPLOYER, port=server.port, capture_output=False)
        await ex.register(colony.colony_prvkey)
        run = asyncio.create_task(ex.run_async())
        try:
            bp = await user.add_blueprint(blueprint(colony.name, "ExecutorDeployment", "w", {"executorType": "ml"}))
            deadline = time.monotonic() + 20
            while (p := await user.get_process(bp.metadata.last_reconciliation_process)).state < ProcessState.SUCCESS:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert p.state == ProcessState.FAILED
            assert p.errors == [NO_KEY]
            status = (await user.get_blueprint(colony.name, "w")).status
            assert isinstance(status, dict) and status["error"] == p.errors[0]
        finally:
            ex.stop()
            await run
            await ex.client.aclose()
