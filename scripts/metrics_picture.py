#!/usr/bin/env python3
"""Draw docs/img/metrics.png: the panels of docs/grafana-colonies.json, from real scrapes of a real server.

No Grafana can be installed here (no Debian or PyPI package), so this does what Grafana would: it starts
a server (SQLite, COLONIES_METRICS with a token), runs a small workload through the SDK (two colonies,
executors that take, run, close and sometimes fail processes, a burst, a re-queue by deadline, a cron
and a generator), scrapes GET /metrics every second, evaluates each panel's own PromQL expressions
over those scrapes (the small subset the dashboard uses: selectors, rate, sum by, histogram_quantile,
a scalar factor) and draws the panels where the dashboard puts them.

Run: .venv/bin/pip install matplotlib && .venv/bin/python scripts/metrics_picture.py [--seconds 90]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

Labels = frozenset[tuple[str, str]]
Series = dict[Labels, float]


@dataclass
class Scrape:
    t: float
    samples: dict[str, dict[Labels, float]]  # metric name -> labels -> value


def parse_page(text: str, t: float) -> Scrape:
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, dict[Labels, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return Scrape(t, samples)


# -- the PromQL the dashboard uses ----------------------------------------------------------------------------
_TOKEN = re.compile(r'\s*(histogram_quantile|sum|by|rate|increase|[A-Za-z_:][A-Za-z0-9_:]*|\d+(?:\.\d+)?[smh]?|'
                    r'=~|!=|=|"(?:[^"\\]|\\.)*"|[(){},\[\]*])')


def tokens(expr: str) -> list[str]:
    out, pos = [], 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


class Query:
    """One expression, parsed once, evaluated at any scrape."""

    def __init__(self, expr: str) -> None:
        self.toks = tokens(expr)
        self.i = 0
        self.tree = self._expr()
        if self.i != len(self.toks):
            raise ValueError(f"unexpected {self.toks[self.i]!r} in {expr!r}")

    def _take(self, want: str | None = None) -> str:
        tok = self.toks[self.i]
        if want is not None and tok != want:
            raise ValueError(f"expected {want!r}, got {tok!r}")
        self.i += 1
        return tok

    def _peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _expr(self) -> Any:
        node = self._term()
        if self._peek() == "*":
            self._take()
            node = ("mul", node, float(self._take()))
        return node

    def _term(self) -> Any:
        tok = self._take()
        if tok == "histogram_quantile":
            self._take("(")
            q = float(self._take())
            self._take(",")
            inner = self._expr()
            self._take(")")
            return ("hq", q, inner)
        if tok == "sum":
            by: list[str] | None = None
            if self._peek() == "by":
                self._take()
                self._take("(")
                by = []
                while self._peek() != ")":
                    by.append(self._take())
                    if self._peek() == ",":
                        self._take()
                self._take(")")
            self._take("(")
            inner = self._expr()
            self._take(")")
            return ("sum", by, inner)
        if tok in ("rate", "increase"):
            self._take("(")
            sel = self._selector(self._take())
            self._take("[")
            window = self._take()
            self._take("]")
            self._take(")")
            scale = {"s": 1, "m": 60, "h": 3600}[window[-1]]
            return (tok, sel, float(window[:-1]) * scale)
        return self._selector(tok)

    def _selector(self, name: str) -> Any:
        matchers: list[tuple[str, str, str]] = []
        if self._peek() == "{":
            self._take()
            while self._peek() != "}":
                key, op, value = self._take(), self._take(), self._take()
                matchers.append((key, op, json.loads(value)))
                if self._peek() == ",":
                    self._take()
            self._take("}")
        return ("sel", name, matchers)

    def at(self, scrapes: list[Scrape], i: int) -> Series:
        return _eval(self.tree, scrapes, i)


def _match(labels: Labels, matchers: list[tuple[str, str, str]]) -> bool:
    d = dict(labels)
    for key, op, value in matchers:
        got = d.get(key, "")
        if (op == "=" and got != value) or (op == "!=" and got == value) or \
                (op == "=~" and not re.fullmatch(value, got)):
            return False
    return True


def _eval(node: Any, scrapes: list[Scrape], i: int) -> Series:
    kind = node[0]
    if kind == "sel":
        _, name, matchers = node
        return {k: v for k, v in scrapes[i].samples.get(name, {}).items() if _match(k, matchers)}
    if kind in ("rate", "increase"):
        _, sel, window = node
        now = _eval(sel, scrapes, i)
        t = scrapes[i].t
        j = next((j for j in range(i) if t - scrapes[j].t <= window), i)
        if j == i:
            return {}
        then, dt = _eval(sel, scrapes, j), t - scrapes[j].t
        return {k: (v - then.get(k, 0.0)) / (dt if kind == "rate" else 1.0) for k, v in now.items()}
    if kind == "mul":
        return {k: v * node[2] for k, v in _eval(node[1], scrapes, i).items()}
    if kind == "sum":
        _, by, inner = node
        out: Series = {}
        for k, v in _eval(inner, scrapes, i).items():
            key = frozenset((a, b) for a, b in k if by is not None and a in by)
            out[key] = out.get(key, 0.0) + v
        return out
    if kind == "hq":
        _, q, inner = node
        groups: dict[Labels, list[tuple[float, float]]] = {}
        for k, v in _eval(inner, scrapes, i).items():
            d = dict(k)
            le = d.pop("le")
            groups.setdefault(frozenset(d.items()), []).append((math.inf if le == "+Inf" else float(le), v))
        return {k: x for k, b in groups.items() if not math.isnan(x := _quantile(q, sorted(b)))}
    raise ValueError(kind)


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile: linear within the bucket, the highest finite bound past it."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return math.nan


def legend(fmt: str, labels: Labels) -> str:
    d = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: d.get(m.group(1), ""), fmt) or "value"


# -- the workload -----------------------------------------------------------------------------------------------
async def workload(port: int, server_prvkey: str, seconds: float, scrape_every: float, token: str) -> list[Scrape]:
    import httpx

    from colonies.client import AsyncClient, func_spec
    from colonies.errors import ClientError
    from colonies.model import WorkflowSpec
    from colonies.protocol.crypto import generate_prvkey, id_of

    rng = random.Random(17)
    colonies = {"ml": ("gpu", 3, 1.5), "etl": ("cpu", 4, 0.4)}  # executor type, executors, mean run time
    users: dict[str, str] = {}
    executors: dict[str, list[str]] = {}
    async with AsyncClient("127.0.0.1", port, prvkey=server_prvkey) as admin:
        for name, (etype, count, _) in colonies.items():
            owner_key, user_key = generate_prvkey(), generate_prvkey()
            await admin.add_colony(id_of(owner_key), name)
            owner = admin.with_key(owner_key)
            await owner.add_user(name, id_of(user_key), f"{name}-user")
            users[name] = user_key
            executors[name] = []
            for i in range(count):
                key = generate_prvkey()
                await owner.add_executor(name, id_of(key), f"{etype}-{i}", etype)
                await owner.approve_executor(name, f"{etype}-{i}")
                executors[name].append(key)
            await owner.add_executor(name, id_of(generate_prvkey()), f"{etype}-new", etype)  # never approved

    start = time.monotonic()
    stop = start + seconds
    scrapes: list[Scrape] = []

    async def executor(colony: str, key: str, mean: float) -> None:
        async with AsyncClient("127.0.0.1", port, prvkey=key) as c:
            while time.monotonic() < stop:
                try:
                    p = await c.assign(colony, 2)
                except ClientError:  # no work within the poll (404): ask again
                    continue
                await asyncio.sleep(min(rng.expovariate(1 / mean), 5))
                try:
                    if rng.random() < 0.08:
                        await c.fail(p.processid, ["simulated failure"])
                    else:
                        await c.close(p.processid, ["ok"])
                except ClientError:  # refused (403): re-queued meanwhile, its deadline passed
                    pass

    async def submitter(colony: str, etype: str) -> None:
        async with AsyncClient("127.0.0.1", port, prvkey=users[colony]) as c:
            while time.monotonic() < stop:
                elapsed = time.monotonic() - start
                burst = seconds * 0.35 < elapsed < seconds * 0.55
                rate = (14.0 if burst else 3.0) if colony == "etl" else (5.0 if burst else 1.2)
                await c.submit(func_spec("work", colony, etype, maxexectime=4, maxretries=3))
                await asyncio.sleep(rng.expovariate(rate))

    async def schedules() -> None:
        wf = WorkflowSpec(colonyname="etl", functionspecs=[
            func_spec("extract", "etl", "cpu", nodename="extract"),
            func_spec("load", "etl", "cpu", nodename="load", dependencies=["extract"])])
        async with AsyncClient("127.0.0.1", port, prvkey=users["etl"]) as c:
            await c.add_cron("etl", "nightly", wf, interval=10)
            gen = await c.add_generator("etl", "files", wf, trigger=3)
            while time.monotonic() < stop:
                await c.pack_generator(gen.generatorid, f"file-{rng.randrange(1000)}")
                await asyncio.sleep(2.5)

    async def scraper() -> None:
        async with httpx.AsyncClient() as h:
            while time.monotonic() < stop + scrape_every:
                r = await h.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
                scrapes.append(parse_page(r.text, time.monotonic() - start))
                await asyncio.sleep(scrape_every)

    tasks = [executor(c, k, colonies[c][2]) for c in colonies for k in executors[c]]
    tasks += [submitter(c, colonies[c][0]) for c in colonies] + [schedules(), scraper()]
    await asyncio.gather(*tasks)
    return scrapes


# -- drawing ------------------------------------------------------------------------------------------------------
BG, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
COLORS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a", "#96d98d",
          "#ffb357"]


def draw(dashboard: dict[str, Any], scrapes: list[Scrape], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_h = 0.42  # inches per grid row
    fig = plt.figure(figsize=(24, rows * unit_h), facecolor=BG)
    times = [s.t for s in scrapes]

    def box(p: dict[str, Any]) -> tuple[float, float, float, float]:
        g = p["gridPos"]
        pad_x, pad_y = 0.004, 0.006
        return (g["x"] / 24 + pad_x, 1 - (g["y"] + g["h"]) / rows + pad_y, g["w"] / 24 - 2 * pad_x,
                g["h"] / rows - 2 * pad_y)

    for p in panels:
        if p["type"] == "row":
            x, y, w, h = box(p)
            fig.text(x, y + h / 2, p["title"], color=TEXT, fontsize=13, fontweight="bold", va="center")
            continue
        x, y, w, h = box(p)
        title_h = 0.32 / (rows * unit_h)
        frame = fig.add_axes((x, y, w, h))
        frame.set_facecolor(PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(GRID)
        frame.text(0.01, 1 - title_h / h / 2, p["title"], transform=frame.transAxes, color=TEXT, fontsize=10,
                   va="center")
        ax = fig.add_axes((x + 0.03 * w + 0.012, y + 0.1 * h + 0.012, w * 0.94 - 0.016,
                           h - title_h - 0.12 * h - 0.012))
        ax.set_facecolor(PANEL)
        series: dict[str, list[float]] = {}
        for target in p["targets"]:
            q = Query(target["expr"])
            values = [q.at(scrapes, i) for i in range(len(scrapes))]
            keys = sorted({k for v in values for k in v}, key=lambda k: sorted(k))
            for k in keys:
                series[legend(target["legendFormat"], k)] = [v.get(k, math.nan) for v in values]
        _plot(ax, p, times, series)
    fig.text(0.995, 0.002, "drawn by scripts/metrics_picture.py from real scrapes of GET /metrics "
             "(the panels and queries of docs/grafana-colonies.json)", color="#8e8e8e", fontsize=8, ha="right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72, facecolor=BG)


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "–"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def _plot(ax: Any, p: dict[str, Any], times: list[float], series: dict[str, list[float]]) -> None:
    unit = p["fieldConfig"]["defaults"].get("unit", "short")
    ax.tick_params(colors="#8e8e8e", labelsize=7)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if p["type"] == "stat":
        ax.set_axis_off()
        items = list(series.items())
        for n, (name, values) in enumerate(items):
            last = next((v for v in reversed(values) if not math.isnan(v)), math.nan)
            cx = (n + 0.5) / max(len(items), 1)
            ax.plot([cx - 0.4 / len(items) + 0.8 / len(items) * i / max(len(values) - 1, 1) for i in
                     range(len(values))], [0.05 + 0.3 * (v / max(max(values), 1)) if not math.isnan(v) else math.nan
                                          for v in values], color=COLORS[0], alpha=0.5, transform=ax.transAxes)
            ax.text(cx, 0.55, _fmt(last, unit), color=COLORS[0], fontsize=26, ha="center", va="center",
                    fontweight="bold", transform=ax.transAxes)
            if len(items) > 1 or p["targets"][0]["legendFormat"].startswith("{{"):
                ax.text(cx, 0.92, name, color=TEXT, fontsize=8, ha="center", transform=ax.transAxes)
        return
    if p["type"] == "bargauge":
        names = list(series)
        if all(re.fullmatch(r"[\d.]+|\+Inf", n) for n in names):
            names.sort(key=lambda n: math.inf if n == "+Inf" else float(n))
        latest = [next((v for v in reversed(series[n]) if not math.isnan(v)), 0.0) for n in names]
        ax.barh(range(len(names)), latest, color=[COLORS[i % len(COLORS)] for i in range(len(names))])
        ax.set_yticks(range(len(names)), names, color=TEXT, fontsize=8)
        ax.invert_yaxis()
        for i, v in enumerate(latest):
            ax.text(v, i, f" {v:.0f}", color=TEXT, fontsize=8, va="center")
        ax.grid(axis="x", color=GRID, linewidth=0.5)
        return
    stacked = p["fieldConfig"]["defaults"].get("custom", {}).get("stacking", {}).get("mode") == "normal"
    base = [0.0] * len(times)
    for n, (name, values) in enumerate(sorted(series.items())):
        color = COLORS[n % len(COLORS)]
        if stacked:
            top = [b + (0 if math.isnan(v) else v) for b, v in zip(base, values, strict=True)]
            ax.fill_between(times, base, top, color=color, alpha=0.35, linewidth=0)
            ax.plot(times, top, color=color, linewidth=1, label=name)
            base = top
        else:
            ax.plot(times, values, color=color, linewidth=1.2, label=name)
    ax.grid(color=GRID, linewidth=0.5)
    ax.set_xlim(times[0], times[-1])
    if unit == "s":
        ax.yaxis.set_major_formatter(lambda v, _: _fmt(v, "s"))
    if series:
        ax.legend(loc="upper left", fontsize=7, frameon=False, labelcolor=TEXT, ncol=min(len(series), 4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="how long the workload runs")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "metrics.png")
    args = ap.parse_args()
    from tests.conftest import make_server

    token = "picture-token"
    dashboard = json.loads((ROOT / "docs" / "grafana-colonies.json").read_text())
    srv = make_server(Path(tempfile.mkdtemp(prefix="colonies-metrics-")), {
        "COLONIES_METRICS": "true", "COLONIES_METRICS_TOKEN": token, "COLONIES_NODE_NAME": "replica-1",
        "COLONIES_CRON_CHECKER_PERIOD": "500", "COLONIES_GENERATOR_CHECKER_PERIOD": "500"})
    srv.start()
    try:
        scrapes = asyncio.run(workload(srv.port, srv.server_prvkey, args.seconds, 1.0, token))
    finally:
        srv.stop()
    draw(dashboard, scrapes, args.out)
    print(f"{args.out}: {len(scrapes)} scrapes, {len(dashboard['panels'])} panels")


if __name__ == "__main__":
    main()
