"""A user's executor module, run inside a container built FROM localhost/colonies-executor:dev.

`colonies executor run mywork` (the image's entrypoint with CMD ["mywork"]) serves these functions;
the colony, server and key come from COLONIES_* variables (see run.sh).
"""

from __future__ import annotations

import hashlib
import os
import sys

from colonies import Executor

ex = Executor(executortype="mywork", slots=2)


@ex.function
def count_primes(limit: int) -> int:
    """How many primes are below `limit` (a sieve)."""
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"[:limit]
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return sum(sieve)


@ex.function
def digest(text: str, rounds: int = 100_000) -> str:
    """SHA-256 applied `rounds` times to `text` (the first 16 hex digits)."""
    h = text.encode()
    for _ in range(rounds):
        h = hashlib.sha256(h).digest()
    return h.hex()[:16]


@ex.function
def whoami() -> list[object]:
    """Where this runs: the uid, the Python environment and the working directory (the image's)."""
    return [os.getuid(), sys.prefix, os.getcwd()]
