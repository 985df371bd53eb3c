"""Handlers: generators, crons and logs (§6, §7)."""

from __future__ import annotations

from colonies.server.handlers_types import Handler

HANDLERS: dict[str, Handler] = {}
