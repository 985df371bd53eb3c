"""Retries on exceptions: a per-function policy, run by the kit inside one assignment.

    @ex.function(retry=RetryPolicy(retries=3, backoff="exponential", delay=0.5, max_delay=10,
                                   on=(ConnectionError, TimeoutError)))

Why inside the assignment rather than failing and letting the server re-queue: the server re-queues
only on an execution deadline (that path means "the executor was lost"), and a failed close is final,
so a server-side retry would need a new message. Retrying locally keeps the process RUNNING on this
executor, keeps its queue position and `retries` (the server's count of deadline re-queues) apart from
these, and costs no round trip; every retry is written to the process log and as an ERR attribute
(`kit.retry.<attempt>.<n>`), so the audit trail shows it. The deadline still holds: a retry whose
backoff would end past `maxexectime` is not started, and the process fails with the last error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BACKOFFS = ("fixed", "exponential")


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a function up to `retries` times when it raises one of `on` (subclasses included).

    The wait before retry n (1-based) is `delay` ("fixed") or `delay * factor**(n-1)` ("exponential"),
    capped at `max_delay`.
    """

    retries: int = 3
    backoff: Literal["fixed", "exponential"] = "exponential"
    delay: float = 1.0
    max_delay: float = 60.0
    factor: float = 2.0
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must not be negative")
        if self.backoff not in BACKOFFS:
            raise ValueError(f"backoff must be one of {', '.join(BACKOFFS)}, not {self.backoff!r}")
        if self.delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("delay and max_delay must not be negative, and factor must be at least 1")
        if not self.on or not all(isinstance(t, type) and issubclass(t, BaseException) for t in self.on):
            raise ValueError("on must be a non-empty tuple of exception types")

    def retries_on(self, exc: BaseException) -> bool:
        return isinstance(exc, self.on)

    def wait_before(self, n: int) -> float:
        """Seconds to wait before retry `n` (1-based)."""
        if self.backoff == "fixed":
            return min(self.delay, self.max_delay)
        return min(self.delay * self.factor ** min(n - 1, 64), self.max_delay)


def as_policy(retry: RetryPolicy | int | None) -> RetryPolicy | None:
    """`retry=3` is short for `RetryPolicy(retries=3)`; 0 or None means no retries."""
    if retry is None or isinstance(retry, RetryPolicy):
        return retry if retry is None or retry.retries > 0 else None
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise TypeError("retry must be a RetryPolicy or a number of retries")
    return RetryPolicy(retries=retry) if retry > 0 else None
