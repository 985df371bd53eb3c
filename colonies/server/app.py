"""The app factory: `create_app(config, storage, clock)` builds the server from its parts."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from colonies.channels import ChannelHub, ChannelLimits
from colonies.clock import Clock, SystemClock
from colonies.cluster import Leadership, create_leadership
from colonies.config import Config
from colonies.loops import schedules, steps
from colonies.loops.runner import Runner
from colonies.metrics import Metrics
from colonies.server.api import ApiApp
from colonies.server.dispatch import HANDLERS
from colonies.server.metrics_page import metrics_routes
from colonies.server.pubsub import pubsub
from colonies.server.web import web_routes
from colonies.services import Services
from colonies.storage.base import Storage

log = logging.getLogger("colonies.server")
CHANNEL_SWEEP_S = 60  # frees channels whose process ended or went away unseen (colonies.channels)


class App:
    """The server's ASGI app: `POST /api` goes straight to the RPC handler (the hot path skips
    Starlette's router and middleware); everything else (health, /pubsub, lifespan) to Starlette."""

    def __init__(self, api: ApiApp, rest: Starlette) -> None:
        self.api = api
        self.rest = rest
        self.state = rest.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/api":
            await self.api(scope, receive, send)
        else:
            await self.rest(scope, receive, send)


def create_app(config: Config, storage: Storage, clock: Clock | None = None,
               run_loops: bool = True, leadership: Leadership | None = None) -> App:
    """Deadlines run on every replica; crons, generators, retention and stale-executor cleanup only
    while `leadership.is_leader()` (see colonies.cluster)."""
    metrics = Metrics([*HANDLERS, "versionmsg", "getserverinfomsg"]) if config.metrics else None
    if metrics is not None:
        metrics.instrument(storage)
    services = Services(config=config, storage=storage, clock=clock or SystemClock(),
                        leadership=leadership or create_leadership(config), metrics=metrics)
    services.channels = ChannelHub(ChannelLimits.from_config(config), services.bus, services.now)
    runner = Runner(services.now, services.is_leader)
    runner.add("deadlines", config.timeout_period_ms / 1000, lambda now: steps.deadlines(services, now))
    runner.add("stale-executors", config.cleanup_interval_s, lambda now: steps.stale_executors(services, now),
               leader_only=True)
    runner.add("generators", config.generator_period_ms / 1000, lambda now: schedules.generators(services, now),
               leader_only=True)
    runner.add("crons", config.cron_period_ms / 1000, lambda now: schedules.crons(services, now),
               leader_only=True)
    runner.add("channels", CHANNEL_SWEEP_S, lambda now: services.channels.sweep(storage))
    if config.retention:
        runner.add("retention", 60, lambda now: schedules.retention(services, now), leader_only=True)
    api = ApiApp(services)
    leader = services.leadership
    assert leader is not None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await storage.open()
        if metrics is not None:
            storage.tally = metrics.tally  # before listening: count changes go to other replicas too
        # A shared database (PostgreSQL) carries events between replicas: see colonies.cluster_events.
        listen = getattr(storage, "listen", None)
        events = await listen(services.bus) if listen is not None else None
        if metrics is not None:
            await storage.start_tally(metrics.tally)  # the counts behind /metrics, read once
        if config.server_id and await storage.get_server_id() != config.server_id:
            await storage.set_server_id(config.server_id)
        if run_loops:
            await leader.start()
            runner.start()
        try:
            yield
        finally:
            await runner.stop()  # leader-only work ends before we resign
            await leader.stop()
            if events is not None:
                await events.stop()
            await storage.close()

    async def health(request: Request) -> Response:
        dead = runner.dead()
        return Response(status_code=503 if dead else 200, content=",".join(dead))

    app = Starlette(
        routes=[
            Route("/api", api, methods=["POST", "GET", "OPTIONS", "PUT", "DELETE"]),
            Route("/health", health, methods=["GET"]),
            *metrics_routes(services),  # GET /metrics with COLONIES_METRICS (colonies.server.metrics_page)
            WebSocketRoute("/pubsub", pubsub),
            *web_routes(config),  # /, /executor, /static (colonies.server.web)
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.runner = runner
    app.state.api = api
    return App(api, app)
