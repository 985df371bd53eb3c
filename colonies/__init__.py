"""Colonies in Python: a zero-trust, pull-based meta-orchestrator.

The public SDK: `Client`, `AsyncClient`, `Executor`, `func_spec`, key helpers, and the errors a client
call raises: `ClientError` (the server refused; `status` is its HTTP status) and its subclass
`TransportError` (no reply, status 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "ClientError", "Executor", "TransportError", "func_spec", "generate_prvkey",
           "id_of"]

if TYPE_CHECKING:
    from colonies.client import AsyncClient, Client, func_spec
    from colonies.errors import ClientError, TransportError
    from colonies.executor import Executor
    from colonies.protocol.crypto import generate_prvkey, id_of


def __getattr__(name: str) -> Any:
    # Lazy imports keep `colonies --help` fast; only the names above are exported.
    if name in ("AsyncClient", "Client", "func_spec"):
        from colonies import client

        return getattr(client, name)
    if name == "Executor":
        from colonies.executor import Executor

        return Executor
    if name in ("ClientError", "TransportError"):
        from colonies import errors

        return getattr(errors, name)
    if name in ("generate_prvkey", "id_of"):
        from colonies.protocol import crypto

        return getattr(crypto, name)
    raise AttributeError(name)
