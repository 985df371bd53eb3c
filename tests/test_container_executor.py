"""The container executor (colonies/executors/containers.py): real podman, a real server, real executors.

Executors run as `colonies executor run --containers config.toml` subprocesses. Processes are submitted
with pycolonies where it can express them; our SDK reads them back (pycolonies' Process cannot hold a
dict output), cancels (pycolonies has no cancel) and submits spec.fs dirs (pycolonies' Fs holds only
strings). Containers use the base image and see a host directory at /sig, through which the tests
signal them. Every container carries the label colonies.ctest=<token of this run>; teardown removes
what is left, and the tests check that nothing is.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pycolonies import Colonies
from pycolonies import func_spec as pyc_func_spec

from colonies.client.core import func_spec
from colonies.client.sync import Client
from colonies.errors import ProcessFailed
from colonies.executors.containers import container_command, cpus_arg, load_config, memory_arg
from colonies.fs import FileSystem, store_from_env
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.secure_files import private_dir
from tests.conftest import ColonyKeys, ServerProc, make_server, setup_colony
from tests.container_support import base_image, podman, podman_env  # noqa: F401
from tests.kit_support import cli_env, start_executor, wait_until

FINAL = {2, 3, 4}  # SUCCESSFUL, FAILED, CANCELLED
TOKEN = secrets.token_hex(4)


def test_kwargs_become_the_command_as_the_original_reads_them() -> None:
    image = "localhost/app:1"
    assert container_command({"docker-image": image, "cmd": "echo", "args": ["a", 2, "{processid}"]}, "P") == (
        image, ["sh", "-c", "echo a 2 P"])
    assert container_command({"docker-image": image, "cmd": "run {processid}", "init-cmd": "cd /w"}, "P") == (
        image, ["sh", "-c", "cd /w; run P"])
    assert container_command({"docker-image": image, "cmd": ["python3", "-c", "x"], "args": ["a b"],
                              "debug": True}, "P") == (image, ["python3", "-c", "x", "a b"])
    assert container_command({"docker-image": image, "args": ["--flag"]}, "P") == (image, ["--flag"])
    cases: list[tuple[dict[str, Any], str]] = [
        ({"cmd": "true"}, "docker-image"),
        ({"docker-image": "--privileged", "cmd": "x"}, "not an image"),
        ({"docker-image": image, "args": "a b"}, "must be a list"),
        ({"docker-image": image, "cmd": ["x"], "init-cmd": "y"}, "needs a string cmd"),
        ({"docker-image": image, "mounts": ["/:/h"]}, "unknown keyword argument(s) mounts"),
    ]
    for bad, why in cases:
        with pytest.raises(ProcessFailed, match=re.escape(why)):
            container_command(bad, "P")


def test_resource_strings_become_runtime_limits() -> None:
    assert [cpus_arg(v) for v in ("", "0m", "500m", "2000m", "1.5")] == ["", "", "0.5", "2", "1.5"]
    assert [memory_arg(v) for v in ("", "0Mi", "512Mi", "1Gi", "1G", "1000")] == [
        "", "", str(512 * 2**20), str(2**30), str(10**9), "1000"]
    for bad in ("lots", "-1", "1.2.3m"):
        with pytest.raises(ProcessFailed):
            cpus_arg(bad)
    with pytest.raises(ProcessFailed):
        memory_arg("12 parsecs")


def test_a_config_without_an_allowlist_or_with_bad_entries_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    for body, why in [("[executor]\n", "no [containers] table"), ("[containers]\nallow = []\n", "lists no image"),
                      ('[containers]\nallow = ["a/*"]\npull = "sometimes"\n', "pull must be"),
                      ('[containers]\nallow = ["a/*"]\nmounts = ["/x:/colonies/out"]\n', "uses /colonies"),
                      ('[containers]\nallow = ["a/*"]\nmemory = "much"\n', "not a memory amount")]:
        path.write_text(body)
        with pytest.raises(ValueError, match=re.escape(why)):
            load_config(str(path))
    path.write_text('[executor]\nslots = 3\n[containers]\nallow = ["a/*"]\ncpus = "2"\n')
    head, cfg = load_config(str(path))
    assert head["slots"] == 3 and cfg.allow == ("a/*",) and cfg.functions == ("execute",) and cfg.cpus == "2"


@dataclass
class Rig:
    server: ServerProc
    colony: ColonyKeys
    env: dict[str, str]
    tmp: Path
    sig: Path  # mounted at /sig in every container
    image: str

    def client(self) -> Client:
        return self.server.client(self.colony.user_prvkey)

    def config(self, slots: int = 2, **containers: Any) -> Path:
        """A config file allowing the base image's repository, with the test label and the /sig mount."""
        settings: dict[str, Any] = {"allow": [self.image.rsplit(":", 1)[0] + ":*"],
                                    "labels": {"colonies.ctest": TOKEN}, "mounts": [f"{self.sig}:/sig"],
                                    "workdir": str(self.tmp / "runs"), **containers}
        lines = ["[executor]", f"slots = {slots}", "[containers]"]
        lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
        path = self.tmp / f"containers-{secrets.token_hex(3)}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, name: str, key: str, executortype: str, config: Path, **env: str) -> subprocess.Popen[bytes]:
        return start_executor({**self.env, "COLONIES_EXECUTOR_PRVKEY": key, **env}, self.tmp / f"{name}.log",
                              "--containers", str(config), "--name", name, "--type", executortype, "--watch", "0.5")

    def submit(self, executortype: str, kwargs: dict[str, Any], args: list[Any] | None = None,
               maxexectime: int = 60, maxretries: int = 0, **spec_fields: Any) -> str:
        """Submit an `execute` process with pycolonies; its id."""
        spec = pyc_func_spec("execute", args or [], self.colony.name, executortype, kwargs=kwargs,
                             maxexectime=maxexectime, maxretries=maxretries)
        for key, value in spec_fields.items():
            target = spec.conditions if key in ("cpu", "mem") else spec
            setattr(target, key, value)
        pyc = Colonies("127.0.0.1", self.server.port)
        return str(pyc.submit_func_spec(spec, self.colony.user_prvkey).processid)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def containers(label: str) -> list[dict[str, Any]]:
    """The containers (running or not) with this label (key=value) and the test token."""
    r = podman("ps", "-a", "--format", "json", "--filter", f"label=colonies.ctest={TOKEN}", "--filter",
               f"label={label}")
    return list(json.loads(r.stdout or "[]"))


def log_text(c: Client, colony: ColonyKeys, process_id: str) -> str:
    return "".join(e.message for e in c.get_logs(colony.name, process_id, count=500) or [])


def ended(c: Client, process_id: str, timeout: float = 45) -> Any:
    return wait_until(lambda: (p := c.get_process(process_id)).state in FINAL and p, timeout=timeout,
                      what=f"process {process_id[:12]} to end")


def stop_gracefully(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, base_image: str, podman_env: dict[str, str]) -> Iterator[Rig]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("containers")
    srv = make_server(tmp)
    srv.start()
    try:
        colony = setup_colony(srv)
        sig = tmp / "sig"
        sig.mkdir(mode=0o777)
        os.chmod(sig, 0o777)
        env = {**cli_env(srv, colony), "CONTAINERS_CONF": podman_env["CONTAINERS_CONF"]}
        yield Rig(srv, colony, env, tmp, sig, base_image)
    finally:
        srv.stop()
        left = [c["Id"] for c in json.loads(podman("ps", "-a", "--format", "json", "--filter",
                                                   f"label=colonies.ctest={TOKEN}").stdout or "[]")]
        if left:
            podman("rm", "-f", "-t", "0", *left, check=False)


@dataclass
class Main:
    """One shared executor (type "ct", 4 slots) for the tests that need no executor of their own."""

    rig: Rig
    key: str
    proc: subprocess.Popen[bytes]
    store: Path

    @property
    def executor_id(self) -> str:
        return id_of(self.key)


@pytest.fixture(scope="module")
def main(rig: Rig) -> Iterator[Main]:
    key = generate_prvkey()
    store = private_dir(rig.tmp / "objects")
    proc = rig.start("ct-main", key, "ct", rig.config(slots=4), COLONIES_FS_DIR=str(store),
                     COLONIES_EXECUTOR_FS_DIR=str(rig.tmp / "fs"))
    try:
        with rig.client() as c:
            wait_until(lambda: any(e.executorname == "ct-main" and e.state == 1
                                   for e in c.get_executors(rig.colony.name) or []),
                       timeout=30, what="ct-main to register")
        yield Main(rig, key, proc, store)
    finally:
        stop_gracefully(proc)


def _script(code: str) -> list[str]:
    return ["python3", "-u", "-c", code]


WAIT_AND_REPORT = """
import json, os, pathlib, sys, time
pid = os.environ["COLONIES_PROCESS_ID"]
print("started", pid, flush=True)
for _ in range(300):
    if pathlib.Path("/sig/go-" + pid).exists():
        break
    time.sleep(0.1)
result = {"argv": sys.argv[1:], "input": json.load(open(os.environ["COLONIES_INPUT"])),
          "greeting": os.environ.get("GREETING"), "cwd": os.getcwd()}
json.dump(result, open(os.environ["COLONIES_OUTPUT"], "w"))
print("done", file=sys.stderr)
"""


def test_a_container_succeeds_with_output_streams_its_log_and_gets_limits(main: Main) -> None:
    rig = main.rig
    pid = rig.submit("ct", {"docker-image": rig.image, "cmd": _script(WAIT_AND_REPORT), "args": ["a b", "{processid}"]},
                     args=[1, "two"], env={"GREETING": "hello there"}, cpu="500m", mem="512Mi")
    with rig.client() as c:
        # the first line reaches the process log while the container still runs (it waits for /sig/go-<id>)
        wait_until(lambda: f"started {pid}" in log_text(c, rig.colony, pid), timeout=30, what="the first log line")
        assert c.get_process(pid).state == 1
        [ct] = containers(f"colonies.process={pid}")
        assert ct["Labels"]["colonies.executor"] == main.executor_id
        assert ct["Labels"]["colonies.colony"] == rig.colony.name
        host = podman("inspect", ct["Id"], "--format", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}").stdout.split()
        assert host == ["500000000", str(512 * 1024 * 1024)]
        (rig.sig / f"go-{pid}").touch()
        p = ended(c, pid)
        assert p.state == 2, p.errors
        assert p.output == [{"argv": ["a b", pid], "input": [1, "two"], "greeting": "hello there", "cwd": "/"}]
        text = log_text(c, rig.colony, pid)
        assert text.index(f"started {pid}") < text.index("done")
        assert containers(f"colonies.process={pid}") == []


def test_shell_form_output_and_a_failure_with_exit_status_and_log_tail(main: Main) -> None:
    rig = main.rig
    ok = rig.submit("ct", {"docker-image": rig.image, "init-cmd": "X=4",
                           "cmd": "echo $((X * 10)) > $COLONIES_OUTPUT; echo", "args": ["hi", "there"]})
    bad = rig.submit("ct", {"docker-image": rig.image,
                            "cmd": "for i in $(seq 1 30); do echo line-$i; done; echo broken >&2; exit 3"})
    with rig.client() as c:
        p = ended(c, ok)
        assert (p.state, p.output) == (2, [40]), p.errors
        assert "hi there" in log_text(c, rig.colony, ok)
        p = ended(c, bad)
        assert p.state == 3
        assert p.errors[0] == f"the container exited with status 3 (image {rig.image})"
        tail = p.errors[1]
        assert tail.startswith("last lines:") and "line-30" in tail and "broken" in tail and "line-5\n" not in tail
        assert "exited with status 3" in log_text(c, rig.colony, bad)
        assert containers(f"colonies.process={bad}") == []


def test_an_image_not_allowed_is_refused_in_one_line_and_never_run(main: Main) -> None:
    rig = main.rig
    refused = [rig.submit("ct", {"docker-image": image, "cmd": "true"})
               for image in ("docker.io/library/alpine:3", rig.image.rsplit(":", 1)[0])]
    bad_kwarg = rig.submit("ct", {"docker-image": rig.image, "cmd": "true", "volume": "/:/host"})
    with rig.client() as c:
        for pid, image in zip(refused, ("docker.io/library/alpine:3", rig.image.rsplit(":", 1)[0]), strict=True):
            p = ended(c, pid)
            assert p.state == 3
            allow = rig.image.rsplit(":", 1)[0] + ":*"
            assert p.errors == [f"image {image!r} is not allowed by this executor (allow: {allow})"]
        p = ended(c, bad_kwarg)
        assert p.state == 3 and len(p.errors) == 1 and p.errors[0].startswith("unknown keyword argument(s) volume")
        for pid in (*refused, bad_kwarg):
            assert containers(f"colonies.process={pid}") == []


def test_maxexectime_kills_and_removes_the_container_and_the_process_is_requeued(main: Main) -> None:
    rig = main.rig
    cmd = ("if [ -e /sig/first-{processid} ]; then echo '\"second\"' > $COLONIES_OUTPUT; "
           "else touch /sig/first-{processid}; echo first attempt; sleep 300; fi")
    start = time.monotonic()
    pid = rig.submit("ct", {"docker-image": rig.image, "cmd": cmd}, maxexectime=3, maxretries=3)
    with rig.client() as c:
        p = ended(c, pid, timeout=60)
        assert (p.state, p.output) == (2, ["second"]), p.errors
        assert (rig.sig / f"first-{pid}").exists() and p.retries >= 1
        assert time.monotonic() - start < 45  # the first attempt's `sleep 300` was killed
        events = [e.event for e in c.process_events(pid) or []]
        assert events.count("requeued") == p.retries and events.count("closed") == 1, events
        assert "the execution deadline passed" in log_text(c, rig.colony, pid)
        assert containers(f"colonies.process={pid}") == []  # every attempt's container is gone


def test_a_cancel_kills_and_removes_the_container(main: Main) -> None:
    rig = main.rig
    pid = rig.submit("ct", {"docker-image": rig.image, "cmd": "echo running; sleep 300"})
    with rig.client() as c:
        wait_until(lambda: "running" in log_text(c, rig.colony, pid), timeout=30, what="the container to run")
        assert [ct["State"] for ct in containers(f"colonies.process={pid}")] == ["running"]
        c.cancel(pid)
        wait_until(lambda: containers(f"colonies.process={pid}") == [], timeout=15, what="the container to go")
        assert c.get_process(pid).state == 4


def test_spec_fs_is_staged_through_the_mounted_directory(main: Main) -> None:
    rig = main.rig
    label = f"/ct-{TOKEN}"
    src = rig.tmp / "data.txt"
    src.write_text("shout this\n")

    def dirs(lbl: str, d: str) -> dict[str, Any]:
        return {"label": lbl, "dir": d, "keepfiles": False,
                "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": True}}}

    cmd = ('test "$(pwd)" = /cfs && test "$COLONIES_FS_MOUNT" = /cfs && '
           "tr a-z A-Z < /cfs/in/data.txt > out/result.txt && ls in")
    with rig.client() as c:
        FileSystem(c, rig.colony.name, store=store_from_env({"COLONIES_FS_DIR": str(main.store)})).upload(src, label + "/in")
        spec = func_spec("execute", rig.colony.name, "ct", kwargs={"docker-image": rig.image, "cmd": cmd},
                         maxexectime=60, maxretries=0)
        spec.fs = {"mount": "/cfs", "dirs": [dirs(label + "/in", "/in"), dirs(label + "/out-{processid}", "/out")]}
        pid = c.submit(spec).processid
        p = ended(c, pid)
        assert p.state == 2, p.errors
        assert "data.txt" in log_text(c, rig.colony, pid)
        fs = FileSystem(c, rig.colony.name, store=store_from_env({"COLONIES_FS_DIR": str(main.store)}))
        got = fs.download(f"{label}/out-{pid}", "result.txt", rig.tmp / "got")
        assert got.read_text() == "SHOUT THIS\n"
        assert not (rig.tmp / "fs" / pid).exists()  # the working directory is removed (keepfiles false)


def test_orphans_left_by_a_sigkilled_executor_are_reaped_on_its_next_start(rig: Rig) -> None:
    key = generate_prvkey()
    config = rig.config(slots=1)
    ex = rig.start("ct-reap", key, "ct-reap", config, COLONIES_COLONY_PRVKEY=rig.colony.colony_prvkey)
    again: subprocess.Popen[bytes] | None = None
    try:
        pid = rig.submit("ct-reap", {"docker-image": rig.image, "cmd": "echo up; sleep 300"}, maxexectime=120)
        mine = f"colonies.executor={id_of(key)}"
        wait_until(lambda: [c["State"] for c in containers(mine)] == ["running"], timeout=30,
                   what="the container to run")
        ex.send_signal(signal.SIGKILL)
        ex.wait(10)
        time.sleep(0.5)
        assert [c["State"] for c in containers(mine)] == ["running"]  # an orphan: nobody removes it
        again = rig.start("ct-reap", key, "ct-reap", config, COLONIES_COLONY_PRVKEY=rig.colony.colony_prvkey)
        wait_until(lambda: containers(mine) == [], timeout=30, what="the orphan to be reaped")
        assert "an earlier run of this executor left" in (rig.tmp / "ct-reap.log").read_text()
        with rig.client() as c:
            c.cancel(pid)  # still RUNNING on the server (until its deadline); the restarted run never saw it
    finally:
        for p in (ex, again):
            if p is not None:
                stop_gracefully(p)


def test_twenty_processes_through_two_executors_one_sigkilled_and_restarted(rig: Rig) -> None:
    keys = {"ct-many-a": generate_prvkey(), "ct-many-b": generate_prvkey()}
    config = rig.config(slots=2)
    owner = {"COLONIES_COLONY_PRVKEY": rig.colony.colony_prvkey}
    procs = {n: rig.start(n, k, "ct-many", config, **owner) for n, k in keys.items()}
    restarted: subprocess.Popen[bytes] | None = None
    victim = id_of(keys["ct-many-a"])
    try:
        cmd = "sleep 0.5; echo $(( {n} * {n} )) > $COLONIES_OUTPUT"
        pids = {rig.submit("ct-many", {"docker-image": rig.image, "cmd": cmd.format(n=n)}, maxexectime=5,
                           maxretries=3): n for n in range(20)}
        with rig.client() as c:
            def victim_busy() -> bool:
                running = c.get_processes(rig.colony.name, state=1, count=100) or []
                done = c.get_processes(rig.colony.name, state=2, count=100) or []
                return len(done) >= 2 and any(p.assignedexecutorid == victim for p in running)

            wait_until(victim_busy, timeout=40, what="executor a to be running work")
            procs["ct-many-a"].send_signal(signal.SIGKILL)
            procs["ct-many-a"].wait(10)
            hit = {p.processid for p in c.get_processes(rig.colony.name, state=1, count=100) or []
                   if p.assignedexecutorid == victim}
            assert hit  # the kill caught it running work (it cannot close anything now)
            restarted = rig.start("ct-many-a", keys["ct-many-a"], "ct-many", config, **owner)
            got = {pid: ended(c, pid, timeout=90) for pid in pids}
            for pid, p in got.items():
                assert (p.state, p.output) == (2, [pids[pid] ** 2]), (pid, p.errors)
                events = [e.event for e in c.process_events(pid) or []]
                assert events.count("closed") == 1 and events.count("failed") == 0, events
            assert all(got[pid].retries >= 1 for pid in hit)  # re-queued past their deadline, run again
        mine = [f"colonies.executor={id_of(k)}" for k in keys.values()]
        wait_until(lambda: all(containers(m) == [] for m in mine), timeout=20, what="no container left")
    finally:
        for p in (*procs.values(), restarted):
            if p is not None:
                stop_gracefully(p)
