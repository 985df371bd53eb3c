"""`colonies dev`: server on SQLite, fresh keys, a colony, a demo executor, a first process and a demo
workflow to watch on the dashboard."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shlex
import socket
import stat
import sys
from pathlib import Path
from types import FrameType

from colonies.client.asyncio import AsyncClient
from colonies.client.core import func_spec
from colonies.client.realtime import wait_for
from colonies.config import Config
from colonies.errors import ClientError
from colonies.executor import Executor
from colonies.model import FunctionSpec, WorkflowSpec
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.secure_files import private_dir, write_private

COLONY = "dev"
EXECUTOR_TYPE = "demo"


def _keys(path: Path) -> dict[str, str]:
    """Keys are made once and kept, so the env file stays valid across restarts."""
    if path.exists():
        keys: dict[str, str] = json.loads(path.read_text())
        if stat.S_IMODE(path.stat().st_mode) & 0o077:  # written by an older version: tighten
            path.chmod(0o600)
        return keys
    keys = {role: generate_prvkey() for role in ("server", "colony", "user", "executor")}
    write_private(path, json.dumps(keys))
    return keys


def _bin_dir() -> str:
    """The directory of the `colonies` command that runs now (its venv's bin), or "" if there is none."""
    argv0 = Path(sys.argv[0])
    for d in (argv0.parent if argv0.name == "colonies" else None, Path(sys.executable).parent):
        if d is not None and os.access(d / "colonies", os.X_OK):
            return str(d.absolute())
    return ""


def _env_file(path: Path, port: int, keys: dict[str, str], fs_dir: Path) -> None:
    """`source`-able: the server, colony and user settings, the local ColonyFS object directory, and
    `colonies` on PATH. The demo executor's identity is not exported as COLONIES_EXECUTOR_*: a user's own
    `colonies executor run` registers its own executor with the colony key instead of taking over the
    demo's (type `demo`)."""
    lines = {
        "COLONIES_SERVER_HOST": "127.0.0.1",
        "COLONIES_SERVER_PORT": str(port),
        "COLONIES_SERVER_TLS": "false",
        "COLONIES_TLS": "false",
        "COLONIES_SERVER_ID": id_of(keys["server"]),
        "COLONIES_SERVER_PRVKEY": keys["server"],
        "COLONIES_COLONY_NAME": COLONY,
        "COLONIES_COLONY_ID": id_of(keys["colony"]),
        "COLONIES_COLONY_PRVKEY": keys["colony"],
        "COLONIES_PRVKEY": keys["user"],
        "COLONIES_USER_PRVKEY": keys["user"],
        "COLONIES_FS_DIR": str(fs_dir),
    }
    text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in lines.items())
    bindir = _bin_dir()
    if bindir:
        q = shlex.quote(bindir)
        text += f'case ":$PATH:" in *:{q}:*) ;; *) export PATH={q}:"$PATH" ;; esac\n'
    write_private(path, text)


def _fs_dir(workdir: Path) -> Path:
    """ColonyFS with no S3: objects in a local directory (owner only) that every executor on this machine
    reads through COLONIES_FS_DIR; a COLONIES_FS_DIR already set is kept."""
    given = os.environ.get("COLONIES_FS_DIR", "")
    return private_dir(Path(given).absolute() if given else workdir.absolute() / "objects")


def _fs_line(fs_dir: Path) -> str:
    if os.environ.get("AWS_S3_ENDPOINT"):
        return (f"Files (ColonyFS):  S3 at {os.environ['AWS_S3_ENDPOINT']} (AWS_S3_* set; else objects would go "
                f"to {fs_dir})")
    return f"Files (ColonyFS):  objects in {fs_dir} (COLONIES_FS_DIR, no S3 needed); try `colonies fs sync -l /demo`"


def demo_executor(keys: dict[str, str], port: int) -> Executor:
    ex = Executor(colony=COLONY, prvkey=keys["executor"], name="demo-executor", executortype=EXECUTOR_TYPE,
                  port=port, slots=2)

    @ex.function
    def sha256(*args: object) -> str:
        """The SHA-256 of the args joined by spaces."""
        return hashlib.sha256(" ".join(str(a) for a in args).encode()).hexdigest()

    @ex.function
    def sum(*args: float) -> float:
        total = 0.0
        for a in args:
            total += float(a)
        return total

    @ex.function
    def echo(*args: object) -> list[object]:
        return list(args)

    return ex


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _demo_workflow() -> WorkflowSpec:
    """Two hashes in parallel, then a join that receives both outputs, then a report."""
    def node(name: str, fn: str, args: list[object], deps: list[str]) -> FunctionSpec:
        return func_spec(fn, COLONY, EXECUTOR_TYPE, args=args, nodename=name, dependencies=deps)

    return WorkflowSpec(colonyname=COLONY, functionspecs=[
        node("hash-a", "sha256", ["a"], []), node("hash-b", "sha256", ["b"], []),
        node("join", "echo", [], ["hash-a", "hash-b"]), node("report", "echo", ["done"], ["join"])])


async def _main(port: int, workdir: Path, once: bool) -> int:
    import uvicorn

    from colonies.server.app import create_app
    from colonies.storage import create_storage

    private_dir(workdir)  # keys, env file and database: owner only
    keys = _keys(workdir / "keys.json")
    env_path = workdir / "dev.env"
    fs_dir = _fs_dir(workdir)
    os.environ["COLONIES_FS_DIR"] = str(fs_dir)  # the demo executor (this process) stages files there
    _env_file(env_path, port, keys, fs_dir)
    config = Config.from_env({}, port=port, db_path=str(workdir / "colonies.db"),
                             server_id=id_of(keys["server"]), dashboard=True)
    app = create_app(config, create_storage(config))
    ex = demo_executor(keys, port)
    loop = asyncio.get_running_loop()

    class DevServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(ex.stop)  # the executor stops pulling before the server goes
            super().handle_exit(sig, frame)

    server = DevServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                      ws="websockets-sansio", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            return 1
        await asyncio.sleep(0.05)

    admin = AsyncClient("127.0.0.1", port, prvkey=keys["server"])
    owner, user = admin.with_key(keys["colony"]), admin.with_key(keys["user"])
    try:
        await admin.add_colony(id_of(keys["colony"]), COLONY)
    except ClientError as exc:
        if "already exists" not in exc.message:
            raise
    try:
        await owner.add_user(COLONY, id_of(keys["user"]), "dev-user")
    except ClientError as exc:
        if "already exists" not in exc.message:
            raise
    await ex.register(keys["colony"])
    runner = asyncio.create_task(ex.run_async())

    url = f"http://127.0.0.1:{port}"
    print(f"Colonies dev server on {url} (SQLite: {workdir / 'colonies.db'})")
    p = await user.submit(func_spec("sha256", COLONY, EXECUTOR_TYPE, args=["hello", "colonies"]))
    print(f"Submitted process {p.processid[:12]}… sha256('hello colonies')")
    p = await wait_for("127.0.0.1", port, keys["user"], p, 10) or await user.get_process(p.processid)
    state = {2: "SUCCESS", 3: "FAILED"}.get(p.state, "NOT DONE")
    print(f"First process finished: {state}, output {p.output}")
    graph = await user.submit_workflow(_demo_workflow())
    print(f"Submitted a workflow: hash-a, hash-b -> join -> report (graph {graph.processgraphid[:12]}…)")
    print()
    print(f"Dashboard:         {url}/#/workflow/{graph.processgraphid}")
    print(f"                   sign in with COLONIES_USER_PRVKEY from {env_path}")
    print(f"Browser executor:  {url}/executor  (colony 'dev'; COLONIES_COLONY_PRVKEY registers it)")
    print(_fs_line(fs_dir))
    print(f"Shell:             source {env_path}; colonies process ps")
    print("Your own executor: colonies executor run mymodule  (added and approved with COLONIES_COLONY_PRVKEY)")
    code = 0 if p.state == 2 else 1
    if not once:
        print("Serving; press Ctrl-C to stop.")
        try:
            await serving
        except asyncio.CancelledError:
            pass
    ex.stop()
    await runner
    await admin.aclose()
    await ex.client.aclose()
    server.should_exit = True
    await serving
    return code


def run_dev(port: int, workdir: str, once: bool) -> int:
    logging.basicConfig(level=os.environ.get("COLONIES_LOG_LEVEL", "WARNING"))
    if not _port_free(port):
        from colonies.cli.common import CLIError

        raise CLIError(f"port {port} on 127.0.0.1 is in use: pass --port (or set COLONIES_SERVER_PORT)")
    try:
        return asyncio.run(_main(port, Path(workdir), once))
    except KeyboardInterrupt:
        return 0
