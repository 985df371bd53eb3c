"""What `GET /metrics` reports (Prometheus text format), all of it from memory.

A scrape reads counters, histograms and the counts of colonies.storage.tally; it issues no storage call,
so its cost follows the number of colonies, executor types, executors and payload types, never the
number of processes. Every series, with its labels, is listed in docs/metrics.md.

The original's ten gauges (`colonies_server_*`, no labels) come first, so existing Grafana panels keep
working; its four workflow gauges always read 0 there, here they count workflows. Colony and executor
type names appear as label values only in scrapes authorized by COLONIES_METRICS_TOKEN (`names`);
otherwise the same series are summed over them.
"""

from __future__ import annotations

import inspect
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from colonies.cluster import local_node
from colonies.model import Process
from colonies.storage.base import Storage
from colonies.storage.tally import COLONY, EXECUTOR, GRAPH, PROCESS, UNREGISTERED, Tally

if TYPE_CHECKING:
    from colonies.services import Services

NS = 1_000_000_000
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0, 60.0)
QUEUE_BUCKETS = (0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0)
STORAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)
AGE_BUCKETS = (10.0, 30.0, 60.0, 300.0, 600.0, 3600.0, 86400.0)
PROCESS_STATES = ("waiting", "running", "successful", "failed", "cancelled")  # ProcessState order
EXECUTOR_STATES = ("pending", "approved", "rejected")  # ExecutorState order (UNREGISTERED is not counted)
APPROVED = 1  # ExecutorState.APPROVED
UNKNOWN, INVALID = "other", "invalid"  # payload types outside the protocol; requests with no readable envelope


class Histogram:
    """A fixed-bucket histogram, cheap to observe (one bisect, no lock: the event loop is one thread)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, n in zip(_les(self.bounds), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


_LES: dict[tuple[float, ...], tuple[str, ...]] = {}


def _les(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The `le` label values of `bounds` and +Inf (as Go writes them: 0.005, 1.0, 60.0)."""
    found = _LES.get(bounds)
    if found is None:
        found = _LES[bounds] = (*(repr(b) if b != int(b) else f"{b:.1f}" for b in bounds), "+Inf")
    return found


class Metrics:
    def __init__(self, payload_types: Iterable[str]) -> None:
        self.tally = Tally()
        self.known = frozenset(payload_types)
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.assign_wait = Histogram(REQUEST_BUCKETS)
        self.queue_wait = Histogram(QUEUE_BUCKETS)
        self.storage: dict[str, Histogram] = {}
        self.cron_fires = 0
        self.generator_fires = 0
        # the process_* and python_* series of prometheus-client's default registry (not used: one per app)
        self._runtime = [ProcessCollector(registry=None), PlatformCollector(registry=None),
                         GCCollector(registry=CollectorRegistry())]

    # -- updates (on the request path: increments only) ----------------------------------------------------
    def request(self, payloadtype: str, status: int, seconds: float) -> None:
        kind = payloadtype if payloadtype in self.known else UNKNOWN if payloadtype else INVALID
        key = (kind, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get(kind)
        if hist is None:
            hist = self.latency[kind] = Histogram(REQUEST_BUCKETS)
        hist.observe(seconds)

    def assigned(self, p: Process, waited_s: float) -> None:
        """An assign request got `p` after waiting `waited_s` for it."""
        self.assign_wait.observe(waited_s)
        self.queue_wait.observe(max(p.starttime.timestamp() - p.submissiontime.timestamp(), 0.0))

    def instrument(self, storage: Storage) -> None:
        """Time every call of the storage interface, per method (colonies_storage_duration_seconds)."""
        for name in sorted(Storage.__abstractmethods__):
            method = getattr(storage, name)
            if inspect.iscoroutinefunction(method):
                hist = self.storage[name] = Histogram(STORAGE_BUCKETS)
                setattr(storage, name, _timed(method, hist))

    # -- a scrape ------------------------------------------------------------------------------------------
    def render(self, s: Services, names: bool) -> bytes:
        """The page: our series written directly (a few hundred ns per sample; prometheus-client's writer
        takes tens of µs), then prometheus-client's process and Python collectors."""
        page = Page()
        tally = self.tally
        totals = tally.totals()
        _original(page, totals)
        _counted(page, tally, totals, names)
        _last_seen(page, tally, time.time_ns())
        polls = s.bus.parked()
        page.family("colonies_long_polls", "gauge", "Assign requests parked, waiting for a process")
        if names:  # every (colony, type) with approved executors, parked or not, and any other parked
            keys = {(c, t) for (k, c, t, st) in tally.counts if k == EXECUTOR and st == APPROVED} | set(polls)
            for colony, etype in sorted(keys):
                page.sample("colonies_long_polls", labels(colony=colony, executortype=etype), polls.get((colony, etype), 0))
        else:
            page.sample("colonies_long_polls", "", sum(polls.values()))
        page.family("colonies_requests_total", "counter", "Requests to /api, by payload type and HTTP status")
        for (kind, status), n in sorted(self.requests.items()):
            page.sample("colonies_requests_total", labels(payloadtype=kind, status=str(status)), n)
        page.histograms("colonies_request_duration_seconds", "Time to answer /api requests, by payload type",
                        {labels(payloadtype=k): h for k, h in sorted(self.latency.items())})
        page.histograms("colonies_assign_wait_seconds", "How long assign requests that got a process waited for it",
                        {"": self.assign_wait})
        page.histograms("colonies_process_wait_seconds",
                        "From a process' submission to its assignment, for each assignment", {"": self.queue_wait})
        page.counter("colonies_cron_fires_total", "Cron workflows started (by this replica)", self.cron_fires)
        page.counter("colonies_generator_fires_total", "Generator workflows started (by this replica)",
                     self.generator_fires)
        page.family("colonies_leader", "gauge", "1 while this replica is the leader")
        page.sample("colonies_leader", labels(node=local_node(s.config).name), 1 if s.is_leader() else 0)
        page.histograms("colonies_storage_duration_seconds", "Storage calls, by method",
                        {labels(operation=op): h for op, h in sorted(self.storage.items()) if any(h.counts)})
        page.counter("colonies_metrics_seeds_total", "Times the counts were read from the database (at start, "
                     "and again after another replica's changes were lost)", tally.seeds)
        return page.text().encode() + generate_latest(_Runtime(self._runtime))


def _original(page: Page, totals: dict[tuple[int, int], int]) -> None:
    page.gauge("colonies_server_colonies", "Number of colonies", totals.get((COLONY, 0), 0))
    page.gauge("colonies_server_executors", "Number of executors",
               sum(totals.get((EXECUTOR, st), 0) for st in range(len(EXECUTOR_STATES))))
    for st, word in enumerate(PROCESS_STATES[:4]):
        page.gauge(f"colonies_server_processes_{word}", f"Number of {word} processes", totals.get((PROCESS, st), 0))
    for st, word in enumerate(PROCESS_STATES[:4]):
        page.gauge(f"colonies_server_workflows_{word}", f"Number of {word} workflows", totals.get((GRAPH, st), 0))


def _counted(page: Page, tally: Tally, totals: dict[tuple[int, int], int], names: bool) -> None:
    specs = ((PROCESS, "colonies_processes", "Processes by state", PROCESS_STATES, True),
             (GRAPH, "colonies_workflows", "Workflows by state", PROCESS_STATES, False),
             (EXECUTOR, "colonies_executors", "Executors by state (removed ones are not counted)", EXECUTOR_STATES,
              True))
    for kind, name, help_text, states, typed in specs:
        page.family(name, "gauge", help_text)
        if not names:
            for st, word in enumerate(states):
                page.sample(name, labels(state=word), totals.get((kind, st), 0))
            continue
        groups: dict[tuple[str, str], dict[int, int]] = {}
        for (k, colony, etype, st), n in tally.counts.items():
            if k == kind and (kind != EXECUTOR or st != UNREGISTERED):
                groups.setdefault((colony, etype), {})[st] = n
        for (colony, etype), by_state in sorted(groups.items()):
            head = f'colony="{_escape(colony)}",executortype="{_escape(etype)}",' if typed else \
                f'colony="{_escape(colony)}",'
            for st, word in enumerate(states):
                page.sample(name, f'{{{head}state="{word}"}}', by_state.get(st, 0))


def _last_seen(page: Page, tally: Tally, now_ns: int) -> None:
    """Executors (not removed) by the age of their last request; never seen ones only in +Inf."""
    hist = Histogram(AGE_BUCKETS)
    for ident in tally.live:
        heard = tally.heard.get(ident, 0)
        if heard <= 0:
            hist.counts[-1] += 1
        else:
            hist.observe(max(now_ns - heard, 0) / NS)
    name = "colonies_executor_last_seen_seconds"
    page.family(name, "histogram", "Executors by seconds since their last request (a gauge histogram)")
    for le, n in hist.cumulative():
        page.sample(f"{name}_bucket", f'{{le="{le}"}}', n)
    page.gauge(f"{name}_gcount", "Executors (not removed)", len(tally.live))
    page.gauge(f"{name}_gsum", "Seconds since the last request, summed over the executors seen", hist.total)


def labels(**values: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in values.items()) + "}"


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


class Page:
    """Prometheus text format 0.0.4, written directly."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.parts.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")

    def sample(self, name: str, label_text: str, value: float) -> None:
        self.parts.append(f"{name}{label_text} {value}\n")

    def gauge(self, name: str, help_text: str, value: float) -> None:
        self.family(name, "gauge", help_text)
        self.sample(name, "", value)

    def counter(self, name: str, help_text: str, value: float) -> None:
        self.family(name, "counter", help_text)
        self.sample(name, "", value)

    def histograms(self, name: str, help_text: str, hists: dict[str, Histogram]) -> None:
        """One histogram per label set (the text between braces, or "" for none)."""
        self.family(name, "histogram", help_text)
        for label_text, hist in hists.items():
            inner = label_text[1:-1] + "," if label_text else ""
            for le, n in hist.cumulative():
                self.sample(f"{name}_bucket", f'{{{inner}le="{le}"}}', n)
            self.sample(f"{name}_sum", label_text, hist.total)
            self.sample(f"{name}_count", label_text, sum(hist.counts))

    def text(self) -> str:
        return "".join(self.parts)


def _timed(method: Callable[..., Awaitable[Any]], hist: Histogram) -> Callable[..., Awaitable[Any]]:
    perf = time.perf_counter

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = perf()
        try:
            return await method(*args, **kwargs)
        finally:
            hist.observe(perf() - started)

    return timed


class _Runtime(Collector):
    """prometheus-client's process and Python collectors, in the shape `generate_latest` reads."""

    def __init__(self, collectors: list[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for c in self._collectors:
            yield from c.collect()
