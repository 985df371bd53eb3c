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
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
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
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
QUEUE_BUCKETS = (0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0)
STORAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
AGE_BUCKETS = (10.0, 30.0, 60.0, 300.0, 600.0, 3600.0, 86400.0)
PROCESS_STATES = ("waiting", "running", "successful", "failed", "cancelled")  # ProcessState order
EXECUTOR_STATES = ("pending", "approved", "rejected")  # ExecutorState order (UNREGISTERED is not counted)
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

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*map(_le, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


def _le(bound: float) -> str:
    return repr(bound) if bound != int(bound) else f"{bound:.1f}"


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
        return generate_latest(_Families(list(self.families(s, names, time.time_ns()))))

    def families(self, s: Services, names: bool, now_ns: int) -> Iterator[Metric]:
        tally = self.tally
        totals = tally.totals()
        yield from _original(totals)
        yield from _counted(tally, totals, names)
        yield _last_seen(tally, now_ns)
        polls = s.bus.parked()
        fam = GaugeMetricFamily("colonies_long_polls", "Assign requests parked, waiting for a process",
                                labels=["colony", "executortype"] if names else [])
        if names:
            for (colony, etype), n in sorted(polls.items()):
                fam.add_metric([colony, etype], n)
        else:
            fam.add_metric([], sum(polls.values()))
        yield fam
        yield from self._requests()
        yield _histogram("colonies_assign_wait_seconds", "How long assign requests that got a process waited for it",
                         {(): self.assign_wait})
        yield _histogram("colonies_process_wait_seconds",
                         "From a process' submission to its assignment, for each assignment", {(): self.queue_wait})
        cron = CounterMetricFamily("colonies_cron_fires", "Cron workflows started (by this replica)")
        cron.add_metric([], self.cron_fires)
        yield cron
        gen = CounterMetricFamily("colonies_generator_fires", "Generator workflows started (by this replica)")
        gen.add_metric([], self.generator_fires)
        yield gen
        leader = GaugeMetricFamily("colonies_leader", "1 while this replica is the leader", labels=["node"])
        leader.add_metric([local_node(s.config).name], 1 if s.is_leader() else 0)
        yield leader
        yield _histogram("colonies_storage_duration_seconds", "Storage calls, by method",
                         {(op,): h for op, h in sorted(self.storage.items()) if any(h.counts)},
                         labels=["operation"])
        seeds = CounterMetricFamily("colonies_metrics_seeds", "Times the counts were read from the database "
                                    "(at start, and again after another replica's changes were lost)")
        seeds.add_metric([], tally.seeds)
        yield seeds
        for collector in self._runtime:
            yield from collector.collect()

    def _requests(self) -> Iterator[Metric]:
        fam = CounterMetricFamily("colonies_requests", "Requests to /api, by payload type and HTTP status",
                                  labels=["payloadtype", "status"])
        for (kind, status), n in sorted(self.requests.items()):
            fam.add_metric([kind, str(status)], n)
        yield fam
        yield _histogram("colonies_request_duration_seconds", "Time to answer /api requests, by payload type",
                         {(k,): h for k, h in sorted(self.latency.items())}, labels=["payloadtype"])


def _original(totals: dict[tuple[int, int], int]) -> Iterator[Metric]:
    yield GaugeMetricFamily("colonies_server_colonies", "Number of colonies", value=totals.get((COLONY, 0), 0))
    yield GaugeMetricFamily("colonies_server_executors", "Number of executors",
                            value=sum(totals.get((EXECUTOR, st), 0) for st in range(len(EXECUTOR_STATES))))
    for st, word in enumerate(PROCESS_STATES[:4]):
        yield GaugeMetricFamily(f"colonies_server_processes_{word}", f"Number of {word} processes",
                                value=totals.get((PROCESS, st), 0))
    for st, word in enumerate(PROCESS_STATES[:4]):
        yield GaugeMetricFamily(f"colonies_server_workflows_{word}", f"Number of {word} workflows",
                                value=totals.get((GRAPH, st), 0))


def _counted(tally: Tally, totals: dict[tuple[int, int], int], names: bool) -> Iterator[Metric]:
    specs = ((PROCESS, "colonies_processes", "Processes by state", PROCESS_STATES, True),
             (GRAPH, "colonies_workflows", "Workflows by state", PROCESS_STATES, False),
             (EXECUTOR, "colonies_executors", "Executors by state (removed ones are not counted)", EXECUTOR_STATES,
              True))
    for kind, name, help_text, states, typed in specs:
        if not names:
            fam = GaugeMetricFamily(name, help_text, labels=["state"])
            for st, word in enumerate(states):
                fam.add_metric([word], totals.get((kind, st), 0))
            yield fam
            continue
        labels = ["colony", "executortype", "state"] if typed else ["colony", "state"]
        fam = GaugeMetricFamily(name, help_text, labels=labels)
        groups: dict[tuple[str, str], dict[int, int]] = {}
        for (k, colony, etype, st), n in tally.counts.items():
            if k == kind and (kind != EXECUTOR or st != UNREGISTERED):
                groups.setdefault((colony, etype), {})[st] = n
        for (colony, etype), by_state in sorted(groups.items()):
            head = [colony, etype] if typed else [colony]
            for st, word in enumerate(states):
                fam.add_metric([*head, word], by_state.get(st, 0))
        yield fam


def _last_seen(tally: Tally, now_ns: int) -> Metric:
    """Executors (not removed) by the age of their last request; never seen ones only in +Inf."""
    counts = [0] * (len(AGE_BUCKETS) + 1)
    total = 0.0
    for ident in tally.live:
        heard = tally.heard.get(ident, 0)
        if heard <= 0:
            counts[-1] += 1
            continue
        age = max(now_ns - heard, 0) / NS
        counts[bisect_left(AGE_BUCKETS, age)] += 1
        total += age
    hist = Histogram(AGE_BUCKETS)
    hist.counts, hist.total = counts, total
    fam = GaugeHistogramMetricFamily("colonies_executor_last_seen_seconds",
                                     "Executors by seconds since their last request", labels=[])
    fam.add_metric([], hist.cumulative(), gsum_value=total)
    return fam


def _histogram(name: str, help_text: str, hists: dict[tuple[str, ...], Histogram],
               labels: list[str] | None = None) -> Metric:
    fam = HistogramMetricFamily(name, help_text, labels=labels or [])
    for values, hist in hists.items():
        fam.add_metric(list(values), hist.cumulative(), sum_value=hist.total)
    return fam


def _timed(method: Callable[..., Awaitable[Any]], hist: Histogram) -> Callable[..., Awaitable[Any]]:
    perf = time.perf_counter

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = perf()
        try:
            return await method(*args, **kwargs)
        finally:
            hist.observe(perf() - started)

    return timed


class _Families(Collector):
    """One scrape's families, in the shape `generate_latest` reads."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
