"""The web pages: the dashboard at `/` (when `COLONIES_DASHBOARD=true`), the browser executor at
`/executor`, and their static files (HTML, CSS, the JS SDK and the vendored noble crypto) at `/static`.

The pages are plain HTML and ES modules (no build step). They hold the user's private key in the page
only and sign every request in the browser; the server serves files and nothing else here.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from colonies.config import Config

STATIC = Path(__file__).parent / "static"

# The pages load only what the server itself serves; the key never leaves the page.
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _page(path: Path) -> Response:
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=_HEADERS)


def web_routes(config: Config) -> list[BaseRoute]:
    """Routes for `/`, `/executor` and `/static/*`, to add to the server's Starlette app."""

    async def dashboard(request: Request) -> Response:
        if not config.dashboard:
            return PlainTextResponse("The dashboard is off; set COLONIES_DASHBOARD=true to serve it here.\n",
                                     status_code=404)
        return _page(STATIC / "dashboard" / "index.html")

    async def executor(request: Request) -> Response:
        return _page(STATIC / "executor" / "index.html")

    # follow_symlink: static/sdk/colonies.js links to the SDK's source in clients/js/src
    return [
        Route("/", dashboard, methods=["GET", "HEAD"]),
        Route("/executor", executor, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=STATIC, follow_symlink=True), name="static"),
    ]
