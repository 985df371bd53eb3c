"""Issue 10, first-user items: secret files owner-only from creation (8), the client errors exported
from the package (14), `source .colonies/dev.env` puts `colonies` on PATH and lets a user's own executor
register (16), and scripts/test stops the services it started, and only those (19).

The pages' headers (10) are in test_browser_pages.py and the dashboard fixes (10, 18) in test_browser.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import colonies
from colonies.client.core import func_spec
from colonies.errors import ClientError as ErrorsClientError
from colonies.errors import TransportError as ErrorsTransportError
from colonies.protocol.crypto import generate_prvkey
from tests.conftest import ServerProc, free_port, need_service

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONIES_")}
    return {**env, **extra}


# -- 14: the errors a client call raises are part of the package's API ---------------------------------------
def test_package_exports_client_error_and_transport_error(server: ServerProc) -> None:
    from colonies import ClientError, TransportError

    assert (ClientError, TransportError) == (ErrorsClientError, ErrorsTransportError)
    assert {"ClientError", "TransportError"} <= set(colonies.__all__)
    with colonies.Client("127.0.0.1", free_port(), prvkey=generate_prvkey()) as nobody_there, \
            pytest.raises(TransportError):
        nobody_there.get_colony("dev")
    with colonies.Client("127.0.0.1", server.port, prvkey=generate_prvkey()) as stranger, \
            pytest.raises(ClientError) as refused:
        stranger.get_colony("dev")
    assert not isinstance(refused.value, TransportError) and refused.value.status in (403, 404)


# -- 8: secret files are owner-only from the call that creates them --------------------------------------------
NO_CHMOD = """
import json, os, pathlib, sys

def refuse(*args, **kwargs):
    raise AssertionError(f"chmod after creation: {args}")

# A file made with the default mode and narrowed afterwards is readable in between: forbid narrowing.
os.chmod = os.fchmod = os.lchmod = refuse
pathlib.Path.chmod = refuse
from colonies.cli.dev import _env_file, _keys
from colonies.secure_files import create_private, private_dir, write_private

d = private_dir(pathlib.Path(sys.argv[1]) / "secrets")
write_private(d / "key", "first")
write_private(d / "key", "second")
create_private(d / "colonies.db")
keys = _keys(d / "keys.json")
_env_file(d / "dev.env", 50080, keys, d / "fs")
print(json.dumps(sorted(os.listdir(d))))
"""


def test_secret_files_are_created_owner_only_without_a_chmod_afterwards(tmp_path: Path) -> None:
    """umask 0 (the widest a user can have) and no chmod allowed: the modes come from the creating calls."""
    r = subprocess.run([sys.executable, "-c", NO_CHMOD, str(tmp_path)], capture_output=True, text=True,
                       umask=0, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "secrets"
    assert json.loads(r.stdout) == ["colonies.db", "dev.env", "key", "keys.json"]  # no temporary file left
    assert mode(d) == 0o700
    for name in ("key", "colonies.db", "keys.json", "dev.env"):
        assert mode(d / name) == 0o600, name
    assert (d / "key").read_text() == "second"  # replaced as a whole
    assert set(json.loads((d / "keys.json").read_text())) == {"server", "colony", "user", "executor"}


def test_private_dir_tightens_an_existing_directory_and_create_private_keeps_a_file(tmp_path: Path) -> None:
    from colonies.secure_files import create_private, private_dir

    wide = tmp_path / "wide"
    wide.mkdir()
    wide.chmod(0o755)
    private_dir(wide)
    assert mode(wide) == 0o700
    kept = tmp_path / "kept.db"
    kept.write_text("data")
    kept.chmod(0o640)
    create_private(kept)  # an operator's file keeps its content and mode
    assert (kept.read_text(), mode(kept)) == ("data", 0o640)


SQLITE_OPEN = """
import asyncio, json, os, stat, sys
from colonies.storage.sqlite import SqliteStorage

async def main() -> None:
    st = SqliteStorage(sys.argv[1])
    await st.open()  # WAL mode and the migrations' writes: the -wal and -shm files exist while it is open
    found = {p: stat.S_IMODE(os.stat(p).st_mode) for p in (sys.argv[1] + s for s in ("", "-wal", "-shm"))
             if os.path.exists(p)}
    await st.close()
    print(json.dumps(found))

asyncio.run(main())
"""


def test_sqlite_database_and_its_wal_files_are_owner_only(tmp_path: Path) -> None:
    db = str(tmp_path / "colonies.db")
    r = subprocess.run([sys.executable, "-c", SQLITE_OPEN, db], capture_output=True, text=True, umask=0,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {db: 0o600, db + "-wal": 0o600, db + "-shm": 0o600}


# -- 8 and 16: `colonies dev`, then `source .colonies/dev.env` in a shell ---------------------------------------
class DevServer:
    """`colonies dev` serving in the background (as the README runs it: the venv's `colonies`)."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / ".colonies"
        self.port = free_port()
        exe = BIN / "colonies"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "colonies"]
        self.proc = subprocess.Popen([*cmd, "dev", "--port", str(self.port), "--dir", str(self.dir)], cwd=tmp_path,
                                     env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     umask=0)
        self.output: list[str] = []
        self.serving = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("Serving;"):
                self.serving.set()
        self.serving.set()  # it ended: the caller sees that from the exit status

    def wait_serving(self) -> None:
        assert self.serving.wait(90), "colonies dev did not start"
        assert self.proc.poll() is None, "".join(self.output)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevServer]:
    srv = DevServer(tmp_path)
    try:
        srv.wait_serving()
        yield srv
    finally:
        srv.stop()


MYWORK = """
from colonies import Executor

ex = Executor(executortype="mywork")

@ex.function
def double(x):
    return 2 * int(x)
"""


def test_colonies_dev_files_are_owner_only(dev: DevServer) -> None:
    """Run with umask 0: the directory is 0700 and the keys, env file and database 0600."""
    assert mode(dev.dir) == 0o700
    for name in ("keys.json", "dev.env", "colonies.db", "colonies.db-wal", "colonies.db-shm"):
        path = dev.dir / name
        if name.endswith(("-wal", "-shm")) and not path.exists():
            continue  # SQLite removed it
        assert mode(path) == 0o600, name
    assert not [p.name for p in dev.dir.iterdir() if p.name.endswith(".tmp")]


def test_dev_env_puts_colonies_on_path_and_a_users_own_executor_just_works(dev: DevServer, tmp_path: Path) -> None:
    env_file = dev.dir / "dev.env"
    text = env_file.read_text()
    assert "COLONIES_EXECUTOR_" not in text  # the demo executor's identity is not the default executor's
    keys = json.loads((dev.dir / "keys.json").read_text())
    work = tmp_path / "work"
    work.mkdir()
    (work / "mywork.py").write_text(MYWORK)
    with colonies.Client("127.0.0.1", dev.port, prvkey=keys["user"]) as user:
        p = user.submit(func_spec("double", "dev", "mywork", args=[21]))
        # a bare shell: only the system's PATH, no COLONIES_ variables but what dev.env exports
        script = textwrap.dedent(f"""\
            set -e
            source {env_file}
            source {env_file}
            command -v colonies
            echo "path-entries $(tr ':' '\\n' <<<"$PATH" | grep -cxF {BIN.absolute()})"
            cd {work}
            colonies executor run mywork --until-idle
        """)
        r = subprocess.run(["bash", "-c", script], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == str(BIN.absolute() / "colonies")
        assert lines[1] == "path-entries 1"  # sourcing twice adds it once
        done = user.get_process(p.processid)
    assert (done.state, done.output) == (2, [42]), done.errors


# -- 19: scripts/test stops what it started, and only that ----------------------------------------------------
def free_port_pair() -> int:
    """A port whose next port is free too (etcd's client and peer ports)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def etcd_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def need_root_and_etcd() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("scripts/test provisions services only as root on Debian")
    if shutil.which("etcd") is None:
        need_service("etcd", "etcd is not installed (scripts/services installs it)")


def services_env(tmp_path: Path, port: int) -> dict[str, str]:
    return clean_env(COLONIES_SERVICES_ONLY="etcd", COLONIES_ETCD_PORT=str(port),
                     ETCD_DATA_DIR=str(tmp_path / "etcd"), ETCD_LOG=str(tmp_path / "etcd.log"),
                     COLONIES_SKIP_INSTALL="1")


def run_scripts_test(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # pytest selects nothing here and exits 5: scripts/test must pass that status on, after its cleanup
    return subprocess.run(["./scripts/test", "tests/test_hardening_ux.py", "-k", "no_test_has_this_name"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)


def test_scripts_test_stops_the_etcd_it_started_and_returns_pytests_status(tmp_path: Path) -> None:
    need_root_and_etcd()
    port = free_port_pair()
    assert not etcd_answers(port)
    r = run_scripts_test(services_env(tmp_path, port))
    assert r.returncode == 5, r.stdout + r.stderr
    assert "started here: etcd " in r.stdout and "stopping etcd" in r.stderr, r.stdout + r.stderr
    assert not etcd_answers(port)  # `stop` waited for it to exit


def test_scripts_test_leaves_an_etcd_that_was_already_running(tmp_path: Path) -> None:
    need_root_and_etcd()
    port = free_port_pair()
    env = services_env(tmp_path, port)
    up = subprocess.run(["./scripts/services"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                        check=False)
    started = [line.split()[-1] for line in up.stdout.splitlines() if line.startswith("# started etcd ")]
    assert up.returncode == 0 and len(started) == 1, up.stdout + up.stderr
    try:
        assert f"export COLONIES_TEST_ETCD=127.0.0.1:{port}" in up.stdout
        r = run_scripts_test(env)
        assert r.returncode == 5, r.stdout + r.stderr
        assert "started here" not in r.stdout and "stopping" not in r.stderr
        assert etcd_answers(port)
        status = subprocess.run(["./scripts/services", "status"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=30, check=False)
        assert (status.returncode, status.stdout) == (0, f"etcd 127.0.0.1:{port} up\n")
    finally:
        subprocess.run(["./scripts/services", "stop", "etcd", started[0]], cwd=ROOT, env=env, timeout=30,
                       check=False)
    assert not etcd_answers(port)


def test_services_stop_refuses_what_it_does_not_recognise_and_has_a_dry_run() -> None:
    env = clean_env(COLONIES_SERVICES_DRY_RUN="1")
    dry = subprocess.run(["./scripts/services", "stop", "postgresql", "16", "main"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=30, check=False)
    assert (dry.returncode, dry.stdout) == (0, "would run: pg_ctlcluster 16 main stop\n")
    for bad in (["etcd", "1; rm -rf /"], ["postgresql", "16"], ["mysql", "1"], []):
        r = subprocess.run(["./scripts/services", "stop", *bad], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=30, check=False)
        assert r.returncode == 2 and "usage" in r.stderr, bad
    # a pid that is not an etcd (this test's own) is left alone
    r = subprocess.run(["./scripts/services", "stop", "etcd", str(os.getpid())], cwd=ROOT, env=clean_env(),
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0 and "no etcd" in r.stderr
