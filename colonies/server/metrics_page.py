"""GET /metrics (with COLONIES_METRICS=true): the Prometheus page of colonies.metrics.

Without COLONIES_METRICS_TOKEN the page is open and holds no colony or executor type names (every
series is summed over them). With a token, a scrape must send `Authorization: Bearer <token>` (401
otherwise) and then gets the per-colony series too.
"""

from __future__ import annotations

import hmac

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colonies.services import Services


def metrics_routes(services: Services) -> list[Route]:
    metrics = services.metrics
    if metrics is None:
        return []
    token = services.config.metrics_token
    expected = f"Bearer {token}".encode()

    async def page(request: Request) -> Response:
        if token and not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
            return Response("a bearer token is required (COLONIES_METRICS_TOKEN)\n", status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="colonies metrics"'})
        return Response(metrics.render(services, names=bool(token)), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return [Route("/metrics", page, methods=["GET"])]
