"""The autoscaled ExecutorDeployment (minReplicas/maxReplicas, colonies/executors/scaling.py) with real podman:
min 0 / max 3, a burst of waiting processes → up to 3 replicas and never more, the work done → back to 0
once the replicas were idle for idleTimeout, not before; the status reports desired/observed/waiting.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import pytest

from colonies.blueprints import blueprint
from colonies.client.core import func_spec
from colonies.errors import ProcessFailed
from colonies.executors.deployment import parse_spec
from colonies.executors.scaling import desired
from colonies.model import ProcessState
from tests import container_support
from tests.container_support import Images, podman
from tests.kit_support import wait_until
from tests.test_executor_deployment import LABEL, Deployer, deployer

base_image = container_support.base_image
podman_env = container_support.podman_env
colonies_images = container_support.colonies_images
__all__ = ["deployer"]

WORK_TYPE = "scalework"
IDLE = 8  # s, the spec's idleTimeout
BURST, NAP = 12, 2.0  # processes, seconds each
WORK = """
import time
from colonies import Executor

ex = Executor()

@ex.function
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
"""


@pytest.fixture(scope="module")
def nap_image(colonies_images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ctx = tmp_path_factory.mktemp("napwork")
    (ctx / "napwork.py").write_text(WORK)
    (ctx / "Containerfile").write_text(f'FROM {colonies_images.executor}\nCOPY napwork.py /app/\nCMD ["napwork"]\n')
    tag = f"localhost/colonies-scaletest-{secrets.token_hex(3)}:dev"
    podman("build", "-q", "--format", "docker", "--pull=never", "--label", LABEL, "-t", tag, str(ctx))
    try:
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)


def test_desired_up_at_once_down_after_the_idle_timeout() -> None:
    def want(current: int, waiting: int, running: int, idle: list[float], per: int = 1, lo: int = 0,
             hi: int = 3) -> int:
        return desired(current, waiting, running, minimum=lo, maximum=hi, per_replica=per, idle_for=idle,
                       idle_timeout=10)
    assert want(0, 0, 0, []) == 0
    assert want(0, 12, 0, []) == 3                      # up to max at once
    assert want(0, 2, 0, []) == 2 and want(1, 5, 0, [0], per=4) == 2
    assert want(3, 1, 2, [0, 0, 0]) == 3                # work waits: never down
    assert want(3, 0, 1, [0, 9, 9]) == 3                # not idle long enough
    assert want(3, 0, 1, [0, 10, 30]) == 1              # the two idle ones go
    assert want(3, 0, 0, [10, 10, 10], lo=1) == 1       # never below min
    assert want(5, 0, 5, [0] * 5) == 3                  # never above max (max lowered)
    assert want(2, 0, 3, [99, 99], per=2) == 2          # the running ones still need 2


def test_autoscale_spec_is_checked() -> None:
    auto = parse_spec({"executorType": "ml", "maxReplicas": 3}).autoscale
    assert auto is not None and (auto.minimum, auto.maximum, auto.per_replica, auto.idle_timeout) == (0, 3, 1, 60)
    assert parse_spec({"executorType": "ml"}).autoscale is None
    base = {"executorType": "ml"}
    for spec, line in (
        ({**base, "minReplicas": 1}, "spec.minReplicas needs spec.maxReplicas"),
        ({**base, "maxReplicas": 0}, "spec.maxReplicas must be an integer from 1 to 100, not 0"),
        ({**base, "maxReplicas": 2, "minReplicas": 3}, "spec.minReplicas (3) is more than spec.maxReplicas (2)"),
        ({**base, "maxReplicas": 2, "idleTimeout": -1}, "spec.idleTimeout must be an integer from 0 to 86400"),
        ({**base, "maxReplicas": 2, "processesPerReplica": "2"}, "spec.processesPerReplica must be an integer"),
    ):
        with pytest.raises(ProcessFailed) as err:
            parse_spec(spec)
        assert str(err.value).startswith(line), err.value
    # scaling parameters are not part of the template: changing them restarts nothing
    assert parse_spec({**base, "maxReplicas": 2}).template() == parse_spec({**base, "maxReplicas": 5}).template()


@pytest.mark.slow
def test_scales_up_on_a_burst_and_down_to_min_after_the_idle_timeout(deployer: Deployer, nap_image: str) -> None:
    d, colony = deployer, deployer.col.name
    spec = {"minReplicas": 0, "maxReplicas": 3, "idleTimeout": IDLE, "image": nap_image, "executorType": WORK_TYPE,
            "labels": {"colonies.test": "1"}}
    t0 = time.monotonic()
    bp = d.user.add_blueprint(blueprint(colony, "ExecutorDeployment", "scaled", spec))
    status = wait_until(lambda: (s := d.status("scaled")).get("generation") == 1 and s, 30, "the first reconcile")
    assert (status["desired"], status["observed"], status["waiting"], d.containers()) == (0, 0, 0, [])

    # Watch the containers while the burst runs: never more than maxReplicas.
    most, seen_waiting, watching = [0], [0], threading.Event()

    def watch() -> None:
        while not watching.is_set():
            most[0] = max(most[0], len(d.containers()))
            seen_waiting[0] = max(seen_waiting[0], int(d.status("scaled").get("waiting", 0)))
            time.sleep(0.3)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        t_burst = time.monotonic()
        pids = [d.user.submit(func_spec("nap", colony, WORK_TYPE, kwargs={"seconds": NAP}, maxexectime=60)).processid
                for _ in range(BURST)]
        wait_until(lambda: d.settled(bp, 3, 1), 45, "3 replicas")
        t_up = time.monotonic() - t_burst
        done = [d.finished(pid) for pid in pids]
        t_done = time.monotonic()
    finally:
        watching.set()
        watcher.join(5)
    assert all(p.state == ProcessState.SUCCESS for p in done), [p.errors for p in done]
    assert len({p.assignedexecutorid for p in done}) >= 2  # spread over replicas
    assert most[0] == 3 and seen_waiting[0] > 0, (most, seen_waiting)
    print(f"burst of {BURST} x {NAP}s -> 3 replicas in {t_up:.1f}s; all done {t_done - t_burst:.1f}s after the burst")

    # Idle: the replicas stay for idleTimeout, then go (to minReplicas = 0), their executors with them. The
    # idle clock starts when nothing waits (at the last process' start, >= t_done - NAP) and the replica is
    # idle, so none may go before t_done + IDLE - NAP.
    time.sleep(IDLE - NAP - 1.5)
    assert len(d.running()) == 3, "scaled down before the idle timeout"
    wait_until(lambda: not d.containers() and not d.executors(bp) and not d.secrets(), 30, "the scale down")
    t_down = time.monotonic() - t_done
    status = d.status("scaled")
    print(f"idle -> 0 replicas {t_down:.1f}s after the last process (idleTimeout {IDLE}s); total "
          f"{time.monotonic() - t0:.1f}s")
    assert IDLE - NAP <= t_down <= IDLE + 15
    assert (status["desired"], status["waiting"], status["minReplicas"], status["maxReplicas"]) == (0, 0, 0, 3)
    failed = d.user.get_processes(colony, state=ProcessState.FAILED)
    assert failed == [], [p.errors for p in failed]

