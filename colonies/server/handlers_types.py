"""The handler signature: (services, signer id, decoded message) → reply object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from colonies.services import Services

Handler = Callable[[Services, str, Any], Awaitable[Any]]
