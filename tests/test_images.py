"""The project's images with the real podman (issue 12 items 1 and 3).

scripts/build-images makes both images (the `colonies_images` fixture); a user's module is built on the
executor image as docs/containers.md says (FROM, COPY mywork.py /app/, CMD). The server runs in a container
on the host network with SQLite on a bind mount; a colony is set up from the host; executor containers
register with keys from the environment or from a mounted podman secret, run processes submitted from the
host (pycolonies and our client), and drain on `podman stop`. Every container, secret and image made here
carries the label colonies.test=1 and is removed on the way out.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from colonies.client.core import func_spec
from colonies.protocol.crypto import generate_prvkey, id_of
from tests import container_support
from tests.conftest import ColonyKeys, ServerProc, free_port, setup_colony
from tests.container_support import Images, podman

# the fixtures used here, bound in this module so pytest finds them
base_image = container_support.base_image
podman_env = container_support.podman_env
colonies_images = container_support.colonies_images

pytestmark = pytest.mark.slow
LABEL = "colonies.test=1"
UID = 10001
MB = 1024 * 1024
IMAGE_MAX_BYTES = 400 * MB  # measured: server 281-295 MB, executor 267-282 MB, of which the base is 177 MB
VENV_MAX_MB = 180  # measured: 112-127 MB (botocore 32 MB, uvloop 14 MB, asyncpg 12 MB)
TYPE = "imgtest"
MYWORK = '''
import os, sys, time
from colonies import Executor

ex = Executor(executortype="imgtest")

@ex.function
def where() -> list:
    return [os.getuid(), sys.prefix, os.getcwd()]

@ex.function
def add(a: int, b: int) -> int:
    return a + b

@ex.function
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"
'''


def unique(prefix: str) -> str:
    return f"colonies-test-{prefix}-{secrets.token_hex(4)}"


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def logs(name: str) -> str:
    r = podman("logs", name, check=False)
    return r.stdout + r.stderr


def inspect(name: str, fmt: str) -> str:
    return podman("inspect", "--format", fmt, name).stdout.strip()


@contextmanager
def container(name: str, *args: str) -> Iterator[str]:
    """`podman run -d` a labelled container; removed (with its anonymous volumes) on the way out."""
    try:
        podman("run", "-d", "--name", name, "--label", LABEL, *args)
        yield name
    except BaseException:
        print(f"--- logs of {name}:\n{logs(name)[-4000:]}")
        raise
    finally:
        podman("rm", "-f", "-v", "-t", "2", name, check=False)


@dataclass
class ServerContainer:
    name: str
    port: int
    data: Path
    srv: ServerProc  # not a process of ours: its client() and server_prvkey reach the container

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def server_container(images: Images, data: Path) -> Iterator[ServerContainer]:
    data.mkdir(mode=0o700, exist_ok=True)
    os.chown(data, UID, UID)  # the image's user owns its data (rootful podman: the same uid on the host)
    server_prvkey, port = generate_prvkey(), free_port()
    env = {"COLONIES_SERVER_ID": id_of(server_prvkey), "COLONIES_SERVER_PORT": str(port),
           "COLONIES_SERVER_BIND": "127.0.0.1", "COLONIES_TIMEOUT_CHECKER_PERIOD": "200"}
    args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    with container(unique("server"), *args, "-v", f"{data}:/var/lib/colonies", images.server) as name:
        s = ServerContainer(name, port, data, ServerProc(port=port, db_path=data / "colonies.db",
                                                         server_prvkey=server_prvkey, env={}))
        wait_for(lambda: healthy(s.url), 30, f"the server container {name} to answer /health")
        yield s


@pytest.fixture(scope="module")
def server(colonies_images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerContainer]:
    with server_container(colonies_images, tmp_path_factory.mktemp("server-data")) as s:
        yield s


@pytest.fixture(scope="module")
def colony(server: ServerContainer) -> ColonyKeys:
    return setup_colony(server.srv, name="imgcolony", executor_type=TYPE)


@pytest.fixture(scope="module")
def mywork_image(colonies_images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A user's image on top of the executor image, built the documented way."""
    ctx = tmp_path_factory.mktemp("mywork")
    (ctx / "mywork.py").write_text(MYWORK)
    (ctx / "Containerfile").write_text(f'FROM {colonies_images.executor}\nCOPY mywork.py /app/\nCMD ["mywork"]\n')
    tag = f"localhost/{unique('mywork')}:dev"
    podman("build", "-q", "--format", "docker", "--pull=never", "--label", LABEL, "-t", tag, str(ctx))
    try:
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)


def executor_env(server: ServerContainer, colony: ColonyKeys, **extra: str) -> list[str]:
    env = {"COLONIES_SERVER_HOST": "127.0.0.1", "COLONIES_SERVER_PORT": str(server.port),
           "COLONIES_COLONY_NAME": colony.name, **extra}
    return [a for k, v in env.items() for a in ("-e", f"{k}={v}")]


def registered(server: ServerContainer, colony: ColonyKeys, name: str) -> Callable[[], bool]:
    def check() -> bool:
        with server.srv.client(colony.user_prvkey) as user:
            return any(e.executorname == name for e in user.get_executors(colony.name) or [])
    return check


# -- the images -------------------------------------------------------------------------------------------
def test_images_are_small_non_root_and_carry_no_build_tools(colonies_images: Images) -> None:
    for image in (colonies_images.server, colonies_images.executor):
        size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
        print(f"{image}: {size / MB:.0f} MB")
        assert size < IMAGE_MAX_BYTES
        assert podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip() == f"{UID}:{UID}"
        entry = podman("image", "inspect", "--format", "{{json .Config.Entrypoint}}", image).stdout
        assert entry.startswith('["/usr/bin/tini",') and '"--","/opt/colonies/bin/colonies"' in entry, entry
        assert "CMD" in podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image).stdout
        r = podman("run", "--rm", "--label", LABEL, "--entrypoint", "/bin/sh", image, "-c",
                   "id -u; du -sm /opt/colonies | cut -f1; "
                   "for p in /opt/colonies/bin/pip /usr/bin/gcc /usr/bin/cc /wheels /root/.cache "
                   "/var/lib/colonies/.cache /var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease; "
                   "do [ -e $p ] && echo found $p; done; "
                   "/opt/colonies/bin/python -c 'import colonies, uvicorn, httpx; print(colonies.__version__)'")
        out = r.stdout.split()
        assert out[0] == str(UID), r.stdout
        print(f"{image}: venv {out[1]} MB")
        assert int(out[1]) < VENV_MAX_MB
        assert "found" not in r.stdout, r.stdout
        assert out[-1] == "0.1.0"
    asyncpg = "import asyncpg"
    assert podman("run", "--rm", "--label", LABEL, "--entrypoint", "/opt/colonies/bin/python",
                  colonies_images.server, "-c", asyncpg, check=False).returncode == 0
    assert podman("run", "--rm", "--label", LABEL, "--entrypoint", "/opt/colonies/bin/python",
                  colonies_images.executor, "-c", asyncpg, check=False).returncode == 1  # the server's extra only


def test_build_images_is_cached_and_reproducible(podman_env: dict[str, str], tmp_path: Path) -> None:
    """On a frozen copy of the inputs (this working tree is shared and edited meanwhile): a second run with
    nothing changed is a no-op; the same wheels built again under another tag give byte-identical layers
    (the docker-format image id differs only by podman's build-container id, see scripts/build-images)."""
    root = Path(__file__).resolve().parent.parent
    tree = tmp_path / "tree"
    shutil.copytree(root / "colonies", tree / "colonies", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(root / "pyproject.toml", tree)
    (tree / "scripts").mkdir()
    shutil.copy(root / "scripts" / "build-images", tree / "scripts")
    shutil.copytree(root / "deploy", tree / "deploy", ignore=shutil.ignore_patterns("k8s"))
    first, second = f"test-{secrets.token_hex(4)}", f"test-{secrets.token_hex(4)}"
    env = {**podman_env, "COLONIES_IMAGES": "executor", "SOURCE_DATE_EPOCH": "1764633600",
           "PIP": str(root / ".venv" / "bin" / "pip")}

    def build(tag: str) -> tuple[str, float]:
        start = time.monotonic()
        r = subprocess.run([str(tree / "scripts" / "build-images")], env={**env, "COLONIES_IMAGE_TAG": tag},
                           capture_output=True, text=True, timeout=600, check=False)
        assert r.returncode == 0, r.stderr
        return r.stderr, time.monotonic() - start

    layers = "{{json .RootFS.Layers}}"
    try:
        out, took = build(first)
        assert "wheels built" in out and f"colonies-executor:{first} built" in out, out
        print(f"build-images, fresh (wheels and the executor image): {took:.1f}s")
        out, took = build(first)
        print(f"build-images, nothing changed: {took:.1f}s")
        assert "built" not in out and f"colonies-executor:{first} up to date" in out, out
        assert took < 10
        out, took = build(second)
        assert "wheels up to date" in out and f"colonies-executor:{second} built" in out, out
        a, b = (podman("image", "inspect", "--format", layers, f"localhost/colonies-executor:{t}").stdout
                for t in (first, second))
        assert a == b
    finally:
        for tag in (first, second):
            podman("rmi", "-f", f"localhost/colonies-executor:{tag}", check=False)


# -- the server in a container -----------------------------------------------------------------------------
def test_server_container_answers_health_and_its_healthcheck_passes(server: ServerContainer) -> None:
    assert healthy(server.url)
    r = podman("healthcheck", "run", server.name, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert inspect(server.name, "{{.Config.User}}") == f"{UID}:{UID}"
    db = server.data / "colonies.db"
    assert db.exists() and db.stat().st_uid == UID  # SQLite on the bind mount, written by the image's user
    assert db.stat().st_mode & 0o077 == 0


def test_server_keeps_its_data_across_a_restart(colonies_images: Images, tmp_path: Path) -> None:
    with server_container(colonies_images, tmp_path / "data") as s:
        keys = setup_colony(s.srv, name="kept", executor_type=TYPE)
        podman("stop", "-t", "20", s.name)
        assert inspect(s.name, "{{.State.ExitCode}}") == "0"  # SIGTERM: a clean shutdown
        podman("start", s.name)
        wait_for(lambda: healthy(s.url), 30, "the restarted server")
        with s.srv.client(keys.user_prvkey) as user:
            assert [e.executorname for e in user.get_executors("kept")] == [keys.executor_name]


# -- executors in long-lived containers --------------------------------------------------------------------
def test_executor_with_keys_from_the_environment_runs_pycolonies_work(
        server: ServerContainer, colony: ColonyKeys, mywork_image: str) -> None:
    from pycolonies import Colonies
    from pycolonies import func_spec as py_func_spec

    name = unique("exec-env")
    args = executor_env(server, colony, COLONIES_EXECUTOR_PRVKEY=generate_prvkey(),
                        COLONIES_COLONY_PRVKEY=colony.colony_prvkey, COLONIES_EXECUTOR_NAME=name)
    with container(name, *args, mywork_image):
        wait_for(registered(server, colony, name), 30, "the executor to register itself")
        c = Colonies("127.0.0.1", server.port)
        p = c.submit_func_spec(py_func_spec("where", [], colony.name, TYPE, executorname=name, maxexectime=30),
                               colony.user_prvkey)
        done = c.wait(p, 30, colony.user_prvkey)
        assert done.state == 2, logs(name)
        assert done.output == [UID, "/opt/colonies", "/app"]  # it ran inside the container
        q = c.submit_func_spec(py_func_spec("add", [2, 3], colony.name, TYPE, executorname=name), colony.user_prvkey)
        assert c.wait(q, 30, colony.user_prvkey).output == [5]
        wait_for(lambda: podman("healthcheck", "run", name, check=False).returncode == 0, 30, "a healthy executor")


def test_executor_with_its_key_in_a_mounted_secret(server: ServerContainer, colony: ColonyKeys,
                                                   mywork_image: str, tmp_path: Path) -> None:
    """Registered and approved from the host; the container gets only its own key, as a podman secret."""
    key, name = generate_prvkey(), unique("exec-secret")
    with server.srv.client(colony.colony_prvkey) as owner:
        owner.add_executor(colony.name, id_of(key), name, TYPE)
        owner.approve_executor(colony.name, name)
    keyfile = tmp_path / "key"
    keyfile.write_text(key)
    secret = unique("key")
    podman("secret", "create", secret, str(keyfile))
    try:
        mount = f"{secret},type=mount,target=executor-key,uid={UID},gid={UID},mode=0400"
        args = executor_env(server, colony, COLONIES_EXECUTOR_PRVKEY_FILE="/run/secrets/executor-key")
        with container(name, *args, "--secret", mount, mywork_image), server.srv.client(colony.user_prvkey) as user:
            p = user.submit(func_spec("add", colony.name, TYPE, args=[20, 22], executornames=[name]))
            wait_for(lambda: user.get_process(p.processid).state == 2, 30, "the process to succeed")
            assert user.get_process(p.processid).output == [42]
            assert "COLONIES_EXECUTOR_PRVKEY=" not in inspect(name, "{{json .Config.Env}}")
        # the same secret readable by others: refused with one line, the container exits 1
        loose = f"{secret},type=mount,target=executor-key,uid={UID},gid={UID},mode=0444"
        refused = unique("exec-loose")
        with container(refused, *args, "--secret", loose, mywork_image):
            wait_for(lambda: inspect(refused, "{{.State.Status}}") == "exited", 30, "the refusal")
            assert inspect(refused, "{{.State.ExitCode}}") == "1"
            assert "readable by others (mode 0444)" in logs(refused)
    finally:
        podman("secret", "rm", secret, check=False)


def test_podman_stop_drains_the_running_process_and_takes_no_more(
        server: ServerContainer, colony: ColonyKeys, mywork_image: str, podman_env: dict[str, str]) -> None:
    name = unique("exec-drain")
    args = executor_env(server, colony, COLONIES_EXECUTOR_PRVKEY=generate_prvkey(),
                        COLONIES_COLONY_PRVKEY=colony.colony_prvkey, COLONIES_EXECUTOR_NAME=name)
    # two slots: one runs `slow`, the other long-polls for more, and must stop doing so
    with container(name, *args, mywork_image, "mywork", "--slots", "2"):
        wait_for(registered(server, colony, name), 30, "the executor to register itself")
        with server.srv.client(colony.user_prvkey) as user:
            slow = user.submit(func_spec("slow", colony.name, TYPE, args=[4], executornames=[name],
                                         maxexectime=60))
            wait_for(lambda: user.get_process(slow.processid).state == 1, 30, "slow to run")
            stopping = subprocess.Popen(["podman", "stop", "-t", "60", name], env=podman_env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                # the kit logs this once its idle long-polls are cancelled: nothing is pulled after it
                wait_for(lambda: "waiting for 1 running process(es) to finish" in logs(name), 20, "the drain")
                later = user.submit(func_spec("add", colony.name, TYPE, args=[1, 1], executornames=[name]))
                assert stopping.wait(60) == 0
            finally:
                if stopping.poll() is None:
                    stopping.kill()
            assert inspect(name, "{{.State.ExitCode}}") == "0"
            done = user.get_process(slow.processid)
            assert (done.state, done.output) == (2, ["slept"])
            assert user.get_process(later.processid).state == 0  # still waiting: the executor took no more
