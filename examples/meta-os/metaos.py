"""The meta-OS example on one machine: a model trained by a Slurm batch job at the HPC centre, evaluated in
a podman container in the cloud, and answering a prediction in a web browser at the edge, as one Colonies
workflow (workflow.json) that the dashboard shows live.

    python examples/meta-os/metaos.py [--dir build/meta-os] [--port N] [--screenshot PNG] [--keep]
                                      [--slurm-mode jobs|pilot]

run.sh provisions what this needs (Slurm, podman with the base image, Chromium and playwright-core) and
then runs it. It:

1. starts a server (SQLite in --dir, dashboard on) and adds colony `meta-os`, its user, the locations
   hpc-centre, cloud and edge (with coordinates), and three executors, each added and approved at its site;
2. starts the Slurm executor (`colonies executor run --slurm`, type hpc, at hpc-centre) and the container
   executor (`--containers`, type container, at cloud), from slurm.toml and containers.toml with their
   paths filled in; both stage ColonyFS files through a local object store in --dir (COLONIES_FS_DIR);
3. submits workflow.json, then opens headless Chromium (browser.mjs): a dashboard tab watching the DAG,
   and an /executor tab that joins as the edge executor (type browser, at edge) and runs `predict`;
4. prints each step's executor, location and output, and the dashboard link; stops everything it started
   (also on Ctrl-C), or with --keep leaves the server up until Ctrl-C.

With `--slurm-mode pilot` (or METAOS_SLURM_MODE=pilot) the same slurm.toml gets a [pilot] table: the Slurm
executor then runs as a pilot allocator (docs/hpc.md) that submits an allocation of one node's slot, which
runs `train` as its batch job would have; the allocator gets the colony owner's key to add that slot.

Slurm is found through SLURM_CONF (default /tmp/colonies-slurm/slurm.conf, as scripts/slurm makes it),
podman through CONTAINERS_CONF (default deploy/podman/containers.conf). tests/test_meta_os.py runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Self

import httpx

from colonies.client.sync import Client
from colonies.fs import FileSystem, store_from_env
from colonies.model import Process, ProcessGraph, WorkflowSpec
from colonies.protocol.crypto import generate_prvkey, id_of

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COLONY = "meta-os"
LABEL = "/meta-os/model"
MARKER = ".meta-os-run"  # --dir holds a run of this example (and may be emptied by the next)
STATES = ["waiting", "running", "successful", "failed", "cancelled"]


@dataclass(frozen=True)
class Site:
    """A location, and the executor that sits there."""

    name: str
    description: str
    long: float
    lat: float
    executor: str
    executortype: str


SITES = (
    Site("hpc-centre", "a supercomputer: training runs as Slurm batch jobs", 27.7296, 64.2245, "slurm-1", "hpc"),
    Site("cloud", "a cloud VM: evaluation runs in podman containers", 18.0686, 59.3293, "podman-1", "container"),
    Site("edge", "an edge device: a web browser answers predictions", 22.1547, 65.5848, "browser-1", "browser"),
)


# The Slurm step as a pilot allocation (--slurm-mode pilot): one node's slot, up to 5 minutes, gone after
# 30 s without work. train's maxexectime (90 s) fits: 300 - 10 headroom - 10 slot poll - 5 start.
PILOT = """
[pilot]
nodes = 1
slots_per_node = 1
walltime = 300
headroom = 10
idle_timeout = 30
poll_interval = 1
"""


@dataclass
class Step:
    """One workflow node as it ended."""

    node: str
    state: str
    executor: str
    executortype: str
    location: str
    seconds: float
    output: list[Any]
    errors: list[str]


@dataclass
class Report:
    graphid: str
    state: str
    steps: dict[str, Step]
    seconds: float
    browser: dict[str, Any] = field(default_factory=dict)
    dashboard: str = ""


class MetaOS:
    """One run of the example; `with MetaOS(dir) as m: m.run()` stops what it started when it leaves."""

    def __init__(self, workdir: Path, environ: Mapping[str, str] | None = None, port: int = 0,
                 timeout: float = 100.0, slurm_mode: str = "jobs") -> None:
        if slurm_mode not in ("jobs", "pilot"):
            raise ValueError(f"slurm_mode must be jobs or pilot, not {slurm_mode!r}")
        self.slurm_mode = slurm_mode
        self.dir = workdir.resolve()
        self.environ = dict(os.environ if environ is None else environ)
        self.port = port or free_port()
        self.timeout = timeout
        self.keys = {name: generate_prvkey() for name in ("server", "colony", "user", *(s.name for s in SITES))}
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.store = self.dir / "objects"

    # -- setup ------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str = "user") -> Client:
        return Client("127.0.0.1", self.port, prvkey=self.keys[key])

    def fs(self, c: Client) -> FileSystem:
        return FileSystem(c, COLONY, store=store_from_env({"COLONIES_FS_DIR": str(self.store)}))

    def _fresh_dir(self) -> None:
        if self.dir.exists() and any(self.dir.iterdir()):
            if not (self.dir / MARKER).exists():
                raise SystemExit(f"{self.dir} is not empty and holds no earlier run of this example: pick another --dir")
            shutil.rmtree(self.dir)
        for sub in ("objects", "hpc/jobs", "hpc/fs", "cloud/runs", "cloud/fs", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / MARKER).write_text("")
        os.chmod(self.store, 0o700)

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items() if not k.startswith(("COLONIES_", "AWS_"))}
        env.update({"COLONIES_SERVER_HOST": "127.0.0.1", "COLONIES_SERVER_PORT": str(self.port),
                    "COLONIES_TLS": "false", "COLONIES_COLONY_NAME": COLONY, "COLONIES_LOG_LEVEL": "INFO",
                    "PYTHONPATH": str(ROOT)})
        env.update(extra)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.dir / "logs" / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def _render(self, template: str) -> Path:
        """A copy of an executor config with its @RUN@, @HERE@ and @PYTHON@ paths filled in."""
        text = (HERE / template).read_text()
        for key, value in (("@RUN@", str(self.dir)), ("@HERE@", str(HERE)), ("@PYTHON@", sys.executable)):
            text = text.replace(key, value)
        path = self.dir / template
        path.write_text(text)
        return path

    def start(self) -> None:
        """Server, colony, user, locations, executors (the edge one joins later, from the browser)."""
        self._fresh_dir()
        server_env = self._env(COLONIES_SERVER_ID=id_of(self.keys["server"]), COLONIES_DB_TYPE="sqlite",
                               COLONIES_DB_PATH=str(self.dir / "colonies.db"), COLONIES_DASHBOARD="true",
                               COLONIES_LOG_LEVEL="WARNING", COLONIES_TIMEOUT_CHECKER_PERIOD="500")
        server = self._spawn("server", [sys.executable, "-m", "colonies", "server", "start"], server_env)
        wait_for(lambda: server.poll() is not None or healthy(self.url), 20, "the server to answer /health")
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {(self.dir / 'logs' / 'server.log').read_text()[-2000:]}")
        with self.client("server") as admin:
            admin.add_colony(id_of(self.keys["colony"]), COLONY)
            owner = admin.with_key(self.keys["colony"])
            owner.add_user(COLONY, id_of(self.keys["user"]), "meta-os-user")
            for s in SITES:
                owner.add_location(COLONY, s.name, s.description, long=s.long, lat=s.lat)
                owner.add_executor(COLONY, id_of(self.keys[s.name]), s.executor, s.executortype, location=s.name)
                owner.approve_executor(COLONY, s.executor)
        fs_env = {"COLONIES_FS_DIR": str(self.store)}
        slurm_conf = self.environ.get("SLURM_CONF", "/tmp/colonies-slurm/slurm.conf")
        slurm_env = self._env(COLONIES_EXECUTOR_PRVKEY=self.keys["hpc-centre"], SLURM_CONF=slurm_conf, **fs_env)
        argv = self._executor_argv("--slurm", "slurm.toml", SITES[0], "hpc/fs")
        if self.slurm_mode == "pilot":
            with open(self.dir / "slurm.toml", "a") as f:  # the copy _executor_argv rendered
                f.write(PILOT)
            slurm_env["COLONIES_COLONY_PRVKEY"] = self.keys["colony"]  # the allocator adds the slots' executors
        self._spawn("hpc-slurm-1", argv, slurm_env)
        containers_conf = self.environ.get("CONTAINERS_CONF", str(ROOT / "deploy" / "podman" / "containers.conf"))
        self._spawn("cloud-podman-1", self._executor_argv("--containers", "containers.toml", SITES[1], "cloud/fs"),
                    self._env(COLONIES_EXECUTOR_PRVKEY=self.keys["cloud"], CONTAINERS_CONF=containers_conf, **fs_env))

    def _executor_argv(self, kind: str, config: str, site: Site, fs_dir: str) -> list[str]:
        return [sys.executable, "-m", "colonies", "executor", "run", kind, str(self._render(config)),
                "--name", site.executor, "--type", site.executortype, "--location", site.name,
                "--fs-dir", str(self.dir / fs_dir), "--watch", "0.5"]

    # -- the workflow -----------------------------------------------------------------------------------
    def submit(self) -> ProcessGraph:
        from colonies.cli.workflow import workflow_from_json

        spec: WorkflowSpec = workflow_from_json(json.loads((HERE / "workflow.json").read_text()), COLONY)
        with self.client() as c:
            graph: ProcessGraph = c.submit_workflow(spec)
            return graph

    def browser(self, graphid: str, screenshot: Path | None) -> dict[str, Any]:
        """browser.mjs: the edge executor's tab, and a dashboard tab watching the workflow; its result."""
        node = shutil.which("node") or "node"
        cfg = {"url": self.url, "colony": COLONY, "name": SITES[2].executor, "type": SITES[2].executortype,
               "executorKey": self.keys["edge"], "userKey": self.keys["user"], "graphid": graphid,
               "chromium": self.environ.get("COLONIES_CHROMIUM", "/usr/bin/chromium"),
               "timeout": self.timeout, "screenshot": str(screenshot) if screenshot else ""}
        out = self.dir / "logs" / "browser.out"
        with open(out, "wb") as stdout, open(self.dir / "logs" / "browser.log", "ab") as stderr:
            proc = subprocess.Popen([node, str(HERE / "browser.mjs"), json.dumps(cfg)], cwd=ROOT, stdout=stdout,
                                    stderr=stderr, start_new_session=True)
            self.procs.append(("browser", proc))
            try:
                proc.wait(self.timeout + 20)
            except subprocess.TimeoutExpired:
                stop_process(proc)
        lines = [line for line in out.read_text().splitlines() if line.startswith("{")]
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {"ok": False, "error": "no result"}
        return result

    def report(self, graphid: str) -> Report:
        with self.client() as c:
            graph = c.get_processgraph(graphid)
            names = {e.executorid: e for e in c.get_executors(COLONY)}
            steps = {}
            for pid in graph.processids:
                p: Process = c.get_process(pid)
                e = names.get(p.assignedexecutorid)
                took = (p.endtime - p.starttime).total_seconds() if p.state in (2, 3) else 0.0
                steps[p.spec.nodename] = Step(
                    node=p.spec.nodename, state=STATES[p.state], executor=e.executorname if e else "",
                    executortype=e.executortype if e else "", location=e.locationname if e else "",
                    seconds=round(max(took, 0.0), 2), output=p.output or [], errors=p.errors)
        took = (graph.endtime - graph.submissiontime).total_seconds() if graph.state in (2, 3) else 0.0
        return Report(graphid=graphid, state=STATES[graph.state], steps=steps, seconds=round(took, 2),
                      dashboard=f"{self.url}/#/workflow/{graphid}")

    def run(self, screenshot: Path | None = None) -> Report:
        """Start it all, run the workflow to its end (bounded by the timeout), and report."""
        self.start()
        graph = self.submit()
        result = self.browser(graph.processgraphid, screenshot)
        wait_for(lambda: self.report(graph.processgraphid).state in ("successful", "failed"), 10,
                 "the workflow to end", fail=False)
        report = self.report(graph.processgraphid)
        report.browser = result
        return report

    def stop(self) -> None:
        """SIGTERM to everything started (the executors finish what they run), the server last."""
        for _name, proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(ok: Any, seconds: float, what: str, fail: bool = True) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.1)
    if fail:
        raise TimeoutError(f"waited {seconds:.0f} s for {what}")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM to the process' group (it was started in its own session), SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        proc.wait(10)


def summary(s: Step) -> str:
    """One line of what a step answered."""
    out = s.output[0] if s.output and isinstance(s.output[0], dict) else {}
    if s.node == "train" and "train_accuracy" in out:
        return f"model {LABEL}/{Path(out['model']).name} in ColonyFS, training accuracy {out['train_accuracy']:.3f}"
    if s.node == "evaluate" and "metrics" in out:
        k = out["metrics"]
        return (f"accuracy {k['accuracy']:.3f} on {k['samples']} held-back samples (precision {k['precision']:.3f}, "
                f"recall {k['recall']:.3f}, log loss {k['logloss']:.3f})")
    if s.node == "predict" and "probability" in out:
        return f"prediction: label {out['label']} (probability {out['probability']:.4f}, score {out['score']:.4f})"
    return f"output: {json.dumps(s.output)[:300]}"


def print_report(m: MetaOS, r: Report, keep: bool) -> None:
    print(f"\nworkflow {r.graphid[:12]}… {r.state} in {r.seconds} s (submit to end)")
    for s in r.steps.values():
        print(f"  {s.node:9} {s.state:10} on {s.executor} ({s.executortype}) at {s.location}, {s.seconds} s")
        print(f"  {'':9} {summary(s)}")
        for e in s.errors[:3]:
            print(f"  {'':9} error: {e[:300]}")
    browser = r.browser
    if browser.get("ok"):
        shown = ", ".join(f"{n['node']}: {n['place']}" for n in browser.get("nodes", []))
        print(f"dashboard (seen live in headless Chromium): {shown}")
        if browser.get("screenshot"):
            print(f"  screenshot: {browser['screenshot']}")
    else:
        print(f"browser: {browser.get('error', 'failed')[:1000]}")
    env = m.dir / "meta-os.env"
    env.write_text("".join(f"export {k}={v}\n" for k, v in {
        "COLONIES_SERVER_HOST": "127.0.0.1", "COLONIES_SERVER_PORT": str(m.port), "COLONIES_TLS": "false",
        "COLONIES_COLONY_NAME": COLONY, "COLONIES_PRVKEY": m.keys["user"], "COLONIES_USER_PRVKEY": m.keys["user"],
        "COLONIES_COLONY_PRVKEY": m.keys["colony"], "COLONIES_FS_DIR": str(m.store)}.items()))
    env.chmod(0o600)
    print(f"dashboard: {r.dashboard}  (sign in with COLONIES_USER_PRVKEY from {env}"
          f"{'' if keep else '; --keep keeps the server up'})")
    print(f"logs: {m.dir / 'logs'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=str(ROOT / "build" / "meta-os"), help="where the run's files go (emptied first)")
    ap.add_argument("--port", type=int, default=0, help="the server's port (default: a free one)")
    ap.add_argument("--screenshot", default="", help="save the dashboard's picture of the workflow here")
    ap.add_argument("--timeout", type=float, default=100, help="seconds the workflow may take")
    ap.add_argument("--keep", action="store_true", help="keep the server and executors up until Ctrl-C")
    ap.add_argument("--slurm-mode", choices=("jobs", "pilot"), default=os.environ.get("METAOS_SLURM_MODE", "jobs"),
                    help="the Slurm step as one batch job per process (jobs) or in a pilot allocation's slot")
    args = ap.parse_args(argv)

    def interrupted(sig: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    shot = Path(args.screenshot) if args.screenshot else Path(args.dir) / "dashboard.png"
    with MetaOS(Path(args.dir), port=args.port, timeout=args.timeout, slurm_mode=args.slurm_mode) as m:
        try:
            report = m.run(shot.resolve())
            print_report(m, report, args.keep)
            ok = report.state == "successful" and bool(report.browser.get("ok"))
            if args.keep:
                print("keeping it up: Ctrl-C stops it all")
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping", file=sys.stderr)
            return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
