"""Leadership: a single node (always leader) or an etcd lease shared by the replicas of a cluster.

Only the leader runs crons, generators, retention and stale-executor cleanup (§8.1). With no etcd
configured, `SingleNode` is its own leader, so the embedded default needs no setup.

`EtcdLeadership` talks to etcd's v3 JSON gateway (`/v3/...` on the client port, served by etcd 3.4)
with httpx, which the project already depends on. We chose it over aetcd, which also works against
etcd 3.4, because it adds no grpcio/protobuf pair (the reason the `etcd3` client fails to import) and
because every request gets an explicit httpx timeout, which is what stepping down in time relies on.

How it works, per replica:
  * Grant a lease (TTL `COLONIES_ETCD_TTL`, default 5 s) and register `<prefix>/nodes/<name>` = node
    JSON under it. Keep the lease alive every TTL/3.
  * Campaign: one txn "if create_revision(<prefix>/leader) == 0, put it with my lease, else read it".
    Followers repeat it every `poll_s` (≤ 1 s), so when the leader's lease ends (it died, or it
    resigned by revoking it) another replica takes over within TTL + poll_s.
  * Fencing token: the leader key's create_revision when leadership was won. It grows with every
    new leadership, so a stale leader's token is always smaller than its successor's.

A deposed leader stops before its successor starts. Leadership is valid only until
`sent + TTL - margin`, where `sent` is when the last successful keepalive (or the grant) was *sent*;
etcd counts the TTL from when it *processed* that request, which is later, so our deadline always
falls before etcd can expire the lease and let another replica win. `is_leader()` checks that
deadline itself, so a replica whose keepalive task is stuck or dead stops being leader on time
without help from that task. A failed keepalive ends leadership at once. The runner checks
`is_leader()` before every leader-only step; a step already running when leadership ends is fenced
in storage (`fire_cron` compares `nextrun`; generator firing consumes its args in one transaction).

Deadlines (§4.4) are *not* leader-only: they run on every replica. Each expiry is one storage
transaction that compares the process state before changing it, so two replicas racing on the same
process can only apply it once, and a dead leader never delays timeouts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import httpx
import orjson

from colonies.config import Config

log = logging.getLogger("colonies.cluster")


@dataclass(frozen=True)
class NodeInfo:
    """One replica as `getclustermsg` shows it (§3 "Cluster Config"). We embed no etcd member, so
    `port` (etcd client), `peerport` and `relayport` are 0; `apiport` is the HTTP API port."""

    name: str
    host: str
    port: int = 0
    peerport: int = 0
    relayport: int = 0
    apiport: int = 0

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: bytes) -> NodeInfo:
        d = orjson.loads(raw)
        return cls(name=str(d.get("name", "")), host=str(d.get("host", "")), port=int(d.get("port", 0)),
                   peerport=int(d.get("peerport", 0)), relayport=int(d.get("relayport", 0)),
                   apiport=int(d.get("apiport", 0)))


EMPTY_NODE = NodeInfo(name="", host="")


class Leadership(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def is_leader(self) -> bool: ...

    def leader(self) -> NodeInfo | None: ...

    def nodes(self) -> list[NodeInfo]: ...

    def fencing_token(self) -> int:
        """Grows with every new leadership; 0 while not leader."""
        ...

    async def refresh(self) -> None:
        """Re-read the live registrations (for getclustermsg); never raises."""
        ...


def local_node(config: Config) -> NodeInfo:
    host = config.bind if config.bind not in ("", "0.0.0.0", "::") else socket.gethostname()
    name = config.node_name or f"{socket.gethostname()}:{config.port}"
    return NodeInfo(name=name, host=host, apiport=config.port)


class SingleNode:
    """No etcd: this server is the whole cluster and always its leader."""

    def __init__(self, node: NodeInfo) -> None:
        self.node = node

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def is_leader(self) -> bool:
        return True

    def leader(self) -> NodeInfo | None:
        return self.node

    def nodes(self) -> list[NodeInfo]:
        return [self.node]

    def fencing_token(self) -> int:
        return 1

    async def refresh(self) -> None:
        return None


def create_leadership(config: Config) -> Leadership:
    node = local_node(config)
    if not config.etcd_endpoints.strip():
        return SingleNode(node)
    endpoints = [e.strip() for e in config.etcd_endpoints.split(",") if e.strip()]
    return EtcdLeadership(endpoints, node, ttl_s=config.etcd_ttl_s, prefix=config.etcd_prefix)


# -- a small client for etcd's JSON gateway ---------------------------------------------------------------
class EtcdError(Exception):
    """etcd could not be reached or refused a request."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with `prefix`."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\x00"


class EtcdGateway:
    """The handful of etcd v3 calls leadership needs, over the JSON gateway. Rotates to the next
    endpoint after a transport error; every call is bounded by `timeout_s`."""

    def __init__(self, endpoints: list[str], timeout_s: float) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self._endpoints = [(e if "://" in e else f"http://{e}").rstrip("/") for e in endpoints]
        self._current = 0
        self._http = httpx.AsyncClient(timeout=timeout_s, trust_env=False)

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self._endpoints[self._current] + path
        try:
            resp = await self._http.post(url, content=orjson.dumps(body),
                                         headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            self._current = (self._current + 1) % len(self._endpoints)
            raise EtcdError(f"{url}: {exc.__class__.__name__} {exc}") from exc
        if resp.status_code == 404 and path == "/v3/lease/revoke":
            return {}  # already gone
        if resp.status_code != 200:
            raise EtcdError(f"{url}: HTTP {resp.status_code} {resp.text[:200]}")
        line = resp.content.split(b"\n", 1)[0]  # streaming calls answer one JSON object per line
        data: dict[str, Any] = orjson.loads(line)
        if "error" in data:
            raise EtcdError(f"{url}: {data['error']}")
        return data.get("result", data) if path == "/v3/lease/keepalive" else data

    async def grant(self, ttl_s: int) -> tuple[int, int]:
        r = await self._call("/v3/lease/grant", {"TTL": ttl_s})
        if r.get("error"):
            raise EtcdError(str(r["error"]))
        return int(r["ID"]), int(r.get("TTL", 0))

    async def keepalive(self, lease: int) -> int:
        """The renewed TTL in seconds; 0 when the lease no longer exists."""
        r = await self._call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(r.get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self._call("/v3/lease/revoke", {"ID": str(lease)})

    async def put(self, key: bytes, value: bytes, lease: int) -> None:
        await self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(value), "lease": str(lease)})

    async def get(self, key: bytes) -> dict[str, Any] | None:
        kvs = (await self._call("/v3/kv/range", {"key": _b64(key)})).get("kvs", [])
        return kvs[0] if kvs else None

    async def get_prefix(self, prefix: bytes) -> list[dict[str, Any]]:
        r = await self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))})
        return list(r.get("kvs", []))

    async def create_if_absent(self, key: bytes, value: bytes, lease: int) -> tuple[bool, dict[str, Any] | None]:
        """Txn: put `key` with `lease` if it does not exist. (won, the key as it now stands or None)."""
        r = await self._call("/v3/kv/txn", {
            "compare": [{"key": _b64(key), "target": "CREATE", "create_revision": "0", "result": "EQUAL"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value), "lease": str(lease)}}],
            "failure": [{"request_range": {"key": _b64(key)}}],
        })
        if r.get("succeeded"):
            rev = int(r["header"]["revision"])
            return True, {"create_revision": str(rev), "lease": str(lease), "value": _b64(value)}
        kvs = r.get("responses", [{}])[0].get("response_range", {}).get("kvs", [])
        return False, (kvs[0] if kvs else None)


# -- leadership over an etcd lease --------------------------------------------------------------------------
class EtcdLeadership:
    """See the module docstring. One background task; `is_leader()` is safe to call from anywhere."""

    def __init__(self, endpoints: list[str], node: NodeInfo, ttl_s: int = 5, prefix: str = "/colonies/cluster",
                 poll_s: float | None = None, margin_s: float | None = None) -> None:
        if ttl_s < 2:
            raise ValueError("etcd lease TTL must be at least 2 s")
        self.node = node
        self.ttl_s = ttl_s
        self.keepalive_s = ttl_s / 3
        self.poll_s = poll_s if poll_s is not None else min(1.0, max(0.1, ttl_s / 10))
        self.margin_s = margin_s if margin_s is not None else max(0.5, ttl_s / 5)
        self._prefix = prefix.rstrip("/").encode()
        self._leader_key = self._prefix + b"/leader"
        self._nodes_prefix = self._prefix + b"/nodes/"
        self._node_json = orjson.dumps(node.to_wire())
        # Each request may take at most a third of the margin-reduced TTL, so a hung etcd is noticed
        # (and leadership dropped) well before the lease could expire.
        self._etcd = EtcdGateway(endpoints, timeout_s=min(self.keepalive_s, (ttl_s - self.margin_s) / 3))
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._lease = 0
        self._leading = False
        self._valid_until = 0.0  # monotonic; leadership ends here unless a keepalive extends it
        self._token = 0
        self._leader: NodeInfo | None = None
        self._nodes: list[NodeInfo] = []
        self.transitions: list[tuple[float, bool]] = []  # (monotonic time, leader?) as the task saw them

    # -- the Leadership protocol ------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"leadership:{self.node.name}")

    async def stop(self) -> None:
        """Step down first, then revoke the lease so a successor can take over at once."""
        self._stopping.set()
        self._step_down("stopping")
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._lease:
            try:
                await self._etcd.revoke(self._lease)
            except EtcdError as exc:
                log.warning("could not revoke lease %x (it expires by itself): %s", self._lease, exc)
            self._lease = 0
        await self._etcd.close()

    def is_leader(self) -> bool:
        return self._leading and time.monotonic() < self._valid_until

    def leader(self) -> NodeInfo | None:
        return self.node if self.is_leader() else self._leader

    def nodes(self) -> list[NodeInfo]:
        return list(self._nodes) if self._nodes else [self.node]

    def fencing_token(self) -> int:
        return self._token if self.is_leader() else 0

    @property
    def lease_id(self) -> int:
        return self._lease

    async def refresh(self) -> None:
        try:
            kvs = await self._etcd.get_prefix(self._nodes_prefix)
            self._nodes = sorted((NodeInfo.from_json(_unb64(kv.get("value", ""))) for kv in kvs),
                                 key=lambda n: n.name)
            if not self.is_leader():
                kv = await self._etcd.get(self._leader_key)
                self._leader = NodeInfo.from_json(_unb64(kv["value"])) if kv else None
        except (EtcdError, ValueError) as exc:
            log.debug("cluster view not refreshed: %s", exc)

    # -- the background task -------------------------------------------------------------------------------
    def _become_leader(self, token: int) -> None:
        self._token = token
        self._leader = self.node
        if not self._leading:
            self._leading = True
            self.transitions.append((time.monotonic(), True))
            log.info("%s became leader (lease %x, fencing token %d)", self.node.name, self._lease, token)

    def _step_down(self, why: str) -> None:
        if self._leading:
            self._leading = False
            self._token = 0
            if self._leader == self.node:
                self._leader = None
            self.transitions.append((time.monotonic(), False))
            log.warning("%s is no longer leader: %s", self.node.name, why)

    async def _run(self) -> None:
        backoff = self.poll_s
        while not self._stopping.is_set():
            try:
                await self._session()
                backoff = self.poll_s
            except EtcdError as exc:
                self._step_down(f"etcd: {exc}")
                log.warning("%s: etcd unavailable (%s); retrying in %.1f s", self.node.name, exc, backoff)
                await self._wait(backoff)
                backoff = min(backoff * 2, float(self.ttl_s))
            except Exception:  # a bug here must not end leadership handling for good
                self._step_down("internal error")
                log.exception("leadership task failed; retrying")
                await self._wait(float(self.ttl_s))

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(seconds, 0.0))

    async def _session(self) -> None:
        """One lease: register, campaign, keep alive. Returns (or raises) when the lease is lost."""
        sent = time.monotonic()
        self._lease, ttl = await self._etcd.grant(self.ttl_s)
        self._valid_until = sent + ttl - self.margin_s
        await self._etcd.put(self._nodes_prefix + self.node.name.encode(), self._node_json, self._lease)
        log.info("%s registered in the cluster (lease %x, ttl %d s)", self.node.name, self._lease, ttl)
        await self.refresh()
        next_keepalive = sent + self.keepalive_s
        failures = 0
        while not self._stopping.is_set():
            try:
                if time.monotonic() >= self._valid_until:
                    self._step_down("lease could not be confirmed in time")
                if not self._leading:
                    await self._campaign()
                now = time.monotonic()
                if now >= next_keepalive:
                    ttl = await self._etcd.keepalive(self._lease)
                    if ttl <= 0:
                        self._step_down("lease expired")
                        log.warning("%s: lease %x expired; registering again", self.node.name, self._lease)
                        self._lease = 0
                        return
                    self._valid_until = now + ttl - self.margin_s
                    next_keepalive = now + self.keepalive_s
                    await self._check_still_leader()
                    await self.refresh()
                failures = 0
            except EtcdError as exc:
                # Keep the lease: if etcd comes back before it expires we carry on with it. Until a
                # keepalive succeeds again we are not leader.
                self._step_down(f"etcd: {exc}")
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning("%s: etcd request failed (%d in a row): %s", self.node.name, failures, exc)
                next_keepalive = time.monotonic() + min(self.poll_s * 2 ** min(failures, 5), self.keepalive_s)
            wake = next_keepalive
            if self._leading:
                wake = min(wake, self._valid_until)
            else:
                wake = min(wake, time.monotonic() + self.poll_s)
            await self._wait(wake - time.monotonic())

    async def _campaign(self) -> None:
        won, kv = await self._etcd.create_if_absent(self._leader_key, self._node_json, self._lease)
        if won or (kv is not None and int(kv.get("lease", 0)) == self._lease):
            # Attaching the key to the lease does not renew it: validity still runs from the last
            # grant or keepalive.
            if time.monotonic() < self._valid_until:
                assert kv is not None
                self._become_leader(int(kv["create_revision"]))
            return
        self._leader = NodeInfo.from_json(_unb64(kv["value"])) if kv else None

    async def _check_still_leader(self) -> None:
        if not self._leading:
            return
        kv = await self._etcd.get(self._leader_key)
        if kv is None or int(kv.get("lease", 0)) != self._lease:
            self._step_down("the leader key is no longer ours")
            self._leader = NodeInfo.from_json(_unb64(kv["value"])) if kv else None
