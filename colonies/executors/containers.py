"""A ready executor that runs each assigned process in a container (podman, or the docker CLI).

    # containers.toml
    [executor]
    type = "container"            # executor type (default "container"); --type overrides
    name = "gpu-box-1"            # optional; --name overrides
    slots = 2                     # containers run at once

    [containers]
    runtime = "podman"            # or "docker" (the same CLI flags; removal without -t/--ignore)
    allow = ["localhost/*", "docker.io/library/python:3.12*"]   # image patterns (fnmatch); required
    functions = ["execute"]       # function names served (default ["execute"], as the original's)
    timeout = 3600                # seconds any run may take (0: no limit beyond maxexectime)
    pull = "missing"              # podman/docker --pull policy: missing, never, always, newer
    network = ""                  # --network, "" for the runtime's default
    cpus = "1"                    # limits for processes whose conditions give none ("" : unlimited)
    memory = "2Gi"
    gpu = "none"                  # none (GPU processes are refused), cdi (--device gpu_device), docker (--gpus N)
    gpu_device = "nvidia.com/gpu=all"
    env = { TZ = "UTC" }          # put in every container (a process' spec.env may override)
    labels = { team = "ml" }      # extra labels on every container
    mounts = ["/srv/models:/models:ro"]   # host mounts of every container; processes never choose any
    extra_args = ["--security-opt=no-new-privileges"]   # more `run` options, as given
    workdir = ""                  # where per-run directories go (default: the system temp dir)
    reap_interval = 60            # seconds between looks for containers of this executor no run owns

A process calls it as the original's docker executor is called, with kwargs:

    {"funcname": "execute", "kwargs": {"docker-image": "localhost/app:1", "cmd": "echo", "args": ["hi"]}}

* `docker-image` (required) must match an `allow` pattern, as written (a short name is not expanded
  first): an image not matched is never run, and the process fails with one line saying so.
* `cmd` a string: run as the original does, `sh -c "<init-cmd>; <cmd> <args joined by spaces>"` (so
  the image needs `sh`; shell syntax in cmd and args works). `cmd` a list: exec form, no shell, each
  arg one argv item. No `cmd`: the image's own command, with the args (if any) as its command.
  `{processid}` in cmd, args or init-cmd becomes the process id. `debug` and `rebuild-image` (the
  original's) are accepted and ignored; any other kwarg fails the process.
* The process' positional args (a workflow child's parents' outputs first) are written as a JSON list
  to /colonies/in/input.json (COLONIES_INPUT). `spec.env` is put in the container's environment,
  together with COLONIES_PROCESS_ID (as in the original).

Output convention: a fresh host directory is mounted at /colonies/out and COLONIES_OUTPUT is set to
/colonies/out/output.json. After exit 0, if that file exists it is parsed as JSON: a list is the output
list, any other value becomes [value]; no file means output []. A file that is not JSON fails the
process. A non-zero exit fails it with the exit status (and "OOM killed" when the memory limit killed
it) and the last lines of its output.

* Logs: the container's stdout and stderr are read line by line while it runs and go to the process
  log (through the kit's output capture, about once a second).
* Limits: `conditions.cpu` becomes --cpus ("500m" -> 0.5; the server keeps cpu as millicores and
  reads any other form as 0, as the original), `conditions.mem` ("512Mi", "1Gi", "1G", bytes) --memory;
  0 means no limit; `conditions.gpu.count` > 0 becomes a device request: with gpu = "cdi", `--device
  nvidia.com/gpu=all` (podman with the NVIDIA CDI spec generated; all GPUs, not `count` of them), with
  gpu = "docker", `--gpus <count>` (docker with the NVIDIA container toolkit). GPU requests are not
  tested here (no GPU); cpu and memory are.
* `spec.fs` (ColonyFS): the kit stages the process' working directory (ctx.workdir, see staging.py);
  it is mounted at `spec.fs.mount` (the original's "/cfs" when not given) and is the container's
  working directory, with COLONIES_FS_MOUNT naming it. A dir "/out" of the spec is /cfs/out inside, as
  in the original. What the container writes there is synced up after it exits. (COLONIES_FS_DIR is
  not used for this: in this project it names a local object store.)
* Stopping: past `maxexectime`, on a cancel (the kit cancels the function), or past `timeout`, the
  container is killed and removed (`rm -f -t 0`), in a cleanup that a second cancel does not
  interrupt. Containers are run without --rm and removed explicitly after their exit status is read,
  so the status is reliable (with --rm the client removes it, and a killed client leaves it behind).
* Labels: every container has colonies.executor=<executor id>, colonies.process=<process id>,
  colonies.colony=<colony>. On start, and every `reap_interval` seconds, the executor removes the
  containers labelled with its own id that none of its running processes owns (orphans of a run that
  was SIGKILLed, or a removal that failed); on start also the per-run directories left in its workdir.
  Run one executor per identity. The container's own output is not kept by the runtime
  (--log-driver none): the executor streams it.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import fnmatch
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from typing import Any, TextIO, TypeVar

from colonies.errors import ProcessFailed
from colonies.executors.context import Context
from colonies.executors.kit import Executor
from colonies.model import Conditions

log = logging.getLogger("colonies.executor")
T = TypeVar("T")

OUT_DIR, IN_DIR = "/colonies/out", "/colonies/in"
DEFAULT_FS_MOUNT = "/cfs"  # the original's container mount
KNOWN_KWARGS = {"docker-image", "cmd", "args", "init-cmd", "debug", "rebuild-image"}
PULL_POLICIES = ("missing", "never", "always", "newer")
GPU_MODES = ("none", "cdi", "docker")
TAIL_LINES, TAIL_CHARS, LINE_MAX = 20, 4000, 65536
OUTPUT_MAX = 16 * 1024 * 1024
RUNTIME_CALL_S = 60.0  # bound on each inspect/rm/ps call
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEM = re.compile(r"^(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|KiB|MiB|GiB|TiB|K|M|G|T|KB|MB|GB|TB|k|m|g|t|B|b)?$")
_MEM_UNITS = {"": 1, "b": 1, "B": 1, "k": 1000, "K": 1000, "m": 1000**2, "M": 1000**2, "g": 1000**3,
              "G": 1000**3, "t": 1000**4, "T": 1000**4, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
              "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "KiB": 1024, "MiB": 1024**2,
              "GiB": 1024**3, "TiB": 1024**4}


@dataclass(frozen=True)
class ContainerConfig:
    """The [containers] table of the executor's config file."""

    allow: tuple[str, ...]
    runtime: str = "podman"
    functions: tuple[str, ...] = ("execute",)
    timeout: float = 0.0
    pull: str = "missing"
    network: str = ""
    cpus: str = ""
    memory: str = ""
    gpu: str = "none"
    gpu_device: str = "nvidia.com/gpu=all"
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    workdir: str = ""
    reap_interval: float = 60.0

    @property
    def docker(self) -> bool:
        return "docker" in os.path.basename(self.runtime)


def _strings(path: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{path}: containers.{key} must be a list of strings")
    return tuple(value)


def _table(path: str, key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"{path}: containers.{key} must be a table")  # noqa: TRY004 - a bad config
    return {str(k): str(v) for k, v in value.items()}


def load_config(path: str) -> tuple[dict[str, Any], ContainerConfig]:
    """The [executor] table and the container settings of a config file; a ValueError names a bad entry."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    head = data.get("executor", {})
    c = data.get("containers")
    if not isinstance(c, dict):
        raise ValueError(f"{path} has no [containers] table")  # noqa: TRY004 - a bad config
    allow = _strings(path, "allow", c.get("allow", []))
    if not allow:
        raise ValueError(f"{path}: containers.allow lists no image patterns (an executor runs only images it may)")
    cfg = ContainerConfig(
        allow=allow,
        runtime=str(c.get("runtime", "podman")),
        functions=_strings(path, "functions", c.get("functions", ["execute"])),
        timeout=float(c.get("timeout", 0)),
        pull=str(c.get("pull", "missing")),
        network=str(c.get("network", "")),
        cpus=str(c.get("cpus", "")),
        memory=str(c.get("memory", "")),
        gpu=str(c.get("gpu", "none")),
        gpu_device=str(c.get("gpu_device", "nvidia.com/gpu=all")),
        env=_table(path, "env", c.get("env", {})),
        labels=_table(path, "labels", c.get("labels", {})),
        mounts=_strings(path, "mounts", c.get("mounts", [])),
        extra_args=_strings(path, "extra_args", c.get("extra_args", [])),
        workdir=str(c.get("workdir", "")),
        reap_interval=float(c.get("reap_interval", 60)),
    )
    if not cfg.functions:
        raise ValueError(f"{path}: containers.functions is empty")
    if cfg.pull not in PULL_POLICIES:
        raise ValueError(f"{path}: containers.pull must be one of {', '.join(PULL_POLICIES)}")
    if cfg.gpu not in GPU_MODES:
        raise ValueError(f"{path}: containers.gpu must be one of {', '.join(GPU_MODES)}")
    for key in cfg.env:
        if not _ENV_KEY.match(key):
            raise ValueError(f"{path}: containers.env key {key!r} is not a variable name")
    for m in cfg.mounts:
        parts = m.split(":")
        if len(parts) not in (2, 3) or not parts[0].startswith("/") or not parts[1].startswith("/"):
            raise ValueError(f"{path}: containers.mounts entry {m!r} is not /host/path:/container/path[:options]")
        if PurePosixPath(parts[1]).is_relative_to("/colonies"):
            raise ValueError(f"{path}: containers.mounts entry {m!r} uses /colonies, which the executor mounts")
    try:
        cpus_arg(cfg.cpus)
        memory_arg(cfg.memory)
    except ProcessFailed as exc:
        raise ValueError(f"{path}: containers: {exc}") from None
    return head, cfg


# -- from a process to a `run` command line -----------------------------------------------------------
def cpus_arg(cpu: str) -> str:
    """conditions.cpu ("500m", "2000m"; in a config also "2", "1.5") as a --cpus value ("" for none or 0)."""
    text = cpu.strip()
    try:
        value = Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text or "0")
    except InvalidOperation:
        raise ProcessFailed(f"conditions.cpu {cpu!r} is not a CPU amount (e.g. 500m)") from None
    if not value.is_finite() or value < 0:
        raise ProcessFailed(f"conditions.cpu {cpu!r} is not a CPU amount (e.g. 500m)")
    return "" if value == 0 else format(value.normalize(), "f")


def memory_arg(mem: str) -> str:
    """conditions.mem ("512Mi", "1Gi", "1G", bytes) as a --memory value in bytes ("" for none or 0)."""
    text = mem.strip()
    m = _MEM.match(text or "0")
    if m is None:
        raise ProcessFailed(f"conditions.mem {mem!r} is not a memory amount (e.g. 512Mi, 1Gi)")
    value = int(Decimal(m.group(1)) * _MEM_UNITS[m.group(2) or ""])
    return str(value) if value > 0 else ""


def _item(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def container_command(kwargs: dict[str, Any], process_id: str) -> tuple[str, list[str]]:
    """(image, command) from the original's kwargs: docker-image, cmd, args, init-cmd."""
    unknown = sorted(set(kwargs) - KNOWN_KWARGS)
    if unknown:
        raise ProcessFailed(f"unknown keyword argument(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(KNOWN_KWARGS))})")
    image = kwargs.get("docker-image")
    if not isinstance(image, str) or not image:
        raise ProcessFailed("kwargs docker-image (the image to run) is missing")
    if not _IMAGE.match(image):
        raise ProcessFailed(f"docker-image {image!r} is not an image reference")
    args = kwargs.get("args", [])
    if args is None:
        args = []
    if not isinstance(args, list):
        raise ProcessFailed(f"kwargs args must be a list, not {type(args).__name__}")
    items = [_item(a).replace("{processid}", process_id) for a in args]
    cmd = kwargs.get("cmd")
    init = kwargs.get("init-cmd") or ""
    if not isinstance(init, str):
        raise ProcessFailed("kwargs init-cmd must be a string")
    if isinstance(cmd, str) and cmd:
        line = " ".join([cmd.replace("{processid}", process_id), *items])
        if init:
            line = init.replace("{processid}", process_id) + "; " + line
        return image, ["sh", "-c", line]
    if init:
        raise ProcessFailed("kwargs init-cmd needs a string cmd (it runs in the same shell)")
    if isinstance(cmd, list) and cmd and all(isinstance(c, str) for c in cmd):
        return image, [c.replace("{processid}", process_id) for c in cmd] + items
    if cmd not in (None, "", []):
        raise ProcessFailed("kwargs cmd must be a string (run by sh -c) or a list of strings (exec form)")
    return image, items


def _env_file(path: Path, env: dict[str, str]) -> None:
    lines = []
    for key, value in env.items():
        if not _ENV_KEY.match(key):
            raise ProcessFailed(f"environment variable name {key!r} is not valid")
        if any(ch in value for ch in "\n\r\0") or len(value) > 32768:
            raise ProcessFailed(f"environment variable {key} holds a newline or is over 32 KiB")
        lines.append(f"{key}={value}\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(lines)


async def _uncancellable(aw: Awaitable[T]) -> T:
    """Await `aw` to the end even if the caller is cancelled meanwhile (the cancel is re-raised after)."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


class _Lines:
    """Splits one output stream into lines for the process log, keeping a tail for failures."""

    def __init__(self, to: TextIO, tail: collections.deque[str]) -> None:
        self.to, self.tail = to, tail
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.partial = ""

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self.partial + self.decoder.decode(data, final)
        *lines, self.partial = text.split("\n")
        if len(self.partial) >= LINE_MAX or (final and self.partial):
            lines.append(self.partial)
            self.partial = ""
        for line in lines:
            self.tail.append(line[:300])
            self.to.write(line + "\n")


async def _pipe(stream: asyncio.StreamReader | None, lines: _Lines) -> None:
    if stream is None:
        return
    while True:
        data = await stream.read(65536)
        if not data:
            lines.feed(b"", final=True)
            return
        lines.feed(data)


# -- the executor --------------------------------------------------------------------------------------
class ContainerExecutor(Executor):
    """An Executor whose functions each run the process in a container (see the module docstring)."""

    def __init__(self, config: ContainerConfig, **kwargs: Any) -> None:
        kwargs.setdefault("executortype", "container")
        super().__init__(**kwargs)
        self.config = config
        self._runs_root: Path | None = None
        self._live: set[str] = set()  # names of the containers this run has started and not yet removed
        for fname in config.functions:
            self.function(self._serve(fname), name=fname)

    def _serve(self, fname: str) -> Any:
        async def run(*args: Any, ctx: Context, **kwargs: Any) -> list[Any]:
            return await self.run_container(ctx, list(args), kwargs)

        run.__name__ = fname
        return run

    # -- runtime calls ----------------------------------------------------------------------------------
    async def _runtime(self, *args: str, timeout: float = RUNTIME_CALL_S) -> tuple[int, str, str]:
        """Run `<runtime> ARGS` to its end (bounded); (exit status, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            self.config.runtime, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def _remove(self, names: Iterable[str]) -> None:
        names = list(names)
        if not names:
            return
        args = ["rm", "-f", *names] if self.config.docker else ["rm", "-f", "-t", "0", "--ignore", *names]
        for attempt in range(3):
            try:
                code, _out, err = await self._runtime(*args)
            except TimeoutError:
                code, err = -1, "timed out"
            if code == 0 or (self.config.docker and "No such container" in err):
                return
            log.warning("removing container(s) %s failed (%s)%s", ", ".join(names), err.strip()[-500:],
                        "; retrying" if attempt < 2 else "; the next start of this executor reaps them")
            await asyncio.sleep(0.5)

    async def reap(self, first: bool = False) -> int:
        """Remove the containers labelled with this executor's id that no run of this process owns (left
        by an earlier run that was killed, or whose removal failed); `first`: the per-run dirs too."""
        if first:
            shutil.rmtree(self.runs_root(), ignore_errors=True)
            self._runs_root = None
        try:
            code, out, err = await self._runtime("ps", "-a", "--format", "{{.Names}}", "--filter",
                                                 f"label=colonies.executor={self.executor_id}")
        except TimeoutError:
            code, out, err = -1, "", "timed out"
        if code != 0:
            log.warning("could not list this executor's containers: %s", err.strip()[-500:])
            return 0
        names = [n for n in out.split() if n not in self._live]
        if names:
            log.warning("removing %d container(s) an earlier run of this executor left: %s", len(names),
                        ", ".join(names))
            await self._remove(names)
        return len(names)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reap_interval)
            if self.prvkey:
                try:
                    await self.reap()
                except Exception as exc:  # noqa: BLE001 - the next round tries again
                    log.warning("reaping failed: %s", exc)

    def runs_root(self) -> Path:
        """Where per-run directories go: <workdir or temp>/colonies-containers/<executor id prefix>."""
        if self._runs_root is None:
            base = Path(self.config.workdir or tempfile.gettempdir()) / "colonies-containers"
            base.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._runs_root = base / self.executor_id[:16]
            self._runs_root.mkdir(exist_ok=True, mode=0o700)
        return self._runs_root

    async def run_async(self, until_idle: bool = False, colony_prvkey: str = "") -> None:
        if shutil.which(self.config.runtime) is None:
            raise ValueError(f"the container runtime {self.config.runtime!r} is not on PATH")
        if self.prvkey:  # a fresh identity (made by register) has no orphans
            await self.reap(first=True)
        reaper = asyncio.create_task(self._reap_loop(), name="reaper") if self.config.reap_interval > 0 else None
        try:
            await super().run_async(until_idle=until_idle, colony_prvkey=colony_prvkey)
        finally:
            if reaper is not None:
                reaper.cancel()
                await asyncio.gather(reaper, return_exceptions=True)

    # -- one process -----------------------------------------------------------------------------------
    def _allowed(self, image: str) -> None:
        if not any(fnmatch.fnmatchcase(image, pattern) for pattern in self.config.allow):
            raise ProcessFailed(f"image {image!r} is not allowed by this executor (allow: {', '.join(self.config.allow)})")

    def _limits(self, cond: Conditions) -> list[str]:
        out: list[str] = []
        cpus = cpus_arg(cond.cpu or self.config.cpus)
        if cpus:
            out += ["--cpus", cpus]
        mem = memory_arg(cond.mem or self.config.memory)
        if mem:
            out += ["--memory", mem]
        count = cond.gpu.count if cond.gpu else 0
        if count > 0:
            if self.config.gpu == "none":
                raise ProcessFailed(f"this executor runs no GPU containers (conditions.gpu.count is {count})")
            out += ["--device", self.config.gpu_device] if self.config.gpu == "cdi" else ["--gpus", str(count)]
        return out

    def _fs_mount(self, ctx: Context) -> str:
        fs = ctx.process.spec.fs or {}
        mount = str(fs.get("mount") or DEFAULT_FS_MOUNT)
        p = PurePosixPath(mount)
        if not p.is_absolute() or ".." in p.parts or p.is_relative_to("/colonies") or str(p) == "/":
            raise ProcessFailed(f"spec.fs.mount {mount!r} is not a usable container path")
        return str(p)

    async def run_container(self, ctx: Context, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
        """Run the process' container to its end; its output list (ProcessFailed when it failed)."""
        try:
            image, command = container_command(kwargs, ctx.processid)
            self._allowed(image)
            limits = self._limits(ctx.process.spec.conditions)
        except ProcessFailed as exc:
            sys.stderr.write(f"[colonies] {exc}\n")
            raise
        pid = ctx.processid
        run_dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"{pid[:12]}-", dir=self.runs_root()))
        try:
            return await self._run_in(run_dir, ctx, image, command, args, limits)
        except ProcessFailed as exc:
            sys.stderr.write(f"[colonies] {exc.errors[0]}\n")
            raise
        finally:
            await _uncancellable(asyncio.to_thread(shutil.rmtree, run_dir, True))

    async def _run_in(self, run_dir: Path, ctx: Context, image: str, command: list[str], args: list[Any],
                      limits: list[str]) -> list[Any]:
        pid, cfg = ctx.processid, self.config
        out_dir, in_dir = run_dir / "out", run_dir / "in"
        out_dir.mkdir()
        os.chmod(out_dir, 0o777)  # a non-root image user may write it; run_dir (0700) keeps others out
        in_dir.mkdir(mode=0o755)
        (in_dir / "input.json").write_text(json.dumps(args))
        env = {**cfg.env, **(ctx.process.spec.env or {}), "COLONIES_PROCESS_ID": pid,
               "COLONIES_OUTPUT": f"{OUT_DIR}/output.json", "COLONIES_INPUT": f"{IN_DIR}/input.json"}
        volumes = ["-v", f"{out_dir}:{OUT_DIR}", "-v", f"{in_dir}:{IN_DIR}:ro"]
        if ctx.workdir is not None:
            mount = self._fs_mount(ctx)
            env["COLONIES_FS_MOUNT"] = mount
            volumes += ["-v", f"{ctx.workdir}:{mount}", "--workdir", mount]
        for m in cfg.mounts:
            volumes += ["-v", m]
        _env_file(run_dir / "env", env)
        name = f"colonies-{pid[:16]}-{secrets.token_hex(3)}"
        labels = {**cfg.labels, "colonies.executor": self.executor_id, "colonies.process": pid,
                  "colonies.colony": self.colony}
        argv = ["run", "--name", name, "--pull", cfg.pull, "--sig-proxy=false", "--log-driver", "none",
                "--env-file", str(run_dir / "env")]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        if cfg.network:
            argv += ["--network", cfg.network]
        argv += [*volumes, *limits, *cfg.extra_args, image, *command]
        sys.stderr.write(f"[colonies] running {image} as container {name}\n")
        return await self._attached(argv, name, image, out_dir / "output.json")

    async def _attached(self, argv: list[str], name: str, image: str, output: Path) -> list[Any]:
        """Run the container attached, its output lines to the process log; then always remove it."""
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        proc: asyncio.subprocess.Process | None = None
        readers: list[asyncio.Future[None]] = []
        self._live.add(name)
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.config.runtime, *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, start_new_session=True)  # Ctrl-C in a terminal stays ours
            except OSError as exc:
                raise ProcessFailed(f"cannot run the container runtime {self.config.runtime!r}: {exc}") from None
            readers = [asyncio.ensure_future(_pipe(proc.stdout, _Lines(sys.stdout, tail))),
                       asyncio.ensure_future(_pipe(proc.stderr, _Lines(sys.stderr, tail)))]
            timeout = self.config.timeout
            try:
                code = await asyncio.wait_for(proc.wait(), timeout or None)
            except TimeoutError:
                raise ProcessFailed(f"the container ran past this executor's timeout ({timeout:g} s) and was killed",
                                    _tail(tail)) from None
            await asyncio.wait(readers, timeout=5)
            if code != 0:
                raise ProcessFailed(await self._why(name, code, image), _tail(tail))
            return await asyncio.to_thread(_read_output, output)
        finally:
            for r in readers:
                r.cancel()
            await _uncancellable(self._stop(proc, name))

    async def _why(self, name: str, code: int, image: str) -> str:
        """The failure headline for `run` exiting `code`: the container's own status when it ran."""
        try:
            rc, out, _err = await self._runtime("inspect", name, "--format",
                                                "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}")
        except TimeoutError:
            rc, out = -1, ""
        parts = out.split()
        if rc != 0 or len(parts) != 3 or parts[0] in ("created", "configured"):
            return f"the container did not start ({os.path.basename(self.config.runtime)} run exited {code}; image {image})"
        status = int(parts[1]) if parts[1].lstrip("-").isdigit() else code
        oom = " (OOM killed: over its memory limit)" if parts[2] == "true" else ""
        return f"the container exited with status {status}{oom} (image {image})"

    async def _stop(self, proc: asyncio.subprocess.Process | None, name: str) -> None:
        """End the `run` client (it detaches: --sig-proxy=false), then kill and remove the container."""
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 3)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 3)
        await self._remove([name])
        self._live.discard(name)


def _tail(tail: collections.deque[str]) -> str:
    text = "\n".join(tail)
    return "last lines:\n" + text[-TAIL_CHARS:] if text else ""


def _read_output(path: Path) -> list[Any]:
    if not path.exists():
        return []
    if path.stat().st_size > OUTPUT_MAX:
        raise ProcessFailed(f"{OUT_DIR}/output.json is over {OUTPUT_MAX // (1024 * 1024)} MiB")
    try:
        value = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProcessFailed(f"{OUT_DIR}/output.json is not JSON: {exc}") from None
    return value if isinstance(value, list) else [value]


def container_executor(path: str, executortype: str = "", name: str = "") -> ContainerExecutor:
    """A ContainerExecutor from a config file (colony, key and server are filled in later)."""
    head, cfg = load_config(path)
    return ContainerExecutor(
        cfg,
        name=name or str(head.get("name", "")),
        executortype=executortype or str(head.get("type", "container")),
        slots=int(head.get("slots", 1)),
    )
