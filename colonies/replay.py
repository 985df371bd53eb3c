"""Replay protection for signed requests (our extension; the original has none, §1.4).

Our SDK puts two fields inside the signed payload: `timestamp` (Unix ns) and `nonce` (32 random hex
characters). The original server ignores unknown fields, so the SDK still works against it.

Our server, when a signed request carries either field, refuses it (403) unless
  * the timestamp is within ±`COLONIES_REPLAY_WINDOW` seconds (default 300) of the server's clock, and
  * the (nonce, signer) pair has not been seen within the window.
Nonces live in the database (`Storage.remember_nonce`, insert-if-absent), so a request captured on one
replica cannot be replayed on another. A nonce is kept until its timestamp leaves the window; after
that the timestamp check alone refuses the replay. Expired rows are purged by a periodic step.

Requests without the fields (pycolonies, the Go CLI) are accepted unless
`COLONIES_REQUIRE_FRESH_SIGNATURES=true`. When absent, the check costs two attribute reads.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from colonies.clock import NS, SystemClock
from colonies.errors import Forbidden

if TYPE_CHECKING:
    from colonies.protocol.messages import Msg
    from colonies.storage.base import Storage

NONCE_MIN, NONCE_MAX = 16, 128
_clock = SystemClock()


def stamp(msg: dict[str, Any]) -> dict[str, Any]:
    """Client side: `msg` with a fresh timestamp and nonce (to be signed with it)."""
    return {**msg, "timestamp": _clock.now_ns(), "nonce": secrets.token_hex(16)}


class Freshness:
    """The server-side check, one per server process."""

    def __init__(self, storage: Storage, now_ns: Callable[[], int], window_s: int, required: bool) -> None:
        self.storage = storage
        self._now = now_ns
        self.window_ns = max(int(window_s), 1) * NS
        self.required = required
        self._next_purge = 0

    def needed(self, msg: Msg) -> bool:
        """Whether `check` has anything to do (the cheap hot-path test)."""
        return self.required or bool(msg.timestamp) or bool(msg.nonce)

    async def check(self, msg: Msg, signer: str) -> None:
        ts, nonce = msg.timestamp, msg.nonce
        if not ts and not nonce:
            if self.required:
                raise Forbidden("access denied, the request carries no timestamp and nonce "
                                "(COLONIES_REQUIRE_FRESH_SIGNATURES is on)")
            return
        if not (NONCE_MIN <= len(nonce) <= NONCE_MAX) or not ts:
            raise Forbidden(f"access denied, a fresh request needs a timestamp and a nonce of "
                            f"{NONCE_MIN} to {NONCE_MAX} characters")
        now = self._now()
        if abs(now - ts) > self.window_ns:
            raise Forbidden("access denied, the request timestamp is outside the replay window")
        if now >= self._next_purge:
            self._next_purge = now + min(self.window_ns, 60 * NS)
            await self.storage.purge_nonces(now)
        if not await self.storage.remember_nonce(nonce, signer, ts + self.window_ns):
            raise Forbidden("access denied, replayed request (nonce already seen)")
