"""Handlers: workflows (process graphs) (§5)."""

from __future__ import annotations

from colonies.server.handlers_types import Handler

HANDLERS: dict[str, Handler] = {}
