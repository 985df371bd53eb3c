"""The ExecutorDeployment reconciler: keeps N executor containers running for a blueprint (podman).

    python -m colonies.executors.deployment dev deployer > xd.json      # the definition (SCHEMA, handler)
    colonies blueprint definition add --spec xd.json
    COLONIES_COLONY_PRVKEY=<owner key> CONTAINERS_CONF=deploy/podman/containers.conf \\
        colonies executor run colonies.executors.deployment:deployment_executor --type deployer

A blueprint's spec (SCHEMA; the original's example definition works too, its extra fields are ignored):

    {"replicas": 2, "image": "localhost/mywork:1", "executorType": "ml", "command": ["mywork", "--slots", "2"],
     "env": {"TZ": "UTC"}, "cpu": "500m", "memory": "512Mi", "labels": {"team": "ml"}, "stopTimeout": 10}

`image` defaults to localhost/colonies-executor:dev (deploy/Containerfile.executor: `colonies executor run`
is its entrypoint, `command` its arguments, the image's CMD when omitted).

Each replica is one container and one executor of its own. The reconciler makes a key for it, adds the
executor with the colony owner's key (named `<blueprint>-<6 hex>`, type `executorType`, at the blueprint's
location, with `blueprintid` and `blueprintgen` = the generation it was started for) and approves it, puts
the key in a podman secret mounted at /run/secrets/executor-key (mode 0400 for uid `key_uid`, never in
`podman inspect`), and starts the container with COLONIES_SERVER_HOST/PORT/TLS (the reconciler's own
server unless `env` sets them), COLONIES_COLONY_NAME, COLONIES_EXECUTOR_NAME/TYPE/LOCATION and
COLONIES_EXECUTOR_PRVKEY_FILE; host networking by default. The reconciler therefore needs the colony owner's
key in its own environment, COLONIES_COLONY_PRVKEY or COLONIES_COLONY_PRVKEY_FILE (the variable that also
lets `colonies executor run` register the reconciler itself): adding and removing executors is the
owner's alone (protocol §2). Keep that machine as trusted as the key.

Every container is labelled colonies.managed-by=executor-deployment, colonies.colony, colonies.blueprint
(name), colonies.blueprintid, colonies.location, colonies.replica (0..N-1), colonies.generation,
colonies.template (a hash of everything in the spec but `replicas`) and colonies.executor (its executor's
name). Each reconcile compares the labelled containers with the spec:

* a container no longer running (killed, crashed), or whose executor is no longer approved (removed or
  rejected by hand), is removed with its secret and executor, its last log lines going to the process
  log, and its replica started again;
* replicas missing are started; those past `replicas` are removed (scale down, highest index first), each
  stopped with SIGTERM so its executor drains (`stopTimeout` s, then SIGKILL) and then removed from the
  colony; a replicas-only change restarts nothing;
* a change of anything else (image, command, env, type, limits, labels) replaces the running replicas: the
  new ones start first, then the old ones are stopped;
* containers of an earlier blueprint of the same name, and executors of this blueprint with no container,
  are removed.

Autoscaled (`maxReplicas` given; `replicas` is then ignored): {"minReplicas": 0, "maxReplicas": 3,
"processesPerReplica": 1, "idleTimeout": 60} scales on the waiting processes of `executorType` in the colony
that its replicas could take (not waiting for parents, not targeted by name, at no location or the
blueprint's), read with one getprocessesmsg (state WAITING, the type, at most 100: an index range with a
LIMIT, no scan of the colony's processes), and its running ones (which replicas are busy). The rule is
colonies.executors.scaling.desired: up at once to what the waiting and running processes need (never above
maxReplicas), down only when nothing waits and a replica has been idle for idleTimeout s (counted from the
first reconcile that saw it so; the longest idle go first, drained as above), never below minReplicas. So
it reacts within one reconcileInterval: give the definition a short one (a few seconds). The idle clocks are
kept in the reconciler's memory; a restarted reconciler starts them again.

Status: {"replicas": desired, "desired": the same, "observed": running containers found at this reconcile,
"ready": running containers of the current spec, "executors": [their names], "image": image}, and when
autoscaled "waiting" (processes of the type it could take, of the first 100), "running" and the bounds
(the kit adds "generation" and "reconciledAt"). Cleanup (the blueprint is gone) finds the
containers by the colony and name labels and removes them, their secrets and their executors (by the
blueprint ids on the labels, and by the executor name pattern when no container is left). After each
cron round, `prune` removes the containers at this location whose blueprint no longer exists.

The reconciler acts on the podman of its own host (`local`): run one per host, each at its own location,
and give blueprints that location.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from colonies.blueprints import blueprint_definition
from colonies.errors import ClientError, ProcessFailed
from colonies.executors.containers import cpus_arg, memory_arg
from colonies.executors.kit import Executor
from colonies.executors.reconciler import BlueprintRef, ReconcileContext, Reconciler, reconciler_executor
from colonies.executors.scaling import desired
from colonies.model import Blueprint, BlueprintDefinition, ExecutorState, Process, ProcessState
from colonies.model import Executor as Executor_
from colonies.protocol.crypto import generate_prvkey, id_of

if TYPE_CHECKING:
    from colonies.client.asyncio import AsyncClient

log = logging.getLogger("colonies.reconciler")

KIND = "ExecutorDeployment"
DEFAULT_IMAGE = "localhost/colonies-executor:dev"
MANAGED = "executor-deployment"
MAX_REPLICAS = 100
MAX_STOP_S = 3600
MAX_IDLE_S = 86400
DEFAULT_IDLE_S = 60
WAITING_READ = 100  # waiting processes read per reconcile (one getprocessesmsg)
KEY_NAME = "executor-key"
KEY_TARGET = f"/run/secrets/{KEY_NAME}"  # where podman mounts a secret of that target name
L_MANAGED, L_COLONY, L_NAME, L_ID = "colonies.managed-by", "colonies.colony", "colonies.blueprint", "colonies.blueprintid"
L_LOCATION, L_REPLICA, L_GEN = "colonies.location", "colonies.replica", "colonies.generation"
L_TEMPLATE, L_EXECUTOR = "colonies.template", "colonies.executor"
OURS = {L_MANAGED, L_COLONY, L_NAME, L_ID, L_LOCATION, L_REPLICA, L_GEN, L_TEMPLATE, L_EXECUTOR}
# set by the reconciler in every container; a spec's env may not
RESERVED_ENV = {"COLONIES_COLONY_NAME", "COLONIES_EXECUTOR_NAME", "COLONIES_EXECUTOR_TYPE", "COLONIES_EXECUTOR_PRVKEY",
                "COLONIES_EXECUTOR_PRVKEY_FILE", "COLONIES_EXECUTOR_LOCATION"}
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_HEX6 = "[0-9a-f]{6}"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "replicas": {"type": "integer", "minimum": 0, "maximum": MAX_REPLICAS,
                     "description": "Executor containers to keep running"},
        "image": {"type": "string", "minLength": 1, "description": f"Executor image (default {DEFAULT_IMAGE})"},
        "executorType": {"type": "string", "minLength": 1, "description": "Type the executors register with"},
        "command": {"type": "array", "items": {"type": "string"},
                    "description": "Arguments of `colonies executor run` (a module and flags); the image's CMD if omitted"},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "cpu": {"type": "string", "description": "CPU limit per container (500m, 2)"},
        "memory": {"type": "string", "description": "Memory limit per container (512Mi, 1Gi)"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "stopTimeout": {"type": "integer", "minimum": 0, "maximum": MAX_STOP_S,
                        "description": "Seconds a stopped executor may drain before SIGKILL (default 10)"},
        "minReplicas": {"type": "integer", "minimum": 0, "maximum": MAX_REPLICAS,
                        "description": "Autoscaled: at least this many (default 0; needs maxReplicas)"},
        "maxReplicas": {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS,
                        "description": "Autoscaled on the waiting processes of executorType: at most this many "
                                       "(replicas is then ignored)"},
        "processesPerReplica": {"type": "integer", "minimum": 1, "maximum": 1000,
                                "description": "Autoscaled: processes one replica runs at once (its slots; default 1)"},
        "idleTimeout": {"type": "integer", "minimum": 0, "maximum": MAX_IDLE_S,
                        "description": "Autoscaled: seconds a replica stays with nothing to do before it is "
                                       f"removed (default {DEFAULT_IDLE_S})"},
    },
    "required": ["executorType"],
}


def executor_deployment_definition(colony: str, executor_type: str = "deployer", *,
                                   reconcile_interval: int = 0) -> BlueprintDefinition:
    """The ExecutorDeployment definition, reconciled by executors of `executor_type`."""
    return blueprint_definition(colony, KIND, executor_type, name="executordeployments.compute.colonies.io",
                                schema=SCHEMA, group="compute.colonies.io", plural="executordeployments",
                                reconcile_interval=reconcile_interval, short_names=["xd"])


# -- the spec ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Autoscale:
    """minReplicas..maxReplicas on the waiting processes of the type (colonies.executors.scaling)."""

    minimum: int
    maximum: int
    per_replica: int = 1
    idle_timeout: int = DEFAULT_IDLE_S


@dataclass(frozen=True)
class DeploymentSpec:
    replicas: int
    executor_type: str
    image: str = DEFAULT_IMAGE
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cpu: str = ""
    memory: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    stop_timeout: int = 10
    autoscale: Autoscale | None = None

    def template(self) -> str:
        """A hash of everything that needs new containers when it changes (all but `replicas`)."""
        shape = [self.executor_type, self.image, list(self.command), sorted(self.env.items()), self.cpu,
                 self.memory, sorted(self.labels.items()), self.stop_timeout]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:12]


def _strings(spec: Mapping[str, Any], key: str) -> dict[str, str]:
    value = spec.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ProcessFailed(f"spec.{key} must map names to strings")
    return dict(value)


def parse_spec(spec: Mapping[str, Any]) -> DeploymentSpec:
    """The spec, checked (the definition's schema may be another's, e.g. the original's); ProcessFailed
    naming the field otherwise."""
    replicas = spec.get("replicas", 1)
    if isinstance(replicas, float) and replicas.is_integer():
        replicas = int(replicas)  # the original's schema says "number"
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= MAX_REPLICAS:
        raise ProcessFailed(f"spec.replicas must be an integer from 0 to {MAX_REPLICAS}, not {replicas!r}")
    executor_type, image = spec.get("executorType"), spec.get("image") or DEFAULT_IMAGE
    if not isinstance(executor_type, str) or not executor_type:
        raise ProcessFailed("spec.executorType is required (the type the executors register with)")
    if not isinstance(image, str) or image.startswith("-"):
        raise ProcessFailed(f"spec.image must be an image name, not {image!r}")
    command = spec.get("command") or []
    if isinstance(command, str):
        command = [command]
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        raise ProcessFailed("spec.command must be a list of strings")
    env = _strings(spec, "env")
    for key in env:
        if not _ENV_KEY.match(key):
            raise ProcessFailed(f"spec.env: {key!r} is not a variable name")
        if key in RESERVED_ENV or key == "COLONIES_COLONY_PRVKEY":
            raise ProcessFailed(f"spec.env.{key} is set by the reconciler (or never given to executors)")
    labels = _strings(spec, "labels")
    taken = sorted(OURS & labels.keys())
    if taken:
        raise ProcessFailed(f"spec.labels.{taken[0]} is set by the reconciler")
    cpu, memory, stop = spec.get("cpu") or "", spec.get("memory") or "", spec.get("stopTimeout", 10)
    if not isinstance(cpu, str) or not isinstance(memory, str):
        raise ProcessFailed("spec.cpu and spec.memory must be strings (500m, 512Mi)")
    if isinstance(stop, bool) or not isinstance(stop, int) or not 0 <= stop <= MAX_STOP_S:
        raise ProcessFailed(f"spec.stopTimeout must be 0 to {MAX_STOP_S} seconds, not {stop!r}")
    cpus_arg(cpu)  # checked here: ProcessFailed names the value
    memory_arg(memory)
    return DeploymentSpec(replicas=replicas, executor_type=executor_type, image=image, command=tuple(command),
                          env=env, cpu=cpu, memory=memory, labels=labels, stop_timeout=stop,
                          autoscale=_autoscale(spec))


def _integer(spec: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProcessFailed(f"spec.{key} must be an integer from {low} to {high}, not {value!r}")
    return value


def _autoscale(spec: Mapping[str, Any]) -> Autoscale | None:
    keys = ("minReplicas", "processesPerReplica", "idleTimeout")
    if spec.get("maxReplicas") is None:
        given = [k for k in keys if spec.get(k) is not None]
        if given:
            raise ProcessFailed(f"spec.{given[0]} needs spec.maxReplicas (autoscaling)")
        return None
    maximum = _integer(spec, "maxReplicas", 1, 1, MAX_REPLICAS)
    minimum = _integer(spec, "minReplicas", 0, 0, MAX_REPLICAS)
    if minimum > maximum:
        raise ProcessFailed(f"spec.minReplicas ({minimum}) is more than spec.maxReplicas ({maximum})")
    return Autoscale(minimum, maximum, _integer(spec, "processesPerReplica", 1, 1, 1000),
                     _integer(spec, "idleTimeout", DEFAULT_IDLE_S, 0, MAX_IDLE_S))


def slug(text: str, limit: int = 60) -> str:
    """`text` as a part of a container name ([A-Za-z0-9_-])."""
    return _UNSAFE.sub("-", text).strip("-_")[:limit] or "x"


# -- containers -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Replica:
    """One labelled container, as `podman ps` shows it."""

    name: str
    state: str
    labels: dict[str, str]
    created: int = 0

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def blueprint_id(self) -> str:
        return self.labels.get(L_ID, "")

    @property
    def executor(self) -> str:
        return self.labels.get(L_EXECUTOR, "")

    @property
    def index(self) -> int:
        try:
            return int(self.labels.get(L_REPLICA, ""))
        except ValueError:
            return -1


class Podman:
    """The runtime's CLI, every call bounded."""

    def __init__(self, runtime: str = "podman", timeout: float = 60.0) -> None:
        self.runtime, self.timeout = runtime, timeout

    async def __call__(self, *args: str, stdin: str | None = None, timeout: float | None = None,
                       check: bool = True) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.runtime, *args, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None),
                                              timeout or self.timeout)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if check and proc.returncode:
            last = (err.decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"{self.runtime} {args[0]} {args[1] if len(args) > 1 else ''}".rstrip()
                               + f" failed ({proc.returncode}): {last[:500]}")
        return out.decode(errors="replace")

    async def replicas(self, **labels: str) -> list[Replica]:
        """The managed containers carrying all these labels (label key → value)."""
        filters = [f"--filter=label={L_MANAGED}={MANAGED}"]
        filters += [f"--filter=label={k}={v}" for k, v in labels.items()]
        rows = json.loads(await self("ps", "-a", *filters, "--format", "json") or "[]")
        return [Replica(name=(r.get("Names") or [""])[0], state=str(r.get("State", "")),
                        labels=dict(r.get("Labels") or {}), created=int(r.get("Created") or 0)) for r in rows]


# -- the reconciler ---------------------------------------------------------------------------------------------
class ExecutorDeployment(Reconciler):
    """Keeps `replicas` executor containers of a blueprint running on this host's podman."""

    kind = KIND
    local = True

    def __init__(self, *, colony_prvkey: str = "", runtime: str = "podman", network: str = "host",
                 key_uid: int = 10001, environ: Mapping[str, str] | None = None, call_timeout: float = 60.0) -> None:
        self._colony_prvkey = colony_prvkey
        self.podman = Podman(runtime, call_timeout)
        self.network, self.key_uid = network, key_uid
        self.environ = environ if environ is not None else os.environ
        # autoscaling (monotonic times; None: busy now): blueprint id → replica's executor → idle since, and
        # blueprint id → since when its type has had no waiting work
        self._idle_since: dict[str, dict[str, float | None]] = {}
        self._quiet_since: dict[str, float | None] = {}

    # -- what the kit calls -----------------------------------------------------------------------------------
    async def reconcile(self, bp: Blueprint, ctx: ReconcileContext) -> dict[str, Any]:
        spec = parse_spec(bp.spec)
        owner = ctx.client.with_key(self.owner_key())
        md = bp.metadata
        template = spec.template()
        found = await self.podman.replicas(**{L_COLONY: ctx.colony, L_NAME: md.name})
        registered = [e for e in await ctx.client.get_executors(ctx.colony) or []
                      if e.blueprintid == bp.blueprintid and e.state != ExecutorState.UNREGISTERED]
        approved = {e.executorname for e in registered if e.state == ExecutorState.APPROVED}
        stale = [r for r in found if r.blueprint_id != bp.blueprintid]
        live = [r for r in found if r.blueprint_id == bp.blueprintid]
        # not running, or running with an identity no longer approved (removed, rejected by hand): replaced
        dead = [r for r in live if not r.running or r.executor not in approved]
        running = [r for r in live if r not in dead]
        outdated = [r for r in running if r.labels.get(L_TEMPLATE) != template]
        keep: list[Replica] = []
        excess: list[Replica] = []
        current = sorted((r for r in running if r.labels.get(L_TEMPLATE) == template), key=lambda r: (r.index, r.created))
        scaled: dict[str, Any] = {}
        if spec.autoscale is not None:
            want, scaled, order = await self._scale(ctx, bp, spec.autoscale, spec.executor_type, running, registered)
            for r in current:  # the least idle first; one per index
                (excess if r.index < 0 or r.index in {k.index for k in keep} else keep).append(r)
            keep.sort(key=lambda r: order.get(r.executor, 0.0))
            keep, excess = keep[:want], [*excess, *keep[want:]]
        else:
            want = spec.replicas
            for r in current:
                (keep if 0 <= r.index < want and r.index not in {k.index for k in keep} else excess).append(r)
        for r in dead:
            await self._last_words(r, approved)
        # dead ones first (their replica is started again below), then the new replicas, then the old ones
        await self._remove(owner, ctx.colony, [*stale, *dead], graceful=False)
        taken = {k.index for k in keep}
        started: list[tuple[str, int]] = []
        free = (i for i in range(MAX_REPLICAS + len(taken)) if i not in taken)
        for index in [next(free) for _ in range(want - len(keep))]:
            started.append(await self._start(owner, ctx, bp, spec, template, index))
        await self._remove(owner, ctx.colony, sorted([*excess, *outdated], key=lambda r: -r.index))
        names = {r.executor: r.index for r in keep} | {name: i for name, i in started}
        handled = {r.executor for r in live}
        await self._remove_orphans(owner, ctx.colony, [e for e in registered if e.executorname not in handled])
        await self._sweep_secrets(ctx.colony, md.name, {f"{_prefix(ctx.colony)}{n}" for n in names})
        if started or dead or excess or outdated or stale:
            log.info("%s: %d running, %d started, %d replaced after exit, %d removed (scale down), %d updated",
                     md.name, len(keep), len(started), len(dead), len(excess), len(outdated))
        return {"replicas": want, "desired": want, "observed": len(running), "ready": len(names), **scaled,
                "image": spec.image, "executors": sorted(names, key=lambda n: names[n])}

    async def _scale(self, ctx: ReconcileContext, bp: Blueprint, auto: Autoscale, executor_type: str,
                     running: list[Replica], registered: list[Executor_]) -> tuple[int, dict[str, Any], dict[str, float]]:
        """(replicas wanted, their part of the status, executor name → seconds idle) from two reads: the first
        WAITING_READ waiting processes of the type (getprocessesmsg: the (colony, state, priority) index and a
        LIMIT) that its executors could take, and its running ones (to know which replicas are busy)."""
        md, now = bp.metadata, time.monotonic()
        waiting = [p for p in await ctx.client.get_processes(ctx.colony, state=ProcessState.WAITING, count=WAITING_READ,
                                                             executortype=executor_type) or []
                   if _takeable(p, md.locationname)]
        ids = {e.executorid: e.executorname for e in registered}
        procs = await ctx.client.get_processes(ctx.colony, state=ProcessState.RUNNING, count=WAITING_READ,
                                               executortype=executor_type) or []
        busy: dict[str, int] = {}
        for p in procs:
            if p.assignedexecutorid in ids:
                busy[ids[p.assignedexecutorid]] = busy.get(ids[p.assignedexecutorid], 0) + 1
        # idle from the first look that found it so (busy at one look, the process may end just before the next)
        since = self._idle_since.setdefault(bp.blueprintid, {})
        live = {r.executor for r in running}
        for name in list(since):
            if name not in live:
                del since[name]
        for name in live:
            since[name] = None if name in busy else since.get(name) or now
        quiet = self._quiet_since[bp.blueprintid] = None if waiting else self._quiet_since.get(bp.blueprintid) or now
        idle = {name: 0.0 if t is None or quiet is None else now - max(t, quiet) for name, t in since.items()}
        want = desired(len(running), len(waiting), sum(busy.values()), minimum=auto.minimum, maximum=auto.maximum,
                       per_replica=auto.per_replica, idle_for=list(idle.values()), idle_timeout=auto.idle_timeout)
        if want != len(running):
            log.info("%s: %d waiting, %d running on %d replica(s): scaling to %d (min %d, max %d)", md.name,
                     len(waiting), sum(busy.values()), len(running), want, auto.minimum, auto.maximum)
        status = {"waiting": len(waiting), "running": sum(busy.values()), "minReplicas": auto.minimum,
                  "maxReplicas": auto.maximum}
        return want, status, idle

    async def cleanup(self, ref: BlueprintRef, ctx: ReconcileContext) -> None:
        owner = ctx.client.with_key(self.owner_key())
        found = await self.podman.replicas(**{L_COLONY: ref.colony, L_NAME: ref.name})
        doomed = [r for r in found if r.blueprint_id != ref.replaced_by]
        ids = {r.blueprint_id for r in doomed} - {""}
        for bid in ids:
            self._idle_since.pop(bid, None)
            self._quiet_since.pop(bid, None)
        await self._remove(owner, ref.colony, doomed)
        existing = {bp.blueprintid for bp in await ctx.client.get_blueprints(ref.colony, KIND) or []}
        pattern = re.compile(f"{re.escape(slug(ref.name))}-{_HEX6}")

        def ours(e: Executor_) -> bool:
            bid = e.blueprintid or ""
            if not bid or bid == ref.replaced_by:
                return False
            return bid in ids or (bid not in existing and pattern.fullmatch(e.executorname) is not None)

        listed = await ctx.client.get_executors(ref.colony) or []
        await self._remove_orphans(owner, ref.colony, [e for e in listed if e.state != ExecutorState.UNREGISTERED
                                                       and ours(e)])
        await self._sweep_secrets(ref.colony, ref.name, set())
        log.info("cleanup of %s: %d container(s) removed", ref.name, len(doomed))

    async def prune(self, live: list[Blueprint], ctx: ReconcileContext) -> None:
        alive = {bp.blueprintid for bp in live}
        found = await self.podman.replicas(**{L_COLONY: ctx.colony, L_LOCATION: ctx.location})
        # blueprints of other locations carry other location labels, so `live` (this location's) decides
        gone = [r for r in found if r.blueprint_id not in alive]
        if gone:
            existing = {bp.blueprintid for bp in await ctx.client.get_blueprints(ctx.colony, KIND) or []}
            gone = [r for r in gone if r.blueprint_id not in existing]
        if gone:
            log.warning("removing %d container(s) of removed blueprints: %s", len(gone), ", ".join(r.name for r in gone))
            await self._remove(ctx.client.with_key(self.owner_key()), ctx.colony, gone)

    # -- the parts ---------------------------------------------------------------------------------------------
    def owner_key(self) -> str:
        key = self._colony_prvkey or self.environ.get("COLONIES_COLONY_PRVKEY", "").strip()
        path = self.environ.get("COLONIES_COLONY_PRVKEY_FILE", "")
        if not key and path:
            try:
                with open(path, encoding="utf-8") as f:
                    key = f.read(4096).strip()
            except OSError as exc:
                raise ProcessFailed(f"cannot read COLONIES_COLONY_PRVKEY_FILE {path}: {exc.strerror or exc}") from None
        if not re.fullmatch(r"[0-9a-fA-F]{64}", key):
            raise ProcessFailed("the ExecutorDeployment reconciler needs the colony owner's key to add and remove "
                                "executors: set COLONIES_COLONY_PRVKEY or COLONIES_COLONY_PRVKEY_FILE where it runs")
        return key

    def _server_env(self, ctx: ReconcileContext) -> dict[str, str]:
        url = httpx.URL(ctx.client.url)
        return {"COLONIES_SERVER_HOST": url.host, "COLONIES_SERVER_PORT": str(url.port or 50080),
                "COLONIES_TLS": "true" if url.scheme == "https" else "false"}

    async def _start(self, owner: AsyncClient, ctx: ReconcileContext, bp: Blueprint, spec: DeploymentSpec, template: str,
                     index: int) -> tuple[str, int]:
        """Add, approve and start one replica; (its executor's name, its index)."""
        md = bp.metadata
        key = generate_prvkey()
        for _ in range(3):
            name = f"{slug(md.name)}-{secrets.token_hex(3)}"
            try:
                await owner.add_executor(ctx.colony, id_of(key), name, spec.executor_type, location=md.locationname,
                                         blueprint_id=bp.blueprintid, blueprint_gen=md.generation)
                break
            except ClientError as exc:
                if "already exists" not in exc.message:
                    raise
        else:
            raise RuntimeError(f"no free executor name for {md.name}")
        container, secret = f"{_prefix(ctx.colony)}{name}", f"{_prefix(ctx.colony)}{name}-key"
        labels = {**spec.labels, L_MANAGED: MANAGED, L_COLONY: ctx.colony, L_NAME: md.name, L_ID: bp.blueprintid,
                  L_LOCATION: md.locationname, L_REPLICA: str(index), L_GEN: str(md.generation),
                  L_TEMPLATE: template, L_EXECUTOR: name}
        env = {**self._server_env(ctx), **spec.env, "COLONIES_COLONY_NAME": ctx.colony,
               "COLONIES_EXECUTOR_NAME": name, "COLONIES_EXECUTOR_TYPE": spec.executor_type,
               "COLONIES_EXECUTOR_LOCATION": md.locationname, "COLONIES_EXECUTOR_PRVKEY_FILE": KEY_TARGET}
        try:
            await owner.approve_executor(ctx.colony, name)
            await self.podman("secret", "create", *_label_args(labels), secret, "-", stdin=key)
            mount = f"{secret},type=mount,target={KEY_NAME},uid={self.key_uid},gid={self.key_uid},mode=0400"
            argv = ["run", "-d", "--name", container, *_label_args(labels), "--secret", mount,
                    "--stop-timeout", str(spec.stop_timeout)]
            for k, v in env.items():
                argv += ["-e", f"{k}={v}"]
            if self.network:
                argv += ["--network", self.network]
            cpus, memory = cpus_arg(spec.cpu), memory_arg(spec.memory)
            argv += [f"--cpus={cpus}"] if cpus else []
            argv += [f"--memory={memory}"] if memory else []
            await self.podman(*argv, spec.image, *spec.command, timeout=self.podman.timeout + 120)  # may pull
        except Exception:
            await self._remove(owner, ctx.colony, [Replica(container, "created", {L_EXECUTOR: name})], graceful=False)
            raise
        log.info("%s: replica %d started as %s (executor %s, generation %d)", md.name, index, container, name,
                 md.generation)
        return name, index

    async def _last_words(self, r: Replica, approved: set[str]) -> None:
        """Why a replica is replaced, with the last lines of a container no longer running, for the process log."""
        if r.running:
            log.warning("%s (replica %s): its executor %s is no longer approved; replacing it", r.name,
                        r.labels.get(L_REPLICA, "?"), r.executor)
            return
        try:
            out = await self.podman("logs", "--tail", "5", r.name, check=False)
        except TimeoutError:
            out = ""
        tail = " | ".join(line.strip() for line in out.strip().splitlines()[-5:])
        log.warning("%s (replica %s) is %s; replacing it%s", r.name, r.labels.get(L_REPLICA, "?"), r.state,
                    f"; its last lines: {tail[:1500]}" if tail else "")

    async def _remove(self, owner: AsyncClient, colony: str, replicas: Iterable[Replica], graceful: bool = True) -> None:
        """Remove containers (concurrently; `graceful`: stopped first with SIGTERM and their own stop timeout, so
        the executor drains), their secrets, then their executors."""
        async def one(r: Replica) -> None:
            if graceful:
                await self.podman("stop", "--ignore", r.name, timeout=self.podman.timeout + MAX_STOP_S, check=False)
            await self.podman("rm", "-f", "-t", "0", "--ignore", r.name)
            await self.podman("secret", "rm", f"{r.name}-key", check=False)
            if r.executor:
                await _remove_executor(owner, colony, r.executor)
        await asyncio.gather(*(one(r) for r in replicas))

    async def _remove_orphans(self, owner: AsyncClient, colony: str, orphans: Iterable[Executor_]) -> None:
        """Remove executors that have no container (a removed one stays listed, UNREGISTERED: skip those)."""
        for e in orphans:
            log.info("removing executor %s (blueprint %s): it has no container", e.executorname, e.blueprintid)
            await _remove_executor(owner, colony, e.executorname)

    async def _sweep_secrets(self, colony: str, name: str, keep: set[str]) -> None:
        """Remove the key secrets of this blueprint's replicas whose container is gone."""
        pattern = re.compile(f"{re.escape(_prefix(colony) + slug(name))}-{_HEX6}-key")
        names = (await self.podman("secret", "ls", "--format", "{{.Name}}")).split()
        mine = [n for n in names if pattern.fullmatch(n) and n.removesuffix("-key") not in keep]
        if mine:
            existing = {r.name for r in await self.podman.replicas(**{L_COLONY: colony})}
            for n in mine:
                if n.removesuffix("-key") not in existing:
                    await self.podman("secret", "rm", n, check=False)


def _takeable(p: Process, location: str) -> bool:
    """Whether a replica at `location` may be given `p` (not waiting for parents, not targeted at named
    executors, at no location or this one)."""
    c = p.spec.conditions
    if p.waitforparents or any(n and n != "*" for n in c.executornames or []):
        return False
    return not c.locationname or c.locationname.lower() == location.lower()


def _prefix(colony: str) -> str:
    return f"colonies.{slug(colony, 40)}."


def _label_args(labels: Mapping[str, str]) -> list[str]:
    return [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]


async def _remove_executor(owner: AsyncClient, colony: str, name: str) -> None:
    try:
        await owner.remove_executor(colony, name)
    except ClientError as exc:
        if exc.status not in (400, 404):  # already gone
            raise


def deployment_executor(**kwargs: Any) -> Executor:
    """A reconciler executor serving ExecutorDeployment (kwargs as Executor's); for `colonies executor run
    colonies.executors.deployment:deployment_executor --type deployer`."""
    return reconciler_executor(ExecutorDeployment(), **kwargs)


def main(argv: list[str] | None = None) -> None:
    """`python -m colonies.executors.deployment COLONY [EXECUTOR_TYPE [INTERVAL]]`: print the definition (JSON)
    for `colonies blueprint definition add --spec`."""
    import sys

    import msgspec

    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 3 or (len(args) == 3 and not args[2].isdigit()):
        raise SystemExit("usage: python -m colonies.executors.deployment COLONY [EXECUTOR_TYPE [INTERVAL_S]]")
    definition = executor_deployment_definition(args[0], *args[1:2], reconcile_interval=int(args[2]) if
                                                len(args) == 3 else 0)
    print(msgspec.json.format(msgspec.json.encode(definition)).decode())


if __name__ == "__main__":
    main()
